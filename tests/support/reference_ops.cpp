#include "support/reference_ops.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <numbers>

namespace sr::test::ref {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

int64_t product(const std::vector<int64_t>& dims, size_t begin, size_t end) {
    int64_t n = 1;
    for (size_t i = begin; i < end; ++i) n *= dims[i];
    return n;
}

// The rows of a tensor's last dimension: `rows` rows of `width` values.
struct Rows {
    int64_t rows, width;
};
Rows rows_of(const Array& a) {
    SR_ASSERT(a.rank() >= 1, "reference op on a rank-0 array");
    const int64_t width = a.shape.back();
    return {product(a.shape, 0, a.shape.size() - 1), width};
}

// A [D] parameter (weight/bias) or an empty array when absent.
Array optional_vector(const Tensor* t, int64_t D, const char* what) {
    if (!t) return {};
    Array a = to_array(*t);
    SR_ASSERT(a.numel() == D, "reference: {} has {} elements, rows have {}", what, a.numel(), D);
    return a;
}

Array unary(const Tensor& x, double (*f)(double)) {
    Array a = to_array(x);
    for (double& v : a.data) v = f(v);
    return a;
}

}  // namespace

Array::Array(std::vector<int64_t> shape_) : shape(std::move(shape_)) {
    data.assign(size_t(product(shape, 0, shape.size())), 0.0);
}

std::string Array::shape_str() const {
    std::string s = "[";
    for (size_t i = 0; i < shape.size(); ++i) s += (i ? "," : "") + std::to_string(shape[i]);
    return s + "]";
}

double decode(const void* element, DType dtype) {
    switch (dtype) {
        case DType::F32: {
            float f;
            std::memcpy(&f, element, 4);
            return f;
        }
        case DType::BF16: {
            // bf16 is the top half of an f32.
            uint16_t b;
            std::memcpy(&b, element, 2);
            const uint32_t u = uint32_t(b) << 16;
            float f;
            std::memcpy(&f, &u, 4);
            return f;
        }
        case DType::F16: {
            uint16_t h;
            std::memcpy(&h, element, 2);
            const double sign = (h & 0x8000u) ? -1.0 : 1.0;
            const int e = (h >> 10) & 0x1f;
            const int m = h & 0x3ff;
            if (e == 31) return m ? kNaN : sign * kInf;
            if (e == 0) return sign * std::ldexp(double(m), -24);     // subnormal: m * 2^-24
            return sign * std::ldexp(double(1024 + m), e - 15 - 10);  // (1 + m/1024) * 2^(e-15)
        }
        case DType::F8_E4M3: {
            const uint8_t v = *static_cast<const uint8_t*>(element);
            const double sign = (v & 0x80u) ? -1.0 : 1.0;
            const int e = (v >> 3) & 0xf;
            const int m = v & 0x7;
            if (e == 15 && m == 7) return kNaN;                   // e4m3fn: no infinities
            if (e == 0) return sign * std::ldexp(double(m), -9);  // subnormal: m/8 * 2^-6
            return sign * std::ldexp(double(8 + m), e - 7 - 3);   // (1 + m/8) * 2^(e-7)
        }
        case DType::Bool:
            return *static_cast<const uint8_t*>(element) ? 1.0 : 0.0;
        case DType::I32: {
            int32_t i;
            std::memcpy(&i, element, 4);
            return double(i);
        }
        case DType::I64: {
            int64_t i;
            std::memcpy(&i, element, 8);
            return double(i);
        }
    }
    SR_ASSERT(false, "reference decode of an unknown dtype");
    return 0;
}

double round_to(double v, DType dtype) {
    if (std::isnan(v)) return v;
    if (dtype == DType::F32) return double(float(v));
    int mant_bits = 0, min_exp = 0;
    double max_finite = 0;
    bool saturate = false;
    switch (dtype) {
        case DType::BF16:
            mant_bits = 7;
            min_exp = -126;
            max_finite = std::ldexp(255.0, 120);
            break;
        case DType::F16:
            mant_bits = 10;
            min_exp = -14;
            max_finite = 65504.0;
            break;
        case DType::F8_E4M3:
            mant_bits = 3;
            min_exp = -6;
            max_finite = 448.0;
            saturate = true;
            break;
        default:
            SR_ASSERT(false, "round_to {}", dtype_name(dtype));
    }
    const double a = std::fabs(v);
    double q;
    if (std::isinf(a)) {
        q = saturate ? max_finite : kInf;
    } else {
        int e;
        std::frexp(a, &e);                         // a in [2^(e-1), 2^e)
        const int exp = std::max(e - 1, min_exp);  // subnormals share the smallest normal binade's quantum
        const double quantum = std::ldexp(1.0, exp - mant_bits);
        q = std::nearbyint(a / quantum) * quantum;  // exact scaling; nearbyint ties to even
        if (q > max_finite) q = saturate ? max_finite : kInf;
    }
    return std::copysign(q, v);
}

