// The causal 3-D VAE of HunyuanVideo / SkyReels-V1 (AutoencoderKLHunyuanVideo): video [B,3,F,H,W] in [-1,1]
// <-> latents [B,16,(F-1)/4+1,H/8,W/8]. Weights bound once by checkpoint name; encode returns the latent
// distribution; decode and encode reproduce the reference's untiled, spatially tiled and temporally tiled
// paths exactly (including its thresholds and in-place blending; see docs/VAE.md); decode_streaming hands
// finished frames to a callback tile by tile so peak memory does not grow with the video length.
// ref: diffusers v0.32.2 src/diffusers/models/autoencoders/autoencoder_kl_hunyuan_video.py
//
//   auto vae = sr::HunyuanVideoVAE::load("SkyReels-V1-Hunyuan-I2V/vae");
//   sr::VAETiling tiling = sr::VAETiling::enabled();             // what the pipeline uses
//   sr::Tensor video = vae.decode(sr::cpu_backend(), latents, tiling);   // latents already / scaling_factor
//   vae.decode_streaming(be, latents, tiling, [&](const sr::Tensor& frames, int64_t first) { write(frames); });
//
// Weights come in two blocks for the residency manager: kEncoderBlock (encoder + quant_conv) and
// kDecoderBlock (post_quant_conv + decoder). Each entry point takes an optional BlockWeightProvider and
// acquires the one block it uses once per call, however many tiles it runs.
//
// Every intermediate named in the fixtures ("encoder.down_blocks.1", "decoder.conv_out", "quant_conv", ...)
// is passed to an optional hook during untiled runs, as a host tensor.
//
// Where tensors live: inputs may be on the host or on the backend's device. encode()'s distribution, decode()'s
// video and decode_streaming()'s frames are host tensors (tiles are blended on the host, see
// hunyuan_video_vae_tiling.cpp); encode_untiled() and decode_untiled() return tensors in the backend's memory.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "backends/backend.h"
#include "backends/communicator.h"
#include "io/json.h"
#include "io/safetensors.h"
#include "nn/linear.h"
#include "nn/weight_blocks.h"
#include "nn/weight_visitor.h"

namespace sr {

// config.json of AutoencoderKLHunyuanVideo; field names as upstream, defaults = the released checkpoint's.
struct HunyuanVideoVAEConfig {
    int64_t in_channels = 3;
    int64_t out_channels = 3;
    int64_t latent_channels = 16;
    std::vector<int64_t> block_out_channels{128, 256, 512, 512};
    int64_t layers_per_block = 2;
    std::string act_fn = "silu";
    int64_t norm_num_groups = 32;
    double scaling_factor = 0.476986;  // not applied by the VAE; the pipeline divides/multiplies by it
    int64_t spatial_compression_ratio = 8;
    int64_t temporal_compression_ratio = 4;
    bool mid_block_add_attention = true;

    static HunyuanVideoVAEConfig from_json(const Json& j, std::string_view source);
    // Throws InputError naming the field when the reference could not build this configuration either.
    void validate(std::string_view source) const;
};

// AutoencoderKLHunyuanVideo.enable_tiling() and its flags. Sizes are in sample pixels/frames, as upstream.
struct VAETiling {
    bool use_tiling = false;  // enable_tiling() called
    bool use_framewise_encoding = true;
    bool use_framewise_decoding = true;  // on by default upstream: long decodes are always temporally tiled
    int64_t tile_sample_min_height = 256;
    int64_t tile_sample_min_width = 256;
    int64_t tile_sample_min_num_frames = 16;
    int64_t tile_sample_stride_height = 192;
    int64_t tile_sample_stride_width = 192;
    int64_t tile_sample_stride_num_frames = 12;

    // enable_tiling() with diffusers' defaults (what SkyReels calls).
    static VAETiling enabled() {
        VAETiling t;
        t.use_tiling = true;
        return t;
    }
    void validate() const;
};

// DiagonalGaussianDistribution over the latents: [B, 2*latent, T, h, w] moments = [mean, logvar] on dim 1.
struct LatentDistribution {
    Tensor moments;  // quant_conv output
    Tensor mean;     // [B, latent, T, h, w]
    Tensor logvar;   // clamp(moments[:, latent:], -30, 20)
    Tensor std;      // exp(0.5 * logvar)
    // mean + std * N(0, 1), noise from our own generator seeded by `seed` (not torch's stream).
    Tensor sample(uint64_t seed) const;
};

using VAEIntermediateHook = std::function<void(std::string_view name, const Tensor& value)>;
// Receives decoded frames [B, out_channels, n, H, W] (a view valid only during the call), starting at output
// frame `first_frame`; calls come in order and cover every frame exactly once.
using VAEFrameSink = std::function<void(const Tensor& frames, int64_t first_frame)>;

class HunyuanVideoVAE {
public:
    // `path`: a VAE folder (config.json + diffusion_pytorch_model.safetensors) or a pipeline folder with vae/.
    // `planning_space`: bind every weight to this address space and read none (memory planning).
    static HunyuanVideoVAE load(const std::string& path, Allocator* planning_space = nullptr);
    HunyuanVideoVAE(const HunyuanVideoVAEConfig& config, WeightBinder& binder);
    static HunyuanVideoVAE random(const HunyuanVideoVAEConfig& config, DType dtype, uint64_t seed = 0);

