// The HunyuanVideo diffusion transformer (SkyReels-V1 T2V / I2V): weights bound once by checkpoint name,
// and a forward pass in the order the reference runs it.
// ref: diffusers v0.32.2 src/diffusers/models/transformers/transformer_hunyuan_video.py
//
//   auto model = sr::HunyuanVideoTransformer::load("SkyReels-V1-Hunyuan-T2V");
//   sr::Tensor velocity = model.forward(sr::cpu_backend(), inputs);   // [B, out_channels, F, H, W]
//
// Every intermediate that the reference fixtures name is passed to an optional hook, under the same name
// ("x_embedder", "transformer_blocks.3.hidden_states", ...), so the first divergence is one diff away.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "backends/backend.h"
#include "io/safetensors.h"
#include "io/weight_binder.h"
#include "models/hunyuan_video_config.h"
#include "models/weight_blocks.h"

namespace sr {

struct TransformerInputs {
    Tensor hidden_states;           // [B, in_channels, F, H, W] latents (I2V: noise and image latents on C)
    Tensor timestep;                // [B] 1000 * sigma
    Tensor encoder_hidden_states;   // [B, L, text_embed_dim] (Llama hidden states)
    Tensor encoder_attention_mask;  // [B, L], 1 = token, 0 = padding (right-padded)
    Tensor pooled_projections;      // [B, pooled_projection_dim] (CLIP pooled output)
    Tensor guidance;                // [B] 1000 * embedded guidance; required when config.guidance_embeds
};

using IntermediateHook = std::function<void(std::string_view name, const Tensor& value)>;

struct TransformerLoadOptions {
    // Store floating-point weights in this dtype (nullopt: as in the checkpoint, zero-copy from the mmap).
    std::optional<DType> weight_dtype;
    // Memory planning: bind every weight to this address space (core/virtual_allocator.h) and read none.
    Allocator* planning_space = nullptr;
};

class HunyuanVideoTransformer {
public:
    // `path`: a transformer folder (config.json + safetensors, sharded or not), or a diffusers pipeline folder
    // with a transformer/ subfolder. Throws InputError naming the file, tensor or field at fault.
    static HunyuanVideoTransformer load(const std::string& path, const TransformerLoadOptions& options = {});
    // Binds the weights of `store` for `config`.
    HunyuanVideoTransformer(const HunyuanVideoConfig& config, const WeightStore& store,
                            const TransformerLoadOptions& options = {});
    // Binds whatever `binder` provides (a checkpoint, or made-up weights: WeightBinder::random).
    HunyuanVideoTransformer(const HunyuanVideoConfig& config, WeightBinder& binder);
    // A model with made-up weights in `dtype`, for benchmarks and the demo.
    static HunyuanVideoTransformer random(const HunyuanVideoConfig& config, DType dtype, uint64_t seed = 0);

    const HunyuanVideoConfig& config() const { return config_; }
    int64_t parameter_count() const { return parameter_count_; }
    // Tensors in the checkpoint that this model does not use (reported at load).
    const std::vector<std::string>& unused_tensors() const { return unused_; }
    // Blocks in execution order: embedders and token refiner, each dual block, each single block, the
    // output head. weight_block_tensors(i) lists block i's tensors in a fixed order.
    std::vector<WeightBlock> weight_blocks() const;
    size_t weight_block_count() const { return 2 + dual_blocks_.size() + single_blocks_.size(); }
    std::vector<Tensor> weight_block_tensors(size_t block) const;

