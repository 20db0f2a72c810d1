#include "models/hunyuan_video_config.h"

#include "core/error.h"

namespace sr {

HunyuanVideoConfig HunyuanVideoConfig::from_json(const Json& j, const std::string& source) {
    SR_THROW_IF(!j.is_object(), "{}: config is not a JSON object", source);
    HunyuanVideoConfig c;
    c.in_channels = json_int_or(j, "in_channels", c.in_channels, source);
    c.out_channels = json_int_or(j, "out_channels", c.in_channels, source);  // reference: out_channels or in_channels
    c.num_attention_heads = json_int_or(j, "num_attention_heads", c.num_attention_heads, source);
    c.attention_head_dim = json_int_or(j, "attention_head_dim", c.attention_head_dim, source);
    c.num_layers = json_int_or(j, "num_layers", c.num_layers, source);
    c.num_single_layers = json_int_or(j, "num_single_layers", c.num_single_layers, source);
    c.num_refiner_layers = json_int_or(j, "num_refiner_layers", c.num_refiner_layers, source);
    c.mlp_ratio = json_number_or(j, "mlp_ratio", c.mlp_ratio, source);
    c.patch_size = json_int_or(j, "patch_size", c.patch_size, source);
    c.patch_size_t = json_int_or(j, "patch_size_t", c.patch_size_t, source);
    c.qk_norm = json_string_or(j, "qk_norm", c.qk_norm, source);
    c.guidance_embeds = json_bool_or(j, "guidance_embeds", c.guidance_embeds, source);
    c.text_embed_dim = json_int_or(j, "text_embed_dim", c.text_embed_dim, source);
    c.pooled_projection_dim = json_int_or(j, "pooled_projection_dim", c.pooled_projection_dim, source);
    c.rope_theta = json_number_or(j, "rope_theta", c.rope_theta, source);
    if (j.contains("rope_axes_dim")) c.rope_axes_dim = json_int_array(j, "rope_axes_dim", source);
    c.validate(source);
    return c;
}

void HunyuanVideoConfig::validate(const std::string& source) const {
    auto positive = [&](const char* name, int64_t v, int64_t max) {
        SR_THROW_IF(v <= 0 || v > max, "{}: {} = {} is out of range (1..{})", source, name, v, max);
    };
    positive("in_channels", in_channels, 4096);
    positive("out_channels", out_channels, 4096);
    positive("num_attention_heads", num_attention_heads, 1024);
    positive("attention_head_dim", attention_head_dim, 1024);
    SR_THROW_IF(attention_head_dim % 2 != 0, "{}: attention_head_dim = {} must be even for RoPE", source,
                attention_head_dim);
    SR_THROW_IF(num_layers < 0 || num_layers > 1000, "{}: num_layers = {} is out of range", source, num_layers);
    SR_THROW_IF(num_single_layers < 0 || num_single_layers > 1000, "{}: num_single_layers = {} is out of range", source,
                num_single_layers);
    SR_THROW_IF(num_refiner_layers < 0 || num_refiner_layers > 100, "{}: num_refiner_layers = {} is out of range",
                source, num_refiner_layers);
    SR_THROW_IF(!(mlp_ratio > 0 && mlp_ratio <= 64), "{}: mlp_ratio = {} is out of range", source, mlp_ratio);
    positive("patch_size", patch_size, 64);
    positive("patch_size_t", patch_size_t, 64);
    SR_THROW_IF(qk_norm != "rms_norm", "{}: qk_norm = '{}' is not supported (HunyuanVideo uses 'rms_norm')", source,
                qk_norm);
    positive("text_embed_dim", text_embed_dim, 65536);
    positive("pooled_projection_dim", pooled_projection_dim, 65536);
    // theta^(-2i/d) must fall with i: theta above 1 (the released 256); 1e-320 or inf would give NaN tables.
    SR_THROW_IF(!(rope_theta > 1 && rope_theta <= 1e12), "{}: rope_theta = {} is out of range (1, 1e12]", source,
                rope_theta);
    SR_THROW_IF(rope_axes_dim.size() != 3, "{}: rope_axes_dim must have 3 entries (t, h, w), got {}", source,
                rope_axes_dim.size());
    int64_t sum = 0;
    // Each entry on its own: entries near INT64_MAX would wrap the sum around to attention_head_dim.
    for (size_t i = 0; i < rope_axes_dim.size(); ++i) {
        const int64_t d = rope_axes_dim[i];
        SR_THROW_IF(d <= 0 || d > attention_head_dim || d % 2 != 0,
                    "{}: rope_axes_dim[{}] = {} must be positive, even and at most attention_head_dim ({})", source, i,
                    d, attention_head_dim);
        sum += d;
    }
    SR_THROW_IF(sum != attention_head_dim, "{}: rope_axes_dim sums to {} but attention_head_dim is {}", source, sum,
                attention_head_dim);
}

Json HunyuanVideoConfig::to_json() const {
    return Json{{"_class_name", "HunyuanVideoTransformer3DModel"},
                {"in_channels", in_channels},
                {"out_channels", out_channels},
                {"num_attention_heads", num_attention_heads},
                {"attention_head_dim", attention_head_dim},
                {"num_layers", num_layers},
                {"num_single_layers", num_single_layers},
                {"num_refiner_layers", num_refiner_layers},
                {"mlp_ratio", mlp_ratio},
                {"patch_size", patch_size},
                {"patch_size_t", patch_size_t},
                {"qk_norm", qk_norm},
                {"guidance_embeds", guidance_embeds},
                {"text_embed_dim", text_embed_dim},
                {"pooled_projection_dim", pooled_projection_dim},
                {"rope_theta", rope_theta},
                {"rope_axes_dim", rope_axes_dim}};
}

ForwardCost estimate_forward_cost(const HunyuanVideoConfig& c, const ForwardShape& s) {
    ForwardCost cost;
    const double B = double(s.batch), D = double(c.inner_dim()), M = double(c.mlp_dim()), L = double(s.text_tokens);
    const double hd = double(c.attention_head_dim), heads = double(c.num_attention_heads);
    const double N = double(c.video_tokens(s.frames, s.height, s.width));
    const double S = N + L;
    cost.video_tokens = int64_t(N);
    auto lin = [&](double rows, double in, double out) { cost.linear_flops += 2.0 * B * rows * in * out; };
    auto attn = [&](double lq, double lk) { cost.attention_flops += 4.0 * B * heads * lq * lk * hd; };

    // Embedders: patch embedding, timestep/guidance/text MLPs (rows = 1 per sample), refiner.
    lin(N, double(c.in_channels * c.patch_volume()), D);
    lin(1, 256, D), lin(1, D, D);
    if (c.guidance_embeds) lin(1, 256, D), lin(1, D, D);
    lin(1, double(c.pooled_projection_dim), D), lin(1, D, D);
    lin(1, 256, D), lin(1, D, D), lin(1, double(c.text_embed_dim), D), lin(1, D, D);  // refiner's temb
    lin(L, double(c.text_embed_dim), D);
    for (int64_t i = 0; i < c.num_refiner_layers; ++i) {
        lin(L, D, D), lin(L, D, D), lin(L, D, D), lin(L, D, D);
        lin(L, D, double(c.refiner_mlp_dim())), lin(L, double(c.refiner_mlp_dim()), D);
        lin(1, D, 2 * D);
        attn(L, L);
    }
    for (int64_t i = 0; i < c.num_layers; ++i) {
        for (double rows : {N, L}) {
            lin(rows, D, D), lin(rows, D, D), lin(rows, D, D), lin(rows, D, D);  // q, k, v, out
            lin(rows, D, M), lin(rows, M, D);                                    // MLP
            lin(1, D, 6 * D);                                                    // adaLN
        }
        attn(S, S);
    }
    for (int64_t i = 0; i < c.num_single_layers; ++i) {
        lin(S, D, D), lin(S, D, D), lin(S, D, D), lin(S, D, M), lin(S, D + M, D), lin(1, D, 3 * D);
        attn(S, S);
    }
    lin(1, D, 2 * D), lin(N, D, double(c.out_channels * c.patch_volume()));
    // Single block, alive together: residual stream, normed input, q, k, v, attention output (D each),
    // MLP hidden (M), [attention, MLP] concat (D + M) and the projection (D).
    cost.activation_bytes = 4.0 * B * S * (8 * D + 2 * M);
    return cost;
}

}  // namespace sr
