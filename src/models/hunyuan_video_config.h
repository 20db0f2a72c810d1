// Configuration of the HunyuanVideo / SkyReels-V1 diffusion transformer, with the field names of the
// diffusers config.json, and what a forward pass at a given shape costs.
// ref: diffusers v0.32.2 src/diffusers/models/transformers/transformer_hunyuan_video.py
//      (HunyuanVideoTransformer3DModel.__init__ defaults are the 13B model's values)
//
//   auto cfg = sr::HunyuanVideoConfig::from_json(sr::load_json_file(dir + "/config.json"), path);
//   auto cost = sr::estimate_forward_cost(cfg, {.batch = 2, .frames = 25, .height = 68, .width = 120, .text_tokens =
//   256});
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "io/json.h"

namespace sr {

struct HunyuanVideoConfig {
    int64_t in_channels = 16;
    int64_t out_channels = 16;
    int64_t num_attention_heads = 24;
    int64_t attention_head_dim = 128;
    int64_t num_layers = 20;         // dual-stream blocks
    int64_t num_single_layers = 40;  // single-stream blocks
    int64_t num_refiner_layers = 2;
    double mlp_ratio = 4.0;
    int64_t patch_size = 2;
    int64_t patch_size_t = 1;
    std::string qk_norm = "rms_norm";
    bool guidance_embeds = true;
    int64_t text_embed_dim = 4096;
    int64_t pooled_projection_dim = 768;
    double rope_theta = 256.0;
    std::vector<int64_t> rope_axes_dim = {16, 56, 56};

    int64_t inner_dim() const { return num_attention_heads * attention_head_dim; }
    // int(hidden_size * mlp_ratio), as the reference truncates it.
    int64_t mlp_dim() const { return int64_t(double(inner_dim()) * mlp_ratio); }
    // The token refiner always uses an MLP ratio of 4 (HunyuanVideoTokenRefiner's default).
    int64_t refiner_mlp_dim() const { return int64_t(double(inner_dim()) * 4.0); }
    int64_t patch_volume() const { return patch_size_t * patch_size * patch_size; }
    // The video tokens of a latent video of frames x height x width (latent units): one per patch.
    int64_t video_tokens(int64_t frames, int64_t height, int64_t width) const {
        return (frames / patch_size_t) * (height / patch_size) * (width / patch_size);
    }

    // Reads config.json fields (unknown fields are ignored; missing ones keep the defaults above) and
    // validates them. Throws InputError naming `source` and the field.
    static HunyuanVideoConfig from_json(const Json& j, const std::string& source);
    void validate(const std::string& source) const;
    Json to_json() const;
};

// The shape of one forward call, in latent units (frames, height, width of the latent video).
struct ForwardShape {
    int64_t batch = 1;
    int64_t frames = 1;
    int64_t height = 2;
    int64_t width = 2;
    int64_t text_tokens = 256;
};

struct ForwardCost {
    int64_t video_tokens = 0;
    double linear_flops = 0;     // 2*M*N*K summed over every linear layer (and the patch embedding)
    double attention_flops = 0;  // 4*Lq*Lk*head_dim per head (QK^T and PV), all keys counted
    double total_flops() const { return linear_flops + attention_flops; }
    // Largest set of f32 activations alive at once (a single-stream block), excluding weights.
    double activation_bytes = 0;
};

ForwardCost estimate_forward_cost(const HunyuanVideoConfig& cfg, const ForwardShape& shape);

}  // namespace sr