Array to_array(const Tensor& t) {
    SR_ASSERT(t.device() == Device::cpu(), "reference reads host tensors, got {}", t.describe());
    const int rank = t.rank();
    const size_t n_dims = static_cast<size_t>(rank);
    std::vector<int64_t> shape(n_dims), strides(n_dims), idx(n_dims, 0);
    for (int i = 0; i < rank; ++i) shape[size_t(i)] = t.dim(i), strides[size_t(i)] = t.stride(i);
    Array a(shape);
    const char* base = static_cast<const char*>(t.raw_data());
    const int64_t es = int64_t(dtype_size(t.dtype()));
    // Row-major walk with an odometer over the strided offset.
    int64_t off = 0;
    for (int64_t flat = 0; flat < a.numel(); ++flat) {
        a[flat] = decode(base + off * es, t.dtype());
        for (int i = rank - 1; i >= 0; --i) {
            off += strides[size_t(i)];
            if (++idx[size_t(i)] < shape[size_t(i)]) break;
            off -= strides[size_t(i)] * shape[size_t(i)];
            idx[size_t(i)] = 0;
        }
    }
    return a;
}

Array linear(const Tensor& x_t, const Tensor& w_t, const Tensor* bias_t) {
    const Array x = to_array(x_t), w = to_array(w_t);
    SR_ASSERT(w.rank() == 2 && x.rank() >= 1 && x.shape.back() == w.shape[1], "reference linear {} x {}^T",
              x.shape_str(), w.shape_str());
    const int64_t N = w.shape[0], K = w.shape[1];
    const int64_t M = product(x.shape, 0, x.shape.size() - 1);
    const Array b = optional_vector(bias_t, N, "linear bias");
    std::vector<int64_t> out_shape = x.shape;
    out_shape.back() = N;
    Array y(out_shape);
    for (int64_t m = 0; m < M; ++m)
        for (int64_t n = 0; n < N; ++n) {
            double acc = b.numel() ? b[n] : 0.0;
            for (int64_t k = 0; k < K; ++k) acc += x[m * K + k] * w[n * K + k];
            y[m * N + n] = acc;
        }
    return y;
}

