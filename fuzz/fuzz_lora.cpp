// Fuzz target: the LoRA adapter reader (models/hunyuan_video_lora.h), which reads files users download from
// model hubs: the naming convention detected from the keys, alpha from tensors or metadata, the halves paired,
// ranks and shapes checked against the transformer's layers, fused adapters split into row slices. Each input
// is a safetensors image written to a scratch file and read onto a small transformer (the LoRA fixtures'
// config). A rejected input must be an sr::InputError; an accepted one must map only onto the model's layers
// with the layers' shapes, matching ranks and finite values, so a silently wrong adapter is a finding too.

#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

#include "core/error.h"
#include "core/log.h"
#include "fuzz_target.h"
#include "io/json.h"
#include "models/hunyuan_video_transformer.h"

namespace {

[[noreturn]] void broken(const std::string& what) {
    throw std::logic_error("broken reader invariant: " + what);
}

// The LoRA fixtures' transformer (tests/fixtures/lora_*/model/config.json): 2 heads of 16, one block of each
// kind, so every naming convention's seeds target real layers.
const sr::HunyuanVideoTransformer& model() {
    static const sr::HunyuanVideoTransformer m = [] {
        const sr::Json j = sr::parse_json(R"({"attention_head_dim": 16, "guidance_embeds": true, "in_channels": 4,
            "mlp_ratio": 2.0, "num_attention_heads": 2, "num_layers": 1, "num_refiner_layers": 1,
            "num_single_layers": 1, "out_channels": 4, "patch_size": 2, "patch_size_t": 1,
            "pooled_projection_dim": 16, "qk_norm": "rms_norm", "rope_axes_dim": [4, 4, 8], "rope_theta": 256.0,
            "text_embed_dim": 16})",
                                          "fuzz config");
        return sr::HunyuanVideoTransformer::random(sr::HunyuanVideoConfig::from_json(j, "fuzz config"), sr::DType::F32);
    }();
    return m;
}

const std::map<std::string, std::pair<int64_t, int64_t>>& linears() {
    static const auto shapes = model().linear_shapes();
    return shapes;
}

const std::string& scratch_path() {
    return sr::fuzz::scratch_path("fuzz_lora", ".safetensors");
}

void check_invariants(const sr::LoraSet& set) {
    if (set.empty()) broken("an accepted file applied nothing");
    for (const std::string& name : set.unapplied())
        if (!linears().count(name)) broken("a delta for '" + name + "', which is no layer of the model");
    for (const auto& [name, shape] : linears()) {
        const std::vector<sr::LoraDelta>* deltas = set.find(name);
        if (!deltas) continue;
        for (const sr::LoraDelta& d : *deltas) {
            if (d.down.rank() != 2 || d.up.rank() != 2) broken("'" + name + "': halves that are not matrices");
            if (d.down.dim(0) <= 0 || d.up.dim(1) != d.down.dim(0)) broken("'" + name + "': ranks disagree");
            if (d.up.dim(0) != shape.first || d.down.dim(1) != shape.second)
                broken("'" + name + "': a delta of another shape than the layer's");
            if (d.down.dtype() != sr::DType::F32 || d.up.dtype() != sr::DType::F32)
                broken("'" + name + "': halves not in f32");
            for (const sr::Tensor* t : {&d.down, &d.up}) {
                const sr::Tensor c = t->contiguous();
                for (int64_t i = 0; i < c.numel(); ++i)
                    if (!std::isfinite(c.data<float>()[i])) broken("'" + name + "': a non-finite value accepted");
            }
        }
    }
}

std::optional<uint64_t> run_one(const uint8_t* data, size_t size) {
    static const bool quiet = [] {
        sr::set_log_level(sr::LogLevel::Error);  // the reader's info and warning lines, once per input
        return true;
    }();
    (void)quiet;
    (void)linears();  // the model is made before the first input, not inside its timing
    sr::fuzz::write_scratch(scratch_path(), data, size);
    sr::LoraSet set;
    const bool ignore = size > 0 && (data[size - 1] & 1);  // both policies for unmatched keys
    try {
        set = model().read_loras({.files = {{scratch_path(), 0.75f}}, .ignore_unmatched = ignore});
    } catch (const sr::InputError&) {
        return std::nullopt;
    }
    check_invariants(set);
    // Signature: the layers the file applied to and how many deltas each.
    uint64_t sig = sr::fuzz::mix(sr::fuzz::kMixStart, set.module_count());
    for (const auto& [name, shape] : linears())
        if (const auto* d = set.find(name)) sig = sr::fuzz::mix(sig, std::hash<std::string>{}(name) + d->size());
    return sig;
}

