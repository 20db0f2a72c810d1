// Element types of tensors and the scalar conversions between them.
//
//   float x = sr::bf16_to_f32(bits);  uint16_t b = sr::f32_to_bf16(x);   // round-to-nearest-even
//   size_t n = sr::dtype_size(sr::DType::F16);                           // 2
#pragma once

#include <cstdint>
#include <cstring>
#include <optional>
#include <string_view>

namespace sr {

enum class DType : uint8_t { F32, BF16, F16, F8_E4M3, I32, I64, Bool };

constexpr size_t dtype_size(DType t) {
    switch (t) {
        case DType::F32:
            return 4;
        case DType::BF16:
            return 2;
        case DType::F16:
            return 2;
        case DType::F8_E4M3:
            return 1;
        case DType::I32:
            return 4;
        case DType::I64:
            return 8;
        case DType::Bool:
            return 1;
    }
    return 0;
}

// Our short name ("f32", "bf16", ...).
std::string_view dtype_name(DType t);
// The safetensors header spelling ("F32", "BF16", "F16", "F8_E4M3", "I32", "I64", "BOOL").
std::string_view dtype_safetensors_name(DType t);
std::optional<DType> dtype_from_safetensors_name(std::string_view name);
bool dtype_is_float(DType t);

inline float bits_to_f32(uint32_t u) {
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}
inline uint32_t f32_to_bits(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    return u;
}

inline float bf16_to_f32(uint16_t b) {
    return bits_to_f32(uint32_t(b) << 16);
}

// Round to nearest even, as PyTorch's .to(torch.bfloat16) does; NaN stays NaN.
inline uint16_t f32_to_bf16(float f) {
    uint32_t u = f32_to_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1u);
    return uint16_t(u >> 16);
}

float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);
// OCP FP8 E4M3 (the "fn" variant: no infinities, 0x7f/0xff are NaN, max 448). Saturates on overflow.
float f8e4m3_to_f32(uint8_t v);
uint8_t f32_to_f8e4m3(float f);

// Converts n elements between float types (F32/BF16/F16/F8_E4M3) or between equal types.
void convert_elements(const void* src, DType src_type, void* dst, DType dst_type, size_t n);

}  // namespace sr
