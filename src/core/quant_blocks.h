// GGUF block quantization, one block at a time: ggml's block layouts byte for byte, dequantization of a block
// (or of one element) on the host and in CUDA device code, and quantization of a block as ggml's reference
// quantizers (quantize_row_<type>_ref, without an importance matrix) compute it, on the host.
//
// This header is C++17 with no std:: containers so that .cu files can include it: the dequantize functions
// are SR_HOST_DEVICE (`__host__ __device__` under nvcc). core/quant.h is the row-level interface on top of it.
//
//   const auto* blocks = reinterpret_cast<const sr::qblock::BlockQ4_K*>(row_bytes);   // any address: align 1
//   float out[sr::qblock::BlockQ4_K::kElems];
//   sr::qblock::dequantize(blocks[b], out);            // 256 floats, bit-identical to ggml's dequantize_row_q4_K
//   float v = sr::qblock::dequantize_one(blocks[b], 17);   // one element (e.g. a thread's) of the same block
//   sr::qblock::quantize(src, block);                  // host only: quantize_row_q4_K_ref for one block
//
// Bit-exactness: every product in a dequantization is exact in f32 (an fp16 scale has 11 significant bits, a
// sub-block scale at most 8, a quant at most 6), so the result does not depend on the order of the products
// or on whether the compiler fuses the final add into an FMA: host, device and ggml agree bit for bit.
// Quantization is not so lucky (e.g. `x*id + 8.5f`), so the quantizers round each product that feeds an
// add explicitly (detail::mul), matching ggml's C code compiled without contraction (and the gguf package's
// numpy quantizers) whatever -ffp-contract the including file is compiled with.
//
// Non-finite inputs to a quantizer give a defined but meaningless block (never undefined behaviour): check
// weights for NaN/Inf before quantizing if that matters.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define SR_HOST_DEVICE __host__ __device__
#else
#define SR_HOST_DEVICE
#endif

// The output of a dequantization never overlaps its block; saying so lets the compiler keep the block's bytes
// in registers across the stores (uint8_t may alias anything) and vectorize.
#if defined(__GNUC__) || defined(__CUDACC__)
#define SR_RESTRICT __restrict__
#else
#define SR_RESTRICT
#endif

namespace sr::qblock {

constexpr int kQK = 32;     // elements per block of the legacy types (Q4_0 ... Q8_0)
constexpr int kQK_K = 256;  // elements per super-block of the K types

// ---------------------------------------------------------------------------------------------------------
// Half floats (IEEE binary16): bit-exact conversions that work on both sides.

SR_HOST_DEVICE inline float bits_as_float(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}
SR_HOST_DEVICE inline uint32_t float_as_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

// Exact (every fp16 value is an f32 value); NaN payloads are kept.
SR_HOST_DEVICE inline float half_to_float(uint16_t h) {
    const uint32_t sign = uint32_t(h & 0x8000u) << 16;
    const uint32_t exp = (h >> 10) & 0x1fu;
    const uint32_t mant = h & 0x3ffu;
    if (exp == 0x1fu) return bits_as_float(sign | 0x7f800000u | (mant << 13));  // Inf, NaN
    if (exp != 0) return bits_as_float(sign | ((exp + 112u) << 23) | (mant << 13));
    // Zero or subnormal: mant * 2^-24, exact in f32.
    const float v = float(mant) * 5.9604644775390625e-8f;
    return sign ? -v : v;
}

// Round to nearest even, overflow to Inf, NaN stays a (quiet) NaN: what ggml's GGML_FP32_TO_FP16 (F16C) and
// numpy's astype(float16) compute.
SR_HOST_DEVICE inline uint16_t float_to_half(float f) {
    const uint32_t x = float_as_bits(f);
    const uint32_t sign = (x >> 16) & 0x8000u;
    const uint32_t ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) return uint16_t(sign | 0x7e00u | ((ax >> 13) & 0x3ffu));  // NaN
    if (ax >= 0x477ff000u) return uint16_t(sign | 0x7c00u);  // >= 65520 rounds to Inf (and Inf itself)
    if (ax >= 0x38800000u) {                                 // a normal half: rebias, round at bit 13
        const uint32_t rounded = ax - 0x38000000u + 0xfffu + ((ax >> 13) & 1u);
        return uint16_t(sign | (rounded >> 13));
    }
    // A subnormal half (or zero): round |f| / 2^-24 to an integer, ties to even (1024 is the smallest normal).
    const uint32_t e = ax >> 23;
    if (e < 102) return uint16_t(sign);  // below 2^-25: rounds to zero
    const uint32_t m = (ax & 0x7fffffu) | 0x800000u;
    const uint32_t shift = 126u - e;  // 14 .. 24
    uint32_t q = m >> shift;
    const uint32_t rem = m & ((1u << shift) - 1u), half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (q & 1u))) ++q;
    return uint16_t(sign | q);
}

