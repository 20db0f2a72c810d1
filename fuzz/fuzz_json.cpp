// Fuzz target: the guarded JSON parser (configs, index files, safetensors headers all go through it), plus
// the typed accessors that read configs. A rejected input must be an sr::InputError; an accepted document
// must print and parse back to itself, and the accessors may only ever throw InputError.
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/error.h"
#include "fuzz_target.h"
#include "io/json.h"

namespace {

// Every accessor on every key (of the first few): wrong types must come back as InputError.
void poke_accessors(const sr::Json& j) {
    if (!j.is_object()) return;
    int n = 0;
    for (auto it = j.begin(); it != j.end() && n < 16; ++it, ++n) {
        const std::string& key = it.key();
        const auto quietly = [](auto&& fn) {
            try {
                fn();
            } catch (const sr::InputError&) {
            }
        };
        quietly([&] { sr::json_int(j, key, "fuzz"); });
        quietly([&] { sr::json_int_or(j, key, 0, "fuzz"); });
        quietly([&] { sr::json_number(j, key, "fuzz"); });
        quietly([&] { sr::json_number_or(j, key, 0.0, "fuzz"); });
        quietly([&] { sr::json_bool_or(j, key, false, "fuzz"); });
        quietly([&] { sr::json_string(j, key, "fuzz"); });
        quietly([&] { sr::json_string_or(j, key, "", "fuzz"); });
        quietly([&] { sr::json_int_array(j, key, "fuzz"); });
        quietly([&] { sr::json_require(it.value(), "x", "fuzz"); });
    }
}

// Signature: the types and depths of the first nodes in document order (iteratively: no recursion on input).
uint64_t signature(const sr::Json& root) {
    uint64_t sig = sr::fuzz::kMixStart;
    std::vector<std::pair<const sr::Json*, int>> stack = {{&root, 0}};
    for (int visited = 0; !stack.empty() && visited < 48; ++visited) {
        const auto [node, depth] = stack.back();
        stack.pop_back();
        sig = sr::fuzz::mix(sig, uint64_t(node->type()) * 128 + uint64_t(depth));
        if (node->is_structured())
            for (auto it = node->rbegin(); it != node->rend(); ++it) stack.emplace_back(&*it, depth + 1);
    }
    return sig;
}

std::optional<uint64_t> run_one(const uint8_t* data, size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    sr::Json j;
    try {
        j = sr::parse_json(text, "fuzz");
    } catch (const sr::InputError&) {
        return std::nullopt;
    }
    // What was accepted must survive a print/parse round trip unchanged (dump() is also recursive, so this
    // checks that the depth guard protects the printer as well).
    const std::string printed = j.dump();
    sr::Json again;
    try {
        again = sr::parse_json(printed, "fuzz (printed)");
    } catch (const sr::InputError& e) {
        throw std::logic_error(std::string("accepted JSON does not parse back after dump(): ") + e.what());
    }
    if (again != j)
        throw std::logic_error("accepted JSON changed in a dump()/parse round trip: " + printed.substr(0, 200));
    poke_accessors(j);
    return signature(j);
}

std::vector<std::string> seeds() {
    return {
        R"({"_class_name":"HunyuanVideoTransformer3DModel","attention_head_dim":16,"guidance_embeds":true,)"
        R"("in_channels":16,"mlp_ratio":4.0,"num_layers":2,"qk_norm":"rms_norm","rope_axes_dim":[4,6,6],)"
        R"("rope_theta":256.0,"nothing":null})",
        R"({"metadata":{"total_size":352128},"weight_map":{"proj_out.weight":"model-00002-of-00002.safetensors",)"
        R"("x_embedder.proj.weight":"model-00001-of-00002.safetensors"}})",
        R"({"__metadata__":{"format":"pt"},"w":{"dtype":"BF16","shape":[64,32],"data_offsets":[0,4096]}})",
        R"([[[[[[[[1]]]]]]],"s\"[{\\",-0.0,1e-5,"\u00e9\ud83d\ude00"])",
        R"("plain string")",
        "  12345678901234567890  ",
    };
}

std::vector<std::string> dictionary() {
    std::vector<std::string> d = sr::fuzz::edge_numbers();
    for (
        const char* t :
        {"\"", "\\",   "\\\"", "\\u0000", "\\ud800", "\\udc00",  "\\u00e9",        "[",    "]",        "{",  "}",  ":",
         ",",  "null", "true", "false",   "\"\":",   "[[[[[[[[", "{\"a\":{\"a\":", "\xff", "\xc3\xa9", "/*", "*/", "//",
         "\t", "\n"})
        d.emplace_back(t);
    return d;
}

}  // namespace

SR_FUZZ_TARGET("fuzz_json", false)
