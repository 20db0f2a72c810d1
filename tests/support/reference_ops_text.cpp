#include "support/reference_ops_text.h"

#include <cmath>
#include <limits>

namespace sr::test::ref {

Array embedding(const Tensor& ids, const Tensor& table) {
    const Array id = to_array(ids), t = to_array(table);
    const int64_t B = ids.dim(0), L = ids.dim(1), D = table.dim(1);
    Array out({B, L, D});
    for (int64_t r = 0; r < B * L; ++r)
        for (int64_t d = 0; d < D; ++d) out[r * D + d] = t[int64_t(id[r]) * D + d];
    return out;
}

Array rope_half(const Tensor& x, const Tensor& cos, const Tensor& sin) {
    const Array a = to_array(x), c = to_array(cos), s = to_array(sin);
    const int64_t B = x.dim(0), L = x.dim(1), H = x.dim(2), D = x.dim(3), half = D / 2;
    Array out(a.shape);
    for (int64_t b = 0; b < B; ++b)
        for (int64_t l = 0; l < L; ++l)
            for (int64_t h = 0; h < H; ++h) {
                const int64_t base = ((b * L + l) * H + h) * D;
                for (int64_t i = 0; i < D; ++i) {
                    const double rot = i < half ? -a[base + i + half] : a[base + i - half];
                    out[base + i] = a[base + i] * c[l * D + i] + rot * s[l * D + i];
                }
            }
    return out;
}

Array quick_gelu(const Tensor& x) {
    Array a = to_array(x);
    for (double& v : a.data) v = v / (1.0 + std::exp(-1.702 * v));
    return a;
}

Array mul(const Tensor& x, const Tensor& y) {
    Array a = to_array(x);
    const Array b = to_array(y);
    for (int64_t i = 0; i < a.numel(); ++i) a[i] *= b[i];
    return a;
}

Array attention_masked(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionMask& mask, double scale) {
    const Array qa = to_array(q), ka = to_array(k), va = to_array(v);
    const Array dense = mask.dense.defined() ? to_array(mask.dense) : Array();
    const int64_t B = q.dim(0), H = q.dim(1), Lq = q.dim(2), Lk = k.dim(2), D = q.dim(3);
    Array out({B, H, Lq, D});
    std::vector<double> s(static_cast<size_t>(Lk));
    for (int64_t b = 0; b < B; ++b)
        for (int64_t h = 0; h < H; ++h)
            for (int64_t i = 0; i < Lq; ++i) {
                double mx = -std::numeric_limits<double>::infinity();
                for (int64_t j = 0; j < Lk; ++j) {
                    bool ok = mask.kv_len.empty() || j < mask.kv_len[size_t(b)];
                    if (mask.causal) ok = ok && j <= i + (Lk - Lq);
                    if (dense.numel()) ok = ok && dense[(b * Lq + i) * Lk + j] != 0;
                    double dot = 0;
                    for (int64_t d = 0; d < D; ++d)
                        dot += qa[((b * H + h) * Lq + i) * D + d] * ka[((b * H + h) * Lk + j) * D + d];
                    s[size_t(j)] = ok ? dot * scale : -std::numeric_limits<double>::infinity();
                    mx = std::max(mx, s[size_t(j)]);
                }
                if (std::isinf(mx)) continue;  // no valid key: zeros
                double sum = 0;
                for (double& x : s) sum += (x = std::exp(x - mx));
                for (int64_t d = 0; d < D; ++d) {
                    double acc = 0;
                    for (int64_t j = 0; j < Lk; ++j) acc += s[size_t(j)] * va[((b * H + h) * Lk + j) * D + d];
                    out[((b * H + h) * Lq + i) * D + d] = acc / sum;
                }
            }
    return out;
}

}  // namespace sr::test::ref
