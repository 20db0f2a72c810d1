// HunyuanVideoTransformer3DModel, in the order it runs.
// ref: diffusers v0.32.2 src/diffusers/models/transformers/transformer_hunyuan_video.py
//
// Shapes: B batch, N video tokens (F' x H' x W' after patching, row-major t,h,w), L text tokens, D inner
// width (heads x head_dim), S = N + L joint sequence, M MLP width.
//
// Activation dtype (TransformerInputs::activations). With BF16 the tensors that scale with the video, the
// ones the memory plan's peak is made of, are stored in bf16: the residual streams (x, ctx from the first dual
// block on, the joint xs), each block's normed inputs, q, k, v, the attention output, the MLP hidden layers
// and the single block's fused input, and every linear output made from them. That is where diffusers' bf16
// run (the released model is run in bf16) has bf16 tensors too: its residual stream is bf16 end to end.
// What stays f32, where accuracy needs it and memory does not: the timestep/guidance/text conditioning and
// silu(temb), so every adaLN modulation vector (shift, scale, gate) is f32 (the reference's are bf16: ours
// are never worse); the token refiner (a few hundred text tokens; its output is rounded once into ctx); the
// output head from the final norm on (norm_out, proj_out and the velocity handed to the scheduler). Inside
// the ops (backend.h) every bf16 value is read into f32 and rounded once when stored: layer-norm and QK-norm
// statistics, the softmax and the online-softmax accumulators, GEMM accumulation and the modulation and
// gating arithmetic are f32. So a bf16 forward rounds each stored activation once (relative error <= 2^-8
// each), where the reference's bf16 modules also round their intermediates.
#include "models/hunyuan_video_transformer.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <type_traits>

#include "core/log.h"
#include "models/hunyuan_video_checkpoint.h"
#include "models/hunyuan_video_rope.h"
#include "models/sequence_parallel.h"