    const HunyuanVideoVAEConfig& config() const { return config_; }
    int64_t parameter_count() const { return parameter_count_; }
    const std::vector<std::string>& unused_tensors() const { return unused_; }

    // Weight blocks: the encoder side and the decoder side, each used by one kind of call.
    static constexpr size_t kEncoderBlock = 0;  // "vae.encoder": encoder + quant_conv
    static constexpr size_t kDecoderBlock = 1;  // "vae.decoder": post_quant_conv + decoder
    enum class Pass { Encode, Decode };
    size_t weight_block_count() const { return 2; }
    // Block b with its tensors in the order the model declares them.
    WeightBlock weight_block(size_t block) const;
    std::vector<WeightBlock> weight_blocks() const;
    std::vector<Tensor> weight_block_tensors(size_t block) const { return weight_block(block).tensors; }
    // The blocks one call acquires: {kEncoderBlock} for encode / encode_untiled, {kDecoderBlock} for decode /
    // decode_streaming / decode_untiled, whatever the tiling.
    static std::vector<size_t> blocks_used(Pass pass) { return {pass == Pass::Encode ? kEncoderBlock : kDecoderBlock}; }

    // With a provider, the entry points below take their weights from it: the block is acquired once, after
    // the input checks, and released when the call returns (decode_streaming: after the last frame's sink
    // call); without one, from the checkpoint as loaded.
    // x [B, in_channels, F, H, W] -> the latent distribution (AutoencoderKLHunyuanVideo.encode).
    LatentDistribution encode(Backend& be, const Tensor& x, const VAETiling& tiling = {},
                              const VAEIntermediateHook& hook = {}, BlockWeightProvider* weights = nullptr) const;
    // z [B, latent, T, h, w] -> video [B, out_channels, 4(T-1)+1, 8h, 8w] (AutoencoderKLHunyuanVideo.decode).
    Tensor decode(Backend& be, const Tensor& z, const VAETiling& tiling = {}, const VAEIntermediateHook& hook = {},
                  BlockWeightProvider* weights = nullptr) const;
    // The same frames as decode(), handed to `sink` as they become final. With temporal tiling only two
    // decoded temporal tiles are alive at a time, so peak memory depends on the tile size, not the length.
    // With `tiles` of several ranks (every rank calling with the same z), the tiles are dealt to the ranks, one
    // per rank at a time in the order they are blended, and gathered on its rank 0, which blends them and alone
    // gets frames: the same frames as one rank's.
    void decode_streaming(Backend& be, const Tensor& z, const VAETiling& tiling, const VAEFrameSink& sink,
                          BlockWeightProvider* weights = nullptr, Communicator* tiles = nullptr) const;

    // The model proper, no tiling: x -> moments (encoder + quant_conv), z -> video (post_quant_conv + decoder).
    Tensor encode_untiled(Backend& be, const Tensor& x, const VAEIntermediateHook& hook = {},
                          BlockWeightProvider* weights = nullptr) const;
    Tensor decode_untiled(Backend& be, const Tensor& z, const VAEIntermediateHook& hook = {},
                          BlockWeightProvider* weights = nullptr) const;

