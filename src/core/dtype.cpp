#include "core/dtype.h"

#include <cmath>
#include <cstring>

#include "core/error.h"

namespace sr {

std::string_view dtype_name(DType t) {
    switch (t) {
        case DType::F32:
            return "f32";
        case DType::BF16:
            return "bf16";
        case DType::F16:
            return "f16";
        case DType::F8_E4M3:
            return "f8_e4m3";
        case DType::I32:
            return "i32";
        case DType::I64:
            return "i64";
        case DType::Bool:
            return "bool";
    }
    return "?";
}

std::string_view dtype_safetensors_name(DType t) {
    switch (t) {
        case DType::F32:
            return "F32";
        case DType::BF16:
            return "BF16";
        case DType::F16:
            return "F16";
        case DType::F8_E4M3:
            return "F8_E4M3";
        case DType::I32:
            return "I32";
        case DType::I64:
            return "I64";
        case DType::Bool:
            return "BOOL";
    }
    return "?";
}

std::optional<DType> dtype_from_safetensors_name(std::string_view name) {
    for (DType t : {DType::F32, DType::BF16, DType::F16, DType::F8_E4M3, DType::I32, DType::I64, DType::Bool})
        if (dtype_safetensors_name(t) == name) return t;
    return std::nullopt;
}

bool dtype_is_float(DType t) {
    return t == DType::F32 || t == DType::BF16 || t == DType::F16 || t == DType::F8_E4M3;
}

float f16_to_f32(uint16_t h) {
    const uint32_t sign = uint32_t(h & 0x8000u) << 16;
    const uint32_t exp = (h >> 10) & 0x1f;
    const uint32_t mant = h & 0x3ffu;
    if (exp == 0) {
        // zero or subnormal: value = mant * 2^-24
        float v = std::ldexp(float(mant), -24);
        return sign ? -v : v;
    }
    if (exp == 31) return bits_to_f32(sign | 0x7f800000u | (mant << 13));
    return bits_to_f32(sign | ((exp + 112) << 23) | (mant << 13));
}

uint16_t f32_to_f16(float f) {
    const uint32_t u = f32_to_bits(f);
    const uint16_t sign = uint16_t((u >> 16) & 0x8000u);
    const float a = std::fabs(f);
    if (std::isnan(f)) return uint16_t(sign | 0x7e00u);
    if (a >= 65520.0f) return uint16_t(sign | 0x7c00u);  // rounds to infinity
    if (a < 6.103515625e-05f) {
        // subnormal range: quantum 2^-24, round to nearest even
        return uint16_t(sign | uint16_t(std::nearbyint(a * 16777216.0f)));
    }
    uint32_t v = u & 0x7fffffffu;
    v += 0x0fffu + ((v >> 13) & 1u);  // round to nearest even at bit 13
    return uint16_t(sign | (((v >> 23) - 112) << 10) | ((v >> 13) & 0x3ffu));
}

float f8e4m3_to_f32(uint8_t v) {
    const bool neg = v & 0x80;
    const int exp = (v >> 3) & 0xf;
    const int mant = v & 0x7;
    float r;
    if (exp == 0xf && mant == 0x7) return NAN;
    if (exp == 0)
        r = std::ldexp(float(mant), -9);  // subnormal: mant/8 * 2^-6
    else
        r = std::ldexp(1.0f + float(mant) / 8.0f, exp - 7);
    return neg ? -r : r;
}

uint8_t f32_to_f8e4m3(float f) {
    if (std::isnan(f)) return 0x7f;
    const uint8_t sign = std::signbit(f) ? 0x80 : 0;
    float a = std::fabs(f);
    if (a >= 448.0f) return uint8_t(sign | 0x7e);  // saturate to the largest finite value
    // Find the nearest representable value by rounding the mantissa at the exponent's quantum.
    int e;
    std::frexp(a, &e);       // a = m * 2^e, m in [0.5,1)
    int exp = e - 1;         // a in [2^exp, 2^(exp+1))
    if (exp < -6) exp = -6;  // subnormals share the quantum of the smallest normal binade
    const float quantum = std::ldexp(1.0f, exp - 3);
    float q = std::nearbyint(a / quantum) * quantum;
    if (q >= 448.0f) return uint8_t(sign | 0x7e);
    if (q == 0.0f) return sign;
    int qe;
    float qm = std::frexp(q, &qe);
    int biased = qe - 1 + 7;
    if (biased <= 0) return uint8_t(sign | uint8_t(q / std::ldexp(1.0f, -9)));  // subnormal encoding
    int mant = int((qm * 2.0f - 1.0f) * 8.0f + 0.5f);
    return uint8_t(sign | (biased << 3) | mant);
}

namespace {
float load_float(const void* p, DType t, size_t i) {
    switch (t) {
        case DType::F32:
            return static_cast<const float*>(p)[i];
        case DType::BF16:
            return bf16_to_f32(static_cast<const uint16_t*>(p)[i]);
        case DType::F16:
            return f16_to_f32(static_cast<const uint16_t*>(p)[i]);
        case DType::F8_E4M3:
            return f8e4m3_to_f32(static_cast<const uint8_t*>(p)[i]);
        default:
            SR_ASSERT(false, "load_float on {}", dtype_name(t));
    }
    return 0;
}
void store_float(void* p, DType t, size_t i, float v) {
    switch (t) {
        case DType::F32:
            static_cast<float*>(p)[i] = v;
            return;
        case DType::BF16:
            static_cast<uint16_t*>(p)[i] = f32_to_bf16(v);
            return;
        case DType::F16:
            static_cast<uint16_t*>(p)[i] = f32_to_f16(v);
            return;
        case DType::F8_E4M3:
            static_cast<uint8_t*>(p)[i] = f32_to_f8e4m3(v);
            return;
        default:
            SR_ASSERT(false, "store_float on {}", dtype_name(t));
    }
}
}  // namespace

void convert_elements(const void* src, DType src_type, void* dst, DType dst_type, size_t n) {
    if (src_type == dst_type) {
        std::memcpy(dst, src, n * dtype_size(src_type));
        return;
    }
    SR_ASSERT(dtype_is_float(src_type) && dtype_is_float(dst_type), "convert {} -> {}", dtype_name(src_type),
              dtype_name(dst_type));
    if (src_type == DType::BF16 && dst_type == DType::F32) {
        const auto* s = static_cast<const uint16_t*>(src);
        auto* d = static_cast<float*>(dst);
        for (size_t i = 0; i < n; ++i) d[i] = bf16_to_f32(s[i]);
        return;
    }
    if (src_type == DType::F32 && dst_type == DType::BF16) {
        // f32_to_bf16 without its branch, so that the compiler vectorizes the loop (the attention and the
        // bf16 GEMMs round every operand through here): the same bits, NaN included.
        const auto* s = static_cast<const float*>(src);
        auto* d = static_cast<uint16_t*>(dst);
        for (size_t i = 0; i < n; ++i) {
            uint32_t u;
            std::memcpy(&u, s + i, sizeof u);
            const uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16, quiet_nan = (u >> 16) | 0x40u;
            d[i] = uint16_t((u & 0x7fffffffu) > 0x7f800000u ? quiet_nan : rounded);
        }
        return;
    }
    for (size_t i = 0; i < n; ++i) store_float(dst, dst_type, i, load_float(src, src_type, i));
}

}  // namespace sr
