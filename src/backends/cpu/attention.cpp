// Flash-style attention on the CPU: for each (batch, head, query tile) the keys are visited in tiles with an
// online softmax (running max and sum, rescaling the accumulator when the max grows), so memory is
// O(query tile x key tile) per thread and the N x N score matrix never exists. Both products of a tile
// (Q K^T and P V) are oneDNN GEMMs; work items are spread over the thread pool and each runs its GEMMs
// single-threaded. Under GemmPrecision::BF16 the GEMMs take bf16 operands (q, k and v rounded once, the
// softmax weights P per tile) with f32 accumulation, as the CUDA bf16 attention and PyTorch's bf16 SDPA
// round; the scores, the online softmax and the accumulator stay f32. On processors with AMX or
// AVX512-BF16 oneDNN runs these GEMMs on those units, and unmasked bf16 attention runs on our own kernel
// instead (attention_flash_bf16.h), with the same rounding.
#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <utility>
#include <vector>

#include "backends/cpu/attention_flash_bf16.h"
#include "backends/cpu/cpu_backend.h"
#include "backends/cpu/head_rows.h"
#include "backends/cpu/vec_math.h"
#include "backends/op_checks.h"
#include "core/parallel.h"

namespace sr {

namespace {

constexpr int64_t kQueryTile = 128;
constexpr int64_t kKeyTile = 512;
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

struct DenseMask {
    const void* data = nullptr;
    DType dtype = DType::Bool;
    int64_t sb = 0, sq = 0, sk = 0;  // element strides
    bool allows(int64_t b, int64_t i, int64_t j) const {
        const int64_t off = b * sb + i * sq + j * sk;
        if (dtype == DType::Bool) return static_cast<const uint8_t*>(data)[off] != 0;
        return static_cast<const float*>(data)[off] != 0.0f;
    }
};

// x [B, H, L, D] (a view) RMS-normalized and rotated as `qk` says, by the backend's own rms_norm and
// rope_interleaved (so the result is bit for bit the unfused ops'), into a new [B, L, H, D] tensor returned as
// a [B, H, L, D] view. Host scratch, as the kernels' other buffers.
Tensor qk_normed(CpuBackend& be, const Tensor& x, const std::array<const Tensor*, 2>& weight, const QkNormRope& qk) {
    const int64_t B = x.dim(0), H = x.dim(1), L = x.dim(2), D = x.dim(3);
    Tensor raw = Tensor::empty({B, L, H, D}, DType::F32);
    {
        Tensor raw_heads = raw.permute({0, 2, 1, 3});
        be.exec(CopyOp{x, raw_heads});
    }
    Tensor normed = Tensor::empty({B, L, H, D}, DType::F32);
    const std::array<std::pair<int64_t, int64_t>, 2> segments{{{0, qk.n_rope}, {qk.n_rope, L}}};
    for (int64_t b = 0; b < B; ++b)
        for (size_t s = 0; s < 2; ++s) {
            const auto [l0, l1] = segments[s];
            if (l1 <= l0) continue;
            const Tensor rows = raw.select(0, b).slice(0, l0, l1).view({-1, D});
            Tensor dst = normed.select(0, b).slice(0, l0, l1).view({-1, D});
            be.exec(RmsNormOp{rows, weight[s], qk.eps, dst});
        }
    if (qk.n_rope > 0) {
        Tensor rotated = normed.slice(1, 0, qk.n_rope);
        be.exec(RopeInterleavedOp{rotated, *qk.cos, *qk.sin});
    }
    return normed.permute({0, 2, 1, 3});
}

// x [B, H, L, D] (any strides) as a contiguous [B, H, L, D] copy in `dtype` (rounded when bf16). Contiguous
// whatever the caller's layout, so every tile GEMM sees the same leading dimension (D) however many heads
// the call has: oneDNN may block a GEMM differently for another leading dimension, and a rank's slice of the
// heads must give one process's bits.
Tensor contiguous_copy(CpuBackend& be, const Tensor& x, DType dtype) {
    Tensor t = Tensor::empty(x.shape(), dtype);
    be.exec(CopyOp{x, t});
    return t;
}

}  // namespace

bool CpuBackend::flash_attention(const AttentionOp& op) {
    // Dense and causal masks take the general path.
    if (gemm_precision_ != GemmPrecision::BF16 || !flash_attention_ || op.mask.dense.defined() || op.mask.causal)
        return false;
    const AttentionShape shape = check_attention(op.q, op.k, op.v, op.out, op.mask);
    if (op.qk) check_qk_norm_rope(*op.qk, shape);
    return attention_bf16_flash(op.q, op.k, op.v, op.out, op.mask.kv_len, op.scale, op.qk);
}

void CpuBackend::exec(const AttentionOp& op) {
    const auto& [q, k, v, out, mask, scale, qk] = op;
    if (flash_attention(op)) return;
    const AttentionShape shape = check_attention(q, k, v, out, mask);
    if (qk) {
        check_qk_norm_rope(*qk, shape);
        const Tensor qn = qk_normed(*this, q, qk->q_weight, *qk), kn = qk_normed(*this, k, qk->k_weight, *qk);
        exec(AttentionOp{qn, kn, v, out, mask, scale});
        return;
    }
    const int64_t B = shape.B, H = shape.H, Lq = shape.Lq, Lk = shape.Lk, D = shape.D;
    DenseMask dense;
    if (mask.dense.defined()) {
        const Tensor& m = mask.dense;
        dense = {m.raw_data(), m.dtype(), m.stride(0), m.stride(1), m.stride(2)};
    }

    const bool bf16 = gemm_precision_ == GemmPrecision::BF16;
    const int64_t n_qtiles = (Lq + kQueryTile - 1) / kQueryTile;
    const DType gemm_dtype = bf16 ? DType::BF16 : DType::F32;
    const Tensor qc = contiguous_copy(*this, q, gemm_dtype), kc = contiguous_copy(*this, k, gemm_dtype),
                 vc = contiguous_copy(*this, v, gemm_dtype);
    const HeadRows qo = HeadRows::of(qc), ko = HeadRows::of(kc), vo = HeadRows::of(vc);
    float* od = static_cast<float*>(out.raw_data());

    parallel_for(B * H * n_qtiles, [&](int64_t w0, int64_t w1) {
        std::vector<float> scores(size_t(kQueryTile * kKeyTile));
        std::vector<uint16_t> p_bf16(bf16 ? size_t(kQueryTile * kKeyTile) : 0);  // P rounded for P V
        std::vector<float> acc(size_t(kQueryTile * D));
        std::vector<float> row_max(static_cast<size_t>(kQueryTile)), row_sum(static_cast<size_t>(kQueryTile));
        for (int64_t w = w0; w < w1; ++w) {
            const int64_t b = w / (H * n_qtiles);
            const int64_t h = (w / n_qtiles) % H;
            const int64_t i0 = (w % n_qtiles) * kQueryTile;
            const int64_t tq = std::min(kQueryTile, Lq - i0);
            const int64_t kv = mask.kv_len.empty() ? Lk : std::clamp<int64_t>(mask.kv_len[size_t(b)], 0, Lk);
            const void* qt = qo.row(b, h, i0);
            std::fill(acc.begin(), acc.begin() + tq * D, 0.0f);
            std::fill(row_max.begin(), row_max.begin() + tq, kNegInf);
            std::fill(row_sum.begin(), row_sum.begin() + tq, 0.0f);
            // Causal: query i sees keys j <= i + (Lk - Lq); no tile past the tile's last query's limit.
            const int64_t kv_end = mask.causal ? std::clamp<int64_t>(i0 + tq + (Lk - Lq), 0, kv) : kv;
            for (int64_t j0 = 0; j0 < kv_end; j0 += kKeyTile) {
                const int64_t tk = std::min(kKeyTile, kv_end - j0);
                // scores[tq, tk] = Q K^T
                gemm(tq, tk, D, qt, qo.sl, ko.row(b, h, j0), ko.sl, true, gemm_dtype, scores.data(), kKeyTile, false);
                for (int64_t i = 0; i < tq; ++i) {
                    float* s = scores.data() + i * kKeyTile;
                    // Keys of this tile the row may see (all of them unless causal).
                    const int64_t n = mask.causal ? std::clamp<int64_t>(i0 + i + 1 + (Lk - Lq) - j0, 0, tk) : tk;
                    std::fill(s + n, s + tk, 0.0f);  // invisible keys weigh nothing in P V
                    if (n == 0) continue;
                    float mx;
                    if (dense.data) {
                        mx = row_max[size_t(i)];
                        for (int64_t j = 0; j < n; ++j) {
                            s[j] = dense.allows(b, i0 + i, j0 + j) ? s[j] * scale : kNegInf;
                            mx = std::max(mx, s[j]);
                        }
                    } else {
                        mx = vec::scale_max(s, n, scale, row_max[size_t(i)]);
                    }
                    if (mx == kNegInf) {
                        // Every key so far is masked for this row: contribute nothing.
                        std::fill(s, s + n, 0.0f);
                        continue;
                    }
                    float sum = vec::exp_sub_sum(s, n, mx);
                    if (dense.data) {
                        // vec::exp clamps its argument, so exp(-inf) is ~1e-38, not 0: zero masked keys.
                        sum = 0.0f;
                        for (int64_t j = 0; j < n; ++j) {
                            if (!dense.allows(b, i0 + i, j0 + j)) s[j] = 0.0f;
                            sum += s[j];
                        }
                    }
                    if (row_max[size_t(i)] != kNegInf) {
                        const float correction = vec::exp(row_max[size_t(i)] - mx);
                        vec::scale(acc.data() + i * D, D, correction);
                        row_sum[size_t(i)] = row_sum[size_t(i)] * correction + sum;
                    } else {
                        row_sum[size_t(i)] = sum;
                    }
                    row_max[size_t(i)] = mx;
                }
                // acc[tq, D] += P V
                const void* p = scores.data();
                if (bf16) {
                    for (int64_t i = 0; i < tq; ++i)
                        convert_elements(scores.data() + i * kKeyTile, DType::F32, p_bf16.data() + i * kKeyTile,
                                         DType::BF16, size_t(tk));
                    p = p_bf16.data();
                }
                gemm(tq, D, tk, p, kKeyTile, vo.row(b, h, j0), vo.sl, false, gemm_dtype, acc.data(), D, true);
            }
            for (int64_t i = 0; i < tq; ++i) {
                float* o = od + b * out.stride(0) + h * out.stride(1) + (i0 + i) * out.stride(2);
                const float inv = row_sum[size_t(i)] > 0.0f ? 1.0f / row_sum[size_t(i)] : 0.0f;
                const float* a = acc.data() + i * D;
                for (int64_t d = 0; d < D; ++d) o[d] = a[d] * inv;
            }
        }
    });
}

}  // namespace sr
