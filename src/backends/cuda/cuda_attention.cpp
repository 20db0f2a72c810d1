// Attention on the CUDA backend: checks as the CPU backend's (backends/cpu/attention.cpp), then per batch row
// either the f32 flash kernel (attention_f32.cu; any head dim, the parity path) or, with
// set_attention_precision(BF16) and head dim 128, the bf16 tensor-core kernel (attention_bf16.cu), whose
// operands are first rounded into contiguous bf16 [heads, L, 128] buffers a group of heads at a time.
#include <algorithm>

#include "backends/cuda/cuda_backend.h"
#include "backends/cuda/cuda_check.h"
#include "backends/cuda/kernels.h"
#include "backends/op_checks.h"

namespace sr {

namespace {

// bf16 copies of q, k and v for one group of heads: at most this much scratch (at 51,456 tokens a head's three
// copies are 40 MB, so groups of 6 heads), enough for each kernel launch to fill the GPU many times over.
constexpr int64_t kBf16ScratchBytes = int64_t(CudaBackend::kAttentionScratchBytes);

}  // namespace

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

    const bool tensor_cores = attention_precision_ == GemmPrecision::BF16 && D == cuda::kAttentionBf16HeadDim;
    Tensor q16, k16, v16;
    int64_t heads_per_group = H;
    if (tensor_cores) {
        const int64_t per_head = (Lq + 2 * Lk) * D * 2;
        heads_per_group = std::clamp<int64_t>(kBf16ScratchBytes / std::max<int64_t>(per_head, 1), 1, H);
        q16 = Tensor::empty({heads_per_group * Lq * D}, DType::BF16, memory_, "attention q (bf16)");
        k16 = Tensor::empty({heads_per_group * Lk * D}, DType::BF16, memory_, "attention k (bf16)");
        v16 = Tensor::empty({heads_per_group * Lk * D}, DType::BF16, memory_, "attention v (bf16)");
    }
    const auto* qd = static_cast<const float*>(q.raw_data());
    const auto* kd = static_cast<const float*>(k.raw_data());
    const auto* vd = static_cast<const float*>(v.raw_data());
    auto* od = static_cast<float*>(out.raw_data());
    // Two floats per store where every output row start is 8-byte aligned (batch, head and token strides even).
    const bool out_pairs = reinterpret_cast<uintptr_t>(od) % 8 == 0 && out.stride(0) % 2 == 0 &&
                           out.stride(1) % 2 == 0 && out.stride(2) % 2 == 0;

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
        if (!tensor_cores) {
            cuda::AttentionF32Args a{};
            a.q = qd + b * q.stride(0);
            a.k = kd + b * k.stride(0);
            a.v = vd + b * v.stride(0);
            a.out = od + b * out.stride(0);
            a.q_sh = q.stride(1);
            a.q_sl = q.stride(2);
            a.k_sh = k.stride(1);
            a.k_sl = k.stride(2);
            a.v_sh = v.stride(1);
            a.v_sl = v.stride(2);
            a.o_sh = out.stride(1);
            a.o_sl = out.stride(2);
            a.H = H;
            a.Lq = Lq;
            a.Lk = Lk;
            a.D = D;
            a.scale = scale;
            a.mask = m;
            SR_CUDA_CHECK(cuda::attention_f32(a, stream_));
            SR_CUDA_CHECK_LAUNCH();
            continue;
        }
        auto* q16d = static_cast<uint16_t*>(q16.raw_data());
        auto* k16d = static_cast<uint16_t*>(k16.raw_data());
        auto* v16d = static_cast<uint16_t*>(v16.raw_data());
        for (int64_t h0 = 0; h0 < H; h0 += heads_per_group) {
            const int64_t hc = std::min(heads_per_group, H - h0);
            cuda::to_bf16_heads(qd + b * q.stride(0) + h0 * q.stride(1), q.stride(1), q.stride(2), q16d, hc, Lq, D,
                                stream_);
            cuda::to_bf16_heads(kd + b * k.stride(0) + h0 * k.stride(1), k.stride(1), k.stride(2), k16d, hc, Lk, D,
                                stream_);
            cuda::to_bf16_heads(vd + b * v.stride(0) + h0 * v.stride(1), v.stride(1), v.stride(2), v16d, hc, Lk, D,
                                stream_);
            SR_CUDA_CHECK_LAUNCH();
            cuda::AttentionBf16Args a{};
            a.q = q16d;
            a.k = k16d;
            a.v = v16d;
            a.out = od + b * out.stride(0) + h0 * out.stride(1);
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
