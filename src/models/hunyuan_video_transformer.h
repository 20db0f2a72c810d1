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

#include <array>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "backends/backend.h"
#include "backends/communicator.h"
#include "io/safetensors.h"
#include "models/hunyuan_video_config.h"
#include "models/hunyuan_video_lora.h"
#include "models/step_cache.h"
#include "nn/linear.h"
#include "nn/weight_blocks.h"
#include "nn/weight_visitor.h"

namespace sr {

struct TransformerInputs {
    Tensor hidden_states;           // [B, in_channels, F, H, W] latents (I2V: noise and image latents on C)
    Tensor timestep;                // [B] 1000 * sigma
    Tensor encoder_hidden_states;   // [B, L, text_embed_dim] (Llama hidden states)
    Tensor encoder_attention_mask;  // [B, L], 1 = token, 0 = padding (right-padded)
    Tensor pooled_projections;      // [B, pooled_projection_dim] (CLIP pooled output)
    Tensor guidance;                // [B] 1000 * embedded guidance; required when config.guidance_embeds
    // Ulysses sequence parallelism (models/sequence_parallel.h): this rank computes its share of the video
    // tokens, and every rank of the group returns the whole output. null or one rank: all tokens here.
    Communicator* sequence_parallel = nullptr;
    // The dtype the forward carries its residual streams and big temporaries in: F32, or BF16 (half the
    // activation memory, as the reference's bf16 run; the .cpp says which tensors). Rows of one forward_rows
    // call share it. The output is f32 either way.
    DType activations = DType::F32;
};

using IntermediateHook = std::function<void(std::string_view name, const Tensor& value)>;

// Which blocks one forward runs. The reference runs them all; a dual or single block left out passes the
// hidden states through unchanged (what step caching and layer-skip guidance build on). The forward states
// the resulting block order to its weight provider before it acquires anything.
struct TransformerPass {
    std::vector<size_t> skip;  // weight block numbers (1 .. weight_block_count() - 2) to leave out
    // Step caching (models/step_cache.h): the pass's first dual block decides whether the blocks run or the
    // residual cached at the last computed step stands in for them. One decision per call, over every row.
    StepCache* cache = nullptr;
    // A job's LoRA adapters (read_loras(), in the backend's memory: LoraSet::on_backend), added to this
    // forward's copies of the blocks as runtime side paths after the adapters the model loaded with. The
    // model never holds them, so the next forward without them is the base model's, bit for bit.
    const LoraSet* adapters = nullptr;
};

struct TransformerLoadOptions {
    // Store floating-point weights in this dtype (nullopt: as in the checkpoint, zero-copy from the mmap).
    std::optional<DType> weight_dtype;
    // Memory planning: bind every weight to this address space (core/virtual_allocator.h) and read none.
    Allocator* planning_space = nullptr;
    // Quantize the dense linear weights at load (LinearQuant::Float8WeightOnly: SkyReels' --quant).
    LinearQuant quant = LinearQuant::None;
    // LoRA adapters merged or attached at load (models/hunyuan_video_lora.h).
    LoraOptions lora;
};

class HunyuanVideoTransformer {
public:
    // `path`: a transformer folder (config.json + safetensors, sharded or not), a diffusers pipeline folder
    // with a transformer/ subfolder, or one checkpoint file in any layout models/hunyuan_video_checkpoint.h
    // reads (original HunyuanVideo names, FP8, GGUF). Throws InputError naming the file, tensor or field.
    static HunyuanVideoTransformer load(const std::string& path, const TransformerLoadOptions& options = {});
    // Binds the weights of `store` (under diffusers' names) for `config`.
    HunyuanVideoTransformer(const HunyuanVideoConfig& config, const TensorSource& store,
                            const TransformerLoadOptions& options = {});
    // Binds whatever `binder` provides (a checkpoint, or made-up weights: WeightBinder::random).
    HunyuanVideoTransformer(const HunyuanVideoConfig& config, WeightBinder& binder,
                            LinearQuant quant = LinearQuant::None, const LoraOptions& lora = {});
    // A model with made-up weights in `dtype`, for benchmarks and the demo.
    static HunyuanVideoTransformer random(const HunyuanVideoConfig& config, DType dtype, uint64_t seed = 0);

    const HunyuanVideoConfig& config() const { return config_; }
    int64_t parameter_count() const { return parameter_count_; }
    // Tensors in the checkpoint that this model does not use (reported at load).
    const std::vector<std::string>& unused_tensors() const { return unused_; }
    // Blocks in execution order: embedders and token refiner, each dual block, each single block, the
    // output head; each with its tensors in the order the model declares them.
    size_t weight_block_count() const { return 2 + dual_blocks_.size() + single_blocks_.size(); }
    WeightBlock weight_block(size_t block) const;
    std::vector<WeightBlock> weight_blocks() const;
    std::vector<Tensor> weight_block_tensors(size_t block) const { return weight_block(block).tensors; }
    // The linear layers of every block, name -> [out, in] (what adapter files map onto).
    std::map<std::string, std::pair<int64_t, int64_t>> linear_shapes() const;
    // A job's adapter files read onto this model's linear layers (InputError naming the file and key, as at
    // load), for TransformerPass::adapters. Their mode is always runtime: the loaded weights stay as they are.
    LoraSet read_loras(const LoraOptions& options) const;
    // The weight blocks one forward with `pass` acquires, in order (InputError for a block that cannot be
    // skipped).
    std::vector<size_t> pass_order(const TransformerPass& pass = {}) const;

