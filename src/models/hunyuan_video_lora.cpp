#include "models/hunyuan_video_lora.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "core/files.h"
#include "core/log.h"
#include "io/json.h"
#include "io/safetensors.h"
#include "models/hunyuan_video_checkpoint.h"

namespace sr {

namespace {

bool starts_with(std::string_view s, std::string_view p) {
    return s.substr(0, p.size()) == p;
}
bool ends_with(std::string_view s, std::string_view p) {
    return s.size() >= p.size() && s.substr(s.size() - p.size()) == p;
}

// The keys a message shows: a hostile file with a million names must not flood the terminal.
std::string key_list(const std::vector<std::string>& keys) {
    std::string out;
    for (size_t i = 0; i < std::min<size_t>(keys.size(), 8); ++i)
        out += fmt::format("{}'{}'", i ? ", " : "", printable(keys[i]));
    if (keys.size() > 8) out += fmt::format(" and {} more", keys.size() - 8);
    return out;
}

// One adapter as the file names it: its module (prefix stripped) and the keys of its halves.
struct FileModule {
    std::string down, up, alpha;
};

// The prefixes each convention puts before a module name.
const std::vector<std::string>& prefixes(const std::string& convention) {
    static const std::vector<std::string> kDiffusers = {"transformer.", "base_model.model.", ""};
    static const std::vector<std::string> kKohya = {"lora_unet_"};
    static const std::vector<std::string> kComfy = {"model.diffusion_model.", "diffusion_model."};
    return convention == "kohya" ? kKohya : convention == "comfyui" ? kComfy : kDiffusers;
}

struct HalfSuffix {
    const char* suffix;
    int which;  // 0 down, 1 up, 2 alpha
};
constexpr HalfSuffix kSuffixes[] = {
    {".lora_A.weight", 0}, {".lora_down.weight", 0}, {".lora_B.weight", 1}, {".lora_up.weight", 1}, {".alpha", 2},
};

Tensor read_f32(const WeightStore& store, const std::string& key, const std::string& path) {
    Tensor t = dequantize_to_f32(store.stored(key)).contiguous();
    const float* p = t.data<float>();
    for (int64_t i = 0; i < t.numel(); ++i)
        SR_THROW_IF(!std::isfinite(p[i]), "{}: LoRA tensor '{}' holds a non-finite value ({}) at element {}", path,
                    printable(key), p[i], i);
    return t;
}

// A key of PEFT's rank_pattern / alpha_pattern: it matches a module whose name is it or ends in "." + it. PEFT
// reads the key as a regular expression (re.match(rf"(.*\.)?({key})$", name)); the keys it writes are module
// names, and a hostile file's expression must not cost exponential time, so here it is a name.
struct ModulePattern {
    std::string key;
    double value = 0;
    bool matches(std::string_view module) const {
        return module == key ||
               (module.size() > key.size() && ends_with(module, key) && module[module.size() - key.size() - 1] == '.');
    }
};

// What the file's metadata says about alpha (PEFT's adapter config as diffusers saves it): the default
// (`lora_alpha`), per-module alphas (`alpha_pattern`) and ranks (`rank_pattern`, which must agree with the
// tensors: a file whose pattern says another rank than its matrices hold was not saved by PEFT as it says).
struct MetadataAlpha {
    std::optional<double> alpha;
    std::vector<ModulePattern> alpha_pattern, rank_pattern;

