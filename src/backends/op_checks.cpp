#include "backends/op_checks.h"

#include <algorithm>

namespace sr {

namespace {
// An activation argument of an op that takes bf16 activations (ops.h, kTakesBf16Activations).
bool activation_dtype(const Tensor& t) {
    return t.dtype() == DType::F32 || t.dtype() == DType::BF16;
}
}  // namespace

int64_t uniform_row_stride(const Tensor& t) {
    if (t.rank() == 0) return 0;
    const int64_t last = t.rank() - 1, n = t.dim(last);
    if (n > 1 && t.stride(last) != 1) return 0;
    // From the innermost leading dim out (size-1 dims have no stride that matters): the first one's stride is
    // the row stride, and each further one must step over all the rows inside it.
    int64_t row = 0, next = 0;
    for (int64_t d = last - 1; d >= 0; --d) {
        if (t.dim(d) == 1) continue;
        if (row == 0) {
            row = t.stride(d);
            if (row < n) return 0;  // rows would overlap
        } else if (t.stride(d) != next) {
            return 0;
        }
        next = t.stride(d) * t.dim(d);
    }
    return row ? row : n;  // a single row: it is its own stride
}

LinearShape check_linear(const Tensor& x, const Tensor& weight, const Tensor* bias, const Tensor& y) {
    SR_ASSERT(weight.rank() == 2 && weight.is_contiguous(), "linear weight {}", weight.describe());
    SR_ASSERT(dtype_is_float(weight.dtype()) && weight.dtype() != DType::F8_E4M3, "linear weight dtype {}",
              dtype_name(weight.dtype()));
    const int64_t N = weight.dim(0), K = weight.dim(1);
    const int64_t ldy = uniform_row_stride(y);
    SR_ASSERT(activation_dtype(x) && activation_dtype(y) && x.is_contiguous() && (N == 0 || ldy >= N) &&
                  x.dim(-1) == K && y.dim(-1) == N &&
                  x.numel() / std::max<int64_t>(K, 1) == y.numel() / std::max<int64_t>(N, 1),
              "linear {} x {}^T -> {}", x.describe(), weight.describe(), y.describe());
    SR_ASSERT(!bias || bias->numel() == N, "linear bias {} for N={}", bias ? bias->describe() : "", N);
    return {K ? x.numel() / K : y.numel() / std::max<int64_t>(N, 1), N, K, std::max<int64_t>(ldy, N)};
}

LinearShape check_quant_linear(const QuantLinearOp& op) {
    const Tensor &x = op.x, &w = op.weight, &y = op.y;
    const int64_t K = op.K;
    SR_ASSERT(w.rank() == 2 && w.is_contiguous() && K > 0, "quant_linear weight {} for K={}", w.describe(), K);
    const int64_t N = w.dim(0);
    if (op.block) {
        SR_ASSERT(w.dtype() == DType::Bool && quant_row_fits(*op.block, K) &&
                      size_t(w.dim(1)) == quant_row_bytes(*op.block, K) && !op.scale,
                  "quant_linear {} rows {} for K={}", quant_info(*op.block).name, w.describe(), K);
    } else {
        SR_ASSERT(w.dtype() == DType::F8_E4M3 && w.dim(1) == K, "quant_linear FP8 weight {} for K={}", w.describe(), K);
        SR_ASSERT(!op.scale || (dtype_is_float(op.scale->dtype()) && op.scale->is_contiguous() &&
                                (op.scale->numel() == 1 || op.scale->numel() == N)),
                  "quant_linear scale {} for {} rows", op.scale ? op.scale->describe() : "", N);
    }
    SR_ASSERT(activation_dtype(x) && activation_dtype(y) && x.is_contiguous() && y.is_contiguous() && x.dim(-1) == K &&
                  y.dim(-1) == N && x.numel() / K == y.numel() / std::max<int64_t>(N, 1),
              "quant_linear {} x W[{},{}]^T -> {}", x.describe(), N, K, y.describe());
    SR_ASSERT(!op.bias || op.bias->numel() == N, "quant_linear bias {} for N={}", op.bias ? op.bias->describe() : "",
              N);
    return {x.numel() / K, N, K, N};
}

void check_conv3d(const Tensor& x, const Tensor& w, const Tensor* bias, std::array<int64_t, 3> stride,
                  std::array<int64_t, 3> padding, const Tensor& y) {
    SR_ASSERT(x.rank() == 5 && w.rank() == 5 && y.rank() == 5, "conv3d on {} * {} -> {}", x.describe(), w.describe(),
              y.describe());
    SR_ASSERT(x.dtype() == DType::F32 && y.dtype() == DType::F32 && x.is_contiguous() && y.is_contiguous(),
              "conv3d wants contiguous f32 activations, got {} -> {}", x.describe(), y.describe());
    SR_ASSERT(dtype_is_float(w.dtype()), "conv3d weight {}", w.describe());
    SR_ASSERT(w.dim(1) == x.dim(1) && y.dim(0) == x.dim(0) && y.dim(1) == w.dim(0), "conv3d {} * {} -> {}",
              x.describe(), w.describe(), y.describe());
    for (int i = 0; i < 3; ++i) {
        SR_ASSERT(stride[size_t(i)] >= 1 && padding[size_t(i)] >= 0, "conv3d stride/padding");
        const int64_t o = (x.dim(2 + i) + 2 * padding[size_t(i)] - w.dim(2 + i)) / stride[size_t(i)] + 1;
        SR_ASSERT(y.dim(2 + i) == o, "conv3d {} * {} -> {}: axis {} should be {}", x.describe(), w.describe(),
                  y.describe(), i, o);
    }
    SR_ASSERT(!bias || bias->numel() == w.dim(0), "conv3d bias {}", bias->describe());
}

AttentionShape check_attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                               const AttentionMask& mask) {
    SR_ASSERT(q.rank() == 4 && k.rank() == 4 && v.rank() == 4 && out.rank() == 4, "attention wants [B,H,L,D] views");
    SR_ASSERT(activation_dtype(q) && activation_dtype(k) && activation_dtype(v) && activation_dtype(out),
              "attention on f32 or bf16 activations, got q {} k {} v {} out {}", q.describe(), k.describe(),
              v.describe(), out.describe());
    const AttentionShape s{q.dim(0), q.dim(1), q.dim(2), k.dim(2), q.dim(3)};
    SR_ASSERT(k.dim(0) == s.B && v.dim(0) == s.B && k.dim(1) == s.H && v.dim(1) == s.H && v.dim(2) == s.Lk &&
                  k.dim(3) == s.D && v.dim(3) == s.D && out.dim(0) == s.B && out.dim(1) == s.H && out.dim(2) == s.Lq &&
                  out.dim(3) == s.D,
              "attention shapes q {} k {} v {} out {}", q.describe(), k.describe(), v.describe(), out.describe());
    SR_ASSERT(q.stride(3) == 1 && k.stride(3) == 1 && v.stride(3) == 1 && out.stride(3) == 1,
              "attention needs a unit innermost stride");
    SR_ASSERT(mask.kv_len.empty() || int64_t(mask.kv_len.size()) == s.B, "kv_len has {} rows for batch {}",
              mask.kv_len.size(), s.B);
    if (mask.dense.defined()) {
        const Tensor& m = mask.dense;
        SR_ASSERT(m.rank() == 3 && m.dim(0) == s.B && m.dim(1) == s.Lq && m.dim(2) == s.Lk,
                  "dense mask {} for [{},{},{}]", m.describe(), s.B, s.Lq, s.Lk);
        SR_ASSERT(m.dtype() == DType::Bool || m.dtype() == DType::F32, "dense mask dtype {}", dtype_name(m.dtype()));
    }
    return s;
}

