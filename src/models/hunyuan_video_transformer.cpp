// HunyuanVideoTransformer3DModel, in the order it runs.
// ref: diffusers v0.32.2 src/diffusers/models/transformers/transformer_hunyuan_video.py
//
// Shapes: B batch, N video tokens (F' x H' x W' after patching, row-major t,h,w), L text tokens, D inner
// width (heads x head_dim), S = N + L joint sequence, M MLP width.
#include "models/hunyuan_video_transformer.h"

#include <cmath>
#include <filesystem>
#include <type_traits>

#include "core/log.h"
#include "models/hunyuan_video_rope.h"

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
    const std::string dir = resolve_transformer_dir(path);
    const std::string config_path = (fs::path(dir) / "config.json").string();
    const Json j = load_json_file(config_path);
    const std::string cls = json_string_or(j, "_class_name", "", config_path);
    SR_THROW_IF(!cls.empty() && cls != "HunyuanVideoTransformer3DModel",
                "{}: _class_name is '{}', not HunyuanVideoTransformer3DModel", config_path, cls);
    const HunyuanVideoConfig config = HunyuanVideoConfig::from_json(j, config_path);
    const WeightStore store = WeightStore::open(dir);
    return HunyuanVideoTransformer(config, store, options);
}

HunyuanVideoTransformer::HunyuanVideoTransformer(const HunyuanVideoConfig& config, const WeightStore& store,
                                                 const TransformerLoadOptions& options)
    : config_(config) {
    WeightBinder binder(store, options.weight_dtype, options.planning_space);
    *this = HunyuanVideoTransformer(config, binder);
}

HunyuanVideoTransformer::HunyuanVideoTransformer(const HunyuanVideoConfig& config, WeightBinder& binder)
    : config_(config) {
    config_.validate(binder.source());
    bind(binder);
    parameter_count_ = binder.parameter_count();
    unused_ = binder.unused();
    for (const auto& name : unused_)
        SR_LOG_WARN("{}: unexpected tensor '{}' is not used by the model", binder.source(), name);
}

HunyuanVideoTransformer HunyuanVideoTransformer::random(const HunyuanVideoConfig& config, DType dtype, uint64_t seed) {
    WeightBinder binder = WeightBinder::random(seed, dtype);
    return HunyuanVideoTransformer(config, binder);
}