// A safetensors image of F32 tensors `tensors` (name, shape) filled with small values, with `metadata`.
std::string image(const std::vector<std::pair<std::string, std::vector<int64_t>>>& tensors,
                  const sr::Json& metadata = sr::Json::object()) {
    sr::Json header = sr::Json::object();
    if (!metadata.empty()) header["__metadata__"] = metadata;
    uint64_t offset = 0;
    for (const auto& [name, shape] : tensors) {
        uint64_t bytes = 4;
        for (int64_t d : shape) bytes *= uint64_t(d);
        header[name] = {{"dtype", "F32"}, {"shape", shape}, {"data_offsets", {offset, offset + bytes}}};
        offset += bytes;
    }
    std::string text = header.dump();
    while ((text.size() + 8) % 8 != 0) text.push_back(' ');
    std::string out(8, '\0');
    for (int i = 0; i < 8; ++i) out[size_t(i)] = char(uint8_t(uint64_t(text.size()) >> (8 * i)));
    std::string values(size_t(offset), '\0');
    for (size_t i = 0; i + 4 <= values.size(); i += 4) {
        const float v = 0.01f * float(int(i / 4 % 7) - 3);
        std::memcpy(&values[i], &v, 4);
    }
    return out + text + values;
}

std::vector<std::string> seeds() {
    const int64_t D = 32, M = 64, r = 2;
    return {
        // diffusers / PEFT, alpha in the metadata
        image({{"transformer.transformer_blocks.0.attn.to_q.lora_A.weight", {r, D}},
               {"transformer.transformer_blocks.0.attn.to_q.lora_B.weight", {D, r}},
               {"transformer.single_transformer_blocks.0.proj_mlp.lora_A.weight", {r, D}},
               {"transformer.single_transformer_blocks.0.proj_mlp.lora_B.weight", {M, r}}},
              {{"lora_alpha", "4"}}),
        // kohya / musubi on fused layers, alpha tensors
        image({{"lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight", {r, D}},
               {"lora_unet_double_blocks_0_img_attn_qkv.lora_up.weight", {3 * D, r}},
               {"lora_unet_double_blocks_0_img_attn_qkv.alpha", {}},
               {"lora_unet_single_blocks_0_linear1.lora_down.weight", {r, D}},
               {"lora_unet_single_blocks_0_linear1.lora_up.weight", {3 * D + M, r}}}),
        // ComfyUI, the output head's swapped halves
        image({{"diffusion_model.final_layer.adaLN_modulation.1.lora_A.weight", {r, D}},
               {"diffusion_model.final_layer.adaLN_modulation.1.lora_B.weight", {2 * D, r}}}),
    };
}

std::vector<std::string> dictionary() {
    std::vector<std::string> d = sr::fuzz::edge_numbers();
    for (std::string& t : sr::fuzz::safetensors_tokens()) d.push_back(std::move(t));
    // A LoRA file's own words: alpha in the metadata, the formats' key suffixes and prefixes, layer names.
    for (const char* t : {"\"lora_alpha\"",
                          "\"lora_adapter_metadata\"",
                          "\"{\\\"lora_alpha\\\": 8}\"",
                          ".lora_A.weight",
                          ".lora_B.weight",
                          ".lora_down.weight",
                          ".lora_up.weight",
                          ".alpha",
                          "transformer.",
                          "base_model.model.",
                          "lora_unet_",
                          "diffusion_model.",
                          "model.diffusion_model.",
                          "img_attn_qkv",
                          "txt_attn_qkv",
                          "linear1",
                          "final_layer",
                          "adaLN_modulation.1",
                          "transformer_blocks.0.attn.to_q",
                          "[1]",
                          "\"nan\"",
                          "\"inf\""})
        d.emplace_back(t);
    return d;
}

}  // namespace

SR_FUZZ_TARGET("fuzz_lora", true)