void check_qk_norm_rope(const QkNormRope& qk, const AttentionShape& shape) {
    const int64_t D = shape.D;
    for (const Tensor* w : {qk.q_weight[0], qk.q_weight[1], qk.k_weight[0], qk.k_weight[1]}) {
        SR_ASSERT(w && w->is_contiguous() && w->numel() == D && dtype_is_float(w->dtype()),
                  "attention qk norm weight {} for head dim {}", w ? w->describe() : std::string("(none)"), D);
    }
    SR_ASSERT(D % 2 == 0, "attention qk rope: head dim {} is odd", D);
    SR_ASSERT(qk.n_rope >= 0 && qk.n_rope <= std::min(shape.Lq, shape.Lk), "attention qk rope: {} rotated tokens of {}",
              qk.n_rope, std::min(shape.Lq, shape.Lk));
    if (qk.n_rope == 0) return;
    SR_ASSERT(qk.cos && qk.sin, "attention qk rope: {} rotated tokens without tables", qk.n_rope);
    const Tensor &cos = *qk.cos, &sin = *qk.sin;
    SR_ASSERT(cos.dtype() == DType::F32 && sin.dtype() == DType::F32 && cos.is_contiguous() && sin.is_contiguous() &&
                  cos.numel() == qk.n_rope * D && sin.numel() == qk.n_rope * D,
              "attention qk rope tables {} / {} for {} tokens, D={}", cos.describe(), sin.describe(), qk.n_rope, D);
}