SR_HOST_DEVICE inline float load_half(const uint8_t* p) {
    return half_to_float(uint16_t(p[0] | (p[1] << 8)));  // little-endian, any alignment
}
inline void store_half(uint8_t* p, float f) {
    const uint16_t h = float_to_half(f);
    p[0] = uint8_t(h & 0xff);
    p[1] = uint8_t(h >> 8);
}

// ---------------------------------------------------------------------------------------------------------
// Block layouts: ggml's structs (ggml-common.h) with the fp16 fields as byte pairs, so a block may sit at
// any address (alignment 1) and reads are little-endian on any host.

struct BlockQ8_0 {
    static constexpr int kElems = kQK;
    uint8_t d[2];  // fp16 scale
    int8_t qs[kQK];
};
struct BlockQ4_0 {
    static constexpr int kElems = kQK;
    uint8_t d[2];
    uint8_t qs[kQK / 2];  // element j in the low nibble of byte j, element j+16 in the high nibble
};
struct BlockQ4_1 {
    static constexpr int kElems = kQK;
    uint8_t d[2];
    uint8_t m[2];  // fp16 minimum
    uint8_t qs[kQK / 2];
};
struct BlockQ5_0 {
    static constexpr int kElems = kQK;
    uint8_t d[2];
    uint8_t qh[4];  // bit i: the fifth bit of element i (little-endian uint32)
    uint8_t qs[kQK / 2];
};
struct BlockQ5_1 {
    static constexpr int kElems = kQK;
    uint8_t d[2];
    uint8_t m[2];
    uint8_t qh[4];
    uint8_t qs[kQK / 2];
};
struct BlockQ3_K {
    static constexpr int kElems = kQK_K;
    uint8_t hmask[kQK_K / 8];  // high bit of each quant (set: +0, clear: -4)
    uint8_t qs[kQK_K / 4];     // low 2 bits
    uint8_t scales[12];        // 16 six-bit scales, offset by 32
    uint8_t d[2];
};
struct BlockQ4_K {
    static constexpr int kElems = kQK_K;
    uint8_t d[2];        // scale of the sub-block scales
    uint8_t dmin[2];     // scale of the sub-block minimums
    uint8_t scales[12];  // 8 six-bit scales and 8 six-bit minimums
    uint8_t qs[kQK_K / 2];
};
struct BlockQ5_K {
    static constexpr int kElems = kQK_K;
    uint8_t d[2];
    uint8_t dmin[2];
    uint8_t scales[12];
    uint8_t qh[kQK_K / 8];
    uint8_t qs[kQK_K / 2];
};
struct BlockQ6_K {
    static constexpr int kElems = kQK_K;
    uint8_t ql[kQK_K / 2];      // low 4 bits
    uint8_t qh[kQK_K / 4];      // high 2 bits
    int8_t scales[kQK_K / 16];  // 16 eight-bit scales
    uint8_t d[2];
};

static_assert(sizeof(BlockQ8_0) == 34 && sizeof(BlockQ4_0) == 18 && sizeof(BlockQ4_1) == 20, "ggml layout");
static_assert(sizeof(BlockQ5_0) == 22 && sizeof(BlockQ5_1) == 24, "ggml layout");
static_assert(sizeof(BlockQ3_K) == 110 && sizeof(BlockQ4_K) == 144 && sizeof(BlockQ5_K) == 176 &&
                  sizeof(BlockQ6_K) == 210,
              "ggml layout");
static_assert(alignof(BlockQ4_K) == 1 && alignof(BlockQ6_K) == 1, "blocks may sit at any address");

// ---------------------------------------------------------------------------------------------------------
// Scale unpacking shared by the K types.