Array attention(const Tensor& q_t, const Tensor& k_t, const Tensor& v_t, const AttentionMask& mask, double scale) {
    const Array q = to_array(q_t), k = to_array(k_t), v = to_array(v_t);
    SR_ASSERT(q.rank() == 4 && k.rank() == 4 && v.rank() == 4, "reference attention wants [B,H,L,D]");
    const int64_t B = q.shape[0], H = q.shape[1], Lq = q.shape[2], D = q.shape[3], Lk = k.shape[2];
    SR_ASSERT(k.shape == (std::vector<int64_t>{B, H, Lk, D}) && v.shape == k.shape,
              "reference attention q {} k {} v {}", q.shape_str(), k.shape_str(), v.shape_str());
    SR_ASSERT(mask.kv_len.empty() || int64_t(mask.kv_len.size()) == B, "kv_len for batch {}", B);
    Array dense;
    if (mask.dense.defined()) {
        dense = to_array(mask.dense);
        SR_ASSERT(dense.shape == (std::vector<int64_t>{B, Lq, Lk}), "dense mask {}", dense.shape_str());
    }
    Array out({B, H, Lq, D});
    std::vector<double> scores(size_t(Lq * Lk));  // the full score matrix of one (batch, head)
    std::vector<char> valid(size_t(Lq * Lk));
    for (int64_t b = 0; b < B; ++b)
        for (int64_t h = 0; h < H; ++h) {
            const double* qb = &q.data[size_t(((b * H + h) * Lq) * D)];
            const double* kb = &k.data[size_t(((b * H + h) * Lk) * D)];
            const double* vb = &v.data[size_t(((b * H + h) * Lk) * D)];
            double* ob = &out.data[size_t(((b * H + h) * Lq) * D)];
            for (int64_t i = 0; i < Lq; ++i)
                for (int64_t j = 0; j < Lk; ++j) {
                    const bool in_len = mask.kv_len.empty() || j < mask.kv_len[size_t(b)];
                    const bool in_dense = dense.numel() == 0 || dense[(b * Lq + i) * Lk + j] != 0.0;
                    valid[size_t(i * Lk + j)] = in_len && in_dense;
                    double s = 0;
                    for (int64_t d = 0; d < D; ++d) s += qb[i * D + d] * kb[j * D + d];
                    scores[size_t(i * Lk + j)] = s * scale;
                }
            for (int64_t i = 0; i < Lq; ++i) {
                const double* s = &scores[size_t(i * Lk)];
                const char* ok = &valid[size_t(i * Lk)];
                double mx = -kInf;
                for (int64_t j = 0; j < Lk; ++j)
                    if (ok[j]) mx = std::max(mx, s[j]);
                double* o = ob + i * D;
                if (mx == -kInf) continue;  // no valid key: the row stays zero
                double sum = 0;
                for (int64_t j = 0; j < Lk; ++j)
                    if (ok[j]) {
                        const double p = std::exp(s[j] - mx);
                        sum += p;
                        for (int64_t d = 0; d < D; ++d) o[d] += p * vb[j * D + d];
                    }
                for (int64_t d = 0; d < D; ++d) o[d] /= sum;
            }
        }
    return out;
}

Array layer_norm(const Tensor& x_t, const Tensor* weight, const Tensor* bias, double eps) {
    Array y = to_array(x_t);
    const auto [rows, D] = rows_of(y);
    const Array w = optional_vector(weight, D, "layer_norm weight");
    const Array b = optional_vector(bias, D, "layer_norm bias");
    for (int64_t r = 0; r < rows; ++r) {
        double* row = &y.data[size_t(r * D)];
        double mean = 0, var = 0;
        for (int64_t i = 0; i < D; ++i) mean += row[i];
        mean /= double(D);
        for (int64_t i = 0; i < D; ++i) var += (row[i] - mean) * (row[i] - mean);
        var /= double(D);
        const double inv = 1.0 / std::sqrt(var + eps);
        for (int64_t i = 0; i < D; ++i) {
            double v = (row[i] - mean) * inv;
            if (w.numel()) v *= w[i];
            if (b.numel()) v += b[i];
            row[i] = v;
        }
    }
    return y;
}

Array rms_norm(const Tensor& x_t, const Tensor* weight, double eps) {
    Array y = to_array(x_t);
    const auto [rows, D] = rows_of(y);
    const Array w = optional_vector(weight, D, "rms_norm weight");
    for (int64_t r = 0; r < rows; ++r) {
        double* row = &y.data[size_t(r * D)];
        double ss = 0;
        for (int64_t i = 0; i < D; ++i) ss += row[i] * row[i];
        const double inv = 1.0 / std::sqrt(ss / double(D) + eps);
        for (int64_t i = 0; i < D; ++i) row[i] = row[i] * inv * (w.numel() ? w[i] : 1.0);
    }
    return y;
}

Array rope_interleaved(const Tensor& x_t, const Tensor& cos_t, const Tensor& sin_t) {
    const Array x = to_array(x_t), c = to_array(cos_t), s = to_array(sin_t);
    SR_ASSERT(x.rank() == 4 && x.shape[3] % 2 == 0, "reference rope wants [B,L,H,D] with even D, got {}",
              x.shape_str());
    const int64_t B = x.shape[0], L = x.shape[1], H = x.shape[2], D = x.shape[3];
    SR_ASSERT(c.numel() == L * D && s.numel() == L * D, "reference rope tables {} {} for L={} D={}", c.shape_str(),
              s.shape_str(), L, D);
    Array y(x.shape);
    for (int64_t b = 0; b < B; ++b)
        for (int64_t l = 0; l < L; ++l)
            for (int64_t h = 0; h < H; ++h) {
                const int64_t base = ((b * L + l) * H + h) * D;
                for (int64_t i = 0; i < D; i += 2) {
                    const double re = x[base + i], im = x[base + i + 1];
                    y[base + i] = re * c[l * D + i] - im * s[l * D + i];
                    y[base + i + 1] = im * c[l * D + i + 1] + re * s[l * D + i + 1];
                }
            }
    return y;
}

