// Fuzz target: the safetensors header parser, which reads untrusted checkpoint files before anything else.
// A rejected input must be an sr::InputError; an accepted one must satisfy every promise the parser makes to
// its callers (offsets inside the file, byte counts matching dtype x shape, no overlaps, file order), which
// is checked here so a silently wrong header counts as a finding, not only a crash.
#include <algorithm>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

#include "core/error.h"
#include "fuzz_target.h"
#include "io/json.h"
#include "io/safetensors.h"

namespace {

[[noreturn]] void broken(const std::string& what) {
    throw std::logic_error("broken parser invariant: " + what);
}

void check_invariants(const sr::SafetensorsHeader& h, const uint8_t* data, size_t size) {
    uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | data[i];
    if (h.data_offset != 8 + n) broken("data_offset is not 8 + header length");
    if (h.data_offset > size) broken("data section starts past the end");
    const size_t data_size = size - h.data_offset;
    for (size_t i = 0; i < h.entries.size(); ++i) {
        const sr::SafetensorsEntry& e = h.entries[i];
        if (e.data_begin > e.data_end || e.data_end > data_size) broken("'" + e.name + "' runs outside the data");
        if (e.shape.rank() > sr::kMaxDims) broken("'" + e.name + "' has too many dims");
        unsigned __int128 bytes = sr::dtype_size(e.dtype), extent = 1;
        for (int d = 0; d < e.shape.rank(); ++d) {
            if (e.shape[d] < 0) broken("'" + e.name + "' has a negative dim");
            // Strides multiply the non-zero dims: their product must fit an int64 even when numel is 0.
            if (e.shape[d] > 0) extent *= uint64_t(e.shape[d]);
            if (extent > uint64_t(INT64_MAX)) broken("'" + e.name + "' has dims whose product overflows int64");
            bytes *= uint64_t(e.shape[d]);
            if (bytes > data_size) bytes = data_size + 1;  // stays a mismatch, without overflowing
        }
        if (bytes != e.data_end - e.data_begin) broken("'" + e.name + "' byte count differs from dtype x shape");
        if (i > 0 && h.entries[i - 1].data_end > e.data_begin) broken("'" + e.name + "' overlaps or is out of order");
    }
}

std::optional<uint64_t> run_one(const uint8_t* data, size_t size) {
    sr::SafetensorsHeader h;
    try {
        h = sr::parse_safetensors_header(data, size, size, "fuzz");
    } catch (const sr::InputError&) {
        return std::nullopt;
    }
    check_invariants(h, data, size);
    // Signature: how many entries and metadata keys, and each entry's dtype, rank and emptiness.
    uint64_t sig = sr::fuzz::mix(sr::fuzz::kMixStart, std::min<size_t>(h.entries.size(), 16));
    sig = sr::fuzz::mix(sig, std::min<size_t>(h.metadata.size(), 4));
    for (size_t i = 0; i < h.entries.size() && i < 16; ++i) {
        const auto& e = h.entries[i];
        sig = sr::fuzz::mix(sig, uint64_t(e.dtype) * 64 + uint64_t(e.shape.rank()) * 2 + (e.data_begin == e.data_end));
    }
    return sig;
}

// A valid safetensors image holding `tensors` (name, dtype, shape), data zero-filled.
std::string image(const std::vector<std::tuple<std::string, std::string, std::vector<int64_t>>>& tensors, bool metadata,
                  size_t align) {
    const std::map<std::string, size_t> sizes = {{"F32", 4}, {"BF16", 2}, {"F16", 2}, {"F8_E4M3", 1},
                                                 {"I32", 4}, {"I64", 8},  {"BOOL", 1}};
    sr::Json header = sr::Json::object();
    if (metadata) header["__metadata__"] = {{"format", "pt"}};
    uint64_t offset = 0;
    for (const auto& [name, dtype, shape] : tensors) {
        uint64_t bytes = sizes.at(dtype);
        for (int64_t d : shape) bytes *= uint64_t(d);
        header[name] = {{"dtype", dtype}, {"shape", shape}, {"data_offsets", {offset, offset + bytes}}};
        offset += bytes;
    }
    std::string text = header.dump();
    while ((text.size() + 8) % align != 0) text.push_back(' ');
    std::string out(8, '\0');
    for (int i = 0; i < 8; ++i) out[size_t(i)] = char(uint8_t(uint64_t(text.size()) >> (8 * i)));
    return out + text + std::string(size_t(offset), '\0');
}

std::vector<std::string> seeds() {
    return {
        image({{"proj_out.weight", "BF16", {4, 3}}}, true, 8),
        image({{"video", "F32", {1, 2, 2, 2, 3}},
               {"six", "F8_E4M3", {1, 2, 1, 2, 1, 2}},
               {"ids", "I64", {3}},
               {"idx", "I32", {2, 2}},
               {"mask", "BOOL", {5}},
               {"half", "F16", {3}},
               {"scalar", "F32", {}},
               {"none", "BF16", {0, 4}}},
              true, 8),
        image({{"a", "F32", {2}}, {"b", "F32", {2}}}, false, 1),
        image({}, true, 8),
        image({}, false, 1),
    };
}

std::vector<std::string> dictionary() {
    std::vector<std::string> d = sr::fuzz::edge_numbers();
    for (std::string& t : sr::fuzz::safetensors_tokens()) d.push_back(std::move(t));
    return d;
}

}  // namespace

SR_FUZZ_TARGET("fuzz_safetensors_header", true)
