// ref: diffusers scripts/convert_hunyuan_video_to_diffusers.py (the original -> diffusers name map, applied
//      here in the same order: the plain renames, then the special handlers), diffusers v0.32.2
//      transformer_hunyuan_video.py (the config fields), ComfyUI comfy/ops.py (scaled FP8, io/safetensors.cpp)
#include "models/hunyuan_video_checkpoint.h"

#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <map>
#include <set>

#include "core/files.h"
#include "core/log.h"
#include "io/gguf.h"
#include "io/json.h"
#include "io/safetensors.h"

namespace sr {

namespace fs = std::filesystem;

namespace {

bool starts_with(std::string_view s, std::string_view p) {
    return s.substr(0, p.size()) == p;
}

void replace_all(std::string& s, std::string_view from, std::string_view to) {
    for (size_t at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size()))
        s.replace(at, from.size(), to);
}

// Rows [row0, row0 + rows) of the first dimension of a stored tensor (rows < 0: all), optionally with its two
// halves swapped: what one diffusers tensor is of an original one.
struct RowRef {
    std::string original;
    int64_t row0 = 0, rows = -1;
    bool swap_halves = false;
};

StoredTensor take_rows(StoredTensor t, const RowRef& ref, const std::string& source) {
    const int64_t total = t.info.shape[0];
    const int64_t n = ref.rows < 0 ? total : ref.rows;
    SR_THROW_IF(ref.row0 + n > total || (ref.swap_halves && total % 2 != 0),
                "{}: tensor '{}' has {} rows, too few to split as HunyuanVideo's layout does", source, ref.original,
                total);
    const bool per_row_scale = t.scale.defined() && t.scale.numel() == total && total != 1;
    if (ref.swap_halves) {
        // [shift; scale] -> [scale; shift]: an owned copy with the halves exchanged, byte for byte.
        auto swapped = [&](const Tensor& src) {
            const Tensor c = src.contiguous();
            Tensor out = Tensor::empty(c.shape(), c.dtype(), host_allocator(), ref.original);
            const size_t half = c.nbytes() / 2;
            std::memcpy(out.raw_data(), static_cast<const char*>(c.raw_data()) + half, half);
            std::memcpy(static_cast<char*>(out.raw_data()) + half, c.raw_data(), half);
            return out;
        };
        t.data = swapped(t.data);
        if (per_row_scale) t.scale = swapped(t.scale);
        return t;
    }
    if (n == total) return t;
    t.data = t.data.slice(0, ref.row0, ref.row0 + n);
    if (per_row_scale) t.scale = t.scale.slice(0, ref.row0, ref.row0 + n);
    t.info.shape[0] = n;
    return t;
}

// One original tensor of `rows` rows -> the diffusers tensor(s) it holds, with their rows: the plain renames in
// the reference script's order, then its special handlers.
std::vector<std::pair<std::string, RowRef>> original_to_diffusers(const std::string& original, int64_t rows,
                                                                  int64_t D) {
    std::vector<std::pair<std::string, RowRef>> out;
    auto add = [&](std::string name, RowRef ref) { out.emplace_back(std::move(name), std::move(ref)); };
    static const std::pair<const char*, const char*> kRenames[] = {
        {"img_in", "x_embedder"},
        {"time_in.mlp.0", "time_text_embed.timestep_embedder.linear_1"},
        {"time_in.mlp.2", "time_text_embed.timestep_embedder.linear_2"},
        {"guidance_in.mlp.0", "time_text_embed.guidance_embedder.linear_1"},
        {"guidance_in.mlp.2", "time_text_embed.guidance_embedder.linear_2"},
        {"vector_in.in_layer", "time_text_embed.text_embedder.linear_1"},
        {"vector_in.out_layer", "time_text_embed.text_embedder.linear_2"},
        {"double_blocks", "transformer_blocks"},
        {"img_attn_q_norm", "attn.norm_q"},
        {"img_attn_k_norm", "attn.norm_k"},
        {"img_attn_proj", "attn.to_out.0"},
        {"txt_attn_q_norm", "attn.norm_added_q"},
        {"txt_attn_k_norm", "attn.norm_added_k"},
        {"txt_attn_proj", "attn.to_add_out"},
        {"img_mod.linear", "norm1.linear"},
        {"img_norm1", "norm1.norm"},
        {"img_norm2", "norm2"},
        {"img_mlp", "ff"},
        {"txt_mod.linear", "norm1_context.linear"},
        {"txt_norm1", "norm1.norm"},
        {"txt_norm2", "norm2_context"},
        {"txt_mlp", "ff_context"},
        {"self_attn_proj", "attn.to_out.0"},
        {"modulation.linear", "norm.linear"},
        {"pre_norm", "norm.norm"},
        {"final_layer.norm_final", "norm_out.norm"},
        {"final_layer.linear", "proj_out"},
        {"fc1", "net.0.proj"},
        {"fc2", "net.2"},
        {"input_embedder", "proj_in"},
    };
    std::string key = original;
    for (const auto& [from, to] : kRenames) replace_all(key, from, to);
    const int64_t third = rows / 3;
    const bool fused_qkv = key.find("qkv") != std::string::npos;
    SR_THROW_IF(fused_qkv && rows % 3 != 0, "'{}' has {} rows, not three equal q, k, v parts", original, rows);
    auto thirds = [&](std::string_view fused, const char* q, const char* k, const char* v) {
        std::string base = key;
        for (auto [part, i] : {std::pair{q, 0}, std::pair{k, 1}, std::pair{v, 2}}) {
            std::string name = base;
            replace_all(name, fused, part);
            add(name, {original, i * third, third});
        }
    };
    if (key.find("txt_in") != std::string::npos) {
        auto refiner_name = [](std::string k) {
            replace_all(k, "individual_token_refiner.blocks", "token_refiner.refiner_blocks");
            replace_all(k, "adaLN_modulation.1", "norm_out.linear");
            replace_all(k, "txt_in", "context_embedder");
            replace_all(k, "t_embedder.mlp.0", "time_text_embed.timestep_embedder.linear_1");
            replace_all(k, "t_embedder.mlp.2", "time_text_embed.timestep_embedder.linear_2");
            replace_all(k, "c_embedder", "time_text_embed.text_embedder");
            replace_all(k, "mlp", "ff");
            return k;
        };
        if (key.find("self_attn_qkv") != std::string::npos) {
            for (auto [part, i] : {std::pair{"attn.to_q", 0}, std::pair{"attn.to_k", 1}, std::pair{"attn.to_v", 2}}) {
                std::string name = key;
                replace_all(name, "self_attn_qkv", part);
                add(refiner_name(name), {original, i * third, third});
            }
        } else {
            add(refiner_name(key), {original});
        }
    } else if (key.find("img_attn_qkv") != std::string::npos) {
        thirds("img_attn_qkv", "attn.to_q", "attn.to_k", "attn.to_v");
    } else if (key.find("txt_attn_qkv") != std::string::npos) {
        thirds("txt_attn_qkv", "attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj");
    } else if (key.find("single_blocks") != std::string::npos) {
        std::string base = key;
        replace_all(base, "single_blocks", "single_transformer_blocks");
        for (const char* suffix : {".linear1.weight", ".linear1.bias"}) {
            if (!base.ends_with(suffix)) continue;
            const std::string stem = base.substr(0, base.size() - std::strlen(suffix));
            const std::string kind = std::strcmp(suffix, ".linear1.weight") == 0 ? "weight" : "bias";
            SR_THROW_IF(rows <= 3 * D, "'{}' has {} rows; a width of {} needs more than {}", original, rows, D, 3 * D);
            add(stem + ".attn.to_q." + kind, {original, 0, D});
            add(stem + ".attn.to_k." + kind, {original, D, D});
            add(stem + ".attn.to_v." + kind, {original, 2 * D, D});
            add(stem + ".proj_mlp." + kind, {original, 3 * D, rows - 3 * D});
            return out;
        }
        replace_all(base, "linear2", "proj_out");
        replace_all(base, "q_norm", "attn.norm_q");
        replace_all(base, "k_norm", "attn.norm_k");
        add(base, {original});
    } else if (key.find("final_layer.adaLN_modulation.1") != std::string::npos) {
        std::string name = key;
        replace_all(name, "final_layer.adaLN_modulation.1", "norm_out.linear");
        add(name, {original, 0, -1, true});
    } else {
        add(key, {original});
    }
    return out;
}

// A source whose names are another's with a prefix removed ("model.diffusion_model.", "diffusion_model.").
class PrefixStripped final : public TensorSource {
public:
    PrefixStripped(std::unique_ptr<TensorSource> inner, std::string prefix)
        : inner_(std::move(inner)), prefix_(std::move(prefix)) {}
    const std::string& source() const override { return inner_->source(); }
    bool contains(std::string_view name) const override { return inner_->contains(prefix_ + std::string(name)); }
    TensorInfo info(std::string_view name) const override { return inner_->info(prefix_ + std::string(name)); }
    StoredTensor stored(std::string_view name) const override { return inner_->stored(prefix_ + std::string(name)); }
    std::vector<std::string> names() const override { return strip(inner_->names()); }
    std::vector<std::string> unused_names() const override { return strip(inner_->unused_names()); }
    std::optional<std::string> metadata(std::string_view key) const override { return inner_->metadata(key); }

private:
    std::vector<std::string> strip(std::vector<std::string> names) const {
        for (std::string& n : names)
            if (starts_with(n, prefix_)) n.erase(0, prefix_.size());
        return names;
    }
    std::unique_ptr<TensorSource> inner_;
    std::string prefix_;
};

// The original HunyuanVideo names under diffusers' names.
class OriginalLayout final : public TensorSource {
public:
    OriginalLayout(std::unique_ptr<TensorSource> inner, int64_t hidden) : inner_(std::move(inner)) {
        for (const std::string& name : inner_->names()) {
            // Scaled FP8's companions travel with their weight (WeightStore::stored), not as tensors of their own.
            if (name.ends_with(".scale_weight") || name.ends_with(".weight_scale") || name.ends_with(".scale_input"))
                continue;
            std::vector<std::pair<std::string, RowRef>> parts;
            SR_WITH_CONTEXT(inner_->source(), parts = original_to_diffusers(name, inner_->info(name).shape[0], hidden));
            for (auto& [diffusers, ref] : parts) add(std::move(diffusers), std::move(ref));
        }
    }
    const std::string& source() const override { return inner_->source(); }
    bool contains(std::string_view name) const override { return map_.find(name) != map_.end(); }
    TensorInfo info(std::string_view name) const override {
        const RowRef& ref = find(name);
        TensorInfo i = inner_->info(ref.original);
        if (ref.rows >= 0) i.shape[0] = ref.rows;
        return i;
    }
    StoredTensor stored(std::string_view name) const override {
        const RowRef& ref = find(name);
        return take_rows(inner_->stored(ref.original), ref, source());
    }
    std::vector<std::string> names() const override {
        std::vector<std::string> out;
        for (const auto& [k, v] : map_) out.push_back(k);
        return out;
    }
    std::vector<std::string> unused_names() const override { return inner_->unused_names(); }
    std::optional<std::string> metadata(std::string_view key) const override { return inner_->metadata(key); }

private:
    const RowRef& find(std::string_view name) const {
        const auto it = map_.find(name);
        SR_THROW_IF(it == map_.end(), "{}: missing tensor '{}' (in HunyuanVideo's original names)", source(), name);
        return it->second;
    }
    void add(std::string diffusers, RowRef ref) {
        const std::string original = ref.original;
        const auto [it, inserted] = map_.emplace(std::move(diffusers), std::move(ref));
        SR_THROW_IF(!inserted, "{}: tensors '{}' and '{}' both map to '{}'", source(), it->second.original, original,
                    it->first);
    }
    std::unique_ptr<TensorSource> inner_;
    std::map<std::string, RowRef, std::less<>> map_;
};

// ---------------------------------------------------------------------------------------------------------
// Detection by content

enum class FileKind { None, Safetensors, Gguf };

FileKind sniff(const fs::path& file) {
    const FileHandle f = open_regular_file(file.string());  // a FIFO or device is refused, not waited on
    unsigned char head[9] = {};
    if (::pread(f.get(), head, 9, 0) != 9) return FileKind::None;
    if (std::memcmp(head, "GGUF", 4) == 0) return FileKind::Gguf;
    uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = n << 8 | head[i];
    // A safetensors header: its length, then JSON starting with '{'.
    return n >= 2 && n < (uint64_t(100) << 20) && head[8] == '{' ? FileKind::Safetensors : FileKind::None;
}

std::unique_ptr<TensorSource> open_file(const fs::path& file) {
    switch (sniff(file)) {
        case FileKind::Safetensors:
            return std::make_unique<WeightStore>(WeightStore::open(file.string()));
        case FileKind::Gguf: {
            auto gguf = std::make_unique<GgufStore>(GgufStore::open(file.string()));
            const std::string arch = gguf->file().architecture();
            SR_THROW_IF(arch != "hyvid", "{}: general.architecture is '{}', not hyvid (HunyuanVideo)", file.string(),
                        arch);
            return gguf;
        }
        case FileKind::None:
            break;
    }
    SR_THROW("{}: neither a safetensors nor a GGUF file", file.string());
}

bool has_any(const std::vector<std::string>& names, std::initializer_list<const char*> prefixes) {
    for (const std::string& n : names)
        for (const char* p : prefixes)
            if (starts_with(n, p)) return true;
    return false;
}

std::optional<HunyuanVideoConfig> config_beside(const fs::path& file) {
    std::error_code ec;
    const fs::path config = file.parent_path() / "config.json";
    if (!fs::exists(config, ec)) return std::nullopt;
    const Json j = load_json_file(config.string());
    if (json_string_or(j, "_class_name", "", config.string()) != "HunyuanVideoTransformer3DModel") return std::nullopt;
    return HunyuanVideoConfig::from_json(j, config.string());
}

}  // namespace