Array gelu_tanh(const Tensor& x) {
    return unary(x, [](double v) {
        const double k = std::sqrt(2.0 / std::numbers::pi);
        return 0.5 * v * (1.0 + std::tanh(k * (v + 0.044715 * v * v * v)));
    });
}

Array silu(const Tensor& x) {
    return unary(x, [](double v) { return v / (1.0 + std::exp(-v)); });
}

namespace {

// x[b,l,:] op (per-batch rows a[b,:], c[b,:]) for the adaLN-style ops.
template <class F>
Array row_broadcast(const Tensor& x_t, const std::vector<const Tensor*>& vecs, F f) {
    Array x = to_array(x_t);
    SR_ASSERT(x.rank() == 3, "reference row-broadcast op wants [B,L,D], got {}", x.shape_str());
    const int64_t B = x.shape[0], L = x.shape[1], D = x.shape[2];
    std::vector<Array> v;
    for (const Tensor* t : vecs) {
        v.push_back(to_array(*t));
        SR_ASSERT(v.back().numel() == B * D, "reference per-batch vector {} for [{},{}]", v.back().shape_str(), B, D);
    }
    for (int64_t b = 0; b < B; ++b)
        for (int64_t l = 0; l < L; ++l)
            for (int64_t i = 0; i < D; ++i) {
                double& e = x[(b * L + l) * D + i];
                e = f(e, v, (b * L + l) * D + i, b * D + i);
            }
    return x;
}

}  // namespace

Array modulate(const Tensor& x, const Tensor& shift, const Tensor& scale) {
    return row_broadcast(x, {&shift, &scale}, [](double e, const std::vector<Array>& v, int64_t, int64_t bi) {
        return e * (1.0 + v[1][bi]) + v[0][bi];
    });
}

Array gated_residual(const Tensor& x, const Tensor& y_t, const Tensor& gate) {
    const Array y = to_array(y_t);
    SR_ASSERT(y.numel() == x.numel(), "reference gated_residual: {} vs {}", y.shape_str(), x.describe());
    if (!gate.defined())
        return row_broadcast(x, {},
                             [&](double e, const std::vector<Array>&, int64_t xi, int64_t) { return e + y[xi]; });
    return row_broadcast(x, {&gate}, [&](double e, const std::vector<Array>& v, int64_t xi, int64_t bi) {
        return e + y[xi] * v[0][bi];
    });
}

Array add(const Tensor& x_t, const Tensor& y_t) {
    Array x = to_array(x_t);
    const Array y = to_array(y_t);
    SR_ASSERT(x.shape == y.shape, "reference add {} + {}", x.shape_str(), y.shape_str());
    for (int64_t i = 0; i < x.numel(); ++i) x[i] += y[i];
    return x;
}

Array patch_embed_3d(const Tensor& x_t, const Tensor& w_t, const Tensor* bias_t) {
    const Array x = to_array(x_t), w = to_array(w_t);
    SR_ASSERT(x.rank() == 5 && w.rank() == 5 && w.shape[1] == x.shape[1], "reference patch_embed_3d {} with {}",
              x.shape_str(), w.shape_str());
    const int64_t B = x.shape[0], C = x.shape[1], F = x.shape[2], H = x.shape[3], W = x.shape[4];
    const int64_t D = w.shape[0], pt = w.shape[2], ph = w.shape[3], pw = w.shape[4];
    SR_ASSERT(F % pt == 0 && H % ph == 0 && W % pw == 0, "reference patch_embed_3d: not divisible");
    const int64_t Fp = F / pt, Hp = H / ph, Wp = W / pw;
    const Array bias = optional_vector(bias_t, D, "patch_embed_3d bias");
    Array y({B, Fp * Hp * Wp, D});
    for (int64_t b = 0; b < B; ++b)
        for (int64_t f = 0; f < Fp; ++f)
            for (int64_t h = 0; h < Hp; ++h)
                for (int64_t wi = 0; wi < Wp; ++wi)
                    for (int64_t d = 0; d < D; ++d) {
                        double acc = bias.numel() ? bias[d] : 0.0;
                        for (int64_t c = 0; c < C; ++c)
                            for (int64_t kt = 0; kt < pt; ++kt)
                                for (int64_t kh = 0; kh < ph; ++kh)
                                    for (int64_t kw = 0; kw < pw; ++kw) {
                                        const int64_t xi =
                                            (((b * C + c) * F + f * pt + kt) * H + h * ph + kh) * W + wi * pw + kw;
                                        const int64_t wj = (((d * C + c) * pt + kt) * ph + kh) * pw + kw;
                                        acc += x[xi] * w[wj];
                                    }
                        y[((b * Fp + f) * Hp + h) * Wp * D + wi * D + d] = acc;
                    }
    return y;
}