    // The velocity prediction [B, out_channels, F, H, W], in the backend's memory (to_host() brings it back).
    // Inputs may be on the host or on the device; the hook always sees host tensors. Throws InputError on
    // inputs of the wrong shape. With a provider, each block's weights come from it (e.g. a residency
    // manager streaming them to a device); without one, from the checkpoint as loaded.
    Tensor forward(Backend& backend, const TransformerInputs& inputs, const IntermediateHook& hook = {},
                   BlockWeightProvider* weights = nullptr, const TransformerPass& pass = {}) const;
    // One pass over several rows of inputs (e.g. the two guidance rows): each block's weights are acquired
    // once, and every row runs through the block while it is held, one row after the other. A streamed
    // model moves its weights once for all rows, and the activations are those of one row plus the other
    // rows' residual streams. Each row's result is bit-identical to forward() on that row alone (the same
    // kernels on the same shapes). The hook sees every row's intermediates under the same names.
    std::vector<Tensor> forward_rows(Backend& backend, const std::vector<TransformerInputs>& rows,
                                     const IntermediateHook& hook = {}, BlockWeightProvider* weights = nullptr,
                                     const TransformerPass& pass = {}) const;

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
    struct PatchEmbed {  // Conv3d with stride = kernel: weight [D, C, pt, p, p], bias [D]
        Tensor weight, bias;
    };
    // Block 0: everything before the dual blocks.
    struct Embedders {
        PatchEmbed x_embedder;
        TimestepMlp timestep_embedder, guidance_embedder, text_embedder;
        TimestepMlp refiner_timestep_embedder, refiner_text_embedder;
        Linear refiner_proj_in;
        std::vector<RefinerBlock> refiner_blocks;
    };
    // The last block: AdaLayerNormContinuous and the projection.
    struct OutputHead {
        Linear norm_out, proj_out;
    };
    // Every weight of each block type, declared once (nn/weight_visitor.h); `prefix` is the block's
    // checkpoint name prefix.
    void declare(WeightVisitor& v, TimestepMlp& m, const std::string& prefix, int64_t in) const;
    void declare(WeightVisitor& v, Embedders& e, const std::string& prefix) const;
    void declare(WeightVisitor& v, DualBlock& d, const std::string& prefix) const;
    void declare(WeightVisitor& v, SingleBlock& s, const std::string& prefix) const;
    void declare(WeightVisitor& v, OutputHead& h, const std::string& prefix) const;
    // f(block struct, block name, checkpoint prefix) for weight block i: the one list of blocks.
    template <class Self, class F>
    static void with_block(Self& self, size_t i, F&& f);
    // `block` viewing `tensors` (a provider's acquire()) instead of the loaded weights.
    template <class Block>
    Block rebind(const Block& block, const std::vector<Tensor>& tensors) const;
    // The block weight block `b` runs with in a pass: the loaded one, or viewing its lease's tensors, plus
    // the pass's adapters.
    template <class Block>
    Block for_pass(const Block& loaded, size_t b, const BlockLease& lease, const TransformerPass& pass) const;

    void bind(WeightBinder& binder, LinearQuant quant, const LoraOptions& lora);
    Tensor run_mlp(Backend& be, const TimestepMlp& mlp, const Tensor& x) const;
    Tensor silu(Backend& be, const Tensor& x) const;
    // `text`: the text embeddings on the host, contiguous f32 (the masked mean is taken there).
    Tensor refine_text(Backend& be, const Embedders& emb, const Tensor& text, const Tensor& t_proj,
                       const std::vector<float>& mask, const IntermediateHook& hook) const;
    // The joint attention of one forward: its mask, RoPE tables and, with sequence parallelism, the group.
    struct JointAttention;
    void dual_block(Backend& be, const DualBlock& blk, Tensor& x, Tensor& ctx, const Tensor& temb_silu,
                    const JointAttention& joint) const;
    void single_block(Backend& be, const SingleBlock& blk, Tensor& xs, int64_t n_video, const Tensor& temb_silu,
                      const JointAttention& joint) const;
    // attention over the joint sequence, here or split over the sequence-parallel group.
    // q and k are the raw projections: the attention applies the QK RMSNorm (`q_norm`/`k_norm`: the video rows'
    // weight, then the text rows') and the RoPE of the first `n_video` rows (ops.h, QkNormRope).
    void attend(Backend& be, const JointAttention& joint, const Tensor& q, const Tensor& k, const Tensor& v,
                Tensor& out, std::array<const Tensor*, 2> q_norm, std::array<const Tensor*, 2> k_norm,
                int64_t n_video) const;
    // rows [offset, offset + L) of every batch row of `out` [B, S, D] = lin(in [B, L, D]): the joint q, k, v
    // filled one projection at a time, with no per-stream copies.
    void project_into(Backend& be, const Linear& lin, const Tensor& in, Tensor& out, int64_t offset) const;

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