std::unique_ptr<TensorSource> original_hunyuan_layout(std::unique_ptr<TensorSource> original, int64_t hidden) {
    return std::make_unique<OriginalLayout>(std::move(original), hidden);
}

std::vector<OriginalTensorRecipe> original_hunyuan_recipes(const HunyuanVideoConfig& c) {
    std::vector<std::string> names;
    auto linear = [&](const std::string& p) { names.push_back(p + ".weight"), names.push_back(p + ".bias"); };
    linear("img_in.proj");
    linear("time_in.mlp.0"), linear("time_in.mlp.2");
    linear("vector_in.in_layer"), linear("vector_in.out_layer");
    if (c.guidance_embeds) linear("guidance_in.mlp.0"), linear("guidance_in.mlp.2");
    linear("txt_in.input_embedder");
    linear("txt_in.t_embedder.mlp.0"), linear("txt_in.t_embedder.mlp.2");
    linear("txt_in.c_embedder.linear_1"), linear("txt_in.c_embedder.linear_2");
    for (int64_t i = 0; i < c.num_refiner_layers; ++i) {
        const std::string p = fmt::format("txt_in.individual_token_refiner.blocks.{}.", i);
        linear(p + "norm1");
        linear(p + "self_attn_qkv");
        linear(p + "self_attn_proj");
        linear(p + "norm2");
        linear(p + "mlp.fc1"), linear(p + "mlp.fc2");
        linear(p + "adaLN_modulation.1");
    }
    for (int64_t i = 0; i < c.num_layers; ++i)
        for (const char* stream : {"img", "txt"}) {
            const std::string p = fmt::format("double_blocks.{}.{}_", i, stream);
            linear(p + "mod.linear");
            linear(p + "attn_qkv");
            names.push_back(p + "attn_q_norm.weight"), names.push_back(p + "attn_k_norm.weight");
            linear(p + "attn_proj");
            linear(p + "mlp.fc1"), linear(p + "mlp.fc2");
        }
    for (int64_t i = 0; i < c.num_single_layers; ++i) {
        const std::string p = fmt::format("single_blocks.{}.", i);
        linear(p + "linear1"), linear(p + "linear2");
        names.push_back(p + "q_norm.weight"), names.push_back(p + "k_norm.weight");
        linear(p + "modulation.linear");
    }
    linear("final_layer.linear");
    linear("final_layer.adaLN_modulation.1");

    std::vector<OriginalTensorRecipe> out;
    const int64_t D = c.inner_dim();
    for (const std::string& name : names) {
        OriginalTensorRecipe r{name, {}, false};
        // Only the parts' names matter here; their rows come from the tensors. The fused single-block rows
        // (linear1) hold q, k, v and the MLP; other fused rows q, k, v.
        const int64_t rows = name.find("linear1") != std::string::npos ? 3 * D + c.mlp_dim() : 3 * D;
        for (const auto& [diffusers, ref] : original_to_diffusers(name, rows, D)) {
            r.parts.push_back(diffusers);
            r.swap_halves = ref.swap_halves;
        }
        out.push_back(std::move(r));
    }
    return out;
}