RopeShape check_rope(const Tensor& x, const Tensor& cos, const Tensor& sin, const char* op) {
    SR_ASSERT(x.rank() == 4 && x.dtype() == DType::F32 && x.stride(3) == 1, "{} wants an f32 [B,L,H,D] view, got {}",
              op, x.describe());
    const RopeShape s{x.dim(0), x.dim(1), x.dim(2), x.dim(3)};
    SR_ASSERT(s.D % 2 == 0, "{} head dim {} is odd", op, s.D);
    SR_ASSERT(cos.dtype() == DType::F32 && sin.dtype() == DType::F32 && cos.is_contiguous() && sin.is_contiguous() &&
                  cos.numel() == s.L * s.D && sin.numel() == s.L * s.D,
              "{} tables {} / {} for L={} D={}", op, cos.describe(), sin.describe(), s.L, s.D);
    return s;
}

PatchEmbedShape check_patch_embed_3d(const Tensor& x, const Tensor& weight, const Tensor& y) {
    SR_ASSERT(x.rank() == 5 && weight.rank() == 5 && x.dtype() == DType::F32, "patch_embed_3d {} with {}", x.describe(),
              weight.describe());
    PatchEmbedShape s{};
    s.B = x.dim(0), s.C = x.dim(1), s.F = x.dim(2), s.H = x.dim(3), s.W = x.dim(4);
    s.D = weight.dim(0), s.pt = weight.dim(2), s.ph = weight.dim(3), s.pw = weight.dim(4);
    SR_ASSERT(weight.dim(1) == s.C, "patch_embed_3d: {} input channels, weight {}", s.C, weight.describe());
    SR_ASSERT(s.F % s.pt == 0 && s.H % s.ph == 0 && s.W % s.pw == 0,
              "patch_embed_3d: {} not divisible by patch {}x{}x{}", x.describe(), s.pt, s.ph, s.pw);
    s.N = (s.F / s.pt) * (s.H / s.ph) * (s.W / s.pw);
    s.P = s.C * s.pt * s.ph * s.pw;
    SR_ASSERT(y.dtype() == DType::F32 && y.is_contiguous() && y.numel() == s.B * s.N * s.D, "patch_embed_3d out {}",
              y.describe());
    return s;
}

EmbeddingShape check_embedding(const Tensor& ids, const Tensor& table, const Tensor& y) {
    SR_THROW_IF(ids.rank() != 2 || (ids.dtype() != DType::I64 && ids.dtype() != DType::I32),
                "embedding: ids must be I32/I64 [B, L], got {}", ids.describe());
    SR_ASSERT(table.rank() == 2 && table.is_contiguous() &&
                  (table.dtype() == DType::F32 || table.dtype() == DType::BF16 || table.dtype() == DType::F16),
              "embedding table {}", table.describe());
    const EmbeddingShape s{ids.dim(0), ids.dim(1), table.dim(0), table.dim(1)};
    SR_ASSERT(y.dtype() == DType::F32 && y.is_contiguous() && y.rank() == 3 && y.dim(0) == s.B && y.dim(1) == s.L &&
                  y.dim(2) == s.D,
              "embedding output {} for ids {} and table {}", y.describe(), ids.describe(), table.describe());
    return s;
}

int64_t token_id_at(const Tensor& ids, int64_t b, int64_t l) {
    const int64_t off = b * ids.stride(0) + l * ids.stride(1);
    return ids.dtype() == DType::I64 ? static_cast<const int64_t*>(ids.raw_data())[off]
                                     : static_cast<const int32_t*>(ids.raw_data())[off];
}

void check_token_ids(const Tensor& ids, int64_t vocab) {
    for (int64_t b = 0; b < ids.dim(0); ++b)
        for (int64_t l = 0; l < ids.dim(1); ++l) {
            const int64_t id = token_id_at(ids, b, l);
            SR_THROW_IF(id < 0 || id >= vocab, "embedding: token id {} at [{},{}] is outside the vocabulary [0, {})",
                        id, b, l, vocab);
        }
}

}  // namespace sr
