// Attention on the CUDA backend: checks as the CPU backend's (backends/cpu/attention.cpp), then per batch row
// one of three paths (cudnn_plan.h, choose_attention_path): f32 (the parity path) runs the f32 flash kernel
// (attention_f32.cu, any head dim); bf16 runs cuDNN's fused SDPA (cudnn_attention.cpp) where it applies, else
// the bf16 tensor-core kernel (attention_bf16.cu). Both bf16 paths first round q, k, v into contiguous bf16
// [heads, L, D] buffers a group of heads at a time (the scratch bound); cuDNN also writes a bf16 output that
// is widened into `out`.
#include <algorithm>

#include "backends/cuda/cuda_backend.h"
#include "backends/cuda/cuda_check.h"
#include "backends/cuda/kernels.h"
#include "backends/op_checks.h"

namespace sr {

namespace {

// bf16 copies of q, k and v (and cuDNN's output) for one group of heads: at most this much scratch (at 51,456
// tokens a head's three copies are 40 MB, so groups of 6 heads), enough for each launch to fill the GPU.
constexpr int64_t kBf16ScratchBytes = int64_t(CudaBackend::kAttentionScratchBytes);

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
    const auto& [q, k, v, out, mask, scale] = op;
    check_here(q, "attention q");
    check_here(k, "attention k");
    check_here(v, "attention v");
    check_here(out, "attention out");
    const AttentionShape shape = check_attention(q, k, v, out, mask);
    const int64_t B = shape.B, H = shape.H, Lq = shape.Lq, Lk = shape.Lk, D = shape.D;
    SR_ASSERT(D <= cuda::kAttentionF32MaxD, "attention head dim {} above the CUDA kernels' {}", D,
              cuda::kAttentionF32MaxD);
    // A dense mask built on the host (the token refiner's) is uploaded here; it is small ([B, 256, 256]).
    const Tensor dense = mask.dense.defined() && mask.dense.device() == Device::cpu() ? upload(mask.dense) : mask.dense;
    if (dense.defined()) {
        check_here(dense, "attention mask");  // its shape and dtype: check_attention
    }
    if (B == 0 || H == 0 || Lq == 0 || D == 0) return;
    make_current();

    const AttentionPath path = attention_path(D, dense.defined(), mask.causal);
    const bool packed = path != AttentionPath::F32Kernel;                            // bf16 copies of q, k, v
    SR_ASSERT(!packed || scale > 0, "bf16 attention with softmax scale {}", scale);  // the kernel's precondition
    const bool use_cudnn = path == AttentionPath::CudnnSdpa;
    Tensor q16, k16, v16, o16;
    int64_t heads_per_group = H;
    if (packed) {
        heads_per_group = attention_heads_per_group(H, Lq, Lk, D, kBf16ScratchBytes, use_cudnn);
        q16 = Tensor::empty({heads_per_group * Lq * D}, DType::BF16, memory_, "attention q (bf16)");
        k16 = Tensor::empty({heads_per_group * Lk * D}, DType::BF16, memory_, "attention k (bf16)");
        v16 = Tensor::empty({heads_per_group * Lk * D}, DType::BF16, memory_, "attention v (bf16)");
        if (use_cudnn) o16 = Tensor::empty({heads_per_group * Lq * D}, DType::BF16, memory_, "attention out (bf16)");
    }
    const auto* qd = static_cast<const float*>(q.raw_data());
    const auto* kd = static_cast<const float*>(k.raw_data());
    const auto* vd = static_cast<const float*>(v.raw_data());
    auto* od = static_cast<float*>(out.raw_data());
    // Two floats per store where every output row start is 8-byte aligned (batch, head and token strides even).
    const bool out_pairs = reinterpret_cast<uintptr_t>(od) % 8 == 0 && out.stride(0) % 2 == 0 &&
                           out.stride(1) % 2 == 0 && out.stride(2) % 2 == 0;

    // The f32 kernel on heads [h0, h0 + hc) of batch row b.
    auto run_f32 = [&](int64_t b, int64_t h0, int64_t hc, const cuda::AttentionMaskArgs& m) {
        cuda::AttentionF32Args a{};
        a.q = qd + b * q.stride(0) + h0 * q.stride(1);
        a.k = kd + b * k.stride(0) + h0 * k.stride(1);
        a.v = vd + b * v.stride(0) + h0 * v.stride(1);
        a.out = od + b * out.stride(0) + h0 * out.stride(1);
        a.q_sh = q.stride(1);
        a.q_sl = q.stride(2);
        a.k_sh = k.stride(1);
        a.k_sl = k.stride(2);
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
        if (!packed) {
            run_f32(b, 0, H, m);
            continue;
        }
        // cuDNN sees only the valid keys (a prefix): the key and value copies are cut to them. A row without
        // any valid key is left to the kernel, which writes zeros as the CPU does.
        const int64_t kv_len = std::clamp<int64_t>(m.kv_len, 0, Lk);
        const bool row_cudnn = use_cudnn && kv_len > 0;
        const int64_t k_rows = row_cudnn ? kv_len : Lk;
        auto* q16d = static_cast<uint16_t*>(q16.raw_data());
        auto* k16d = static_cast<uint16_t*>(k16.raw_data());
        auto* v16d = static_cast<uint16_t*>(v16.raw_data());
        for (int64_t h0 = 0; h0 < H; h0 += heads_per_group) {
            const int64_t hc = std::min(heads_per_group, H - h0);
            float* o_group = od + b * out.stride(0) + h0 * out.stride(1);
            cuda::to_bf16_heads(qd + b * q.stride(0) + h0 * q.stride(1), q.stride(1), q.stride(2), q16d, hc, Lq, D,
                                stream_);
            cuda::to_bf16_heads(kd + b * k.stride(0) + h0 * k.stride(1), k.stride(1), k.stride(2), k16d, hc, k_rows, D,
                                stream_);
            cuda::to_bf16_heads(vd + b * v.stride(0) + h0 * v.stride(1), v.stride(1), v.stride(2), v16d, hc, k_rows, D,
                                stream_);
            SR_CUDA_CHECK_LAUNCH();
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
                cuda::strided_copy(o16.raw_data(), cuda::KType::BF16, o_group, cuda::KType::F32, l, stream_);
                SR_CUDA_CHECK_LAUNCH();
                continue;
            }
            if (D != cuda::kAttentionBf16HeadDim) {  // cuDNN declined a head dim the bf16 kernel lacks
                run_f32(b, h0, hc, m);
                continue;
            }
            if (row_cudnn && k_rows != Lk) {
                // No cuDNN plan for this shape (remembered: later calls go straight to the kernel): the kernel
                // needs every key row's copy (it masks the padding itself).
                cuda::to_bf16_heads(kd + b * k.stride(0) + h0 * k.stride(1), k.stride(1), k.stride(2), k16d, hc, Lk, D,
                                    stream_);
                cuda::to_bf16_heads(vd + b * v.stride(0) + h0 * v.stride(1), v.stride(1), v.stride(2), v16d, hc, Lk, D,
                                    stream_);
                SR_CUDA_CHECK_LAUNCH();
            }
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
            SR_CUDA_CHECK(cuda::attention_bf16(a, stream_));
            SR_CUDA_CHECK_LAUNCH();
        }
    }
}

}  // namespace sr
