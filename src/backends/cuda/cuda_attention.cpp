// Attention on the CUDA backend: checks as the CPU backend's (backends/cpu/attention.cpp), then per batch row
// one of three paths (cudnn_plan.h, choose_attention_path): f32 (the parity path) runs the f32 flash kernel
// (attention_f32.cu, any head dim); bf16 runs cuDNN's fused SDPA (cudnn_attention.cpp) where it applies, else
// the bf16 tensor-core kernel (attention_bf16.cu). Both bf16 paths first round q, k, v into contiguous bf16
// [heads, L, D] buffers a group of heads at a time (the scratch bound); cuDNN also writes a bf16 output that
// is widened into `out`.
//
// An op with a QkNormRope (the transformer's attention on raw q/k projections) has q and k normalized and rotated
// on the way: on the bf16 paths with head dim 128 by the fused kernel (qk_norm_rope.cu), which writes the bf16
// copies directly in place of the plain rounding; otherwise (the f32 parity path, other head dims, unaligned
// views) by the separate rms_norm and rope kernels into f32 scratch, a group of heads at a time, which then
// stands in for q and k.
//
// bf16 activations (ops.h, kTakesBf16Activations): the bf16 paths with head dim 128 read bf16 q, k, v as they
// are (the packing copies them, the fused prologue widens them) and round the output once into bf16 (the
// kernel's store, or cuDNN's bf16 output copied over); the f32 kernel and the other head dims run one batch
// row at a time on f32 copies of it, the output rounded back (not the transformer's path at real size, whose
// bf16 run has head dim 128 and bf16 attention).
#include <algorithm>
#include <array>

#include "backends/cuda/cuda_backend.h"
#include "backends/cuda/cuda_check.h"
#include "backends/cuda/kernels.h"
#include "backends/op_checks.h"