    // How many times the encoder / decoder ran since construction (the fixtures record the reference's).
    int64_t encoder_calls() const { return encoder_calls_; }
    int64_t decoder_calls() const { return decoder_calls_; }

private:
    struct Conv {  // HunyuanVideoCausalConv3d, or a plain Conv3d (quant convs) when causal is false
        Tensor weight, bias;
        std::array<int64_t, 3> stride{1, 1, 1};
        bool causal = true;
    };
    struct Norm {
        Tensor weight, bias;
    };
    struct Resnet {
        Norm norm1, norm2;
        Conv conv1, conv2, conv_shortcut;  // shortcut: 1x1x1, only when channels change
    };
    struct Attention {
        Norm group_norm;
        Linear to_q, to_k, to_v, to_out;
    };
    struct Block {  // a down or up block: resnets then an optional resampler
        std::vector<Resnet> resnets;
        Conv sampler;  // downsample conv (stride) or upsample conv
        bool has_sampler = false;
        std::array<int64_t, 3> upsample{1, 1, 1};  // up blocks: nearest factors (t, h, w)
    };
    struct Mid {
        std::vector<Resnet> resnets;  // 2
        std::vector<Attention> attentions;
    };
    struct Encoder {  // block kEncoderBlock, in execution order
        Conv conv_in;
        std::vector<Block> down_blocks;
        Mid mid;
        Norm norm_out;
        Conv conv_out;
        Conv quant_conv;
    };
    struct Decoder {  // block kDecoderBlock, in execution order
        Conv post_quant_conv;
        Conv conv_in;
        Mid mid;
        std::vector<Block> up_blocks;
        Norm norm_out;
        Conv conv_out;
    };
    // Every weight of each part, declared once (nn/weight_visitor.h), with the part's structure.
    void declare(WeightVisitor& v, Conv& c, const std::string& name, int64_t in, int64_t out, int64_t k,
                 bool causal) const;
    void declare(WeightVisitor& v, Norm& n, const std::string& name, int64_t channels) const;
    void declare(WeightVisitor& v, Resnet& r, const std::string& prefix, int64_t in, int64_t out) const;
    void declare(WeightVisitor& v, Mid& m, const std::string& prefix) const;
    void declare(WeightVisitor& v, Encoder& e) const;  // block kEncoderBlock
    void declare(WeightVisitor& v, Decoder& d) const;  // block kDecoderBlock
    // `part` viewing `tensors` (a provider's acquire()) instead of the loaded weights.
    template <class Part>
    Part rebind(const Part& part, const std::vector<Tensor>& tensors) const;

    void bind(WeightBinder& binder);

    Tensor conv(Backend& be, const Conv& c, const Tensor& x) const;
    Tensor norm_silu(Backend& be, const Norm& n, const Tensor& x, bool silu) const;
    Tensor resnet(Backend& be, const Resnet& r, const Tensor& x) const;
    Tensor attention(Backend& be, const Attention& a, const Tensor& x) const;
    Tensor mid(Backend& be, const Mid& m, Tensor x) const;
    Tensor upsample(Backend& be, const Block& blk, const Tensor& x) const;

    // The untiled model with the given weights (this model's, or a provider's).
    Tensor run_encoder(Backend& be, const Encoder& enc, const Tensor& x, const VAEIntermediateHook& hook) const;
    Tensor run_decoder(Backend& be, const Decoder& dec, const Tensor& z, const VAEIntermediateHook& hook) const;
    // The reference's path choice and tiled paths (hunyuan_video_vae_tiling.cpp), with the given weights.
    Tensor encode_moments(Backend& be, const Encoder& enc, const Tensor& x, const VAETiling& t,
                          const VAEIntermediateHook& hook) const;
    Tensor tiled_encode(Backend& be, const Encoder& enc, const Tensor& x, const VAETiling& t) const;
    Tensor temporal_tiled_encode(Backend& be, const Encoder& enc, const Tensor& x, const VAETiling& t) const;
    // Where the tiled decode gets each tile's decoded result (hunyuan_video_vae_tiling.cpp): run here, dealt
    // to the ranks of a communicator, or, in a memory plan, run once per tile shape.
    class TileRuns;
    // Memory planning (host_values_skipped()): what each tile shape already run produced and cost, so that a
    // repeated shape is not run again (hunyuan_video_vae_tiling.cpp, planned_run).
    struct PlannedRun {
        Shape shape;        // of the result
        size_t peak_delta;  // the device's peak during the run, above what was in use before it
    };
    using PlannedTileShapes = std::map<std::string, PlannedRun>;
    Tensor tiled_decode(Backend& be, const Tensor& z, const VAETiling& t, TileRuns& runs) const;
    void temporal_tiled_decode(Backend& be, const Tensor& z, const VAETiling& t, const VAEFrameSink& sink,
                               TileRuns& runs) const;
    // Every decode path: the untiled run, the spatial tiles, or the temporal tiles (spatially tiled or not).
    void decode_frames(Backend& be, const Decoder& dec, const Tensor& z, const VAETiling& t, const VAEFrameSink& sink,
                       Communicator* tiles) const;
    void check_latents(const Tensor& z) const;

    HunyuanVideoVAEConfig config_;
    int64_t parameter_count_ = 0;
    std::vector<std::string> unused_;
    mutable int64_t encoder_calls_ = 0, decoder_calls_ = 0;

    Encoder encoder_;
    Decoder decoder_;
};

}  // namespace sr