void HunyuanVideoTransformer::bind(WeightBinder& b) {
    const auto& c = config_;
    const int64_t D = c.inner_dim(), M = c.mlp_dim(), hd = c.attention_head_dim;
    auto mlp = [&](const std::string& p, int64_t in) {
        return TimestepMlp{bind_linear(b, p + ".linear_1", in, D), bind_linear(b, p + ".linear_2", D, D)};
    };

    Embedders& e = embedders_;
    e.x_embedder.weight =
        b.tensor("x_embedder.proj.weight", {D, c.in_channels, c.patch_size_t, c.patch_size, c.patch_size});
    e.x_embedder.bias = b.small_f32("x_embedder.proj.bias", {D});
    e.timestep_embedder = mlp("time_text_embed.timestep_embedder", 256);
    if (c.guidance_embeds) e.guidance_embedder = mlp("time_text_embed.guidance_embedder", 256);
    e.text_embedder = mlp("time_text_embed.text_embedder", c.pooled_projection_dim);

    e.refiner_timestep_embedder = mlp("context_embedder.time_text_embed.timestep_embedder", 256);
    e.refiner_text_embedder = mlp("context_embedder.time_text_embed.text_embedder", c.text_embed_dim);
    e.refiner_proj_in = bind_linear(b, "context_embedder.proj_in", c.text_embed_dim, D);
    for (int64_t i = 0; i < c.num_refiner_layers; ++i) {
        const std::string p = fmt::format("context_embedder.token_refiner.refiner_blocks.{}", i);
        RefinerBlock r;
        r.norm1_weight = b.small_f32(p + ".norm1.weight", {D});
        r.norm1_bias = b.small_f32(p + ".norm1.bias", {D});
        r.norm2_weight = b.small_f32(p + ".norm2.weight", {D});
        r.norm2_bias = b.small_f32(p + ".norm2.bias", {D});
        r.to_q = bind_linear(b, p + ".attn.to_q", D, D);
        r.to_k = bind_linear(b, p + ".attn.to_k", D, D);
        r.to_v = bind_linear(b, p + ".attn.to_v", D, D);
        r.to_out = bind_linear(b, p + ".attn.to_out.0", D, D);
        r.ff_in = bind_linear(b, p + ".ff.net.0.proj", D, c.refiner_mlp_dim());
        r.ff_out = bind_linear(b, p + ".ff.net.2", c.refiner_mlp_dim(), D);
        r.norm_out = bind_linear(b, p + ".norm_out.linear", D, 2 * D);
        e.refiner_blocks.push_back(std::move(r));
    }
    for (int64_t i = 0; i < c.num_layers; ++i) {
        const std::string p = fmt::format("transformer_blocks.{}", i);
        DualBlock d;
        d.norm1 = bind_linear(b, p + ".norm1.linear", D, 6 * D);
        d.norm1_context = bind_linear(b, p + ".norm1_context.linear", D, 6 * D);
        d.to_q = bind_linear(b, p + ".attn.to_q", D, D);
        d.to_k = bind_linear(b, p + ".attn.to_k", D, D);
        d.to_v = bind_linear(b, p + ".attn.to_v", D, D);
        d.add_q_proj = bind_linear(b, p + ".attn.add_q_proj", D, D);
        d.add_k_proj = bind_linear(b, p + ".attn.add_k_proj", D, D);
        d.add_v_proj = bind_linear(b, p + ".attn.add_v_proj", D, D);
        d.to_out = bind_linear(b, p + ".attn.to_out.0", D, D);
        d.to_add_out = bind_linear(b, p + ".attn.to_add_out", D, D);
        d.norm_q = b.small_f32(p + ".attn.norm_q.weight", {hd});
        d.norm_k = b.small_f32(p + ".attn.norm_k.weight", {hd});
        d.norm_added_q = b.small_f32(p + ".attn.norm_added_q.weight", {hd});
        d.norm_added_k = b.small_f32(p + ".attn.norm_added_k.weight", {hd});
        d.ff_in = bind_linear(b, p + ".ff.net.0.proj", D, M);
        d.ff_out = bind_linear(b, p + ".ff.net.2", M, D);
        d.ff_context_in = bind_linear(b, p + ".ff_context.net.0.proj", D, M);
        d.ff_context_out = bind_linear(b, p + ".ff_context.net.2", M, D);
        dual_blocks_.push_back(std::move(d));
    }
    for (int64_t i = 0; i < c.num_single_layers; ++i) {
        const std::string p = fmt::format("single_transformer_blocks.{}", i);
        SingleBlock s;
        s.norm = bind_linear(b, p + ".norm.linear", D, 3 * D);
        s.to_q = bind_linear(b, p + ".attn.to_q", D, D);
        s.to_k = bind_linear(b, p + ".attn.to_k", D, D);
        s.to_v = bind_linear(b, p + ".attn.to_v", D, D);
        s.norm_q = b.small_f32(p + ".attn.norm_q.weight", {hd});
        s.norm_k = b.small_f32(p + ".attn.norm_k.weight", {hd});
        s.proj_mlp = bind_linear(b, p + ".proj_mlp", D, M);
        s.proj_out = bind_linear(b, p + ".proj_out", D + M, D);
        single_blocks_.push_back(std::move(s));
    }
    head_.norm_out = bind_linear(b, "norm_out.linear", D, 2 * D);
    head_.proj_out = bind_linear(b, "proj_out", D, c.patch_volume() * c.out_channels);
}

