// AutoencoderKLHunyuanVideo, in the order it runs: config, loading, the building blocks (causal conv,
// resnet, mid-block attention, upsampling), encoder, decoder, the latent distribution and the entry points
// that choose the reference's path. The tiled paths are in hunyuan_video_vae_tiling.cpp.
// ref: diffusers v0.32.2 src/diffusers/models/autoencoders/autoencoder_kl_hunyuan_video.py
//
// Shapes: B batch, C channels, F frames, H x W pixels (sample side); T, h x w on the latent side.
#include "models/hunyuan_video_vae.h"

#include <cmath>
#include <filesystem>
#include <random>
#include <type_traits>

#include "core/log.h"
#include "core/parallel.h"

namespace sr {

namespace fs = std::filesystem;

namespace {

constexpr float kNormEps = 1e-6f;  // every GroupNorm of this model (resnet_eps and conv_norm_out)

int64_t log2_exact(int64_t v) {
    int64_t n = 0;
    while ((int64_t(1) << n) < v) ++n;
    return (int64_t(1) << n) == v ? n : -1;
}

}  // namespace

// ---------------------------------------------------------------------------------------------------------
// Config

HunyuanVideoVAEConfig HunyuanVideoVAEConfig::from_json(const Json& j, std::string_view source) {
    HunyuanVideoVAEConfig c;
    c.in_channels = json_int_or(j, "in_channels", c.in_channels, source);
    c.out_channels = json_int_or(j, "out_channels", c.out_channels, source);
    c.latent_channels = json_int_or(j, "latent_channels", c.latent_channels, source);
    if (j.contains("block_out_channels")) c.block_out_channels = json_int_array(j, "block_out_channels", source);
    c.layers_per_block = json_int_or(j, "layers_per_block", c.layers_per_block, source);
    c.act_fn = json_string_or(j, "act_fn", c.act_fn, source);
    c.norm_num_groups = json_int_or(j, "norm_num_groups", c.norm_num_groups, source);
    c.scaling_factor = json_number_or(j, "scaling_factor", c.scaling_factor, source);
    c.spatial_compression_ratio = json_int_or(j, "spatial_compression_ratio", c.spatial_compression_ratio, source);
    c.temporal_compression_ratio = json_int_or(j, "temporal_compression_ratio", c.temporal_compression_ratio, source);
    c.mid_block_add_attention = json_bool_or(j, "mid_block_add_attention", c.mid_block_add_attention, source);
    for (const char* key : {"down_block_types", "up_block_types"}) {
        if (!j.contains(key)) continue;
        const Json& types = j[key];
        SR_THROW_IF(!types.is_array() || types.size() != c.block_out_channels.size(),
                    "{}: '{}' must list one block per block_out_channels entry", source, key);
        const std::string want =
            std::string(key) == "down_block_types" ? "HunyuanVideoDownBlock3D" : "HunyuanVideoUpBlock3D";
        for (const auto& t : types)
            SR_THROW_IF(!t.is_string() || t.get<std::string>() != want, "{}: unsupported {} entry {} (expected {})",
                        source, key, t.dump(), want);
    }
    c.validate(source);
    return c;
}

void HunyuanVideoVAEConfig::validate(std::string_view source) const {
    SR_THROW_IF(in_channels < 1 || out_channels < 1 || latent_channels < 1, "{}: channel counts must be positive",
                source);
    SR_THROW_IF(block_out_channels.empty(), "{}: block_out_channels is empty", source);
    SR_THROW_IF(layers_per_block < 1, "{}: layers_per_block {} < 1", source, layers_per_block);
    // Latents are divided by it before decoding: 0, a negative or a denormal value would give a black or NaN video.
    SR_THROW_IF(!(scaling_factor >= 1e-6 && scaling_factor <= 1e6), "{}: scaling_factor {} is out of range [1e-6, 1e6]",
                source, scaling_factor);
    SR_THROW_IF(act_fn != "silu" && act_fn != "swish", "{}: act_fn '{}' is not supported (silu only)", source, act_fn);
    for (int64_t ch : block_out_channels)
        SR_THROW_IF(ch < 1 || norm_num_groups < 1 || ch % norm_num_groups != 0,
                    "{}: block_out_channels entry {} is not divisible by norm_num_groups {}", source, ch,
                    norm_num_groups);
    // The decoder supports only temporal ratio 4 upstream (it raises otherwise).
    SR_THROW_IF(temporal_compression_ratio != 4, "{}: temporal_compression_ratio {} is not supported (4 only)", source,
                temporal_compression_ratio);
    const int64_t ls = log2_exact(spatial_compression_ratio);
    SR_THROW_IF(ls < 0 || ls > int64_t(block_out_channels.size()) - 1,
                "{}: spatial_compression_ratio {} needs a power of two <= 2^(blocks-1)", source,
                spatial_compression_ratio);
}

void VAETiling::validate() const {
    SR_THROW_IF(tile_sample_min_height < 8 || tile_sample_min_width < 8 || tile_sample_min_num_frames < 4,
                "VAE tiling: tile sizes {}x{}x{} below one latent", tile_sample_min_height, tile_sample_min_width,
                tile_sample_min_num_frames);
    SR_THROW_IF(tile_sample_stride_height < 8 || tile_sample_stride_width < 8 || tile_sample_stride_num_frames < 4,
                "VAE tiling: tile strides {}x{}x{} below one latent", tile_sample_stride_height,
                tile_sample_stride_width, tile_sample_stride_num_frames);
    // Overlapping (or touching) tiles only: a stride past the tile size would leave holes in the output.
    SR_THROW_IF(tile_sample_stride_height > tile_sample_min_height ||
                    tile_sample_stride_width > tile_sample_min_width ||
                    tile_sample_stride_num_frames > tile_sample_min_num_frames,
                "VAE tiling: a stride ({}x{}x{}) exceeds its tile size ({}x{}x{})", tile_sample_stride_height,
                tile_sample_stride_width, tile_sample_stride_num_frames, tile_sample_min_height, tile_sample_min_width,
                tile_sample_min_num_frames);
}

// ---------------------------------------------------------------------------------------------------------
// Loading

HunyuanVideoVAE HunyuanVideoVAE::load(const std::string& path, Allocator* planning_space) {
    std::error_code ec;
    SR_THROW_IF(!fs::is_directory(path, ec), "{}: not a VAE folder", path);
    std::string dir = path;
    if (!fs::exists(fs::path(dir) / "config.json", ec) && fs::exists(fs::path(dir) / "vae" / "config.json", ec))
        dir = (fs::path(dir) / "vae").string();
    const std::string config_path = (fs::path(dir) / "config.json").string();
    SR_THROW_IF(!fs::exists(config_path, ec), "{}: no config.json here or in vae/", path);
    const Json j = load_json_file(config_path);
    const std::string cls = json_string_or(j, "_class_name", "", config_path);
    SR_THROW_IF(!cls.empty() && cls != "AutoencoderKLHunyuanVideo",
                "{}: _class_name is '{}', not AutoencoderKLHunyuanVideo", config_path, cls);
    const HunyuanVideoVAEConfig config = HunyuanVideoVAEConfig::from_json(j, config_path);
    const WeightStore store = WeightStore::open(dir);
    WeightBinder binder(store, std::nullopt, planning_space);
    return HunyuanVideoVAE(config, binder);
}

HunyuanVideoVAE::HunyuanVideoVAE(const HunyuanVideoVAEConfig& config, WeightBinder& binder) : config_(config) {
    config_.validate(binder.source());
    bind(binder);
    parameter_count_ = binder.parameter_count();
    unused_ = binder.unused();
    warn_unused_tensors(unused_, binder.source(), "the VAE");
}

HunyuanVideoVAE HunyuanVideoVAE::random(const HunyuanVideoVAEConfig& config, DType dtype, uint64_t seed) {
    WeightBinder binder = WeightBinder::random(seed, dtype);
    return HunyuanVideoVAE(config, binder);
}

// ---------------------------------------------------------------------------------------------------------
// The weights, declared once per part (binding, listing, streaming and the tests all walk these). The
// declarations also lay out the parts' structure (block counts, strides, resampling factors) from the config,
// so a declared part is complete.

void HunyuanVideoVAE::declare(WeightVisitor& v, Conv& c, const std::string& name, int64_t in, int64_t out, int64_t k,
                              bool causal) const {
    // Causal convs wrap an nn.Conv3d named "conv"; the quant convs are plain nn.Conv3d.
    const std::string p = causal ? name + ".conv" : name;
    v.tensor(p + ".weight", c.weight, {out, in, k, k, k}, WeightKind::Matrix);
    v.small_f32(p + ".bias", c.bias, {out});
    c.causal = causal;
}

void HunyuanVideoVAE::declare(WeightVisitor& v, Norm& n, const std::string& name, int64_t channels) const {
    v.small_f32(name + ".weight", n.weight, {channels});
    v.small_f32(name + ".bias", n.bias, {channels});
}

void HunyuanVideoVAE::declare(WeightVisitor& v, Resnet& r, const std::string& p, int64_t in, int64_t out) const {
    declare(v, r.norm1, p + ".norm1", in);
    declare(v, r.conv1, p + ".conv1", in, out, 3, true);
    declare(v, r.norm2, p + ".norm2", out);
    declare(v, r.conv2, p + ".conv2", out, out, 3, true);
    if (in != out) declare(v, r.conv_shortcut, p + ".conv_shortcut", in, out, 1, true);
}

void HunyuanVideoVAE::declare(WeightVisitor& v, Mid& m, const std::string& p) const {
    const int64_t C = config_.block_out_channels.back();
    m.resnets.resize(2);
    m.attentions.resize(config_.mid_block_add_attention ? 1 : 0);
    declare(v, m.resnets[0], p + ".resnets.0", C, C);
    for (Attention& at : m.attentions) {
        const std::string a = p + ".attentions.0";
        declare(v, at.group_norm, a + ".group_norm", C);
        v.linear(a + ".to_q", at.to_q, C, C);
        v.linear(a + ".to_k", at.to_k, C, C);
        v.linear(a + ".to_v", at.to_v, C, C);
        v.linear(a + ".to_out.0", at.to_out, C, C);
    }
    declare(v, m.resnets[1], p + ".resnets.1", C, C);
}

void HunyuanVideoVAE::declare(WeightVisitor& v, Encoder& e) const {
    const auto& c = config_;
    const auto& boc = c.block_out_channels;
    const int64_t n = int64_t(boc.size());
    const int64_t n_spatial = log2_exact(c.spatial_compression_ratio);
    const int64_t n_time = log2_exact(c.temporal_compression_ratio);

    // Block i downsamples space while i < log2(spatial ratio), time in the last log2(temporal ratio) blocks
    // before the final one (ratio 4).
    declare(v, e.conv_in, "encoder.conv_in", c.in_channels, boc[0], 3, true);
    e.down_blocks.resize(size_t(n));
    int64_t out_ch = boc[0];
    for (int64_t i = 0; i < n; ++i) {
        const int64_t in_ch = out_ch;
        out_ch = boc[size_t(i)];
        const bool is_final = i == n - 1;
        const bool space = i < n_spatial, time = i >= n - 1 - n_time && !is_final;
        Block& blk = e.down_blocks[size_t(i)];
        const std::string p = fmt::format("encoder.down_blocks.{}", i);
        blk.resnets.resize(size_t(c.layers_per_block));
        for (int64_t j = 0; j < c.layers_per_block; ++j)
            declare(v, blk.resnets[size_t(j)], fmt::format("{}.resnets.{}", p, j), j == 0 ? in_ch : out_ch, out_ch);
        blk.has_sampler = space || time;
        if (blk.has_sampler) {
            declare(v, blk.sampler, p + ".downsamplers.0.conv", out_ch, out_ch, 3, true);
            blk.sampler.stride = {time ? 2 : 1, space ? 2 : 1, space ? 2 : 1};
        }
    }
    declare(v, e.mid, "encoder.mid_block");
    declare(v, e.norm_out, "encoder.conv_norm_out", boc.back());
    declare(v, e.conv_out, "encoder.conv_out", boc.back(), 2 * c.latent_channels, 3, true);
    declare(v, e.quant_conv, "quant_conv", 2 * c.latent_channels, 2 * c.latent_channels, 1, false);
}

void HunyuanVideoVAE::declare(WeightVisitor& v, Decoder& d) const {
    const auto& c = config_;
    const auto& boc = c.block_out_channels;
    const int64_t n = int64_t(boc.size());
    const int64_t n_spatial = log2_exact(c.spatial_compression_ratio);
    const int64_t n_time = log2_exact(c.temporal_compression_ratio);

    // The encoder's mirror image, with layers_per_block + 1 resnets per up block.
    declare(v, d.post_quant_conv, "post_quant_conv", c.latent_channels, c.latent_channels, 1, false);
    declare(v, d.conv_in, "decoder.conv_in", c.latent_channels, boc.back(), 3, true);
    declare(v, d.mid, "decoder.mid_block");
    d.up_blocks.resize(size_t(n));
    int64_t out_ch = boc.back();
    for (int64_t i = 0; i < n; ++i) {
        const int64_t in_ch = out_ch;
        out_ch = boc[size_t(n - 1 - i)];
        const bool is_final = i == n - 1;
        const bool space = i < n_spatial, time = i >= n - 1 - n_time && !is_final;
        Block& blk = d.up_blocks[size_t(i)];
        const std::string p = fmt::format("decoder.up_blocks.{}", i);
        blk.resnets.resize(size_t(c.layers_per_block + 1));
        for (int64_t j = 0; j < c.layers_per_block + 1; ++j)
            declare(v, blk.resnets[size_t(j)], fmt::format("{}.resnets.{}", p, j), j == 0 ? in_ch : out_ch, out_ch);
        blk.has_sampler = space || time;
        if (blk.has_sampler) {
            declare(v, blk.sampler, p + ".upsamplers.0.conv", out_ch, out_ch, 3, true);
            blk.upsample = {time ? 2 : 1, space ? 2 : 1, space ? 2 : 1};
        }
    }
    declare(v, d.norm_out, "decoder.conv_norm_out", boc[0]);
    declare(v, d.conv_out, "decoder.conv_out", boc[0], c.out_channels, 3, true);
}

void HunyuanVideoVAE::bind(WeightBinder& binder) {
    BindWeights bind(binder);
    declare(bind, encoder_);
    declare(bind, decoder_);
}

// ---------------------------------------------------------------------------------------------------------
// Building blocks

Tensor HunyuanVideoVAE::conv(Backend& be, const Conv& c, const Tensor& x) const {
    const int64_t kt = c.weight.dim(2), kh = c.weight.dim(3), kw = c.weight.dim(4);
    Tensor in = x;
    if (c.causal && (kt > 1 || kh > 1 || kw > 1)) {
        // Causal padding, replicating edges: k-1 frames before (none after: frame f never sees f+1), k//2
        // pixels on both sides in H and W.
        in = new_activation(be,
                            {x.dim(0), x.dim(1), x.dim(2) + kt - 1, x.dim(3) + 2 * (kh / 2), x.dim(4) + 2 * (kw / 2)},
                            "VAE causal padding");
        be.pad3d_replicate(x, {kt - 1, 0, kh / 2, kh / 2, kw / 2, kw / 2}, in);
    }
    const auto out = [&](int i) { return (in.dim(2 + i) - c.weight.dim(2 + i)) / c.stride[size_t(i)] + 1; };
    Tensor y = new_activation(be, {x.dim(0), c.weight.dim(0), out(0), out(1), out(2)}, "VAE conv output");
    be.conv3d(in, c.weight, &c.bias, c.stride, {0, 0, 0}, y);
    return y;
}

Tensor HunyuanVideoVAE::norm_silu(Backend& be, const Norm& n, const Tensor& x, bool silu) const {
    Tensor y = new_activation(be, x.shape(), "VAE group norm");
    be.group_norm(x, config_.norm_num_groups, &n.weight, &n.bias, kNormEps, y);
    if (silu) be.silu(y, y);
    return y;
}

Tensor HunyuanVideoVAE::resnet(Backend& be, const Resnet& r, const Tensor& x) const {
    Tensor h = conv(be, r.conv1, norm_silu(be, r.norm1, x, true));
    h = conv(be, r.conv2, norm_silu(be, r.norm2, h, true));  // dropout is the identity at inference
    be.add(h, r.conv_shortcut.weight.defined() ? conv(be, r.conv_shortcut, x) : x);
    return h;
}

// Single-head attention over all F*H*W positions with a frame-causal mask (a query in frame f sees the keys
// of frames <= f). Since tokens are in (f, h, w) order, the keys query frame f may see are exactly the
// prefix [0, (f+1)*H*W): one unmasked attention call per frame computes it exactly, with no L x L mask.
Tensor HunyuanVideoVAE::attention(Backend& be, const Attention& a, const Tensor& x) const {
    const int64_t B = x.dim(0), C = x.dim(1), F = x.dim(2), HW = x.dim(3) * x.dim(4), L = F * HW;
    Tensor tokens = new_activation(be, {B, F, x.dim(3), x.dim(4), C}, "VAE attention tokens");  // [B,F,H,W,C]
    be.copy(norm_silu(be, a.group_norm, x, false).permute({0, 2, 3, 4, 1}), tokens);
    const Tensor t2 = tokens.view({B, L, C});
    auto project = [&](const Linear& l) {
        Tensor y = new_activation(be, {B, L, C}, "VAE attention q/k/v");
        l.apply_into(be, t2, y);
        return y;
    };
    const Tensor q = project(a.to_q), k = project(a.to_k), v = project(a.to_v);
    tokens = Tensor();
    Tensor o = new_activation(be, {B, L, C}, "VAE attention output");
    auto heads = [&](const Tensor& t) { return t.view({B, L, 1, C}).permute({0, 2, 1, 3}); };  // [B,1,L,C]
    const float scale = float(1.0 / std::sqrt(double(C)));
    for (int64_t f = 0; f < F; ++f) {
        Tensor of = heads(o).slice(2, f * HW, (f + 1) * HW);
        be.attention(heads(q).slice(2, f * HW, (f + 1) * HW), heads(k).slice(2, 0, (f + 1) * HW),
                     heads(v).slice(2, 0, (f + 1) * HW), of, AttentionMask{}, scale);
    }
    Tensor proj = new_activation(be, {B, L, C}, "VAE attention projection");
    a.to_out.apply_into(be, o, proj);
    Tensor y = new_activation(be, x.shape(), "VAE attention result");  // back to [B,C,F,H,W]
    be.copy(proj.view({B, F, x.dim(3), x.dim(4), C}).permute({0, 4, 1, 2, 3}), y);
    be.add(y, x);  // residual_connection=True, rescale_output_factor 1
    return y;
}

Tensor HunyuanVideoVAE::mid(Backend& be, const Mid& m, Tensor x) const {
    x = resnet(be, m.resnets[0], x);
    if (!m.attentions.empty()) x = attention(be, m.attentions[0], x);
    return resnet(be, m.resnets[1], x);
}

// Nearest upsampling where the first frame is only upsampled in space (it is the causal "image" frame and
// maps to one output frame), the others by the full (t, h, w) factors; then the conv.
Tensor HunyuanVideoVAE::upsample(Backend& be, const Block& blk, const Tensor& x) const {
    const auto [ft, fh, fw] = blk.upsample;
    const int64_t B = x.dim(0), C = x.dim(1), F = x.dim(2), H = x.dim(3) * fh, W = x.dim(4) * fw;
    Tensor y = new_activation(be, {B, C, 1 + (F - 1) * ft, H, W}, "VAE upsample");
    auto part = [&](int64_t f0, int64_t f1, std::array<int64_t, 3> s, int64_t out0) {
        const Tensor src = contiguous(be, x.slice(2, f0, f1), "VAE upsample input");
        Tensor up = new_activation(be, {B, C, (f1 - f0) * s[0], H, W}, "VAE upsample part");
        be.upsample_nearest3d(src, s, up);
        Tensor dst = y.slice(2, out0, out0 + up.dim(2));
        be.copy(up, dst);
    };
    part(0, 1, {1, fh, fw}, 0);
    if (F > 1) part(1, F, {ft, fh, fw}, 1);
    return conv(be, blk.sampler, y);
}

// ---------------------------------------------------------------------------------------------------------
// Encoder and decoder

Tensor HunyuanVideoVAE::run_encoder(Backend& be, const Encoder& enc, const Tensor& x,
                                    const VAEIntermediateHook& hook) const {
    ++encoder_calls_;
    auto emit = [&](std::string_view name, const Tensor& t) {
        if (hook) hook(name, to_host(be, t));
    };
    Tensor h = conv(be, enc.conv_in, to_device(be, x, "VAE encoder input"));  // [B, C0, F, H, W]
    emit("encoder.conv_in", h);
    for (size_t i = 0; i < enc.down_blocks.size(); ++i) {
        for (const Resnet& r : enc.down_blocks[i].resnets) h = resnet(be, r, h);
        if (enc.down_blocks[i].has_sampler) h = conv(be, enc.down_blocks[i].sampler, h);
        emit(fmt::format("encoder.down_blocks.{}", i), h);
    }
    h = mid(be, enc.mid, h);  // [B, C_last, T, h, w]
    emit("encoder.mid_block", h);
    h = conv(be, enc.conv_out, norm_silu(be, enc.norm_out, h, true));  // [B, 2*latent, T, h, w]
    emit("encoder.conv_out", h);
    h = conv(be, enc.quant_conv, h);
    emit("quant_conv", h);
    return h;
}

Tensor HunyuanVideoVAE::run_decoder(Backend& be, const Decoder& dec, const Tensor& z,
                                    const VAEIntermediateHook& hook) const {
    ++decoder_calls_;
    auto emit = [&](std::string_view name, const Tensor& t) {
        if (hook) hook(name, to_host(be, t));
    };
    Tensor h =
        conv(be, dec.post_quant_conv, to_device(be, z.contiguous(), "VAE decoder input"));  // [B, latent, T, h, w]
    emit("post_quant_conv", h);
    h = conv(be, dec.conv_in, h);  // [B, C_last, T, h, w]
    emit("decoder.conv_in", h);
    h = mid(be, dec.mid, h);
    emit("decoder.mid_block", h);
    for (size_t i = 0; i < dec.up_blocks.size(); ++i) {
        for (const Resnet& r : dec.up_blocks[i].resnets) h = resnet(be, r, h);
        if (dec.up_blocks[i].has_sampler) h = upsample(be, dec.up_blocks[i], h);
        emit(fmt::format("decoder.up_blocks.{}", i), h);
    }
    h = conv(be, dec.conv_out, norm_silu(be, dec.norm_out, h, true));  // [B, out, 4(T-1)+1, 8h, 8w]
    emit("decoder.conv_out", h);
    return h;
}

Tensor HunyuanVideoVAE::encode_untiled(Backend& be, const Tensor& x, const VAEIntermediateHook& hook,
                                       BlockWeightProvider* weights) const {
    const BlockLease lease(weights, kEncoderBlock);
    return run_encoder(be, lease ? rebind(encoder_, lease.tensors()) : encoder_, x, hook);
}

Tensor HunyuanVideoVAE::decode_untiled(Backend& be, const Tensor& z, const VAEIntermediateHook& hook,
                                       BlockWeightProvider* weights) const {
    const BlockLease lease(weights, kDecoderBlock);
    return run_decoder(be, lease ? rebind(decoder_, lease.tensors()) : decoder_, z, hook);
}

// ---------------------------------------------------------------------------------------------------------
// Weight blocks

template <class Part>
Part HunyuanVideoVAE::rebind(const Part& part, const std::vector<Tensor>& tensors) const {
    return rebind_block(part, tensors, [&](WeightVisitor& v, Part& p) { declare(v, p); });
}

WeightBlock HunyuanVideoVAE::weight_block(size_t block) const {
    SR_ASSERT(block < weight_block_count(), "weight block {} of {}", block, weight_block_count());
    auto declare_part = [&](WeightVisitor& v, auto& part) { declare(v, part); };
    if (block == kEncoderBlock) return declared_block("vae.encoder", encoder_, declare_part);
    return declared_block("vae.decoder", decoder_, declare_part);
}

std::vector<WeightBlock> HunyuanVideoVAE::weight_blocks() const {
    return all_weight_blocks(*this);
}

// ---------------------------------------------------------------------------------------------------------
// Latent distribution and entry points

Tensor LatentDistribution::sample(uint64_t seed) const {
    SR_THROW_IF(!mean.defined() || !std.defined(), "LatentDistribution::sample on an empty distribution");
    Tensor out = Tensor::empty(mean.shape(), DType::F32, host_allocator(), "VAE latent sample");
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    const float* m = mean.data<float>();
    const float* s = std.data<float>();
    float* o = out.data<float>();
    for (int64_t i = 0; i < out.numel(); ++i) o[i] = m[i] + s[i] * normal(rng);
    return out;
}

LatentDistribution HunyuanVideoVAE::encode(Backend& be, const Tensor& x, const VAETiling& tiling,
                                           const VAEIntermediateHook& hook, BlockWeightProvider* weights) const {
    tiling.validate();
    const int64_t sr = config_.spatial_compression_ratio, tr = config_.temporal_compression_ratio;
    SR_THROW_IF(x.rank() != 5, "VAE encode: input {} must be [B, C, F, H, W]", x.describe());
    SR_THROW_IF(x.dim(1) != config_.in_channels, "VAE encode: input {} has {} channels, the VAE takes {}", x.describe(),
                x.dim(1), config_.in_channels);
    SR_THROW_IF(x.dim(0) < 1 || x.dim(2) < 1 || (x.dim(2) - 1) % tr != 0,
                "VAE encode: input {} has {} frames; the causal VAE needs {}k+1", x.describe(), x.dim(2), tr);
    SR_THROW_IF(x.dim(3) % sr != 0 || x.dim(4) % sr != 0 || x.dim(3) == 0 || x.dim(4) == 0,
                "VAE encode: input {} is {}x{} pixels; height and width must be positive multiples of {}", x.describe(),
                x.dim(3), x.dim(4), sr);
    const Tensor xf = to_host_f32(be, x);

    LatentDistribution d;
    {
        const BlockLease lease(weights, kEncoderBlock);  // once for all tiles
        const Encoder enc = lease ? rebind(encoder_, lease.tensors()) : encoder_;
        d.moments = to_host(be, encode_moments(be, enc, xf, tiling, hook));  // [B, 2*latent, T, h, w]
    }
    const int64_t L = config_.latent_channels;
    d.mean = d.moments.slice(1, 0, L).contiguous();
    d.logvar = d.moments.slice(1, L, 2 * L).contiguous();
    d.std = Tensor::empty(d.logvar.shape(), DType::F32, host_allocator(), "VAE latent std");
    float* lv = d.logvar.data<float>();
    float* sd = d.std.data<float>();
    for (int64_t i = 0; i < d.logvar.numel(); ++i) {
        lv[i] = std::clamp(lv[i], -30.0f, 20.0f);
        sd[i] = std::exp(0.5f * lv[i]);
    }
    return d;
}

void HunyuanVideoVAE::check_latents(const Tensor& z) const {
    SR_THROW_IF(z.rank() != 5, "VAE decode: latents {} must be [B, C, T, h, w]", z.describe());
    SR_THROW_IF(z.dim(1) != config_.latent_channels, "VAE decode: latents {} have {} channels, the VAE takes {}",
                z.describe(), z.dim(1), config_.latent_channels);
    SR_THROW_IF(z.dim(0) < 1 || z.dim(2) < 1 || z.dim(3) < 1 || z.dim(4) < 1, "VAE decode: latents {} are empty",
                z.describe());
}

Tensor HunyuanVideoVAE::decode(Backend& be, const Tensor& z, const VAETiling& tiling, const VAEIntermediateHook& hook,
                               BlockWeightProvider* weights) const {
    check_latents(z);
    tiling.validate();
    const Tensor zf = to_host_f32(be, z);
    const BlockLease lease(weights, kDecoderBlock);  // once for all tiles
    const Decoder dec = lease ? rebind(decoder_, lease.tensors()) : decoder_;
    const int64_t T = z.dim(2), r = config_.spatial_compression_ratio;
    // _decode's choice of path (see decode_streaming for the thresholds' quirks): untiled, the hook sees it.
    const bool temporal =
        tiling.use_framewise_decoding && T > tiling.tile_sample_min_num_frames / config_.temporal_compression_ratio;
    const bool spatial = tiling.use_tiling && (z.dim(4) > tiling.tile_sample_stride_width / r ||
                                               z.dim(3) > tiling.tile_sample_min_height / r);
    if (!temporal && !spatial) return to_host(be, run_decoder(be, dec, zf, hook));
    Tensor out = Tensor::empty(
        {z.dim(0), config_.out_channels, (T - 1) * config_.temporal_compression_ratio + 1, z.dim(3) * r, z.dim(4) * r},
        DType::F32, host_allocator(), "VAE decoded video");
    decode_frames(
        be, dec, zf, tiling,
        [&](const Tensor& frames, int64_t first) {
            if (host_values_skipped()) return;
            Tensor dst = out.slice(2, first, first + frames.dim(2));
            dst.copy_from(frames);
        },
        nullptr);
    return out;
}

void HunyuanVideoVAE::decode_streaming(Backend& be, const Tensor& z_in, const VAETiling& t, const VAEFrameSink& sink,
                                       BlockWeightProvider* weights, Communicator* tiles) const {
    check_latents(z_in);
    t.validate();
    const Tensor z = to_host_f32(be, z_in);
    const BlockLease lease(weights, kDecoderBlock);  // held until the last frame is handed over
    const Decoder dec = lease ? rebind(decoder_, lease.tensors()) : decoder_;
    decode_frames(be, dec, z, t, sink, tiles);
}

}  // namespace sr