HunyuanVideoConfig infer_transformer_config(const TensorSource& s) {
    auto shape = [&](const std::string& name) {
        SR_THROW_IF(!s.contains(name), "{}: no config.json and no tensor '{}' to infer the config from", s.source(),
                    name);
        return s.info(name).shape;
    };
    auto count = [&](const char* pattern) {
        int64_t n = 0;
        while (s.contains(fmt::format(fmt::runtime(pattern), n))) ++n;
        return n;
    };
    HunyuanVideoConfig c;
    const Shape patch = shape("x_embedder.proj.weight");
    SR_THROW_IF(patch.rank() != 5 || patch[3] != patch[4],
                "{}: 'x_embedder.proj.weight' has shape {}, not [D, C, t, p, p]", s.source(), patch.str());
    const int64_t D = patch[0];
    c.in_channels = patch[1];
    c.patch_size_t = patch[2];
    c.patch_size = patch[3];
    c.num_layers = count("transformer_blocks.{}.attn.to_q.weight");
    c.num_single_layers = count("single_transformer_blocks.{}.attn.to_q.weight");
    c.num_refiner_layers = count("context_embedder.token_refiner.refiner_blocks.{}.attn.to_q.weight");
    SR_THROW_IF(c.num_layers + c.num_single_layers == 0, "{}: no transformer blocks", s.source());
    // The head dim is the q-norm's length (RMSNorm over each head).
    const std::string norm_q =
        c.num_layers ? "transformer_blocks.0.attn.norm_q.weight" : "single_transformer_blocks.0.attn.norm_q.weight";
    c.attention_head_dim = shape(norm_q)[0];
    SR_THROW_IF(c.attention_head_dim <= 0 || D % c.attention_head_dim != 0,
                "{}: width {} is not a multiple of the head dim {} ('{}')", s.source(), D, c.attention_head_dim,
                norm_q);
    c.num_attention_heads = D / c.attention_head_dim;
    const int64_t M = c.num_layers ? shape("transformer_blocks.0.ff.net.0.proj.weight")[0]
                                   : shape("single_transformer_blocks.0.proj_mlp.weight")[0];
    c.mlp_ratio = double(M) / double(D);
    c.text_embed_dim = shape("context_embedder.proj_in.weight")[1];
    c.pooled_projection_dim = shape("time_text_embed.text_embedder.linear_1.weight")[1];
    c.guidance_embeds = s.contains("time_text_embed.guidance_embedder.linear_1.weight");
    const int64_t out = shape("proj_out.weight")[0];
    SR_THROW_IF(out % c.patch_volume() != 0, "{}: 'proj_out.weight' has {} rows, not a multiple of the patch volume {}",
                s.source(), out, c.patch_volume());
    c.out_channels = out / c.patch_volume();
    // The released models' RoPE (axes 16/56/56 over the 128-wide heads, theta 256): nothing in the weights
    // says otherwise, so other head dims need a config.json.
    SR_THROW_IF(c.attention_head_dim != 128,
                "{}: head dim {} differs from the released models' 128; put the model's config.json beside the file",
                s.source(), c.attention_head_dim);
    c.rope_axes_dim = {16, 56, 56};
    c.rope_theta = 256.0;
    c.validate(s.source());
    return c;
}

