// The transformer checkpoints users hold, opened by content (never by file name) and presented under
// diffusers' names with a config:
//   - a diffusers folder: config.json + sharded or single safetensors (the official SkyReels-V1 repos);
//   - one safetensors file in diffusers names, or in the original HunyuanVideo names (what ComfyUI users
//     download: skyreels_hunyuan_i2v_bf16.safetensors, ..._fp8_e4m3fn.safetensors), with or without a
//     "model.diffusion_model." / "diffusion_model." prefix, any mix of BF16, F16, F32 and F8_E4M3 (plain or
//     ComfyUI's scaled FP8);
//   - a GGUF file (general.architecture "hyvid": city96's and Kijai's HunyuanVideo / SkyReels-V1 GGUFs).
// Single files carry no config: a config.json beside the file wins, then a config the file carries in its
// metadata (kTransformerConfigKey: `skyreels convert` writes it), otherwise it is inferred from the tensor
// shapes with the released model's constants (head dim from the q-norm length, RoPE axes 16/56/56, theta 256).
//
// The original names map onto diffusers' as diffusers' scripts/convert_hunyuan_video_to_diffusers.py does:
// fused q,k,v rows (img_attn_qkv, txt_attn_qkv, self_attn_qkv, single_blocks' linear1 with the MLP rows after
// them) become row views, exact for any storage (a row of a quantized matrix is its own blocks), and
// final_layer.adaLN_modulation.1's [shift; scale] halves are swapped into norm_out.linear's [scale; shift].
//
//   sr::TransformerCheckpoint ckpt = sr::open_transformer_checkpoint("skyreels_hunyuan_i2v_bf16.safetensors");
//   sr::WeightBinder binder(*ckpt.source);           // binds by diffusers names
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "io/tensor_source.h"
#include "models/hunyuan_video_config.h"

namespace sr {

// The metadata key (safetensors __metadata__, GGUF string) holding a diffusers config.json's text.
inline constexpr const char* kTransformerConfigKey = "skyreels.transformer_config";

struct TransformerCheckpoint {
    std::unique_ptr<TensorSource> source;  // tensors under diffusers' names
    HunyuanVideoConfig config;
    std::string layout;  // "diffusers", "HunyuanVideo original", "GGUF"
    bool config_inferred = false;
};

// `path`: a transformer folder (config.json + safetensors), a diffusers pipeline folder (its transformer/),
// a folder holding exactly one checkpoint file, or that file. Throws InputError naming the file or tensor at
// fault (not a transformer, mixed layouts, a shape that contradicts the rest).
TransformerCheckpoint open_transformer_checkpoint(const std::string& path);

// The config a diffusers-named transformer checkpoint implies, from its tensor shapes and the released
// model's constants. InputError naming the tensor when a shape contradicts the others.
HunyuanVideoConfig infer_transformer_config(const TensorSource& source);

// The original HunyuanVideo layout (names already without a "diffusion_model." prefix) under diffusers'
// names. `hidden` is the model width (the fused rows' split).
std::unique_ptr<TensorSource> original_hunyuan_layout(std::unique_ptr<TensorSource> original, int64_t hidden);

// One tensor of the original HunyuanVideo layout as the diffusers tensors it is made of: their rows
// concatenated in order (fused q,k,v; the single blocks' linear1), or one tensor with its two halves swapped
// (final_layer.adaLN_modulation.1). The inverse of original_hunyuan_layout(), for writing that layout.
struct OriginalTensorRecipe {
    std::string name;
    std::vector<std::string> parts;
    bool swap_halves = false;
};
// Every original-layout tensor of a transformer with this config, in the order HunyuanVideo lists them.
std::vector<OriginalTensorRecipe> original_hunyuan_recipes(const HunyuanVideoConfig& config);

}  // namespace sr
