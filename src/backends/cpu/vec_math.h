// Float math for the CPU backend's hot loops, written on GCC/Clang vector extensions (16 floats per
// value: one AVX-512 register, or four SSE registers on older CPUs). GCC 12 did not vectorize the scalar
// forms of these loops (even under `#pragma omp simd`), and scalar exp then cost more than the attention
// GEMMs around it. Accuracy of exp: relative error below 1e-7 over the clamped range (measured 8.2e-8).
//
//   float sum = sr::vec::exp_sub_sum(row, n, row_max);   // row[j] = exp(row[j] - row_max), returns the sum
#pragma once

#include <bit>
#include <cstdint>
#include <cstring>

namespace sr::vec {

typedef float f32x16 __attribute__((vector_size(64)));
typedef int32_t i32x16 __attribute__((vector_size(64)));
constexpr int64_t kLanes = 16;

inline f32x16 load(const float* p) {
    f32x16 v;
    std::memcpy(&v, p, sizeof v);
    return v;
}
inline void store(float* p, f32x16 v) {
    std::memcpy(p, &v, sizeof v);
}
inline f32x16 splat(float x) {
    return f32x16{} + x;
}

// exp(x) for x in [-87.3, 88.37]; smaller x returns ~1e-38, larger saturates at ~2.7e38 (the scale 2^n
// must stay a finite float: n <= 127). Cody-Waite reduction, Cephes' degree-6 polynomial.
template <class V, class I>
inline V exp_impl(V x) {
    x = x < -87.3f ? V{} - 87.3f : x;
    x = x > 88.37f ? V{} + 88.37f : x;
    // n = round(x / ln2) with the 1.5 * 2^23 trick (round to nearest; |r| <= ln2/2 either way)
    const V n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    const V r = (x - n * 0.693359375f) - n * -2.12194440e-4f;
    V p = V{} + 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    I bits;
    if constexpr (sizeof(V) == sizeof(float)) {
        bits = (I(n) + 127) << 23;
    } else {
        bits = (__builtin_convertvector(n, I) + 127) << 23;
    }
    V scale;
    std::memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

inline float exp(float x) {
    return exp_impl<float, int32_t>(x);
}
inline f32x16 exp(f32x16 x) {
    return exp_impl<f32x16, i32x16>(x);
}

inline float tanh(float x) {
    return 1.0f - 2.0f / (exp(2.0f * x) + 1.0f);
}
inline f32x16 tanh(f32x16 x) {
    return 1.0f - 2.0f / (exp(2.0f * x) + 1.0f);
}

inline float silu(float x) {
    return x / (1.0f + exp(-x));
}
inline f32x16 silu(f32x16 x) {
    return x / (1.0f + exp(-x));
}

// GELU with the tanh approximation, as torch.nn.GELU(approximate="tanh").
inline float gelu_tanh(float x) {
    return 0.5f * x * (1.0f + tanh(0.7978845608028654f * (x + 0.044715f * x * x * x)));
}
inline f32x16 gelu_tanh(f32x16 x) {
    return 0.5f * x * (1.0f + tanh(0.7978845608028654f * (x + 0.044715f * x * x * x)));
}

// y[i] = f(x[i]) for a unary function with scalar and vector overloads (x may equal y).
template <class F>
inline void map(const float* x, float* y, int64_t n, F f) {
    int64_t i = 0;
    for (; i + kLanes <= n; i += kLanes) store(y + i, f(load(x + i)));
    for (; i < n; ++i) y[i] = f(x[i]);
}

// s[j] *= scale; returns max(running_max, max_j s[j]).
inline float scale_max(float* s, int64_t n, float scale, float running_max) {
    f32x16 m = splat(running_max);
    int64_t j = 0;
    for (; j + kLanes <= n; j += kLanes) {
        const f32x16 v = load(s + j) * scale;
        store(s + j, v);
        m = v > m ? v : m;
    }
    float mx = running_max;
    for (int k = 0; k < kLanes; ++k) mx = m[k] > mx ? m[k] : mx;
    for (; j < n; ++j) {
        s[j] *= scale;
        mx = s[j] > mx ? s[j] : mx;
    }
    return mx;
}

// s[j] = exp(s[j] - sub); returns the sum.
inline float exp_sub_sum(float* s, int64_t n, float sub) {
    f32x16 acc{};
    int64_t j = 0;
    for (; j + kLanes <= n; j += kLanes) {
        const f32x16 e = exp(load(s + j) - sub);
        store(s + j, e);
        acc += e;
    }
    float sum = 0.0f;
    for (int k = 0; k < kLanes; ++k) sum += acc[k];
    for (; j < n; ++j) {
        s[j] = exp(s[j] - sub);
        sum += s[j];
    }
    return sum;
}

typedef float f32x8 __attribute__((vector_size(32)));
typedef double f64x8 __attribute__((vector_size(64)));

inline f64x8 load_f64x8(const float* p) {
    f32x8 v;
    std::memcpy(&v, p, sizeof v);
    return __builtin_convertvector(v, f64x8);
}

// sum_i g(double(x[i])), g having scalar and vector forms (a generic lambda), summed in double in one fixed
// order for every n: 32 running sums (four 8-wide accumulators, as one sequential double sum waits out each
// add's latency: it held LayerNorm to ~1.5 GB/s), then across lanes, then the tail.
template <class G>
inline double sum_f64(const float* x, int64_t n, G g) {
    f64x8 a0{}, a1{}, a2{}, a3{};
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 += g(load_f64x8(x + i));
        a1 += g(load_f64x8(x + i + 8));
        a2 += g(load_f64x8(x + i + 16));
        a3 += g(load_f64x8(x + i + 24));
    }
    for (; i + 8 <= n; i += 8) a0 += g(load_f64x8(x + i));
    const f64x8 a = (a0 + a1) + (a2 + a3);
    double s = 0;
    for (int k = 0; k < 8; ++k) s += a[k];
    for (; i < n; ++i) s += g(double(x[i]));
    return s;
}

// a[j] *= factor.
inline void scale(float* a, int64_t n, float factor) {
    map(a, a, n, [factor](auto v) { return v * factor; });
}

}  // namespace sr::vec