    // The velocity prediction [B, out_channels, F, H, W], in the backend's memory (to_host() brings it back).
    // Inputs may be on the host or on the device; the hook always sees host tensors. Throws InputError on
    // inputs of the wrong shape. With a provider, each block's weights come from it (e.g. a residency
    // manager streaming them to a device); without one, from the checkpoint as loaded.
    Tensor forward(Backend& backend, const TransformerInputs& inputs, const IntermediateHook& hook = {},
                   BlockWeightProvider* weights = nullptr) const;

private:
    struct TimestepMlp {  // TimestepEmbedding / PixArtAlphaTextProjection: linear_1 -> SiLU -> linear_2
        Linear linear_1, linear_2;
    };
    struct RefinerBlock {
        Tensor norm1_weight, norm1_bias, norm2_weight, norm2_bias;
        Linear to_q, to_k, to_v, to_out, ff_in, ff_out, norm_out;  // norm_out: temb -> (gate_msa, gate_mlp)
    };
    struct DualBlock {
        Linear norm1, norm1_context;  // temb -> 6 modulation vectors per stream
        Linear to_q, to_k, to_v, add_q_proj, add_k_proj, add_v_proj, to_out, to_add_out;
        Tensor norm_q, norm_k, norm_added_q, norm_added_k;  // QK RMSNorm weights [head_dim]
        Linear ff_in, ff_out, ff_context_in, ff_context_out;
    };
    struct SingleBlock {
        Linear norm;  // temb -> (shift, scale, gate)
        Linear to_q, to_k, to_v, proj_mlp, proj_out;
        Tensor norm_q, norm_k;
    };
    // Block 0: everything before the dual blocks.
    struct Embedders {
        Linear x_embedder;  // Conv3d weight [D, C, pt, p, p] viewed by patch_embed_3d
        TimestepMlp timestep_embedder, guidance_embedder, text_embedder;
        TimestepMlp refiner_timestep_embedder, refiner_text_embedder;
        Linear refiner_proj_in;
        std::vector<RefinerBlock> refiner_blocks;
    };
    // The last block: AdaLayerNormContinuous and the projection.
    struct OutputHead {
        Linear norm_out, proj_out;
    };
    // Every Tensor member of a block, in one fixed order (for listing and for rebinding to other memory).
    template <class Block, class F>
    static void for_each_tensor(Block& block, F&& f);
    template <class Block>
    static Block rebind(const Block& block, const std::vector<Tensor>& tensors);

    void bind(WeightBinder& binder);
    Tensor run_mlp(Backend& be, const TimestepMlp& mlp, const Tensor& x) const;
    Tensor silu(Backend& be, const Tensor& x) const;
    // `text`: the text embeddings on the host, contiguous f32 (the masked mean is taken there).
    Tensor refine_text(Backend& be, const Embedders& emb, const Tensor& text, const Tensor& t_proj,
                       const std::vector<float>& mask, const IntermediateHook& hook) const;
    void dual_block(Backend& be, const DualBlock& blk, Tensor& x, Tensor& ctx, const Tensor& temb_silu,
                    const Tensor& rope_cos, const Tensor& rope_sin, const AttentionMask& mask) const;
    void single_block(Backend& be, const SingleBlock& blk, Tensor& xs, int64_t n_video, const Tensor& temb_silu,
                      const Tensor& rope_cos, const Tensor& rope_sin, const AttentionMask& mask) const;
    // q/k RMSNorm per head (in place, via a copy) on a [B, L, D] projection.
    void qk_norm(Backend& be, Tensor& x, const Tensor& weight) const;
    // rows [offset, offset + L) of every batch row of `out` [B, S, D] = lin(in [B, L, D]), RMS-normed per head
    // when `head_norm` is given: the joint q, k, v filled one projection at a time, with no per-stream copies.
    void project_into(Backend& be, const Linear& lin, const Tensor& in, const Tensor* head_norm, Tensor& out,
                      int64_t offset) const;

    HunyuanVideoConfig config_;
    int64_t parameter_count_ = 0;
    std::vector<std::string> unused_;

    Embedders embedders_;
    std::vector<DualBlock> dual_blocks_;
    std::vector<SingleBlock> single_blocks_;
    OutputHead head_;
};

// Finds the transformer folder under `path` (itself, or <path>/transformer for a pipeline folder).
std::string resolve_transformer_dir(const std::string& path);

}  // namespace sr