namespace sr {

namespace fs = std::filesystem;

// ---------------------------------------------------------------------------------------------------------
// Loading

std::string resolve_transformer_dir(const std::string& path) {
    std::error_code ec;
    SR_THROW_IF(!fs::exists(path, ec), "{}: no such folder", path);
    SR_THROW_IF(!fs::is_directory(path, ec), "{}: expected a transformer folder (config.json + *.safetensors)", path);
    if (fs::exists(fs::path(path) / "config.json", ec)) return path;
    if (fs::exists(fs::path(path) / "transformer" / "config.json", ec))
        return (fs::path(path) / "transformer").string();
    SR_THROW("{}: no config.json here or in transformer/ (expected a diffusers transformer or pipeline folder)", path);
}

HunyuanVideoTransformer HunyuanVideoTransformer::load(const std::string& path, const TransformerLoadOptions& options) {
    const TransformerCheckpoint ckpt = open_transformer_checkpoint(path);
    if (ckpt.layout != "diffusers" || ckpt.config_inferred)
        SR_LOG_INFO("{}: {} layout{}", ckpt.source->source(), ckpt.layout,
                    ckpt.config_inferred ? ", config inferred from the tensor shapes" : "");
    WeightBinder binder(*ckpt.source, options.weight_dtype, options.planning_space);
    return HunyuanVideoTransformer(ckpt.config, binder, options.quant, options.lora);
}

HunyuanVideoTransformer::HunyuanVideoTransformer(const HunyuanVideoConfig& config, const TensorSource& store,
                                                 const TransformerLoadOptions& options)
    : config_(config) {
    WeightBinder binder(store, options.weight_dtype, options.planning_space);
    *this = HunyuanVideoTransformer(config, binder, options.quant, options.lora);
}

HunyuanVideoTransformer::HunyuanVideoTransformer(const HunyuanVideoConfig& config, WeightBinder& binder,
                                                 LinearQuant quant, const LoraOptions& lora)
    : config_(config) {
    config_.validate(binder.source());
    bind(binder, quant, lora);
    parameter_count_ = binder.parameter_count();
    unused_ = binder.unused();
    warn_unused_tensors(unused_, binder.source(), "the transformer");
}

HunyuanVideoTransformer HunyuanVideoTransformer::random(const HunyuanVideoConfig& config, DType dtype, uint64_t seed) {
    WeightBinder binder = WeightBinder::random(seed, dtype);
    return HunyuanVideoTransformer(config, binder);
}

// ---------------------------------------------------------------------------------------------------------
// The weights, declared once per block (binding, listing, streaming and the tests all walk these).

void HunyuanVideoTransformer::declare(WeightVisitor& v, TimestepMlp& m, const std::string& p, int64_t in) const {
    const int64_t D = config_.inner_dim();
    v.linear(p + ".linear_1", m.linear_1, in, D);
    v.linear(p + ".linear_2", m.linear_2, D, D);
}

void HunyuanVideoTransformer::declare(WeightVisitor& v, Embedders& e, const std::string&) const {
    const auto& c = config_;
    const int64_t D = c.inner_dim();
    v.tensor("x_embedder.proj.weight", e.x_embedder.weight,
             {D, c.in_channels, c.patch_size_t, c.patch_size, c.patch_size}, WeightKind::Matrix);
    v.small_f32("x_embedder.proj.bias", e.x_embedder.bias, {D});
    declare(v, e.timestep_embedder, "time_text_embed.timestep_embedder", 256);
    if (c.guidance_embeds) declare(v, e.guidance_embedder, "time_text_embed.guidance_embedder", 256);
    declare(v, e.text_embedder, "time_text_embed.text_embedder", c.pooled_projection_dim);
    declare(v, e.refiner_timestep_embedder, "context_embedder.time_text_embed.timestep_embedder", 256);
    declare(v, e.refiner_text_embedder, "context_embedder.time_text_embed.text_embedder", c.text_embed_dim);
    v.linear("context_embedder.proj_in", e.refiner_proj_in, c.text_embed_dim, D);
    e.refiner_blocks.resize(size_t(c.num_refiner_layers));
    for (size_t i = 0; i < e.refiner_blocks.size(); ++i) {
        const std::string p = fmt::format("context_embedder.token_refiner.refiner_blocks.{}", i);
        RefinerBlock& r = e.refiner_blocks[i];
        v.small_f32(p + ".norm1.weight", r.norm1_weight, {D});
        v.small_f32(p + ".norm1.bias", r.norm1_bias, {D});
        v.linear(p + ".attn.to_q", r.to_q, D, D);
        v.linear(p + ".attn.to_k", r.to_k, D, D);
        v.linear(p + ".attn.to_v", r.to_v, D, D);
        v.linear(p + ".attn.to_out.0", r.to_out, D, D);
        v.small_f32(p + ".norm2.weight", r.norm2_weight, {D});
        v.small_f32(p + ".norm2.bias", r.norm2_bias, {D});
        v.linear(p + ".ff.net.0.proj", r.ff_in, D, c.refiner_mlp_dim());
        v.linear(p + ".ff.net.2", r.ff_out, c.refiner_mlp_dim(), D);
        v.linear(p + ".norm_out.linear", r.norm_out, D, 2 * D);
    }
}

void HunyuanVideoTransformer::declare(WeightVisitor& v, DualBlock& d, const std::string& p) const {
    const int64_t D = config_.inner_dim(), M = config_.mlp_dim(), hd = config_.attention_head_dim;
    v.linear(p + ".norm1.linear", d.norm1, D, 6 * D);
    v.linear(p + ".norm1_context.linear", d.norm1_context, D, 6 * D);
    v.linear(p + ".attn.to_q", d.to_q, D, D);
    v.linear(p + ".attn.to_k", d.to_k, D, D);
    v.linear(p + ".attn.to_v", d.to_v, D, D);
    v.linear(p + ".attn.add_q_proj", d.add_q_proj, D, D);
    v.linear(p + ".attn.add_k_proj", d.add_k_proj, D, D);
    v.linear(p + ".attn.add_v_proj", d.add_v_proj, D, D);
    v.linear(p + ".attn.to_out.0", d.to_out, D, D);
    v.linear(p + ".attn.to_add_out", d.to_add_out, D, D);
    v.small_f32(p + ".attn.norm_q.weight", d.norm_q, {hd});
    v.small_f32(p + ".attn.norm_k.weight", d.norm_k, {hd});
    v.small_f32(p + ".attn.norm_added_q.weight", d.norm_added_q, {hd});
    v.small_f32(p + ".attn.norm_added_k.weight", d.norm_added_k, {hd});
    v.linear(p + ".ff.net.0.proj", d.ff_in, D, M);
    v.linear(p + ".ff.net.2", d.ff_out, M, D);
    v.linear(p + ".ff_context.net.0.proj", d.ff_context_in, D, M);
    v.linear(p + ".ff_context.net.2", d.ff_context_out, M, D);
}

void HunyuanVideoTransformer::declare(WeightVisitor& v, SingleBlock& s, const std::string& p) const {
    const int64_t D = config_.inner_dim(), M = config_.mlp_dim(), hd = config_.attention_head_dim;
    v.linear(p + ".norm.linear", s.norm, D, 3 * D);
    v.linear(p + ".attn.to_q", s.to_q, D, D);
    v.linear(p + ".attn.to_k", s.to_k, D, D);
    v.linear(p + ".attn.to_v", s.to_v, D, D);
    v.small_f32(p + ".attn.norm_q.weight", s.norm_q, {hd});
    v.small_f32(p + ".attn.norm_k.weight", s.norm_k, {hd});
    v.linear(p + ".proj_mlp", s.proj_mlp, D, M);
    v.linear(p + ".proj_out", s.proj_out, D + M, D);
}

void HunyuanVideoTransformer::declare(WeightVisitor& v, OutputHead& h, const std::string&) const {
    const int64_t D = config_.inner_dim();
    v.linear("norm_out.linear", h.norm_out, D, 2 * D);
    v.linear("proj_out", h.proj_out, D, config_.patch_volume() * config_.out_channels);
}

// The one list of blocks: block i's struct, its name and its checkpoint prefix, in execution order (0 the
// embedders and token refiner, then each dual block, each single block, the output head).
template <class Self, class F>
void HunyuanVideoTransformer::with_block(Self& self, size_t i, F&& f) {
    const size_t n_dual = self.dual_blocks_.size(), n_single = self.single_blocks_.size();
    SR_ASSERT(i < 2 + n_dual + n_single, "weight block {} of {}", i, 2 + n_dual + n_single);
    if (i == 0) return f(self.embedders_, std::string("embedders_and_refiner"), std::string());
    if (i <= n_dual) {
        std::string p = fmt::format("transformer_blocks.{}", i - 1);
        return f(self.dual_blocks_[i - 1], p, p);
    }
    if (i <= n_dual + n_single) {
        std::string p = fmt::format("single_transformer_blocks.{}", i - 1 - n_dual);
        return f(self.single_blocks_[i - 1 - n_dual], p, p);
    }
    f(self.head_, std::string("output_head"), std::string());
}

void HunyuanVideoTransformer::bind(WeightBinder& binder, LinearQuant quant, const LoraOptions& lora) {
    dual_blocks_.resize(size_t(config_.num_layers));
    single_blocks_.resize(size_t(config_.num_single_layers));
    LoraSet adapters;
    if (!lora.files.empty()) adapters = read_hunyuan_video_loras(lora, config_, linear_shapes());
    BindWeights bind(binder, quant, adapters.empty() ? nullptr : &adapters);
    for (size_t i = 0; i < weight_block_count(); ++i)
        with_block(*this, i,
                   [&](auto& block, const std::string&, const std::string& prefix) { declare(bind, block, prefix); });
    // Every module the reader mapped is a declared linear layer, so every one was bound.
    SR_ASSERT(adapters.unapplied().empty(), "LoRA modules left unapplied: {}", adapters.unapplied().size());
}

std::map<std::string, std::pair<int64_t, int64_t>> HunyuanVideoTransformer::linear_shapes() const {
    ListLinears linears;  // the layers adapters may target, from the one declaration
    for (size_t i = 0; i < weight_block_count(); ++i)
        with_block(*this, i, [&](const auto& block, const std::string&, const std::string& prefix) {
            auto copy = block;  // tensors are handles: nothing is copied but them
            declare(linears, copy, prefix);
        });
    return std::move(linears.shapes);
}

LoraSet HunyuanVideoTransformer::read_loras(const LoraOptions& options) const {
    SR_THROW_IF(options.mode == LoraMode::Merge,
                "a job's LoRA adapters run as a side path on the loaded weights; merge is for the session's (--lora)");
    LoraOptions o = options;
    o.mode = LoraMode::Runtime;
    return read_hunyuan_video_loras(o, config_, linear_shapes());
}

WeightBlock HunyuanVideoTransformer::weight_block(size_t i) const {
    WeightBlock out;
    with_block(*this, i, [&](const auto& block, const std::string& name, const std::string& prefix) {
        out = declared_block(name, block, [&](WeightVisitor& v, auto& b) { declare(v, b, prefix); });
    });
    return out;
}

std::vector<WeightBlock> HunyuanVideoTransformer::weight_blocks() const {
    return all_weight_blocks(*this);
}

template <class Block>
Block HunyuanVideoTransformer::rebind(const Block& block, const std::vector<Tensor>& tensors) const {
    // The names are not needed to rebind: the declaration order is.
    return rebind_block(block, tensors, [&](WeightVisitor& v, Block& b) { declare(v, b, std::string()); });
}

template <class Block>
Block HunyuanVideoTransformer::for_pass(const Block& loaded, size_t b, const BlockLease& lease,
                                        const TransformerPass& pass) const {
    Block blk = lease ? rebind(loaded, lease.tensors()) : loaded;
    if (pass.adapters && !pass.adapters->empty()) {
        AttachAdapters attach(*pass.adapters);
        with_block(*this, b,
                   [&](const auto&, const std::string&, const std::string& prefix) { declare(attach, blk, prefix); });
    }
    return blk;
}

std::vector<size_t> HunyuanVideoTransformer::pass_order(const TransformerPass& pass) const {
    std::vector<size_t> order;
    const size_t head = weight_block_count() - 1;
    for (size_t b : pass.skip)
        SR_THROW_IF(b == 0 || b >= head, "a pass can skip dual and single blocks (1..{}), not weight block {}",
                    head - 1, b);
    for (size_t b = 0; b <= head; ++b)
        if (std::find(pass.skip.begin(), pass.skip.end(), b) == pass.skip.end()) order.push_back(b);
    return order;
}

// ---------------------------------------------------------------------------------------------------------
// Small building blocks

namespace {

// The single-stream block's MLP runs a block of rows at a time: its [rows, 4D] hidden layer is at most this
// large (64 MiB: 1,365 rows at the 13B model's width in f32, 2,730 in bf16; big enough GEMMs for any backend).
constexpr int64_t kMlpChunkBytes = int64_t(64) << 20;

// Splits a [B, k*D] modulation output into its k [B, D] views, in checkpoint order.
std::vector<Tensor> chunk_rows(const Tensor& x, int k) {
    const int64_t D = x.dim(1) / k;
    std::vector<Tensor> out;
    for (int i = 0; i < k; ++i) out.push_back(x.slice(1, i * D, (i + 1) * D));
    return out;
}

// `t` converted to `dtype` in a new activation (the residual streams entering the blocks).
Tensor as_activation(Backend& be, const Tensor& t, DType dtype, std::string_view what) {
    Tensor out = new_activation(be, t.shape(), what, dtype);
    be.copy(t, out);
    return out;
}

// An input as contiguous f32 on the backend's device: converted on the host, then uploaded.
Tensor input_on_device(Backend& be, const Tensor& t, std::string_view what) {
    if (t.device() == be.device() && t.dtype() == DType::F32 && t.is_contiguous()) return t;
    return to_device(be, to_host_f32(be, t), what);
}

// [B, L, heads*hd] (any row stride) -> [B, heads, L, hd] view for the attention op.
Tensor heads_view(const Tensor& x, int64_t heads, int64_t hd) {
    return x.unflatten(2, heads, hd).permute({0, 2, 1, 3});
}

}  // namespace

Tensor HunyuanVideoTransformer::silu(Backend& be, const Tensor& x) const {
    Tensor y = new_activation(be, x.shape(), "silu", x.dtype());
    be.silu(x, y);
    return y;
}

Tensor HunyuanVideoTransformer::run_mlp(Backend& be, const TimestepMlp& mlp, const Tensor& x) const {
    return mlp.linear_2.apply(be, silu(be, mlp.linear_1.apply(be, x)));
}

void HunyuanVideoTransformer::project_into(Backend& be, const Linear& lin, const Tensor& in, Tensor& out,
                                           int64_t offset) const {
    // [B, L, D] rows of out: the same GEMM as one projection of the whole batch, written in place when one
    // batch row makes them contiguous, else through a copy (Linear::apply_into).
    Tensor dst = out.slice(1, offset, offset + in.dim(1));
    lin.apply_into(be, in, dst);
}

// ---------------------------------------------------------------------------------------------------------
// Token refiner (context_embedder): self-attention over the text tokens, conditioned on the timestep and
// on the masked mean of the text.

Tensor HunyuanVideoTransformer::refine_text(Backend& be, const Embedders& emb, const Tensor& text, const Tensor& t_proj,
                                            const std::vector<float>& mask, const IntermediateHook& hook) const {
    const int64_t B = text.dim(0), L = text.dim(1), E = text.dim(2), D = config_.inner_dim();
    const int64_t heads = config_.num_attention_heads, hd = config_.attention_head_dim;

    // Masked mean of the text embeddings: sum(x * m) / sum(m) over tokens, on the host (a few hundred tokens),
    // then uploaded.
    Tensor pooled_host = Tensor::empty({B, E}, DType::F32, host_allocator(), "refiner pooled text");
    {
        const float* x = text.data<float>();
        float* p = pooled_host.data<float>();
        for (int64_t b = 0; b < B; ++b) {
            float msum = 0.0f;
            for (int64_t l = 0; l < L; ++l) msum += mask[size_t(b * L + l)];
            for (int64_t e = 0; e < E; ++e) {
                float acc = 0.0f;
                for (int64_t l = 0; l < L; ++l) acc += x[(b * L + l) * E + e] * mask[size_t(b * L + l)];
                p[b * E + e] = acc / msum;  // 0/0 = NaN for an all-padding row, as in the reference
            }
        }
    }
    const Tensor pooled = to_device(be, pooled_host, "refiner pooled text");
    Tensor temb = run_mlp(be, emb.refiner_timestep_embedder, t_proj);
    be.add(temb, run_mlp(be, emb.refiner_text_embedder, pooled));
    if (hook) hook("context_embedder.time_text_embed", to_host(be, temb));
    const Tensor temb_silu = silu(be, temb);

    Tensor h = emb.refiner_proj_in.apply(be, to_device(be, text, "text embeddings"));  // [B, L, D]
    if (hook) hook("context_embedder.proj_in", to_host(be, h));

    // Self-attention mask: token i sees token j when both are valid; key 0 is always visible (the
    // reference forces column 0 so that padding rows never attend to nothing).
    Tensor dense = Tensor::empty({B, L, L}, DType::Bool, host_allocator(), "refiner mask");
    {
        uint8_t* m = dense.data<uint8_t>();
        for (int64_t b = 0; b < B; ++b)
            for (int64_t i = 0; i < L; ++i)
                for (int64_t j = 0; j < L; ++j)
                    m[(b * L + i) * L + j] =
                        j == 0 || (mask[size_t(b * L + i)] != 0.0f && mask[size_t(b * L + j)] != 0.0f);
    }
    AttentionMask attn_mask;
    attn_mask.dense = to_device(be, dense, "refiner mask");

    for (size_t i = 0; i < emb.refiner_blocks.size(); ++i) {
        const RefinerBlock& r = emb.refiner_blocks[i];
        Tensor n = new_activation(be, h.shape(), "refiner norm1");
        be.layer_norm(h, &r.norm1_weight, &r.norm1_bias, 1e-6f, n);
        Tensor q = r.to_q.apply(be, n), k = r.to_k.apply(be, n), v = r.to_v.apply(be, n);
        Tensor attn = new_activation(be, {B, L, D}, "refiner attention");
        Tensor attn_heads = heads_view(attn, heads, hd);
        be.attention(heads_view(q, heads, hd), heads_view(k, heads, hd), heads_view(v, heads, hd), attn_heads,
                     attn_mask, float(1.0 / std::sqrt(double(hd))));
        const Tensor gates = r.norm_out.apply(be, temb_silu);  // [B, 2D]: gate_msa, gate_mlp
        const auto g = chunk_rows(gates, 2);
        be.gated_residual(h, r.to_out.apply(be, attn), g[0]);
        Tensor n2 = new_activation(be, h.shape(), "refiner norm2");
        be.layer_norm(h, &r.norm2_weight, &r.norm2_bias, 1e-6f, n2);
        const Tensor ff = r.ff_out.apply(be, silu(be, r.ff_in.apply(be, n2)));
        be.gated_residual(h, ff, g[1]);
        if (hook) hook(fmt::format("context_embedder.token_refiner.refiner_blocks.{}", i), to_host(be, h));
    }
    return h;
}

// ---------------------------------------------------------------------------------------------------------
// The joint attention over [video, text], on one rank or split over a sequence-parallel group.

struct HunyuanVideoTransformer::JointAttention {
    AttentionMask mask;         // kv_len = N + valid text tokens, over the whole joint sequence
    Tensor rope_cos, rope_sin;  // [N, head_dim]: every video token's rows
    Communicator* group = nullptr;
    SequenceShard shard;  // this rank's video rows (all N without a group)
};

void HunyuanVideoTransformer::attend(Backend& be, const JointAttention& joint, const Tensor& q, const Tensor& k,
                                     const Tensor& v, Tensor& out, std::array<const Tensor*, 2> q_norm,
                                     std::array<const Tensor*, 2> k_norm, int64_t n_video) const {
    QkNormRope qk;
    qk.q_weight = q_norm;
    qk.k_weight = k_norm;
    qk.cos = &joint.rope_cos;
    qk.sin = &joint.rope_sin;
    qk.n_rope = n_video;
    qk.eps = 1e-6f;
    const int64_t heads = config_.num_attention_heads, hd = config_.attention_head_dim;
    const float scale = float(1.0 / std::sqrt(double(hd)));
    if (joint.group)
        return sequence_parallel_attention(be, *joint.group, joint.shard, heads, q, k, v, out, joint.mask, scale, &qk);
    Tensor out_heads = heads_view(out, heads, hd);
    be.attention(heads_view(q, heads, hd), heads_view(k, heads, hd), heads_view(v, heads, hd), out_heads, joint.mask,
                 scale, qk);
}

// ---------------------------------------------------------------------------------------------------------
// Dual-stream block: separate weights for video (x) and text (ctx), one joint attention over [x, ctx].

void HunyuanVideoTransformer::dual_block(Backend& be, const DualBlock& blk, Tensor& x, Tensor& ctx,
                                         const Tensor& temb_silu, const JointAttention& joint) const {
    const int64_t B = x.dim(0), N = x.dim(1), L = ctx.dim(1), D = config_.inner_dim(), S = N + L;
    // AdaLayerNormZero: shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp.
    const Tensor mod = blk.norm1.apply(be, temb_silu);
    const Tensor cmod = blk.norm1_context.apply(be, temb_silu);
    const auto m = chunk_rows(mod, 6), cm = chunk_rows(cmod, 6);

    auto norm_modulate = [&](const Tensor& in, const Tensor& shift, const Tensor& scale) {
        Tensor n = new_activation(be, in.shape(), "layer norm", in.dtype());
        be.layer_norm(in, nullptr, nullptr, 1e-6f, n);
        be.modulate(n, shift, scale, n);
        return n;
    };

    // Joint q, k, v: [B, S, D] with the video rows first, each projection written straight into its rows (one
    // projection's output alive at a time, not six, and no concatenation: the block's activation peak).
    const DType act = x.dtype();  // the residual stream's: every temporary of the block is carried in it
    Tensor q = new_activation(be, {B, S, D}, "joint q", act), k = new_activation(be, {B, S, D}, "joint k", act),
           v = new_activation(be, {B, S, D}, "joint v", act);
    // q and k hold the raw projections: the attention applies the QK RMSNorm (norm_q/norm_k on the video rows,
    // norm_added_q/norm_added_k on the text rows) and the RoPE of the video rows itself, so that a backend can
    // fuse them into its pass over q and k (ops.h, QkNormRope).
    {
        const Tensor nx = norm_modulate(x, m[0], m[1]);
        project_into(be, blk.to_q, nx, q, 0);
        project_into(be, blk.to_k, nx, k, 0);
        project_into(be, blk.to_v, nx, v, 0);
    }
    {
        const Tensor nc = norm_modulate(ctx, cm[0], cm[1]);
        project_into(be, blk.add_q_proj, nc, q, N);
        project_into(be, blk.add_k_proj, nc, k, N);
        project_into(be, blk.add_v_proj, nc, v, N);
    }
    Tensor attn = new_activation(be, {B, S, D}, "joint attention", act);
    { attend(be, joint, q, k, v, attn, {&blk.norm_q, &blk.norm_added_q}, {&blk.norm_k, &blk.norm_added_k}, N); }
    q = k = v = Tensor();  // release before the MLPs

    be.gated_residual(x, blk.to_out.apply(be, contiguous(be, attn.slice(1, 0, N), "video attention")), m[2]);
    be.gated_residual(ctx, blk.to_add_out.apply(be, contiguous(be, attn.slice(1, N, S), "text attention")), cm[2]);
    attn = Tensor();

    auto mlp = [&](const Tensor& in, const Linear& l1, const Linear& l2) {
        return l2.apply(be, l1.apply(be, in, Activation::GeluTanh));
    };
    be.gated_residual(x, mlp(norm_modulate(x, m[3], m[4]), blk.ff_in, blk.ff_out), m[5]);
    be.gated_residual(ctx, mlp(norm_modulate(ctx, cm[3], cm[4]), blk.ff_context_in, blk.ff_context_out), cm[5]);
}

// ---------------------------------------------------------------------------------------------------------
// Single-stream block on the joint sequence xs = [video, text]: attention and MLP in parallel from one
// normed input, fused output projection.

void HunyuanVideoTransformer::single_block(Backend& be, const SingleBlock& blk, Tensor& xs, int64_t n_video,
                                           const Tensor& temb_silu, const JointAttention& joint) const {
    const int64_t B = xs.dim(0), S = xs.dim(1), D = config_.inner_dim(), M = config_.mlp_dim();
    const auto m = chunk_rows(blk.norm.apply(be, temb_silu), 3);  // shift, scale, gate

    const DType act = xs.dtype();  // the residual stream's: every temporary of the block is carried in it
    Tensor n = new_activation(be, xs.shape(), "single norm", act);
    be.layer_norm(xs, nullptr, nullptr, 1e-6f, n);
    be.modulate(n, m[0], m[1], n);

    // The order keeps the block's activation peak at xs + n + the attention output + the fused input (8 x
    // [S, D]), where computing the MLP first held its whole [S, 4D] hidden layer next to them (11 x), and
    // attending straight into the fused input would hold it next to q, k and v (10 x): attention first, then
    // the MLP a block of rows at a time, written straight into the fused projection's input (its GELU in the
    // GEMM's epilogue).
    Tensor attn = new_activation(be, {B, S, D}, "single attention", act);
    {
        const Tensor q = blk.to_q.apply(be, n), k = blk.to_k.apply(be, n), v = blk.to_v.apply(be, n);
        // QK RMSNorm on every token and RoPE on the video tokens only, applied by the attention (see dual_block).
        attend(be, joint, q, k, v, attn, {&blk.norm_q, &blk.norm_q}, {&blk.norm_k, &blk.norm_k}, n_video);
    }
    // [attention output, MLP hidden] side by side, the input of the fused projection.
    Tensor fused = new_activation(be, {B, S, D + M}, "single fused", act);
    {
        Tensor dst = fused.slice(2, 0, D);
        be.copy(attn, dst);
    }
    attn = Tensor();
    const int64_t rows = std::max<int64_t>(1, kMlpChunkBytes / (M * int64_t(dtype_size(act))));
    for (int64_t b = 0; b < B; ++b)
        for (int64_t r0 = 0; r0 < S; r0 += rows) {
            const int64_t r1 = std::min(S, r0 + rows);
            // A plan (host_values_skipped()) runs the first chunk and the last, shorter one: every full chunk
            // costs the same memory, and the largest videos have millions of them.
            if (host_values_skipped() && r0 > 0 && r1 < S) continue;
            Tensor hidden = fused.select(0, b).slice(0, r0, r1).slice(1, D, D + M);  // [r1 - r0, M] of fused
            blk.proj_mlp.apply_into(be, n.select(0, b).slice(0, r0, r1), hidden, Activation::GeluTanh);
        }
    n = Tensor();
    const Tensor proj = blk.proj_out.apply(be, fused);
    be.gated_residual(xs, proj, m[2]);
}

// ---------------------------------------------------------------------------------------------------------
// The whole forward pass, for one or several rows (forward_rows): each block's weights are acquired once and
// every row runs through the block while it is held, one row after the other, so a row's arithmetic is that
// of a forward on that row alone.

Tensor HunyuanVideoTransformer::forward(Backend& be, const TransformerInputs& in, const IntermediateHook& hook,
                                        BlockWeightProvider* weights, const TransformerPass& pass) const {
    return forward_rows(be, {in}, hook, weights, pass)[0];
}

std::vector<Tensor> HunyuanVideoTransformer::forward_rows(Backend& be, const std::vector<TransformerInputs>& rows,
                                                          const IntermediateHook& hook, BlockWeightProvider* weights,
                                                          const TransformerPass& pass) const {
    const auto& c = config_;
    const int64_t D = c.inner_dim();
    SR_THROW_IF(rows.empty(), "the transformer's forward needs at least one row of inputs");
    // What one row carries from block to block: its inputs' sizes, its text mask, its attention (mask, RoPE
    // tables, sequence shard) and its residual streams.
    struct Row {
        const TransformerInputs* in = nullptr;
        int64_t B = 0, F = 0, H = 0, W = 0, L = 0, Fp = 0, Hp = 0, Wp = 0, N = 0, n = 0;
        std::vector<float> mask;
        JointAttention joint;
        Tensor t_proj, temb_silu, x, ctx, xs, proj;
    };
    // The activation dtype (TransformerInputs::activations; why each tensor is or is not carried in it: at the
    // top of this file).
    const DType act = rows[0].activations;
    SR_THROW_IF(act != DType::F32 && act != DType::BF16,
                "the transformer carries its activations in f32 or bf16, not {}", dtype_name(act));
    for (const TransformerInputs& in : rows)
        SR_THROW_IF(in.activations != act,
                    "the rows of one forward carry their activations in one dtype, got {} and {}", dtype_name(act),
                    dtype_name(in.activations));
    std::vector<Row> st(rows.size());
    for (size_t r = 0; r < rows.size(); ++r) {
        Row& row = st[r];
        const TransformerInputs& in = rows[r];
        row.in = &in;
        // Inputs: checked against the config, named in errors.
        SR_THROW_IF(!in.hidden_states.defined() || in.hidden_states.rank() != 5,
                    "hidden_states must be [B, C, F, H, W], got {}",
                    in.hidden_states.defined() ? in.hidden_states.describe() : "nothing");
        const int64_t B = in.hidden_states.dim(0), C = in.hidden_states.dim(1), F = in.hidden_states.dim(2);
        const int64_t H = in.hidden_states.dim(3), W = in.hidden_states.dim(4);
        SR_THROW_IF(C != c.in_channels, "hidden_states has {} channels but the model takes in_channels = {}", C,
                    c.in_channels);
        SR_THROW_IF(B < 1 || F < 1 || F % c.patch_size_t != 0 || H % c.patch_size != 0 || W % c.patch_size != 0 ||
                        H < 1 || W < 1,
                    "hidden_states {}: frames must be a positive multiple of {} and height/width positive multiples "
                    "of {}",
                    in.hidden_states.describe(), c.patch_size_t, c.patch_size);
        auto check = [&](const Tensor& t, const char* name, std::initializer_list<int64_t> dims) {
            const Shape want(dims);
            SR_THROW_IF(!t.defined(), "{} is required (shape {})", name, want.str());
            bool ok = t.rank() == want.rank();
            for (int i = 0; ok && i < want.rank(); ++i) ok = want[i] < 0 || t.dim(i) == want[i];
            SR_THROW_IF(!ok, "{} has shape {} but {} is expected", name, t.shape().str(), want.str());
            SR_THROW_IF(!dtype_is_float(t.dtype()) && name != std::string_view("encoder_attention_mask"),
                        "{} must be a float tensor, got {}", name, dtype_name(t.dtype()));
        };
        check(in.timestep, "timestep", {B});
        check(in.encoder_hidden_states, "encoder_hidden_states", {B, -1, c.text_embed_dim});
        const int64_t L = in.encoder_hidden_states.dim(1);
        SR_THROW_IF(L < 1, "encoder_hidden_states has no tokens");
        check(in.encoder_attention_mask, "encoder_attention_mask", {B, L});
        check(in.pooled_projections, "pooled_projections", {B, c.pooled_projection_dim});
        if (c.guidance_embeds) check(in.guidance, "guidance", {B});

        row.B = B, row.F = F, row.H = H, row.W = W, row.L = L;
        row.Fp = F / c.patch_size_t, row.Hp = H / c.patch_size, row.Wp = W / c.patch_size;
        row.N = row.Fp * row.Hp * row.Wp;
        row.mask.resize(size_t(B * L));
        const Tensor mask_host = to_host(be, in.encoder_attention_mask);  // read on the host: it steers the masks
        for (int64_t i = 0; i < B * L; ++i) row.mask[size_t(i)] = mask_host.item_as_float(i);

        // 1. RoPE tables for the video tokens (shared by rows of the same size).
        JointAttention& joint = row.joint;
        const Row* same = nullptr;
        for (size_t q = 0; q < r && !same; ++q)
            if (st[q].Fp == row.Fp && st[q].Hp == row.Hp && st[q].Wp == row.Wp) same = &st[q];
        if (same) {
            joint.rope_cos = same->joint.rope_cos;
            joint.rope_sin = same->joint.rope_sin;
        } else {
            const auto [rope_cos_host, rope_sin_host] =
                hunyuan_rope_tables(c.rope_axes_dim, c.rope_theta, row.Fp, row.Hp, row.Wp);
            if (hook) hook("rope.freqs_cos", rope_cos_host), hook("rope.freqs_sin", rope_sin_host);
            joint.rope_cos = to_device(be, rope_cos_host, "rope cos");
            joint.rope_sin = to_device(be, rope_sin_host, "rope sin");
        }
        // Sequence parallelism: this rank's n rows of the N video tokens (models/sequence_parallel.h).
        if (in.sequence_parallel && in.sequence_parallel->size() > 1) {
            Communicator& group = *in.sequence_parallel;
            SR_THROW_IF(c.num_attention_heads % group.size() != 0,
                        "sequence parallelism over {} ranks: the model's {} attention heads do not divide among them",
                        group.size(), c.num_attention_heads);
            joint.group = &group;
            joint.shard = SequenceShard{.tokens = row.N, .degree = group.size(), .rank = group.rank()};
        } else {
            joint.shard = SequenceShard{.tokens = row.N};
        }
        row.n = joint.shard.rows();
    }

    // The pass's block order, stated to the provider before anything is acquired. Each block is held by a
    // BlockLease, so it is released when its compute is done, also when an exception unwinds.
    const std::vector<size_t> order = pass_order(pass);
    // Step caching decides from blocks 0 and 1 whether the other blocks run (models/step_cache.h). The pass
    // is announced in two parts: {0, 1} first, open, so that a streaming provider copies nothing past block 1
    // before the decision (a skipped step must not move the skipped blocks' weights: on a streaming GPU that
    // is the saving); then the blocks the decision runs ({head} for a skipped step). TeaCache's metric needs
    // only block 1's norm1, but that lives in block 1, and a computed step runs block 1 while it is held, so
    // block 1 is in the first part for both kinds.
    StepCache* const cache = pass.cache;
    SR_THROW_IF(cache && (dual_blocks_.empty() || order.size() < 3 || order[1] != 1),
                "step caching needs the pass to run the first dual block");
    if (weights) cache ? weights->begin_open_pass({order[0], order[1]}) : weights->begin_pass(order);

    // 2. Conditioning: temb = timestep MLP + guidance MLP + pooled-text MLP, all from 256-dim sinusoids.
    for (Row& row : st) {
        const Tensor timestep = input_on_device(be, row.in->timestep, "timestep");
        row.t_proj = new_activation(be, {row.B, 256}, "timestep sinusoid");
        be.timestep_embedding(timestep, 256, /*flip_sin_to_cos=*/true, /*shift=*/0.0f, 10000.0f, row.t_proj);
    }
    {
        // Block 0: embedders and token refiner.
        const BlockLease lease(weights, 0);
        const Embedders emb = for_pass(embedders_, 0, lease, pass);
        for (Row& row : st) {
            const TransformerInputs& in = *row.in;
            const int64_t B = row.B, n = row.n;
            Tensor temb = run_mlp(be, emb.timestep_embedder, row.t_proj);
            if (c.guidance_embeds) {
                Tensor g_proj = new_activation(be, {B, 256}, "guidance sinusoid");
                be.timestep_embedding(input_on_device(be, in.guidance, "guidance"), 256, true, 0.0f, 10000.0f, g_proj);
                be.add(temb, run_mlp(be, emb.guidance_embedder, g_proj));
            }
            be.add(temb,
                   run_mlp(be, emb.text_embedder, input_on_device(be, in.pooled_projections, "pooled_projections")));
            if (hook) hook("time_text_embed", to_host(be, temb));
            row.temb_silu = silu(be, temb);  // every adaLN linear takes silu(temb)

            Tensor x = new_activation(be, {B, row.N, D}, "video tokens");
            be.patch_embed_3d(input_on_device(be, in.hidden_states, "hidden_states"), emb.x_embedder.weight,
                              &emb.x_embedder.bias, x);
            if (hook) hook("x_embedder", to_host(be, x));
            if (act != DType::F32) x = as_activation(be, x, act, "video tokens");
            if (row.joint.group) {
                // This rank's rows. Padding rows repeat the first tokens: finite values that no valid query sees
                // and whose own results are dropped.
                const SequenceShard& shard = row.joint.shard;
                Tensor mine = new_activation(be, {B, n, D}, "this rank's video tokens", act);
                const int64_t valid = shard.valid_rows();
                if (valid > 0) {
                    Tensor dst = mine.slice(1, 0, valid);
                    be.copy(x.slice(1, shard.begin(), shard.begin() + valid), dst);
                }
                if (valid < n) {
                    Tensor dst = mine.slice(1, valid, n);
                    be.copy(x.slice(1, 0, n - valid), dst);
                }
                x = mine;
            }
            row.x = x;
            x = Tensor();
            row.ctx = refine_text(be, emb, to_host_f32(be, in.encoder_hidden_states), row.t_proj, row.mask, hook);
            if (hook) hook("context_embedder", to_host(be, row.ctx));
            if (act != DType::F32) row.ctx = as_activation(be, row.ctx, act, "text tokens");
        }
    }

    // 3. Joint attention mask: row b sees the N video keys and the first sum(mask[b]) text keys (the
    //    reference counts valid tokens, so padding must be on the right).
    for (Row& row : st)
        for (int64_t b = 0; b < row.B; ++b) {
            int64_t valid = 0;
            for (int64_t l = 0; l < row.L; ++l) valid += int64_t(row.mask[size_t(b * row.L + l)]);  // int sum
            row.joint.mask.kv_len.push_back(row.N + valid);
        }

    // 4. The pass's dual-stream, then single-stream blocks (weight blocks 1..n_dual, then the single blocks).
    const size_t n_dual = dual_blocks_.size(), head_block = weight_block_count() - 1;
    // The joint sequence [video, text] (xs), from the first single block on.
    auto join_streams = [&](Row& row) {
        if (row.xs.defined()) return;
        row.xs = new_activation(be, {row.B, row.n + row.L, D}, "joint sequence", act);
        concat(be, {row.x, row.ctx}, 1, row.xs);
        row.x = row.ctx = Tensor();
    };
    auto run_dual = [&](const DualBlock& blk, size_t i, Row& row) {
        dual_block(be, blk, row.x, row.ctx, row.temb_silu, row.joint);
        if (hook) {
            hook(fmt::format("transformer_blocks.{}.hidden_states", i), to_host_f32(be, row.x));
            hook(fmt::format("transformer_blocks.{}.encoder_hidden_states", i), to_host_f32(be, row.ctx));
        }
    };
    size_t first_k = 1;  // the first position of `order` still to run
    bool skipped = false;
    if (cache) {
        {
            const BlockLease lease(weights, 1);
            const DualBlock blk = for_pass(dual_blocks_[0], 1, lease, pass);
            if (cache->options().kind == StepCacheKind::TeaCache) {
                // The metric: the video tokens as block 1's attention projections see them (its norm1's
                // shift_msa and scale_msa on the layer norm), computed here as dual_block computes them (in
                // the residual stream's dtype: a bf16 run's metric is bf16, as the reference's bf16 run's is).
                for (size_t r = 0; r < st.size(); ++r) {
                    Row& row = st[r];
                    const auto m = chunk_rows(blk.norm1.apply(be, row.temb_silu), 6);
                    Tensor nx = new_activation(be, row.x.shape(), "step cache metric", row.x.dtype());
                    be.layer_norm(row.x, nullptr, nullptr, 1e-6f, nx);
                    be.modulate(nx, m[0], m[1], nx);
                    cache->observe(be, r, nx, row.joint.shard.valid_rows());
                }
                skipped = cache->decide(be);
                if (!skipped)
                    for (size_t r = 0; r < st.size(); ++r) {
                        cache->keep_input(be, r, st[r].x);  // the residual spans every block
                        run_dual(blk, 0, st[r]);
                    }
            } else {
                // The metric: block 1's own residual (output minus input).
                for (size_t r = 0; r < st.size(); ++r) {
                    Row& row = st[r];
                    Tensor before = new_activation(be, row.x.shape(), "first block input");
                    be.copy(row.x, before);
                    run_dual(blk, 0, row);
                    cache->observe_change(be, r, before, row.x, row.joint.shard.valid_rows());
                }
                skipped = cache->decide(be);
                if (!skipped)
                    for (size_t r = 0; r < st.size(); ++r) cache->keep_input(be, r, st[r].x);  // blocks 2..
            }
        }
        if (weights)
            weights->continue_pass(skipped ? std::vector<size_t>{head_block}
                                           : std::vector<size_t>(order.begin() + 2, order.end()));
        first_k = 2;
    }
    for (size_t k = first_k; !skipped && k + 1 < order.size(); ++k) {
        const size_t b = order[k];
        const BlockLease lease(weights, b);
        if (b <= n_dual) {
            const size_t i = b - 1;
            const DualBlock blk = for_pass(dual_blocks_[i], b, lease, pass);
            for (Row& row : st) run_dual(blk, i, row);
        } else {
            const size_t i = b - 1 - n_dual;
            const SingleBlock blk = for_pass(single_blocks_[i], b, lease, pass);
            for (Row& row : st) {
                join_streams(row);
                single_block(be, blk, row.xs, row.n, row.temb_silu, row.joint);
                if (hook) {
                    hook(fmt::format("single_transformer_blocks.{}.hidden_states", i),
                         to_host_f32(be, row.xs.slice(1, 0, row.n)));
                    hook(fmt::format("single_transformer_blocks.{}.encoder_hidden_states", i),
                         to_host_f32(be, row.xs.slice(1, row.n, row.n + row.L)));
                }
            }
        }
    }
    for (size_t r = 0; r < st.size(); ++r) {
        Row& row = st[r];
        if (skipped) {  // the video tokens after the blocks: before them + the cached residual
            cache->apply(be, r, row.x);
            row.ctx = Tensor();
            continue;
        }
        join_streams(row);
        row.x = contiguous(be, row.xs.slice(1, 0, row.n), "video tokens");
        row.xs = Tensor();
        if (cache) cache->keep_output(be, r, row.x);
    }

    // 5. Output: AdaLayerNormContinuous (its linear yields scale first, then shift), projection, unpatchify.
    {
        const BlockLease lease(weights, head_block);
        const OutputHead head = for_pass(head_, head_block, lease, pass);
        for (Row& row : st) {
            const auto so = chunk_rows(head.norm_out.apply(be, row.temb_silu), 2);
            Tensor normed = new_activation(be, row.x.shape(), "norm_out");  // f32 from here on, as the output
            be.layer_norm(row.x, nullptr, nullptr, 1e-6f, normed);
            be.modulate(normed, /*shift=*/so[1], /*scale=*/so[0], normed);
            if (hook) hook("norm_out", to_host(be, normed));
            row.x = Tensor();
            row.proj = head.proj_out.apply(be, normed);  // [B, N, Cout*pt*p*p]
        }
    }
    std::vector<Tensor> outs;
    for (Row& row : st) {
        const int64_t B = row.B, N = row.N, n = row.n;
        Tensor proj = row.proj;
        row.proj = Tensor();
        if (row.joint.group) {
            // Every rank's rows, in token order without the padding: the whole output on every rank of the group.
            const int64_t P = row.joint.group->size(), O = proj.dim(2);
            Tensor all = new_activation(be, {P, B, n, O}, "every rank's projection");
            row.joint.group->all_gather(proj, all);
            proj = new_activation(be, {B, N, O}, "projection");
            for (int64_t r = 0; r < P; ++r) {
                const int64_t valid = row.joint.shard.valid_rows(r);
                if (valid == 0) continue;
                Tensor dst = proj.slice(1, r * n, r * n + valid);
                be.copy(all.select(0, r).slice(1, 0, valid), dst);
            }
        }
        if (hook) hook("proj_out", to_host(be, proj));

        const int64_t p = c.patch_size, pt = c.patch_size_t, Co = c.out_channels;
        Tensor out = new_activation(be, {B, Co, row.F, row.H, row.W}, "transformer output");
        // (B, F', H', W', Co, pt, p, p) -> (B, Co, F', pt, H', p, W', p)
        const Tensor src = proj.view({B, row.Fp, row.Hp, row.Wp, Co, pt, p, p}).permute({0, 4, 1, 5, 2, 6, 3, 7});
        Tensor dst = out.view({B, Co, row.Fp, pt, row.Hp, p, row.Wp, p});
        be.copy(src, dst);
        outs.push_back(out);
    }
    return outs;
}

}  // namespace sr