template <class Block, class F>
void HunyuanVideoTransformer::for_each_tensor(Block& b, F&& f) {
    auto lin = [&](auto& l) { f(l.weight), f(l.bias); };
    auto mlp = [&](auto& m) { lin(m.linear_1), lin(m.linear_2); };
    using B = std::remove_const_t<Block>;
    if constexpr (std::is_same_v<B, Embedders>) {
        lin(b.x_embedder);
        mlp(b.timestep_embedder), mlp(b.guidance_embedder), mlp(b.text_embedder);
        mlp(b.refiner_timestep_embedder), mlp(b.refiner_text_embedder);
        lin(b.refiner_proj_in);
        for (auto& r : b.refiner_blocks) {
            f(r.norm1_weight), f(r.norm1_bias), f(r.norm2_weight), f(r.norm2_bias);
            for (auto* l : {&r.to_q, &r.to_k, &r.to_v, &r.to_out, &r.ff_in, &r.ff_out, &r.norm_out}) lin(*l);
        }
    } else if constexpr (std::is_same_v<B, DualBlock>) {
        for (auto* l :
             {&b.norm1, &b.norm1_context, &b.to_q, &b.to_k, &b.to_v, &b.add_q_proj, &b.add_k_proj, &b.add_v_proj,
              &b.to_out, &b.to_add_out, &b.ff_in, &b.ff_out, &b.ff_context_in, &b.ff_context_out})
            lin(*l);
        f(b.norm_q), f(b.norm_k), f(b.norm_added_q), f(b.norm_added_k);
    } else if constexpr (std::is_same_v<B, SingleBlock>) {
        for (auto* l : {&b.norm, &b.to_q, &b.to_k, &b.to_v, &b.proj_mlp, &b.proj_out}) lin(*l);
        f(b.norm_q), f(b.norm_k);
    } else {
        static_assert(std::is_same_v<B, OutputHead>);
        lin(b.norm_out), lin(b.proj_out);
    }
}

template <class Block>
Block HunyuanVideoTransformer::rebind(const Block& block, const std::vector<Tensor>& tensors) {
    // Undefined tensors (absent biases, no guidance embedder) are listed too and stay undefined.
    return rebind_block(block, tensors, [](auto& b, auto&& f) { for_each_tensor(b, f); });
}

std::vector<Tensor> HunyuanVideoTransformer::weight_block_tensors(size_t block) const {
    auto collect = [](const auto& b) { return block_tensors(b, [](auto& p, auto&& f) { for_each_tensor(p, f); }); };
    SR_ASSERT(block < weight_block_count(), "weight block {} of {}", block, weight_block_count());
    if (block == 0) return collect(embedders_);
    if (block <= dual_blocks_.size()) return collect(dual_blocks_[block - 1]);
    if (block <= dual_blocks_.size() + single_blocks_.size())
        return collect(single_blocks_[block - 1 - dual_blocks_.size()]);
    return collect(head_);
}

std::vector<WeightBlock> HunyuanVideoTransformer::weight_blocks() const {
    std::vector<WeightBlock> out;
    for (size_t i = 0; i < weight_block_count(); ++i) {
        std::string name = i == 0                     ? "embedders_and_refiner"
                           : i <= dual_blocks_.size() ? fmt::format("transformer_blocks.{}", i - 1)
                           : i <= dual_blocks_.size() + single_blocks_.size()
                               ? fmt::format("single_transformer_blocks.{}", i - 1 - dual_blocks_.size())
                               : "output_head";
        out.push_back({std::move(name), defined_tensor_bytes(weight_block_tensors(i))});
    }
    return out;
}

// ---------------------------------------------------------------------------------------------------------
// Small building blocks