Array timestep_embedding(const Tensor& t_t, int dim, bool flip_sin_to_cos, double downscale_freq_shift,
                         double max_period) {
    const Array t = to_array(t_t);
    const int64_t B = t.numel();
    const int half = dim / 2;
    Array y({B, int64_t(dim)});
    for (int64_t b = 0; b < B; ++b)
        for (int i = 0; i < half; ++i) {
            const double freq = std::exp(-std::log(max_period) * double(i) / (double(half) - downscale_freq_shift));
            const double arg = t[b] * freq;
            const double first = flip_sin_to_cos ? std::cos(arg) : std::sin(arg);
            const double second = flip_sin_to_cos ? std::sin(arg) : std::cos(arg);
            y[b * dim + i] = first;
            y[b * dim + half + i] = second;
        }
    // An odd dim leaves the last column zero (diffusers pads one zero column).
    return y;
}

Array copy(const Tensor& src, DType dst_dtype) {
    Array a = to_array(src);
    for (double& v : a.data) v = round_to(v, dst_dtype);
    return a;
}

Array concat(const std::vector<Tensor>& parts, int dim) {
    SR_ASSERT(!parts.empty(), "reference concat of nothing");
    std::vector<Array> in;
    for (const Tensor& p : parts) in.push_back(to_array(p));
    const int rank = in[0].rank();
    if (dim < 0) dim += rank;
    std::vector<int64_t> shape = in[0].shape;
    shape[size_t(dim)] = 0;
    for (const Array& a : in) {
        SR_ASSERT(a.rank() == rank, "reference concat rank");
        for (int i = 0; i < rank; ++i)
            SR_ASSERT(i == dim || a.shape[size_t(i)] == in[0].shape[size_t(i)], "reference concat shapes");
        shape[size_t(dim)] += a.shape[size_t(dim)];
    }
    Array out(shape);
    const int64_t outer = product(shape, 0, size_t(dim)), inner = product(shape, size_t(dim) + 1, shape.size());
    const int64_t total = shape[size_t(dim)];
    int64_t at = 0;
    for (const Array& a : in) {
        const int64_t n = a.shape[size_t(dim)];
        for (int64_t o = 0; o < outer; ++o)
            for (int64_t j = 0; j < n; ++j)
                for (int64_t i = 0; i < inner; ++i) out[(o * total + at + j) * inner + i] = a[(o * n + j) * inner + i];
        at += n;
    }
    return out;
}

Array gemm(int64_t M, int64_t N, int64_t K, const void* A, int64_t lda, const void* B, int64_t ldb, bool b_transposed,
           DType ab_dtype, const float* C_in, int64_t ldc, bool accumulate) {
    SR_ASSERT(ab_dtype == DType::F32 || ab_dtype == DType::BF16, "reference gemm on {}", dtype_name(ab_dtype));
    const size_t es = dtype_size(ab_dtype);
    auto at = [&](const void* p, int64_t i) { return decode(static_cast<const char*>(p) + size_t(i) * es, ab_dtype); };
    Array c({M, ldc});
    for (int64_t i = 0; i < M * ldc; ++i) c[i] = C_in[i];
    for (int64_t m = 0; m < M; ++m)
        for (int64_t n = 0; n < N; ++n) {
            double acc = accumulate ? c[m * ldc + n] : 0.0;
            for (int64_t k = 0; k < K; ++k) acc += at(A, m * lda + k) * at(B, b_transposed ? n * ldb + k : k * ldb + n);
            c[m * ldc + n] = acc;
        }
    return c;
}

}  // namespace sr::test::ref