TransformerCheckpoint open_transformer_checkpoint(const std::string& path) {
    std::error_code ec;
    SR_THROW_IF(!fs::exists(path, ec), "{}: no such file or folder", path);
    fs::path file;
    if (fs::is_directory(path, ec)) {
        for (const fs::path& config :
             {fs::path(path) / "config.json", fs::path(path) / "transformer" / "config.json"}) {
            if (!fs::exists(config, ec)) continue;
            const Json j = load_json_file(config.string());
            const std::string cls = json_string_or(j, "_class_name", "", config.string());
            SR_THROW_IF(!cls.empty() && cls != "HunyuanVideoTransformer3DModel",
                        "{}: _class_name is '{}', not HunyuanVideoTransformer3DModel", config.string(), cls);
            TransformerCheckpoint ckpt;
            ckpt.config = HunyuanVideoConfig::from_json(j, config.string());
            ckpt.source = std::make_unique<WeightStore>(WeightStore::open(config.parent_path().string()));
            ckpt.layout = "diffusers";
            return ckpt;
        }
        std::vector<fs::path> found;
        for (const auto& entry : fs::directory_iterator(path, ec))
            if (entry.is_regular_file(ec) && sniff(entry.path()) != FileKind::None) found.push_back(entry.path());
        SR_THROW_IF(found.empty(), "{}: no config.json and no safetensors or GGUF checkpoint here", path);
        if (found.size() > 1) {
            std::string list;
            for (const fs::path& f : found) list += (list.empty() ? "" : ", ") + f.filename().string();
            SR_THROW("{}: {} checkpoint files and no config.json ({}): name the one to load", path, found.size(), list);
        }
        file = found[0];
    } else {
        file = path;
    }

    std::unique_ptr<TensorSource> source = open_file(file);
    const std::vector<std::string> raw = source->names();
    for (const char* prefix : {"model.diffusion_model.", "diffusion_model."})
        if (has_any(raw, {prefix})) {
            source = std::make_unique<PrefixStripped>(std::move(source), prefix);
            break;
        }
    const std::vector<std::string> names = source->names();
    const bool original = has_any(names, {"double_blocks.", "single_blocks.", "img_in.", "final_layer.", "txt_in."});
    const bool diffusers =
        has_any(names, {"transformer_blocks.", "single_transformer_blocks.", "x_embedder.", "context_embedder."});
    SR_THROW_IF(original && diffusers,
                "{}: mixes HunyuanVideo's original tensor names (double_blocks., img_in., ...) with diffusers' "
                "(transformer_blocks., x_embedder., ...)",
                file.string());
    SR_THROW_IF(!original && !diffusers,
                "{}: not a HunyuanVideo transformer (neither its original names nor diffusers')", file.string());
    TransformerCheckpoint ckpt;
    if (original) {
        SR_THROW_IF(!source->contains("img_in.proj.weight") || source->info("img_in.proj.weight").shape.rank() != 5,
                    "{}: no 5-D 'img_in.proj.weight' to take the width from", file.string());
        const int64_t D = source->info("img_in.proj.weight").shape[0];
        source = original_hunyuan_layout(std::move(source), D);
        ckpt.layout = "HunyuanVideo original";
    } else {
        ckpt.layout = "diffusers";
    }
    if (auto config = config_beside(file)) {
        ckpt.config = *config;
    } else if (auto text = source->metadata(kTransformerConfigKey)) {
        // The config `skyreels convert` wrote into the file (a diffusers config.json's fields).
        Json j;
        SR_WITH_CONTEXT(file.string() + ": metadata " + std::string(kTransformerConfigKey),
                        j = parse_json(*text, kTransformerConfigKey));
        ckpt.config = HunyuanVideoConfig::from_json(j, file.string() + " (" + kTransformerConfigKey + ")");
    } else {
        ckpt.config = infer_transformer_config(*source);
        ckpt.config_inferred = true;
    }
    ckpt.source = std::move(source);
    return ckpt;
}

}  // namespace sr