namespace sr {

namespace {

// bf16 copies of q, k and v (and cuDNN's output) for one group of heads: at most this much scratch (at 51,456
// tokens a head's three copies are 40 MB, so groups of 6 heads), enough for each launch to fill the GPU.
constexpr int64_t kBf16ScratchBytes = int64_t(CudaBackend::kAttentionScratchBytes);

cuda::KType ktype(DType t) {
    return static_cast<cuda::KType>(static_cast<int>(t));
}

// The fused kernel's arguments for heads [h0, h0 + hc) of batch row b of x ([B, H, L, 128] view), rows [0, L).
cuda::QkNormRopeArgs qk_args(const Tensor& x, int64_t b, int64_t h0, int64_t hc, int64_t L,
                             const std::array<const Tensor*, 2>& w, const QkNormRope& qk, uint16_t* dst) {
    cuda::QkNormRopeArgs a{};
    a.src = static_cast<const char*>(x.raw_data()) + size_t(b * x.stride(0) + h0 * x.stride(1)) * dtype_size(x.dtype());
    a.src_type = ktype(x.dtype());
    a.s_sh = x.stride(1);
    a.s_sl = x.stride(2);
    a.dst = dst;
    a.H = hc;
    a.L = L;
    a.n_rope = std::min(qk.n_rope, L);
    a.w0 = w[0]->raw_data();
    a.w1 = w[1]->raw_data();
    a.w0_type = ktype(w[0]->dtype());
    a.w1_type = ktype(w[1]->dtype());
    a.cos = qk.n_rope > 0 ? static_cast<const float*>(qk.cos->raw_data()) : nullptr;
    a.sin = qk.n_rope > 0 ? static_cast<const float*>(qk.sin->raw_data()) : nullptr;
    a.eps = qk.eps;
    return a;
}

// Whether every head group of x can take the fused kernel (its alignment and size rules, kernels.h).
// The output buffers come from the allocator (256-byte aligned), so only the source side is in question here.
bool qk_fusable(const Tensor& x, const std::array<const Tensor*, 2>& w, const QkNormRope& qk) {
    if (x.dim(3) != cuda::kAttentionBf16HeadDim || x.stride(0) % 4 != 0) return false;
    return cuda::qk_norm_rope_fits(qk_args(x, 0, 0, x.dim(1), x.dim(2), w, qk, nullptr));
}

}  // namespace

AttentionPath CudaBackend::attention_path(int64_t head_dim, bool dense_mask, bool causal) {
    AttentionCase c;
    c.bf16 = attention_precision_ == GemmPrecision::BF16;
    c.head_dim = head_dim;
    c.dense_mask = dense_mask;
    c.causal = causal;
    // Only asked (and cuDNN only loaded) when it could be chosen.
    c.cudnn_usable = c.bf16 && attention_impl_ == CudaImpl::Cudnn && !dense_mask && !causal && cudnn_usable();
    return choose_attention_path(attention_impl_, c);
}

void CudaBackend::exec(const AttentionOp& op) {
    const auto& [q, k, v, out, mask, scale, qk] = op;
    check_here(q, "attention q");
    check_here(k, "attention k");
    check_here(v, "attention v");
    check_here(out, "attention out");
    const AttentionShape shape = check_attention(q, k, v, out, mask);
    const int64_t B = shape.B, H = shape.H, Lq = shape.Lq, Lk = shape.Lk, D = shape.D;
    SR_ASSERT(D <= cuda::kAttentionF32MaxD, "attention head dim {} above the CUDA kernels' {}", D,
              cuda::kAttentionF32MaxD);
    if (qk) {
        check_qk_norm_rope(*qk, shape);
        for (const Tensor* w : {qk->q_weight[0], qk->q_weight[1], qk->k_weight[0], qk->k_weight[1]})
            check_here(*w, "attention qk norm weight");
        if (qk->n_rope > 0) {
            check_here(*qk->cos, "attention rope cos");
            check_here(*qk->sin, "attention rope sin");
        }
    }
    // A dense mask built on the host (the token refiner's) is uploaded here; it is small ([B, 256, 256]).
    const Tensor dense = mask.dense.defined() && mask.dense.device() == Device::cpu() ? upload(mask.dense) : mask.dense;
    if (dense.defined()) {
        check_here(dense, "attention mask");  // its shape and dtype: check_attention
    }
    if (B == 0 || H == 0 || Lq == 0 || D == 0) return;
    make_current();

    const AttentionPath path = attention_path(D, dense.defined(), mask.causal);
    const bool bf16_act =
        q.dtype() != DType::F32 || k.dtype() != DType::F32 || v.dtype() != DType::F32 || out.dtype() != DType::F32;
    if (bf16_act && (path == AttentionPath::F32Kernel || D != cuda::kAttentionBf16HeadDim)) {
        // One batch row at a time on f32 copies (see the top of the file), its output rounded back.
        for (int64_t b = 0; b < B; ++b) {
            auto widened = [&](const Tensor& t, const char* what) {
                Tensor w = Tensor::empty(t.slice(0, b, b + 1).shape(), DType::F32, memory_, what);
                copy(t.slice(0, b, b + 1), w);
                return w;
            };
            const Tensor qb = widened(q, "attention q (f32)"), kb = widened(k, "attention k (f32)");
            const Tensor vb = widened(v, "attention v (f32)");
            Tensor ob = Tensor::empty(qb.shape(), DType::F32, memory_, "attention out (f32)");
            AttentionMask mb;
            if (!mask.kv_len.empty()) mb.kv_len = {mask.kv_len[size_t(b)]};
            if (dense.defined()) mb.dense = dense.slice(0, b, b + 1);
            mb.causal = mask.causal;
            exec(AttentionOp{qb, kb, vb, ob, mb, scale, qk});
            Tensor ob_out = out.slice(0, b, b + 1);
            copy(ob, ob_out);
        }
        return;
    }
    const bool packed = path != AttentionPath::F32Kernel;                            // bf16 copies of q, k, v
    SR_ASSERT(!packed || scale > 0, "bf16 attention with softmax scale {}", scale);  // the kernel's precondition
    const bool use_cudnn = path == AttentionPath::CudnnSdpa;
    // The QK prologue fused into the bf16 packing, or done apart in f32 scratch (see the top of the file).
    const bool fuse_qk = qk && packed && qk_fusable(q, qk->q_weight, *qk) && qk_fusable(k, qk->k_weight, *qk);
    const bool f32_qk = qk && !fuse_qk;
    Tensor q16, k16, v16, o16, qn, kn, stage;
    int64_t heads_per_group = H;
    if (packed || f32_qk)
        heads_per_group = attention_heads_per_group(H, Lq, Lk, D, kBf16ScratchBytes, use_cudnn, packed, f32_qk);
    if (packed) {
        q16 = Tensor::empty({heads_per_group * Lq * D}, DType::BF16, memory_, "attention q (bf16)");
        k16 = Tensor::empty({heads_per_group * Lk * D}, DType::BF16, memory_, "attention k (bf16)");
        v16 = Tensor::empty({heads_per_group * Lk * D}, DType::BF16, memory_, "attention v (bf16)");
        if (use_cudnn) o16 = Tensor::empty({heads_per_group * Lq * D}, DType::BF16, memory_, "attention out (bf16)");
    }
    if (f32_qk) {
        qn = Tensor::empty({heads_per_group * Lq * D}, DType::F32, memory_, "attention q (normalized)");
        kn = Tensor::empty({heads_per_group * Lk * D}, DType::F32, memory_, "attention k (normalized)");
        stage = Tensor::empty({heads_per_group * std::max(Lq, Lk) * D}, DType::F32, memory_, "attention qk staging");
    }
    // Element b * stride(0) + h0 * stride(1) of x (f32, or bf16 on the bf16 paths), as a byte address.
    auto at = [](const Tensor& x, int64_t b, int64_t h0) -> const void* {
        return static_cast<const char*>(x.raw_data()) +
               size_t(b * x.stride(0) + h0 * x.stride(1)) * dtype_size(x.dtype());
    };
    const bool out_f32 = out.dtype() == DType::F32;
    // Two floats per store where every output row start is 8-byte aligned (batch, head and token strides even).
    const bool out_pairs = out_f32 && reinterpret_cast<uintptr_t>(out.raw_data()) % 8 == 0 && out.stride(0) % 2 == 0 &&
                           out.stride(1) % 2 == 0 && out.stride(2) % 2 == 0;
    // Where a group's q or k values come from: the op's view (f32 or bf16), or the normalized f32 scratch.
    struct Source {
        const void* p;
        cuda::KType type;
        int64_t sh, sl;
        const float* f32() const {  // the f32 kernel's operand (only f32 activations reach it)
            SR_ASSERT(type == cuda::KType::F32, "the f32 attention kernel on bf16 values");
            return static_cast<const float*>(p);
        }
    };
    auto view_source = [&](const Tensor& x, int64_t b, int64_t h0) {
        return Source{at(x, b, h0), ktype(x.dtype()), x.stride(1), x.stride(2)};
    };
    // The unfused prologue on heads [h0, h0 + hc) of batch row b of x: gathered into `stage` as [L, hc, D] rows
    // (so that each segment's rows are contiguous), RMS-normalized into dst with each segment's weight, then the
    // first n_rope tokens rotated in place.
    auto normalize_f32 = [&](const Tensor& x, const std::array<const Tensor*, 2>& w, int64_t b, int64_t h0, int64_t hc,
                             Tensor& dst) {
        const int64_t L = x.dim(2);
        const Source src = view_source(x, b, h0);
        auto* st = static_cast<float*>(stage.raw_data());
        auto* dd = static_cast<float*>(dst.raw_data());
        cuda::StridedLayout l;
        l.rank = 3;
        l.shape[0] = hc;
        l.shape[1] = L;
        l.shape[2] = D;
        l.src_stride[0] = src.sh;
        l.src_stride[1] = src.sl;
        l.src_stride[2] = 1;
        l.dst_stride[0] = D;
        l.dst_stride[1] = hc * D;
        l.dst_stride[2] = 1;
        cuda::strided_copy(src.p, src.type, st, cuda::KType::F32, l, stream_);
        const int64_t rotated_rows = qk->n_rope * hc;
        cuda::rms_norm(st, dd, rotated_rows, D, w[0]->raw_data(), ktype(w[0]->dtype()), qk->eps, stream_);
        cuda::rms_norm(st + rotated_rows * D, dd + rotated_rows * D, L * hc - rotated_rows, D, w[1]->raw_data(),
                       ktype(w[1]->dtype()), qk->eps, stream_);
        if (qk->n_rope > 0)
            cuda::rope(dd, 0, hc * D, D, 1, qk->n_rope, hc, D, static_cast<const float*>(qk->cos->raw_data()),
                       static_cast<const float*>(qk->sin->raw_data()), true, stream_);
        SR_CUDA_CHECK_LAUNCH();
        return Source{dd, cuda::KType::F32, D, hc * D};
    };

    // The f32 kernel on heads [h0, h0 + hc) of batch row b.
    auto run_f32 = [&](int64_t b, int64_t h0, int64_t hc, const cuda::AttentionMaskArgs& m, Source qs, Source ks) {
        SR_ASSERT(v.dtype() == DType::F32 && out_f32, "the f32 attention kernel on bf16 values");
        cuda::AttentionF32Args a{};
        a.q = qs.f32();
        a.k = ks.f32();
        a.v = static_cast<const float*>(at(v, b, h0));
        a.out = static_cast<float*>(const_cast<void*>(at(out, b, h0)));
        a.q_sh = qs.sh;
        a.q_sl = qs.sl;
        a.k_sh = ks.sh;
        a.k_sl = ks.sl;
        a.v_sh = v.stride(1);
        a.v_sl = v.stride(2);
        a.o_sh = out.stride(1);
        a.o_sl = out.stride(2);
        a.H = hc;
        a.Lq = Lq;
        a.Lk = Lk;
        a.D = D;
        a.scale = scale;
        a.mask = m;
        SR_CUDA_CHECK(cuda::attention_f32(a, stream_));
        SR_CUDA_CHECK_LAUNCH();
    };

    for (int64_t b = 0; b < B; ++b) {
        cuda::AttentionMaskArgs m;
        m.kv_len = mask.kv_len.empty() ? Lk : mask.kv_len[size_t(b)];
        m.causal = mask.causal;
        m.causal_offset = Lk - Lq;  // query i sees keys j <= i + (Lk - Lq)
        if (dense.defined()) {
            m.dense =
                static_cast<const char*>(dense.raw_data()) + size_t(b * dense.stride(0)) * dtype_size(dense.dtype());
            m.dense_is_f32 = dense.dtype() == DType::F32;
            m.m_sq = dense.stride(1);
            m.m_sk = dense.stride(2);
        }
        // cuDNN sees only the valid keys (a prefix): the key and value copies are cut to them. A row without
        // any valid key is left to the kernel, which writes zeros as the CPU does.
        const int64_t kv_len = std::clamp<int64_t>(m.kv_len, 0, Lk);
        const bool row_cudnn = use_cudnn && kv_len > 0;
        const int64_t k_rows = row_cudnn ? kv_len : Lk;
        for (int64_t h0 = 0; h0 < H; h0 += heads_per_group) {
            const int64_t hc = std::min(heads_per_group, H - h0);
            Source qs = view_source(q, b, h0), ks = view_source(k, b, h0);
            if (f32_qk) {
                qs = normalize_f32(q, qk->q_weight, b, h0, hc, qn);
                ks = normalize_f32(k, qk->k_weight, b, h0, hc, kn);
            }
            if (!packed) {
                run_f32(b, h0, hc, m, qs, ks);
                continue;
            }
            auto* q16d = static_cast<uint16_t*>(q16.raw_data());
            auto* k16d = static_cast<uint16_t*>(k16.raw_data());
            auto* v16d = static_cast<uint16_t*>(v16.raw_data());
            // q and the first `rows` keys and values of the group rounded to bf16 (q and k through the fused
            // prologue when it applies).
            auto pack_kv = [&](int64_t rows) {
                if (fuse_qk)
                    cuda::qk_norm_rope_bf16(qk_args(k, b, h0, hc, rows, qk->k_weight, *qk, k16d), stream_);
                else
                    cuda::to_bf16_heads(ks.p, ks.type, ks.sh, ks.sl, k16d, hc, rows, D, stream_);
                cuda::to_bf16_heads(at(v, b, h0), ktype(v.dtype()), v.stride(1), v.stride(2), v16d, hc, rows, D,
                                    stream_);
                SR_CUDA_CHECK_LAUNCH();
            };
            if (fuse_qk)
                cuda::qk_norm_rope_bf16(qk_args(q, b, h0, hc, Lq, qk->q_weight, *qk, q16d), stream_);
            else
                cuda::to_bf16_heads(qs.p, qs.type, qs.sh, qs.sl, q16d, hc, Lq, D, stream_);
            pack_kv(k_rows);
            void* o_group = const_cast<void*>(at(out, b, h0));
            if (row_cudnn &&
                cudnn_sdpa(SdpaPlanKey{hc, Lq, kv_len, kv_len, D}, q16d, k16d, v16d, o16.raw_data(), scale)) {
                // The bf16 output widened into the op's f32 output view [hc, Lq, D].
                cuda::StridedLayout l;
                l.rank = 3;
                l.shape[0] = hc;
                l.shape[1] = Lq;
                l.shape[2] = D;
                l.src_stride[0] = Lq * D;
                l.src_stride[1] = D;
                l.src_stride[2] = 1;
                l.dst_stride[0] = out.stride(1);
                l.dst_stride[1] = out.stride(2);
                l.dst_stride[2] = 1;
                cuda::strided_copy(o16.raw_data(), cuda::KType::BF16, o_group, ktype(out.dtype()), l, stream_);
                SR_CUDA_CHECK_LAUNCH();
                continue;
            }
            if (D != cuda::kAttentionBf16HeadDim) {  // cuDNN declined a head dim the bf16 kernel lacks
                run_f32(b, h0, hc, m, qs, ks);
                continue;
            }
            // No cuDNN plan for this shape (remembered: later calls go straight to the kernel): the kernel needs
            // every key row's copy (it masks the padding itself).
            if (row_cudnn && k_rows != Lk) pack_kv(Lk);
            cuda::AttentionBf16Args a{};
            a.q = q16d;
            a.k = k16d;
            a.v = v16d;
            a.out = o_group;
            a.o_sh = out.stride(1);
            a.o_sl = out.stride(2);
            a.H = hc;
            a.Lq = Lq;
            a.Lk = Lk;
            a.scale = scale;
            a.mask = m;
            a.out_pairs = out_pairs;
            a.out_bf16 = !out_f32;
            SR_CUDA_CHECK(cuda::attention_bf16(a, stream_));
            SR_CUDA_CHECK_LAUNCH();
        }
    }
}

}  // namespace sr