    // The pattern's value for `module`, or nullopt: of the keys that match, the longest (the most specific;
    // PEFT takes the first in the file's order, which the JSON reader does not keep).
    static std::optional<double> match(const std::vector<ModulePattern>& patterns, const std::string& module) {
        const ModulePattern* best = nullptr;
        for (const ModulePattern& p : patterns)
            if (p.matches(module) && (!best || p.key.size() > best->key.size())) best = &p;
        return best ? std::optional<double>(best->value) : std::nullopt;
    }
};

std::vector<ModulePattern> read_patterns(const Json& j, const char* field, const std::string& path) {
    std::vector<ModulePattern> out;
    if (!j.contains(field)) return out;
    const Json& m = j.at(field);
    SR_THROW_IF(!m.is_object(), "{}: metadata {} is not an object of module -> number", path, field);
    for (const auto& [key, value] : m.items()) {
        SR_THROW_IF(!value.is_number() || !std::isfinite(value.get<double>()),
                    "{}: metadata {} '{}' is not a finite number", path, field, printable(key, 100));
        SR_THROW_IF(key.empty() || key.size() > 1000, "{}: metadata {} has a key of {} bytes", path, field, key.size());
        out.push_back({key, value.get<double>()});
    }
    return out;
}

MetadataAlpha metadata_alpha(const WeightStore& store, const std::string& path) {
    MetadataAlpha out;
    if (auto a = store.metadata("lora_alpha")) {
        double v = 0;
        const auto [end, ec] = std::from_chars(a->data(), a->data() + a->size(), v);
        SR_THROW_IF(ec != std::errc() || end != a->data() + a->size() || !std::isfinite(v),
                    "{}: metadata lora_alpha '{}' is not a number", path, printable(*a));
        out.alpha = v;
        return out;
    }
    if (auto m = store.metadata("lora_adapter_metadata")) {
        const Json j = parse_json(*m, path + " metadata lora_adapter_metadata");
        if (!j.is_object()) return out;
        if (j.contains("lora_alpha")) {
            const double v = json_number(j, "lora_alpha", path + " metadata lora_adapter_metadata");
            SR_THROW_IF(!std::isfinite(v), "{}: metadata lora_alpha is not finite", path);
            out.alpha = v;
        }
        out.alpha_pattern = read_patterns(j, "alpha_pattern", path);
        out.rank_pattern = read_patterns(j, "rank_pattern", path);
    }
    return out;
}

}  // namespace

LoraFile parse_lora_argument(const std::string& text) {
    LoraFile f{text, 1.0f};
    const size_t colon = text.rfind(':');
    if (colon == std::string::npos || colon == 0) return f;
    const std::string tail = text.substr(colon + 1);
    float v = 0;
    const auto [end, ec] = std::from_chars(tail.data(), tail.data() + tail.size(), v);
    if (tail.empty() || ec != std::errc() || end != tail.data() + tail.size()) return f;
    SR_THROW_IF(!std::isfinite(v), "--lora '{}': strength {} is not finite", text, tail);
    return {text.substr(0, colon), v};
}

std::string detect_lora_convention(const std::vector<std::string>& keys, const std::string& source) {
    bool kohya = false, comfy = false, lora = false;
    for (const std::string& k : keys) {
        kohya |= starts_with(k, "lora_unet_");
        comfy |= starts_with(k, "diffusion_model.") || starts_with(k, "model.diffusion_model.");
        for (const HalfSuffix& s : kSuffixes) lora |= ends_with(k, s.suffix) && s.which != 2;
    }
    SR_THROW_IF(kohya && comfy, "{}: LoRA keys mix kohya ('lora_unet_...') and ComfyUI ('diffusion_model...') names",
                source);
    if (kohya) return "kohya";
    if (comfy) return "comfyui";
    SR_THROW_IF(!lora,
                "{}: not a LoRA file (no key ends in .lora_A.weight / .lora_B.weight / .lora_down.weight / "
                ".lora_up.weight); its keys: {}",
                source, key_list(keys));
    return "diffusers";
}

LoraSet read_hunyuan_video_loras(const LoraOptions& options, const HunyuanVideoConfig& config,
                                 const std::map<std::string, std::pair<int64_t, int64_t>>& linears) {
    LoraSet set;
    set.mode = options.mode;
    // Original layers (ComfyUI's names, and kohya's with '.' as '_') -> the diffusers layers they hold.
    std::map<std::string, OriginalTensorRecipe> by_original, by_kohya;
    for (OriginalTensorRecipe& r : original_hunyuan_recipes(config)) {
        if (!ends_with(r.name, ".weight")) continue;
        r.name.resize(r.name.size() - 7);
        for (std::string& p : r.parts)
            if (ends_with(p, ".weight")) p.resize(p.size() - 7);
        std::string kohya = r.name;
        std::replace(kohya.begin(), kohya.end(), '.', '_');
        by_kohya[kohya] = r;
        by_original[r.name] = std::move(r);
    }
    for (const LoraFile& file : options.files) {
        const std::string& path = file.path;
        SR_THROW_IF(!std::isfinite(file.strength), "{}: LoRA strength is not finite", path);
        const WeightStore store = WeightStore::open(path);
        const std::vector<std::string> keys = store.names();
        const std::string convention = detect_lora_convention(keys, path);
        const MetadataAlpha file_alpha = metadata_alpha(store, path);

        std::map<std::string, FileModule> modules;
        std::vector<std::string> unmatched;
        for (const std::string& key : keys) {
            std::string module;
            int which = -1;
            for (const HalfSuffix& s : kSuffixes)
                if (ends_with(key, s.suffix)) {
                    module = key.substr(0, key.size() - std::strlen(s.suffix));
                    which = s.which;
                    break;
                }
            bool prefixed = false;
            for (const std::string& p : prefixes(convention))
                if (which >= 0 && starts_with(module, p)) {
                    module = module.substr(p.size());
                    prefixed = true;
                    break;
                }
            if (which < 0 || !prefixed) {
                unmatched.push_back(key);
                continue;
            }
            FileModule& m = modules[module];
            (which == 0 ? m.down : which == 1 ? m.up : m.alpha) = key;
        }

        size_t applied = 0;
        for (const auto& [module, m] : modules) {
            SR_THROW_IF(m.down.empty() || m.up.empty(), "{}: LoRA module '{}' has {} but no {} half", path,
                        printable(module), m.down.empty() ? "an up (B)" : "a down (A)",
                        m.down.empty() ? "down (A)" : "up (B)");
            // The diffusers layers this module targets, in row order.
            std::vector<std::string> parts;
            bool swap_halves = false;
            if (linears.count(module)) {
                parts = {module};
            } else if (convention != "diffusers") {
                const auto& table = convention == "kohya" ? by_kohya : by_original;
                auto it = table.find(module);
                if (it != table.end()) parts = it->second.parts, swap_halves = it->second.swap_halves;
            }
            bool all_linear = !parts.empty();
            for (const std::string& p : parts) all_linear &= linears.count(p) > 0;
            if (!all_linear) {
                unmatched.push_back(m.down);
                unmatched.push_back(m.up);
                if (!m.alpha.empty()) unmatched.push_back(m.alpha);
                continue;
            }
            int64_t out = 0;
            const int64_t in = linears.at(parts[0]).second;
            for (const std::string& p : parts) out += linears.at(p).first;

            const Tensor down = read_f32(store, m.down, path);
            Tensor up = read_f32(store, m.up, path);
            SR_THROW_IF(down.rank() != 2 || up.rank() != 2, "{}: LoRA '{}' halves are {} and {}, not matrices", path,
                        printable(module), down.shape().str(), up.shape().str());
            const int64_t rank = down.dim(0);
            SR_THROW_IF(rank <= 0 || up.dim(1) != rank,
                        "{}: LoRA '{}' ranks disagree: down (A) {} has rank {}, up (B) {} has rank {}", path,
                        printable(module), down.shape().str(), rank, up.shape().str(), up.dim(1));
            SR_THROW_IF(down.dim(1) != in || up.dim(0) != out,
                        "{}: LoRA '{}' is [{}, {}] (up rows x down columns) but the layer is [{}, {}]", path,
                        printable(module), up.dim(0), down.dim(1), out, in);
            double alpha = double(rank);
            if (file_alpha.alpha) alpha = *file_alpha.alpha;
            if (const auto a = MetadataAlpha::match(file_alpha.alpha_pattern, module)) alpha = *a;
            if (const auto r = MetadataAlpha::match(file_alpha.rank_pattern, module))
                SR_THROW_IF(*r != double(rank), "{}: LoRA '{}' has rank {}, but the metadata's rank_pattern says {}",
                            path, printable(module), rank, *r);
            if (!m.alpha.empty()) {
                const Tensor a = read_f32(store, m.alpha, path);
                SR_THROW_IF(a.numel() != 1, "{}: LoRA alpha '{}' has shape {}, not one value", path, printable(m.alpha),
                            a.shape().str());
                alpha = a.data<float>()[0];
            }
            const float scale = float(double(file.strength) * alpha / double(rank));
            // Fold the scale into up (a copy: the file's mapping is read-only); swap the halves as the weight's
            // are swapped (final_layer.adaLN_modulation.1: [shift; scale] -> norm_out.linear's [scale; shift]).
            Tensor scaled = Tensor::empty(up.shape(), DType::F32);
            const int64_t half = out / 2;
            for (int64_t r = 0; r < out; ++r) {
                const int64_t src = swap_halves ? (r < half ? r + half : r - half) : r;
                for (int64_t k = 0; k < rank; ++k)
                    scaled.data<float>()[r * rank + k] = scale * up.data<float>()[src * rank + k];
            }
            int64_t row0 = 0;
            for (const std::string& p : parts) {
                const int64_t rows = linears.at(p).first;
                set.add(p, {down, scaled.slice(0, row0, row0 + rows).contiguous(), path});
                row0 += rows;
            }
            ++applied;
        }
        if (!unmatched.empty()) {
            SR_THROW_IF(!options.ignore_unmatched,
                        "{} ({} LoRA): {} key{} match no layer of the transformer: {} (--lora-ignore-unmatched "
                        "skips them)",
                        path, convention, unmatched.size(), unmatched.size() == 1 ? "" : "s", key_list(unmatched));
            SR_LOG_WARN("{} ({} LoRA): {} key{} match no layer of the transformer and are ignored: {}", path,
                        convention, unmatched.size(), unmatched.size() == 1 ? "" : "s", key_list(unmatched));
        }
        SR_THROW_IF(applied == 0, "{}: no LoRA module in it targets a layer of the transformer", path);
        SR_LOG_INFO("LoRA {} ({}, strength {}): {} module{}", path, convention, file.strength, applied,
                    applied == 1 ? "" : "s");
    }
    return set;
}

}  // namespace sr