namespace {

// The single-stream block's MLP runs a block of rows at a time: its [rows, 4D] f32 hidden layer is at most
// this large (64 MiB: 1,365 rows at the 13B model's width, big enough GEMMs for any backend).
constexpr int64_t kMlpChunkBytes = int64_t(64) << 20;

// Splits a [B, k*D] modulation output into its k [B, D] views, in checkpoint order.
std::vector<Tensor> chunk_rows(const Tensor& x, int k) {
    const int64_t D = x.dim(1) / k;
    std::vector<Tensor> out;
    for (int i = 0; i < k; ++i) out.push_back(x.slice(1, i * D, (i + 1) * D));
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
    Tensor y = new_activation(be, x.shape(), "silu");
    be.silu(x, y);
    return y;
}

Tensor HunyuanVideoTransformer::run_mlp(Backend& be, const TimestepMlp& mlp, const Tensor& x) const {
    return mlp.linear_2.apply(be, silu(be, mlp.linear_1.apply(be, x)));
}

void HunyuanVideoTransformer::project_into(Backend& be, const Linear& lin, const Tensor& in, const Tensor* head_norm,
                                           Tensor& out, int64_t offset) const {
    const int64_t B = in.dim(0), L = in.dim(1), hd = config_.attention_head_dim;
    const Tensor y = lin.apply(be, in);  // [B, L, D]: the same GEMM as one projection of the whole batch
    for (int64_t b = 0; b < B; ++b) {
        Tensor dst = out.select(0, b).slice(0, offset, offset + L);  // [L, D], contiguous
        if (!head_norm) {
            be.copy(y.select(0, b), dst);
            continue;
        }
        Tensor dst_rows = dst.view({-1, hd});
        be.rms_norm(y.select(0, b).view({-1, hd}), head_norm, 1e-6f, dst_rows);
    }
}

void HunyuanVideoTransformer::qk_norm(Backend& be, Tensor& x, const Tensor& weight) const {
    // RMSNorm over each head's slice: [B, L, D] seen as rows of head_dim.
    const int64_t hd = config_.attention_head_dim;
    Tensor rows = x.view({-1, hd});
    Tensor out = new_activation(be, rows.shape(), "qk norm");
    be.rms_norm(rows, &weight, 1e-6f, out);
    x = out.view(x.shape());
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
// Dual-stream block: separate weights for video (x) and text (ctx), one joint attention over [x, ctx].

void HunyuanVideoTransformer::dual_block(Backend& be, const DualBlock& blk, Tensor& x, Tensor& ctx,
                                         const Tensor& temb_silu, const Tensor& rope_cos, const Tensor& rope_sin,
                                         const AttentionMask& mask) const {
    const int64_t B = x.dim(0), N = x.dim(1), L = ctx.dim(1), D = config_.inner_dim();
    const int64_t heads = config_.num_attention_heads, hd = config_.attention_head_dim, S = N + L;
    // AdaLayerNormZero: shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp.
    const Tensor mod = blk.norm1.apply(be, temb_silu);
    const Tensor cmod = blk.norm1_context.apply(be, temb_silu);
    const auto m = chunk_rows(mod, 6), cm = chunk_rows(cmod, 6);

    auto norm_modulate = [&](const Tensor& in, const Tensor& shift, const Tensor& scale) {
        Tensor n = new_activation(be, in.shape(), "layer norm");
        be.layer_norm(in, nullptr, nullptr, 1e-6f, n);
        be.modulate(n, shift, scale, n);
        return n;
    };

    // Joint q, k, v: [B, S, D] with the video rows first, each projection written straight into its rows (one
    // projection's output alive at a time, not six, and no concatenation: the block's activation peak).
    Tensor q = new_activation(be, {B, S, D}, "joint q"), k = new_activation(be, {B, S, D}, "joint k"),
           v = new_activation(be, {B, S, D}, "joint v");
    {
        const Tensor nx = norm_modulate(x, m[0], m[1]);
        project_into(be, blk.to_q, nx, &blk.norm_q, q, 0);
        project_into(be, blk.to_k, nx, &blk.norm_k, k, 0);
        project_into(be, blk.to_v, nx, nullptr, v, 0);
    }
    {
        Tensor xq4 = q.slice(1, 0, N).unflatten(2, heads, hd), xk4 = k.slice(1, 0, N).unflatten(2, heads, hd);
        be.rope_interleaved(xq4, rope_cos, rope_sin);
        be.rope_interleaved(xk4, rope_cos, rope_sin);
        const Tensor nc = norm_modulate(ctx, cm[0], cm[1]);
        project_into(be, blk.add_q_proj, nc, &blk.norm_added_q, q, N);
        project_into(be, blk.add_k_proj, nc, &blk.norm_added_k, k, N);
        project_into(be, blk.add_v_proj, nc, nullptr, v, N);
    }
    Tensor attn = new_activation(be, {B, S, D}, "joint attention");
    {
        Tensor attn_heads = heads_view(attn, heads, hd);
        be.attention(heads_view(q, heads, hd), heads_view(k, heads, hd), heads_view(v, heads, hd), attn_heads, mask,
                     float(1.0 / std::sqrt(double(hd))));
    }
    q = k = v = Tensor();  // release before the MLPs

    be.gated_residual(x, blk.to_out.apply(be, contiguous(be, attn.slice(1, 0, N), "video attention")), m[2]);
    be.gated_residual(ctx, blk.to_add_out.apply(be, contiguous(be, attn.slice(1, N, S), "text attention")), cm[2]);
    attn = Tensor();

    auto mlp = [&](const Tensor& in, const Linear& l1, const Linear& l2) {
        Tensor hidden = l1.apply(be, in);
        be.gelu_tanh(hidden, hidden);
        return l2.apply(be, hidden);
    };
    be.gated_residual(x, mlp(norm_modulate(x, m[3], m[4]), blk.ff_in, blk.ff_out), m[5]);
    be.gated_residual(ctx, mlp(norm_modulate(ctx, cm[3], cm[4]), blk.ff_context_in, blk.ff_context_out), cm[5]);
}

// ---------------------------------------------------------------------------------------------------------
// Single-stream block on the joint sequence xs = [video, text]: attention and MLP in parallel from one
// normed input, fused output projection.

void HunyuanVideoTransformer::single_block(Backend& be, const SingleBlock& blk, Tensor& xs, int64_t n_video,
                                           const Tensor& temb_silu, const Tensor& rope_cos, const Tensor& rope_sin,
                                           const AttentionMask& mask) const {
    const int64_t B = xs.dim(0), S = xs.dim(1), D = config_.inner_dim(), M = config_.mlp_dim();
    const int64_t heads = config_.num_attention_heads, hd = config_.attention_head_dim;
    const auto m = chunk_rows(blk.norm.apply(be, temb_silu), 3);  // shift, scale, gate

    Tensor n = new_activation(be, xs.shape(), "single norm");
    be.layer_norm(xs, nullptr, nullptr, 1e-6f, n);
    be.modulate(n, m[0], m[1], n);

    // The order keeps the block's activation peak at xs + n + the attention output + the fused input (8 x
    // [S, D] f32), where computing the MLP first held its whole [S, 4D] hidden layer next to them (11 x):
    // attention first, then the MLP a block of rows at a time, straight into the fused projection's input.
    Tensor attn = new_activation(be, {B, S, D}, "single attention");
    {
        Tensor q = blk.to_q.apply(be, n), k = blk.to_k.apply(be, n);
        const Tensor v = blk.to_v.apply(be, n);
        qk_norm(be, q, blk.norm_q);
        qk_norm(be, k, blk.norm_k);
        // RoPE on the video tokens only.
        Tensor qv = q.view({B, S, heads, hd}).slice(1, 0, n_video), kv = k.view({B, S, heads, hd}).slice(1, 0, n_video);
        be.rope_interleaved(qv, rope_cos, rope_sin);
        be.rope_interleaved(kv, rope_cos, rope_sin);
        Tensor out = heads_view(attn, heads, hd);
        be.attention(heads_view(q, heads, hd), heads_view(k, heads, hd), heads_view(v, heads, hd), out, mask,
                     float(1.0 / std::sqrt(double(hd))));
    }
    // [attention output, MLP hidden] side by side, the input of the fused projection.
    Tensor fused = new_activation(be, {B, S, D + M}, "single fused");
    {
        Tensor dst = fused.slice(2, 0, D);
        be.copy(attn, dst);
    }
    attn = Tensor();
    const int64_t rows = std::max<int64_t>(1, kMlpChunkBytes / (M * int64_t(sizeof(float))));
    for (int64_t b = 0; b < B; ++b)
        for (int64_t r0 = 0; r0 < S; r0 += rows) {
            const int64_t r1 = std::min(S, r0 + rows);
            Tensor hidden = blk.proj_mlp.apply(be, n.select(0, b).slice(0, r0, r1));  // [r1 - r0, M]
            be.gelu_tanh(hidden, hidden);
            Tensor dst = fused.select(0, b).slice(0, r0, r1).slice(1, D, D + M);
            be.copy(hidden, dst);
        }
    n = Tensor();
    const Tensor proj = blk.proj_out.apply(be, fused);
    be.gated_residual(xs, proj, m[2]);
}

// ---------------------------------------------------------------------------------------------------------
// The whole forward pass.

Tensor HunyuanVideoTransformer::forward(Backend& be, const TransformerInputs& in, const IntermediateHook& hook,
                                        BlockWeightProvider* weights) const {
    const auto& c = config_;
    const int64_t D = c.inner_dim();
    // Inputs: checked against the config, named in errors.
    SR_THROW_IF(!in.hidden_states.defined() || in.hidden_states.rank() != 5,
                "hidden_states must be [B, C, F, H, W], got {}",
                in.hidden_states.defined() ? in.hidden_states.describe() : "nothing");
    const int64_t B = in.hidden_states.dim(0), C = in.hidden_states.dim(1), F = in.hidden_states.dim(2);
    const int64_t H = in.hidden_states.dim(3), W = in.hidden_states.dim(4);
    SR_THROW_IF(C != c.in_channels, "hidden_states has {} channels but the model takes in_channels = {}", C,
                c.in_channels);
    SR_THROW_IF(
        B < 1 || F < 1 || F % c.patch_size_t != 0 || H % c.patch_size != 0 || W % c.patch_size != 0 || H < 1 || W < 1,
        "hidden_states {}: frames must be a positive multiple of {} and height/width positive multiples of {}",
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

    const int64_t Fp = F / c.patch_size_t, Hp = H / c.patch_size, Wp = W / c.patch_size, N = Fp * Hp * Wp, S = N + L;
    std::vector<float> mask(size_t(B * L));
    const Tensor mask_host = to_host(be, in.encoder_attention_mask);  // read on the host: it steers the masks
    for (int64_t i = 0; i < B * L; ++i) mask[size_t(i)] = mask_host.item_as_float(i);

    // 1. RoPE tables for the video tokens.
    const auto [rope_cos_host, rope_sin_host] = hunyuan_rope_tables(c.rope_axes_dim, c.rope_theta, Fp, Hp, Wp);
    if (hook) hook("rope.freqs_cos", rope_cos_host), hook("rope.freqs_sin", rope_sin_host);
    const Tensor rope_cos = to_device(be, rope_cos_host, "rope cos"),
                 rope_sin = to_device(be, rope_sin_host, "rope sin");

    // 2. Conditioning: temb = timestep MLP + guidance MLP + pooled-text MLP, all from 256-dim sinusoids.
    const Tensor timestep = input_on_device(be, in.timestep, "timestep");
    Tensor t_proj = new_activation(be, {B, 256}, "timestep sinusoid");
    be.timestep_embedding(timestep, 256, /*flip_sin_to_cos=*/true, /*shift=*/0.0f, 10000.0f, t_proj);
    // Block 0 (embedders and refiner), from the provider when there is one.
    const Embedders emb = weights ? rebind(embedders_, weights->acquire(0)) : embedders_;
    Tensor temb = run_mlp(be, emb.timestep_embedder, t_proj);
    if (c.guidance_embeds) {
        Tensor g_proj = new_activation(be, {B, 256}, "guidance sinusoid");
        be.timestep_embedding(input_on_device(be, in.guidance, "guidance"), 256, true, 0.0f, 10000.0f, g_proj);
        be.add(temb, run_mlp(be, emb.guidance_embedder, g_proj));
    }
    be.add(temb, run_mlp(be, emb.text_embedder, input_on_device(be, in.pooled_projections, "pooled_projections")));
    if (hook) hook("time_text_embed", to_host(be, temb));
    const Tensor temb_silu = silu(be, temb);  // every adaLN linear takes silu(temb)

    Tensor x = new_activation(be, {B, N, D}, "video tokens");
    be.patch_embed_3d(input_on_device(be, in.hidden_states, "hidden_states"), emb.x_embedder.weight,
                      &emb.x_embedder.bias, x);
    if (hook) hook("x_embedder", to_host(be, x));

    Tensor ctx = refine_text(be, emb, to_host_f32(be, in.encoder_hidden_states), t_proj, mask, hook);
    if (weights) weights->release(0);
    if (hook) hook("context_embedder", to_host(be, ctx));

    // 3. Joint attention mask: row b sees the N video keys and the first sum(mask[b]) text keys (the
    //    reference counts valid tokens, so padding must be on the right).
    AttentionMask joint_mask;
    for (int64_t b = 0; b < B; ++b) {
        int64_t valid = 0;
        for (int64_t l = 0; l < L; ++l) valid += int64_t(mask[size_t(b * L + l)]);  // sum(dtype=int) truncates
        joint_mask.kv_len.push_back(N + valid);
    }

    // 4. Dual-stream, then single-stream blocks.
    // Weight block numbering: 0 embedders, 1..n_dual dual blocks, then single blocks, then the head.
    const size_t n_dual = dual_blocks_.size(), n_single = single_blocks_.size();
    for (size_t i = 0; i < n_dual; ++i) {
        if (weights) {
            const DualBlock blk = rebind(dual_blocks_[i], weights->acquire(1 + i));
            dual_block(be, blk, x, ctx, temb_silu, rope_cos, rope_sin, joint_mask);
            weights->release(1 + i);
        } else {
            dual_block(be, dual_blocks_[i], x, ctx, temb_silu, rope_cos, rope_sin, joint_mask);
        }
        if (hook) {
            hook(fmt::format("transformer_blocks.{}.hidden_states", i), to_host(be, x));
            hook(fmt::format("transformer_blocks.{}.encoder_hidden_states", i), to_host(be, ctx));
        }
    }
    Tensor xs = new_activation(be, {B, S, D}, "joint sequence");
    concat(be, {x, ctx}, 1, xs);
    x = ctx = Tensor();
    for (size_t i = 0; i < n_single; ++i) {
        if (weights) {
            const SingleBlock blk = rebind(single_blocks_[i], weights->acquire(1 + n_dual + i));
            single_block(be, blk, xs, N, temb_silu, rope_cos, rope_sin, joint_mask);
            weights->release(1 + n_dual + i);
        } else {
            single_block(be, single_blocks_[i], xs, N, temb_silu, rope_cos, rope_sin, joint_mask);
        }
        if (hook) {
            hook(fmt::format("single_transformer_blocks.{}.hidden_states", i), to_host(be, xs.slice(1, 0, N)));
            hook(fmt::format("single_transformer_blocks.{}.encoder_hidden_states", i), to_host(be, xs.slice(1, N, S)));
        }
    }
    x = contiguous(be, xs.slice(1, 0, N), "video tokens");
    xs = Tensor();

    // 5. Output: AdaLayerNormContinuous (its linear yields scale first, then shift), projection, unpatchify.
    const size_t head_block = 1 + n_dual + n_single;
    const OutputHead head = weights ? rebind(head_, weights->acquire(head_block)) : head_;
    const auto so = chunk_rows(head.norm_out.apply(be, temb_silu), 2);
    Tensor normed = new_activation(be, x.shape(), "norm_out");
    be.layer_norm(x, nullptr, nullptr, 1e-6f, normed);
    be.modulate(normed, /*shift=*/so[1], /*scale=*/so[0], normed);
    if (hook) hook("norm_out", to_host(be, normed));
    const Tensor proj = head.proj_out.apply(be, normed);  // [B, N, Cout*pt*p*p]
    if (weights) weights->release(head_block);
    if (hook) hook("proj_out", to_host(be, proj));

    const int64_t p = c.patch_size, pt = c.patch_size_t, Co = c.out_channels;
    Tensor out = new_activation(be, {B, Co, F, H, W}, "transformer output");
    // (B, F', H', W', Co, pt, p, p) -> (B, Co, F', pt, H', p, W', p)
    const Tensor src = proj.view({B, Fp, Hp, Wp, Co, pt, p, p}).permute({0, 4, 1, 5, 2, 6, 3, 7});
    Tensor dst = out.view({B, Co, Fp, pt, Hp, p, Wp, p});
    be.copy(src, dst);
    return out;
}

}  // namespace sr