// Q4_K / Q5_K: scale and minimum of sub-block j (0..7), six bits each, packed in 12 bytes.
SR_HOST_DEVICE inline void k4_scale_min(int j, const uint8_t* s, int& scale, int& min) {
    if (j < 4) {
        scale = s[j] & 63;
        min = s[j + 4] & 63;
    } else {
        scale = (s[j + 4] & 0xf) | ((s[j - 4] >> 6) << 4);
        min = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

// Q3_K: scale k (0..15), six bits (low nibble in bytes 0..7, high two bits in bytes 8..11), minus 32.
SR_HOST_DEVICE inline int q3k_scale(int k, const uint8_t* s) {
    const int low = k < 8 ? (s[k] & 0xf) : (s[k - 8] >> 4);
    const int high = (s[8 + k % 4] >> (2 * (k / 4))) & 3;
    return (low | (high << 4)) - 32;
}

SR_HOST_DEVICE inline uint32_t load_u32(const uint8_t* p) {
    return uint32_t(p[0]) | (uint32_t(p[1]) << 8) | (uint32_t(p[2]) << 16) | (uint32_t(p[3]) << 24);
}

// ---------------------------------------------------------------------------------------------------------
// Dequantize one element (0 <= i < kElems). Same value as the whole-block functions below.

SR_HOST_DEVICE inline float dequantize_one(const BlockQ8_0& b, int i) {
    return float(b.qs[i]) * load_half(b.d);
}
SR_HOST_DEVICE inline float dequantize_one(const BlockQ4_0& b, int i) {
    const int q = i < 16 ? (b.qs[i] & 0xf) : (b.qs[i - 16] >> 4);
    return float(q - 8) * load_half(b.d);
}
SR_HOST_DEVICE inline float dequantize_one(const BlockQ4_1& b, int i) {
    const int q = i < 16 ? (b.qs[i] & 0xf) : (b.qs[i - 16] >> 4);
    return float(q) * load_half(b.d) + load_half(b.m);
}
SR_HOST_DEVICE inline float dequantize_one(const BlockQ5_0& b, int i) {
    const int low = i < 16 ? (b.qs[i] & 0xf) : (b.qs[i - 16] >> 4);
    const int q = low | int(((load_u32(b.qh) >> i) & 1u) << 4);
    return float(q - 16) * load_half(b.d);
}
SR_HOST_DEVICE inline float dequantize_one(const BlockQ5_1& b, int i) {
    const int low = i < 16 ? (b.qs[i] & 0xf) : (b.qs[i - 16] >> 4);
    const int q = low | int(((load_u32(b.qh) >> i) & 1u) << 4);
    return float(q) * load_half(b.d) + load_half(b.m);
}
SR_HOST_DEVICE inline float dequantize_one(const BlockQ3_K& b, int i) {
    const int half = i / 128, r = i % 128, shift_index = r / 32, l = r % 32;
    const int low = (b.qs[half * 32 + l] >> (2 * shift_index)) & 3;
    const bool high = (b.hmask[l] >> (half * 4 + shift_index)) & 1;
    const float dl = load_half(b.d) * float(q3k_scale(half * 8 + shift_index * 2 + l / 16, b.scales));
    return dl * float(low - (high ? 0 : 4));
}
SR_HOST_DEVICE inline float dequantize_one(const BlockQ4_K& b, int i) {
    const int j = i / 32;  // sub-block: pairs of sub-blocks share 32 bytes, low nibbles first
    int sc, m;
    k4_scale_min(j, b.scales, sc, m);
    const uint8_t byte = b.qs[(j / 2) * 32 + i % 32];
    const int q = (j & 1) ? (byte >> 4) : (byte & 0xf);
    return load_half(b.d) * float(sc) * float(q) - load_half(b.dmin) * float(m);
}
SR_HOST_DEVICE inline float dequantize_one(const BlockQ5_K& b, int i) {
    const int j = i / 32;
    int sc, m;
    k4_scale_min(j, b.scales, sc, m);
    const uint8_t byte = b.qs[(j / 2) * 32 + i % 32];
    const int q = ((j & 1) ? (byte >> 4) : (byte & 0xf)) | (((b.qh[i % 32] >> j) & 1) << 4);
    return load_half(b.d) * float(sc) * float(q) - load_half(b.dmin) * float(m);
}
SR_HOST_DEVICE inline float dequantize_one(const BlockQ6_K& b, int i) {
    const int half = i / 128, r = i % 128, part = r / 32, l = r % 32;
    const uint8_t low_byte = b.ql[half * 64 + l + 32 * (part & 1)];
    const int low = part < 2 ? (low_byte & 0xf) : (low_byte >> 4);
    const int high = (b.qh[half * 32 + l] >> (2 * part)) & 3;
    const float d = load_half(b.d) * float(b.scales[half * 8 + l / 16 + 2 * part]);
    return d * float((low | (high << 4)) - 32);
}

// ---------------------------------------------------------------------------------------------------------
// Dequantize a whole block into y[0 .. kElems), in ggml's element order.

SR_HOST_DEVICE inline void dequantize(const BlockQ8_0& SR_RESTRICT b, float* SR_RESTRICT y) {
    const float d = load_half(b.d);
    for (int j = 0; j < kQK; ++j) y[j] = float(b.qs[j]) * d;
}
// (Loops that each store one contiguous run vectorize; interleaving y[j] and y[j + 16] does not.)
SR_HOST_DEVICE inline void dequantize(const BlockQ4_0& SR_RESTRICT b, float* SR_RESTRICT y) {
    const float d = load_half(b.d);
    for (int j = 0; j < kQK / 2; ++j) y[j] = float((b.qs[j] & 0xf) - 8) * d;
    for (int j = 0; j < kQK / 2; ++j) y[j + 16] = float((b.qs[j] >> 4) - 8) * d;
}
SR_HOST_DEVICE inline void dequantize(const BlockQ4_1& SR_RESTRICT b, float* SR_RESTRICT y) {
    const float d = load_half(b.d), m = load_half(b.m);
    for (int j = 0; j < kQK / 2; ++j) y[j] = float(b.qs[j] & 0xf) * d + m;
    for (int j = 0; j < kQK / 2; ++j) y[j + 16] = float(b.qs[j] >> 4) * d + m;
}
SR_HOST_DEVICE inline void dequantize(const BlockQ5_0& SR_RESTRICT b, float* SR_RESTRICT y) {
    const float d = load_half(b.d);
    const uint32_t qh = load_u32(b.qh);
    for (int j = 0; j < kQK / 2; ++j) {
        const int q0 = (b.qs[j] & 0xf) | int(((qh >> j) & 1u) << 4);
        const int q1 = (b.qs[j] >> 4) | int(((qh >> (j + 16)) & 1u) << 4);
        y[j] = float(q0 - 16) * d;
        y[j + 16] = float(q1 - 16) * d;
    }
}
SR_HOST_DEVICE inline void dequantize(const BlockQ5_1& SR_RESTRICT b, float* SR_RESTRICT y) {
    const float d = load_half(b.d), m = load_half(b.m);
    const uint32_t qh = load_u32(b.qh);
    for (int j = 0; j < kQK / 2; ++j) {
        const int q0 = (b.qs[j] & 0xf) | int(((qh >> j) & 1u) << 4);
        const int q1 = (b.qs[j] >> 4) | int(((qh >> (j + 16)) & 1u) << 4);
        y[j] = float(q0) * d + m;
        y[j + 16] = float(q1) * d + m;
    }
}
SR_HOST_DEVICE inline void dequantize(const BlockQ3_K& SR_RESTRICT b, float* SR_RESTRICT y) {
    const float d_all = load_half(b.d);
    for (int half = 0; half < 2; ++half) {
        const uint8_t* q = b.qs + half * 32;
        for (int s = 0; s < 4; ++s) {  // 2-bit plane s of q, high bit (half*4 + s) of hmask
            for (int g = 0; g < 2; ++g) {
                const float dl = d_all * float(q3k_scale(half * 8 + s * 2 + g, b.scales));
                for (int l = g * 16; l < g * 16 + 16; ++l) {
                    const int low = (q[l] >> (2 * s)) & 3;
                    const bool high = (b.hmask[l] >> (half * 4 + s)) & 1;
                    *y++ = dl * float(low - (high ? 0 : 4));
                }
            }
        }
    }
}
SR_HOST_DEVICE inline void dequantize(const BlockQ4_K& SR_RESTRICT b, float* SR_RESTRICT y) {
    const float d = load_half(b.d), dmin = load_half(b.dmin);
    for (int pair = 0; pair < 4; ++pair) {
        const uint8_t* q = b.qs + pair * 32;
        int sc, m;
        k4_scale_min(2 * pair, b.scales, sc, m);
        const float d1 = d * float(sc), m1 = dmin * float(m);
        k4_scale_min(2 * pair + 1, b.scales, sc, m);
        const float d2 = d * float(sc), m2 = dmin * float(m);
        for (int l = 0; l < 32; ++l) y[l] = d1 * float(q[l] & 0xf) - m1;
        for (int l = 0; l < 32; ++l) y[l + 32] = d2 * float(q[l] >> 4) - m2;
        y += 64;
    }
}
SR_HOST_DEVICE inline void dequantize(const BlockQ5_K& SR_RESTRICT b, float* SR_RESTRICT y) {
    const float d = load_half(b.d), dmin = load_half(b.dmin);
    for (int pair = 0; pair < 4; ++pair) {
        const uint8_t* q = b.qs + pair * 32;
        int sc, m;
        k4_scale_min(2 * pair, b.scales, sc, m);
        const float d1 = d * float(sc), m1 = dmin * float(m);
        k4_scale_min(2 * pair + 1, b.scales, sc, m);
        const float d2 = d * float(sc), m2 = dmin * float(m);
        const int bit1 = 2 * pair, bit2 = 2 * pair + 1;
        for (int l = 0; l < 32; ++l) y[l] = d1 * float((q[l] & 0xf) | (((b.qh[l] >> bit1) & 1) << 4)) - m1;
        for (int l = 0; l < 32; ++l) y[l + 32] = d2 * float((q[l] >> 4) | (((b.qh[l] >> bit2) & 1) << 4)) - m2;
        y += 64;
    }
}
SR_HOST_DEVICE inline void dequantize(const BlockQ6_K& SR_RESTRICT b, float* SR_RESTRICT y) {
    const float d = load_half(b.d);
    for (int half = 0; half < 2; ++half) {
        for (int part = 0; part < 4; ++part) {  // 32 values: low nibbles of ql[0..32) or ql[32..64), then high
            const uint8_t* ql = b.ql + half * 64 + 32 * (part & 1);
            const uint8_t* qh = b.qh + half * 32;
            const int low_shift = part < 2 ? 0 : 4, high_shift = 2 * part;
            for (int g = 0; g < 2; ++g) {
                const float dl = d * float(b.scales[half * 8 + g + 2 * part]);
                for (int l = 16 * g; l < 16 * g + 16; ++l)
                    y[l] = dl * float((((ql[l] >> low_shift) & 0xf) | (((qh[l] >> high_shift) & 3) << 4)) - 32);
            }
            y += 32;
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// Quantize one block from x[0 .. kElems) (host only), as ggml's quantize_row_<type>_ref.

namespace detail {

// Forces `x` to be rounded to f32 here, so the compiler cannot fuse the product that made it into a
// following add (an FMA rounds once; ggml's reference and numpy round twice).
inline float rounded(float x) {
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__)) && !defined(__CUDA_ARCH__)
    __asm__("" : "+x"(x));
#elif defined(__GNUC__) && defined(__aarch64__) && !defined(__CUDA_ARCH__)
    __asm__("" : "+w"(x));
#else
    volatile float v = x;
    x = v;
#endif
    return x;
}
inline float mul(float a, float b) {
    return rounded(a * b);
}

// C's float -> integer conversion (truncation) where it is defined; 0 for NaN and out-of-range values
// (undefined behaviour in C, reached only by non-finite inputs).
inline int trunc_int(float v) {
    return (v > -2147483648.0f && v < 2147483648.0f) ? int(v) : 0;
}

// ggml's nearest_int: round to nearest, ties to even, by adding 1.5 * 2^23 and reading the mantissa; exact
// for |f| < 2^22 (other values give some integer, as in ggml).
inline int nearest_int(float f) {
    const float v = rounded(f) + 12582912.f;
    return int(float_as_bits(v) & 0x007fffffu) - 0x00400000;
}

inline int clamp_int(int v, int lo, int hi) {
    return v < lo ? lo : (v > hi ? hi : v);
}

constexpr float kGroupMaxEps = 1e-15f;  // ggml's GROUP_MAX_EPS: a group this small is all zeros

// ggml's make_qx_quants with rmse_type 1 (weights x^2) and no importance weights: symmetric quants in
// [-nmax, nmax) stored as L + nmax, scale chosen by a weighted least-squares search over 19 candidates.
inline float make_qx_quants_rmse1(int n, int nmax, const float* x, int8_t* L) {
    float max = 0, amax = 0;
    for (int i = 0; i < n; ++i) {
        const float ax = std::fabs(x[i]);
        if (ax > amax) {
            amax = ax;
            max = x[i];
        }
    }
    if (amax < kGroupMaxEps) {
        for (int i = 0; i < n; ++i) L[i] = 0;
        return 0.f;
    }
    float iscale = float(-nmax) / max;
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; ++i) {
        const int l = clamp_int(nearest_int(iscale * x[i]), -nmax, nmax - 1);
        L[i] = int8_t(l + nmax);
        const float w = x[i] * x[i];
        sumlx += mul(w * x[i], float(l));
        suml2 += mul(w * float(l), float(l));
    }
    float scale = suml2 != 0 ? sumlx / suml2 : 0.0f;
    float best = scale * sumlx;
    for (int is = -9; is <= 9; ++is) {
        if (is == 0) continue;
        iscale = -(float(nmax) + mul(0.1f, float(is))) / max;
        sumlx = suml2 = 0;
        for (int i = 0; i < n; ++i) {
            const int l = clamp_int(nearest_int(iscale * x[i]), -nmax, nmax - 1);
            const float w = x[i] * x[i];
            sumlx += mul(w * x[i], float(l));
            suml2 += mul(w * float(l), float(l));
        }
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; ++i) L[i] = int8_t(nmax + clamp_int(nearest_int(iscale * x[i]), -nmax, nmax - 1));
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

// ggml's make_q3_quants with do_rmse: symmetric quants refined one at a time (up to 5 sweeps) while the
// weighted fit improves; stored as L + nmax.
inline float make_q3_quants(int n, int nmax, const float* x, int8_t* L) {
    float max = 0, amax = 0;
    for (int i = 0; i < n; ++i) {
        const float ax = std::fabs(x[i]);
        if (ax > amax) {
            amax = ax;
            max = x[i];
        }
    }
    if (amax < kGroupMaxEps) {
        for (int i = 0; i < n; ++i) L[i] = 0;
        return 0.f;
    }
    const float iscale = float(-nmax) / max;
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; ++i) {
        const int l = clamp_int(nearest_int(iscale * x[i]), -nmax, nmax - 1);
        L[i] = int8_t(l);
        const float w = x[i] * x[i];
        sumlx += mul(w * x[i], float(l));
        suml2 += mul(w * float(l), float(l));
    }
    for (int itry = 0; itry < 5; ++itry) {
        int n_changed = 0;
        for (int i = 0; i < n; ++i) {
            const float w = x[i] * x[i];
            float slx = sumlx - mul(w * x[i], float(L[i]));
            if (slx > 0) {
                float sl2 = suml2 - mul(w * float(L[i]), float(L[i]));
                const int new_l = clamp_int(nearest_int(x[i] * sl2 / slx), -nmax, nmax - 1);
                if (new_l != L[i]) {
                    slx += mul(w * x[i], float(new_l));
                    sl2 += mul(w * float(new_l), float(new_l));
                    if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
                        L[i] = int8_t(new_l);
                        sumlx = slx;
                        suml2 = sl2;
                        ++n_changed;
                    }
                }
            }
        }
        if (!n_changed) break;
    }
    for (int i = 0; i < n; ++i) L[i] = int8_t(L[i] + nmax);
    return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

// ggml's make_qkx2_quants (use_mad false): asymmetric quants in [0, nmax] with a minimum <= 0, chosen by a
// weighted least-squares fit over nstep + 1 candidate scales. Returns the scale; *the_min = -minimum.
inline float make_qkx2_quants(int n, int nmax, const float* x, const float* weights, uint8_t* L, float* the_min,
                              uint8_t* Laux, float rmin, float rdelta, int nstep) {
    float min = x[0], max = x[0];
    float sum_w = weights[0];
    float sum_x = sum_w * x[0];
    for (int i = 1; i < n; ++i) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        sum_w += weights[i];
        sum_x += mul(weights[i], x[i]);
    }
    if (min > 0) min = 0;
    if (max == min) {
        for (int i = 0; i < n; ++i) L[i] = 0;
        *the_min = -min;
        return 0.f;
    }
    float iscale = float(nmax) / (max - min);
    float scale = 1 / iscale;
    float best_error = 0;
    for (int i = 0; i < n; ++i) {
        L[i] = uint8_t(clamp_int(nearest_int(iscale * (x[i] - min)), 0, nmax));
        float diff = (mul(scale, float(L[i])) + min) - x[i];
        diff = diff * diff;
        best_error += mul(weights[i], diff);
    }
    for (int is = 0; is <= nstep; ++is) {
        iscale = (rmin + mul(rdelta, float(is)) + float(nmax)) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; ++i) {
            const int l = clamp_int(nearest_int(iscale * (x[i] - min)), 0, nmax);
            Laux[i] = uint8_t(l);
            const float w = weights[i];
            sum_l += mul(w, float(l));
            sum_l2 += mul(w * float(l), float(l));
            sum_xl += mul(w * float(l), x[i]);
        }
        const float D = mul(sum_w, sum_l2) - mul(sum_l, sum_l);
        if (D > 0) {
            float this_scale = (mul(sum_w, sum_xl) - mul(sum_x, sum_l)) / D;
            float this_min = (mul(sum_l2, sum_x) - mul(sum_l, sum_xl)) / D;
            if (this_min > 0) {
                this_min = 0;
                this_scale = sum_xl / sum_l2;
            }
            float cur_error = 0;
            for (int i = 0; i < n; ++i) {
                float diff = (mul(this_scale, float(Laux[i])) + this_min) - x[i];
                diff = diff * diff;
                cur_error += mul(weights[i], diff);
            }
            if (cur_error < best_error) {
                for (int i = 0; i < n; ++i) L[i] = Laux[i];
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *the_min = -min;
    return scale;
}

// Q4_K and Q5_K share everything but the quant width and the search range.
template <class Block>
inline void quantize_k4_family(const float* x, Block& y, int nmax, float rmin, float rdelta, int nstep, uint8_t* L) {
    float scales[kQK_K / 32], mins[kQK_K / 32], weights[32];
    uint8_t Laux[32];
    float max_scale = 0, max_min = 0;  // the minimum is subtracted, so scales are never negative
    for (int j = 0; j < kQK_K / 32; ++j) {
        const float* xs = x + 32 * j;
        float sum_x2 = 0;
        for (int l = 0; l < 32; ++l) sum_x2 += mul(xs[l], xs[l]);
        const float av_x = std::sqrt(sum_x2 / 32);
        for (int l = 0; l < 32; ++l) weights[l] = av_x + std::fabs(xs[l]);
        scales[j] = make_qkx2_quants(32, nmax, xs, weights, L + 32 * j, &mins[j], Laux, rmin, rdelta, nstep);
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
    const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
    for (int j = 0; j < kQK_K / 32; ++j) {
        // ggml stores nearest_int's result in a uint8_t before clamping: keep that wrap-around.
        uint8_t ls = uint8_t(nearest_int(inv_scale * scales[j]));
        uint8_t lm = uint8_t(nearest_int(inv_min * mins[j]));
        if (ls > 63) ls = 63;
        if (lm > 63) lm = 63;
        if (j < 4) {
            y.scales[j] = ls;
            y.scales[j + 4] = lm;
        } else {
            y.scales[j + 4] = uint8_t((ls & 0xf) | ((lm & 0xf) << 4));
            y.scales[j - 4] = uint8_t(y.scales[j - 4] | ((ls >> 4) << 6));
            y.scales[j] = uint8_t(y.scales[j] | ((lm >> 4) << 6));
        }
    }
    store_half(y.d, max_scale / 63.f);
    store_half(y.dmin, max_min / 63.f);
    for (int j = 0; j < kQK_K / 32; ++j) {
        int sc, m;
        k4_scale_min(j, y.scales, sc, m);
        const float d = load_half(y.d) * float(sc);
        if (d == 0) continue;  // keep the quants of the search above, as ggml does
        const float dm = mul(load_half(y.dmin), float(m));
        for (int ii = 0; ii < 32; ++ii)
            L[32 * j + ii] = uint8_t(clamp_int(nearest_int((x[32 * j + ii] + dm) / d), 0, nmax));
    }
}

}  // namespace detail

inline void quantize(const float* x, BlockQ8_0& y) {
    float amax = 0;
    for (int j = 0; j < kQK; ++j) {
        const float a = std::fabs(x[j]);
        amax = amax > a ? amax : a;
    }
    const float d = amax / 127;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    store_half(y.d, d);
    for (int j = 0; j < kQK; ++j) y.qs[j] = int8_t(detail::trunc_int(std::round(x[j] * id)));
}

inline void quantize(const float* x, BlockQ4_0& y) {
    float amax = 0, max = 0;  // the value of largest magnitude, the first one on ties
    for (int j = 0; j < kQK; ++j) {
        if (amax < std::fabs(x[j])) {
            amax = std::fabs(x[j]);
            max = x[j];
        }
    }
    const float d = max / -8;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    store_half(y.d, d);
    for (int j = 0; j < kQK / 2; ++j) {
        // ggml: MIN(15, (int8_t)(x*id + 8.5f)), truncating.
        const int q0 = detail::trunc_int(detail::mul(x[j], id) + 8.5f);
        const int q1 = detail::trunc_int(detail::mul(x[j + 16], id) + 8.5f);
        y.qs[j] = uint8_t((q0 < 15 ? q0 : 15) | ((q1 < 15 ? q1 : 15) << 4));
    }
}

inline void quantize(const float* x, BlockQ4_1& y) {
    float min = x[0], max = x[0];
    for (int j = 1; j < kQK; ++j) {
        if (x[j] < min) min = x[j];
        if (x[j] > max) max = x[j];
    }
    const float d = (max - min) / 15;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    store_half(y.d, d);
    store_half(y.m, min);
    for (int j = 0; j < kQK / 2; ++j) {
        const int q0 = detail::trunc_int(detail::mul(x[j] - min, id) + 0.5f);
        const int q1 = detail::trunc_int(detail::mul(x[j + 16] - min, id) + 0.5f);
        y.qs[j] = uint8_t((q0 < 15 ? q0 : 15) | ((q1 < 15 ? q1 : 15) << 4));
    }
}

inline void quantize(const float* x, BlockQ5_0& y) {
    float amax = 0, max = 0;
    for (int j = 0; j < kQK; ++j) {
        if (amax < std::fabs(x[j])) {
            amax = std::fabs(x[j]);
            max = x[j];
        }
    }
    const float d = max / -16;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    store_half(y.d, d);
    uint32_t qh = 0;
    for (int j = 0; j < kQK / 2; ++j) {
        int q0 = detail::trunc_int(detail::mul(x[j], id) + 16.5f);
        int q1 = detail::trunc_int(detail::mul(x[j + 16], id) + 16.5f);
        q0 = q0 < 31 ? q0 : 31;
        q1 = q1 < 31 ? q1 : 31;
        y.qs[j] = uint8_t((q0 & 0xf) | ((q1 & 0xf) << 4));
        qh |= uint32_t((q0 >> 4) & 1) << j;
        qh |= uint32_t((q1 >> 4) & 1) << (j + 16);
    }
    for (int k = 0; k < 4; ++k) y.qh[k] = uint8_t(qh >> (8 * k));
}

inline void quantize(const float* x, BlockQ5_1& y) {
    float min = x[0], max = x[0];
    for (int j = 1; j < kQK; ++j) {
        if (x[j] < min) min = x[j];
        if (x[j] > max) max = x[j];
    }
    const float d = (max - min) / 31;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    store_half(y.d, d);
    store_half(y.m, min);
    uint32_t qh = 0;
    for (int j = 0; j < kQK / 2; ++j) {
        // ggml casts to uint8_t without clamping; (max - min) * id rounds to at most 31.5, so no clamp is hit.
        const int q0 = detail::trunc_int(detail::mul(x[j] - min, id) + 0.5f) & 0xff;
        const int q1 = detail::trunc_int(detail::mul(x[j + 16] - min, id) + 0.5f) & 0xff;
        y.qs[j] = uint8_t((q0 & 0xf) | ((q1 & 0xf) << 4));
        qh |= uint32_t((q0 >> 4) & 1) << j;
        qh |= uint32_t((q1 >> 4) & 1) << (j + 16);
    }
    for (int k = 0; k < 4; ++k) y.qh[k] = uint8_t(qh >> (8 * k));
}

inline void quantize(const float* x, BlockQ3_K& y) {
    int8_t L[kQK_K];
    float scales[kQK_K / 16];
    float max_scale = 0, amax = 0;
    for (int j = 0; j < kQK_K / 16; ++j) {
        scales[j] = detail::make_q3_quants(16, 4, x + 16 * j, L + 16 * j);
        const float scale = std::fabs(scales[j]);
        if (scale > amax) {
            amax = scale;
            max_scale = scales[j];
        }
    }
    memset(y.scales, 0, sizeof y.scales);
    if (max_scale != 0) {
        const float iscale = -32.f / max_scale;
        for (int j = 0; j < kQK_K / 16; ++j) {
            int8_t l = int8_t(detail::nearest_int(iscale * scales[j]));  // ggml narrows before clamping
            l = int8_t(detail::clamp_int(l, -32, 31) + 32);
            if (j < 8)
                y.scales[j] = uint8_t(l & 0xf);
            else
                y.scales[j - 8] = uint8_t(y.scales[j - 8] | ((l & 0xf) << 4));
            l = int8_t(l >> 4);
            y.scales[j % 4 + 8] = uint8_t(y.scales[j % 4 + 8] | (l << (2 * (j / 4))));
        }
        store_half(y.d, 1 / iscale);
    } else {
        store_half(y.d, 0.f);
    }
    for (int j = 0; j < kQK_K / 16; ++j) {
        const float d = load_half(y.d) * float(q3k_scale(j, y.scales));
        if (d == 0) continue;
        for (int ii = 0; ii < 16; ++ii)
            L[16 * j + ii] = int8_t(detail::clamp_int(detail::nearest_int(x[16 * j + ii] / d), -4, 3) + 4);
    }
    // High bits: bit k of hmask[m] holds quant 32 * k + m.
    memset(y.hmask, 0, sizeof y.hmask);
    for (int j = 0; j < kQK_K; ++j) {
        if (L[j] > 3) {
            y.hmask[j % 32] = uint8_t(y.hmask[j % 32] | (1u << (j / 32)));
            L[j] = int8_t(L[j] - 4);
        }
    }
    for (int j = 0; j < kQK_K; j += 128)
        for (int l = 0; l < 32; ++l)
            y.qs[j / 4 + l] = uint8_t(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) | (L[j + l + 96] << 6));
}

inline void quantize(const float* x, BlockQ4_K& y) {
    uint8_t L[kQK_K];
    detail::quantize_k4_family(x, y, 15, -1.f, 0.1f, 20, L);
    for (int j = 0; j < kQK_K; j += 64)
        for (int l = 0; l < 32; ++l) y.qs[j / 2 + l] = uint8_t(L[j + l] | (L[j + l + 32] << 4));
}

inline void quantize(const float* x, BlockQ5_K& y) {
    uint8_t L[kQK_K];
    detail::quantize_k4_family(x, y, 31, -0.5f, 0.1f, 15, L);
    memset(y.qh, 0, sizeof y.qh);
    for (int n = 0, pair = 0; n < kQK_K; n += 64, ++pair) {
        for (int j = 0; j < 32; ++j) {
            int l1 = L[n + j], l2 = L[n + j + 32];
            if (l1 > 15) {
                l1 -= 16;
                y.qh[j] = uint8_t(y.qh[j] | (1u << (2 * pair)));
            }
            if (l2 > 15) {
                l2 -= 16;
                y.qh[j] = uint8_t(y.qh[j] | (2u << (2 * pair)));
            }
            y.qs[pair * 32 + j] = uint8_t(l1 | (l2 << 4));
        }
    }
}

inline void quantize(const float* x, BlockQ6_K& y) {
    int8_t L[kQK_K];
    float scales[kQK_K / 16];
    float max_scale = 0, max_abs_scale = 0;
    for (int ib = 0; ib < kQK_K / 16; ++ib) {
        scales[ib] = detail::make_qx_quants_rmse1(16, 32, x + 16 * ib, L + 16 * ib);
        const float abs_scale = std::fabs(scales[ib]);
        if (abs_scale > max_abs_scale) {
            max_abs_scale = abs_scale;
            max_scale = scales[ib];
        }
    }
    if (max_abs_scale < detail::kGroupMaxEps) {
        memset(&y, 0, sizeof y);  // fp16 zero is all zero bits
        return;
    }
    const float iscale = -128.f / max_scale;
    store_half(y.d, 1 / iscale);
    for (int ib = 0; ib < kQK_K / 16; ++ib) {
        const int l = detail::nearest_int(iscale * scales[ib]);
        y.scales[ib] = int8_t(l < 127 ? l : 127);
    }
    for (int j = 0; j < kQK_K / 16; ++j) {
        const float d = load_half(y.d) * float(y.scales[j]);
        if (d == 0) continue;
        for (int ii = 0; ii < 16; ++ii)
            L[16 * j + ii] = int8_t(detail::clamp_int(detail::nearest_int(x[16 * j + ii] / d), -32, 31) + 32);
    }
    for (int j = 0, half = 0; j < kQK_K; j += 128, ++half) {
        uint8_t* ql = y.ql + 64 * half;
        uint8_t* qh = y.qh + 32 * half;
        for (int l = 0; l < 32; ++l) {
            const int q1 = L[j + l], q2 = L[j + l + 32], q3 = L[j + l + 64], q4 = L[j + l + 96];
            ql[l] = uint8_t((q1 & 0xf) | ((q3 & 0xf) << 4));
            ql[l + 32] = uint8_t((q2 & 0xf) | ((q4 & 0xf) << 4));
            qh[l] = uint8_t((q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6));
        }
    }
}

}  // namespace sr::qblock
