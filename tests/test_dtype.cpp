// Scalar dtype conversions against known bit patterns (the ones PyTorch produces for .to(dtype), which is
// round-to-nearest-even), plus exhaustive round trips: every bf16/f16/fp8 code that is a number must come
// back unchanged through f32, so a conversion bug anywhere in the range fails here.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "core/dtype.h"

namespace {

using sr::DType;

constexpr float kInf = std::numeric_limits<float>::infinity();

bool f16_is_nan(uint16_t h) {
    return (h & 0x7c00u) == 0x7c00u && (h & 0x03ffu) != 0;
}
bool bf16_is_nan(uint16_t b) {
    return (b & 0x7f80u) == 0x7f80u && (b & 0x007fu) != 0;
}

TEST(DType, SizesAndNames) {
    EXPECT_EQ(sr::dtype_size(DType::F32), 4u);
    EXPECT_EQ(sr::dtype_size(DType::BF16), 2u);
    EXPECT_EQ(sr::dtype_size(DType::F16), 2u);
    EXPECT_EQ(sr::dtype_size(DType::F8_E4M3), 1u);
    EXPECT_EQ(sr::dtype_size(DType::I32), 4u);
    EXPECT_EQ(sr::dtype_size(DType::I64), 8u);
    EXPECT_EQ(sr::dtype_size(DType::Bool), 1u);
    EXPECT_EQ(sr::dtype_name(DType::BF16), "bf16");
    EXPECT_EQ(sr::dtype_name(DType::F8_E4M3), "f8_e4m3");
    EXPECT_EQ(sr::dtype_safetensors_name(DType::Bool), "BOOL");
    EXPECT_EQ(sr::dtype_safetensors_name(DType::F8_E4M3), "F8_E4M3");
}

TEST(DType, SafetensorsNamesRoundTripAndUnknownsAreRejected) {
    for (DType t : {DType::F32, DType::BF16, DType::F16, DType::F8_E4M3, DType::I32, DType::I64, DType::Bool}) {
        const auto back = sr::dtype_from_safetensors_name(sr::dtype_safetensors_name(t));
        ASSERT_TRUE(back.has_value()) << sr::dtype_name(t);
        EXPECT_EQ(*back, t);
    }
    // The header spelling is upper case; F8_E5M2 and U8 are real safetensors dtypes we do not support.
    for (const char* name : {"f32", "F8_E5M2", "U8", "F64", "", "BF16 "})
        EXPECT_FALSE(sr::dtype_from_safetensors_name(name).has_value()) << "'" << name << "'";
}

TEST(DType, IsFloat) {
    EXPECT_TRUE(sr::dtype_is_float(DType::F32));
    EXPECT_TRUE(sr::dtype_is_float(DType::BF16));
    EXPECT_TRUE(sr::dtype_is_float(DType::F16));
    EXPECT_TRUE(sr::dtype_is_float(DType::F8_E4M3));
    EXPECT_FALSE(sr::dtype_is_float(DType::I32));
    EXPECT_FALSE(sr::dtype_is_float(DType::I64));
    EXPECT_FALSE(sr::dtype_is_float(DType::Bool));
}

TEST(BF16, KnownBitPatterns) {
    EXPECT_EQ(sr::f32_to_bf16(1.0f), 0x3f80);
    EXPECT_EQ(sr::f32_to_bf16(-2.0f), 0xc000);
    EXPECT_EQ(sr::f32_to_bf16(0.0f), 0x0000);
    EXPECT_EQ(sr::f32_to_bf16(-0.0f), 0x8000);
    EXPECT_EQ(sr::f32_to_bf16(kInf), 0x7f80);
    EXPECT_EQ(sr::f32_to_bf16(-kInf), 0xff80);
    EXPECT_EQ(sr::bf16_to_f32(0x3f80), 1.0f);
    EXPECT_EQ(sr::bf16_to_f32(0x4049), 3.140625f);
}

TEST(BF16, RoundsToNearestEven) {
    using sr::bits_to_f32;
    // Halfway between 0x3f80 and 0x3f81: the even one (0x3f80) wins.
    EXPECT_EQ(sr::f32_to_bf16(bits_to_f32(0x3f808000u)), 0x3f80);
    // Halfway between 0x3f81 and 0x3f82: rounds up to the even one.
    EXPECT_EQ(sr::f32_to_bf16(bits_to_f32(0x3f818000u)), 0x3f82);
    // Just above and below halfway go to the nearer neighbour.
    EXPECT_EQ(sr::f32_to_bf16(bits_to_f32(0x3f808001u)), 0x3f81);
    EXPECT_EQ(sr::f32_to_bf16(bits_to_f32(0x3f807fffu)), 0x3f80);
    // The carry propagates into the exponent: 0x3fffffff is closer to 2.0 (0x4000) than to 0x3fff.
    EXPECT_EQ(sr::f32_to_bf16(bits_to_f32(0x3fffffffu)), 0x4000);
    // FLT_MAX is above the largest bf16 by more than half an ulp, so it rounds to infinity (as PyTorch does).
    EXPECT_EQ(sr::f32_to_bf16(std::numeric_limits<float>::max()), 0x7f80);
    EXPECT_EQ(sr::f32_to_bf16(bits_to_f32(0x7f7f7fffu)), 0x7f7f);
    // f32 subnormals: ties go to even there too.
    EXPECT_EQ(sr::f32_to_bf16(bits_to_f32(0x00008000u)), 0x0000);
    EXPECT_EQ(sr::f32_to_bf16(bits_to_f32(0x00018000u)), 0x0002);
}

TEST(BF16, ConvertElementsRoundsAsTheScalarFunction) {
    // convert_elements' f32 -> bf16 loop is a branch-free copy of f32_to_bf16 (so that it vectorizes): the same
    // bits for every class of input, NaNs with payloads and subnormals included, at every position of a vector
    // (the count is not a multiple of any vector width).
    std::vector<uint32_t> bits = {0x00000000u, 0x80000000u, 0x7f800000u, 0xff800000u, 0x7fc00000u, 0xffc00001u,
                                  0x7f800001u, 0xff80ffffu, 0x7fbfffffu, 0x00008000u, 0x00018000u, 0x3f808000u,
                                  0x3f818000u, 0x3fffffffu, 0x7f7fffffu, 0x7f7f7fffu, 0x80007fffu};
    for (uint64_t u = 0; u <= 0xffffffffu; u += 65521) bits.push_back(uint32_t(u));
    std::vector<float> f(bits.size());
    std::memcpy(f.data(), bits.data(), bits.size() * sizeof(float));
    std::vector<uint16_t> got(bits.size());
    sr::convert_elements(f.data(), DType::F32, got.data(), DType::BF16, f.size());
    for (size_t i = 0; i < bits.size(); ++i) ASSERT_EQ(got[i], sr::f32_to_bf16(f[i])) << std::hex << bits[i];
}

TEST(BF16, NaNStaysNaNWithItsSign) {
    // A signalling NaN whose payload sits only in the low 16 bits would become infinity if simply rounded.
    for (uint32_t bits : {0x7f800001u, 0x7fc00000u, 0x7fffffffu, 0xff800001u, 0xffc00000u}) {
        const uint16_t b = sr::f32_to_bf16(sr::bits_to_f32(bits));
        EXPECT_TRUE(bf16_is_nan(b)) << std::hex << bits << " -> " << b;
        EXPECT_EQ(b & 0x8000u, (bits >> 16) & 0x8000u) << std::hex << bits;
    }
    EXPECT_TRUE(std::isnan(sr::bf16_to_f32(0x7fc0)));
}

TEST(BF16, EveryNonNaNCodeRoundTripsThroughF32) {
    int bad = 0;
    for (uint32_t b = 0; b <= 0xffff; ++b) {
        const uint16_t code = uint16_t(b);
        const uint16_t back = sr::f32_to_bf16(sr::bf16_to_f32(code));
        if (bf16_is_nan(code) ? !bf16_is_nan(back) : back != code) {
            if (++bad <= 5) ADD_FAILURE() << std::hex << "bf16 0x" << b << " came back as 0x" << back;
        }
    }
    EXPECT_EQ(bad, 0);
}

TEST(F16, KnownBitPatterns) {
    EXPECT_EQ(sr::f32_to_f16(1.0f), 0x3c00);
    EXPECT_EQ(sr::f32_to_f16(-2.0f), 0xc000);
    EXPECT_EQ(sr::f32_to_f16(0.1f), 0x2e66);
    EXPECT_EQ(sr::f32_to_f16(65504.0f), 0x7bff);  // the largest finite f16
    EXPECT_EQ(sr::f32_to_f16(-0.0f), 0x8000);
    EXPECT_EQ(sr::f32_to_f16(std::ldexp(1.0f, -14)), 0x0400);         // smallest normal
    EXPECT_EQ(sr::f32_to_f16(std::ldexp(1.0f, -24)), 0x0001);         // smallest subnormal
    EXPECT_EQ(sr::f32_to_f16(1023 * std::ldexp(1.0f, -24)), 0x03ff);  // largest subnormal
    EXPECT_EQ(sr::f32_to_f16(kInf), 0x7c00);
    EXPECT_EQ(sr::f32_to_f16(-kInf), 0xfc00);
    EXPECT_EQ(sr::f16_to_f32(0x7bff), 65504.0f);
    EXPECT_EQ(sr::f16_to_f32(0x0001), std::ldexp(1.0f, -24));
    EXPECT_EQ(sr::f16_to_f32(0xfc00), -kInf);
}

TEST(F16, RoundsToNearestEvenAndOverflowsToInfinity) {
    // 65520 is exactly halfway between 65504 and the next step (65536, not representable): ties to even
    // give infinity, anything below stays at 65504.
    EXPECT_EQ(sr::f32_to_f16(65519.0f), 0x7bff);
    EXPECT_EQ(sr::f32_to_f16(std::nextafter(65520.0f, 0.0f)), 0x7bff);
    EXPECT_EQ(sr::f32_to_f16(65520.0f), 0x7c00);
    EXPECT_EQ(sr::f32_to_f16(1.0e6f), 0x7c00);
    EXPECT_EQ(sr::f32_to_f16(-1.0e6f), 0xfc00);
    // 1 + 2^-11 is halfway between 1 and 1 + 2^-10: stays at the even 0x3c00; 1 + 3*2^-11 goes up to 0x3c02.
    EXPECT_EQ(sr::f32_to_f16(1.0f + std::ldexp(1.0f, -11)), 0x3c00);
    EXPECT_EQ(sr::f32_to_f16(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3c02);
    // Halfway below 2.0 rounds up into the next binade.
    EXPECT_EQ(sr::f32_to_f16(2.0f - std::ldexp(1.0f, -11)), 0x4000);
    // Subnormal ties: 0.5 ulp -> 0, 1.5 ulp -> 2, 2.5 ulp -> 2, and 1023.5 ulp rounds into the normals.
    const float ulp = std::ldexp(1.0f, -24);
    EXPECT_EQ(sr::f32_to_f16(0.5f * ulp), 0x0000);
    EXPECT_EQ(sr::f32_to_f16(1.5f * ulp), 0x0002);
    EXPECT_EQ(sr::f32_to_f16(2.5f * ulp), 0x0002);
    EXPECT_EQ(sr::f32_to_f16(0.75f * ulp), 0x0001);
    EXPECT_EQ(sr::f32_to_f16(1023.5f * ulp), 0x0400);
    EXPECT_EQ(sr::f32_to_f16(-0.5f * ulp), 0x8000);  // underflow keeps the sign
}

TEST(F16, NaNStaysNaNWithItsSign) {
    for (uint32_t bits : {0x7f800001u, 0x7fc00000u, 0xffc00000u}) {
        const uint16_t h = sr::f32_to_f16(sr::bits_to_f32(bits));
        EXPECT_TRUE(f16_is_nan(h)) << std::hex << bits << " -> " << h;
        EXPECT_EQ(h & 0x8000u, (bits >> 16) & 0x8000u);
    }
    EXPECT_TRUE(std::isnan(sr::f16_to_f32(0x7e00)));
    EXPECT_TRUE(std::isnan(sr::f16_to_f32(0x7c01)));
}

TEST(F16, EveryNonNaNCodeRoundTripsThroughF32) {
    int bad = 0;
    for (uint32_t b = 0; b <= 0xffff; ++b) {
        const uint16_t code = uint16_t(b);
        const uint16_t back = sr::f32_to_f16(sr::f16_to_f32(code));
        if (f16_is_nan(code) ? !f16_is_nan(back) : back != code) {
            if (++bad <= 5) ADD_FAILURE() << std::hex << "f16 0x" << b << " came back as 0x" << back;
        }
    }
    EXPECT_EQ(bad, 0);
}

TEST(F8E4M3, KnownBitPatterns) {
    EXPECT_EQ(sr::f32_to_f8e4m3(448.0f), 0x7e);  // the largest finite value
    EXPECT_EQ(sr::f32_to_f8e4m3(-448.0f), 0xfe);
    EXPECT_EQ(sr::f32_to_f8e4m3(1.0f), 0x38);
    EXPECT_EQ(sr::f32_to_f8e4m3(-1.0f), 0xb8);
    EXPECT_EQ(sr::f32_to_f8e4m3(0.5f), 0x30);
    EXPECT_EQ(sr::f32_to_f8e4m3(2.0f), 0x40);
    EXPECT_EQ(sr::f32_to_f8e4m3(240.0f), 0x77);
    EXPECT_EQ(sr::f32_to_f8e4m3(256.0f), 0x78);
    EXPECT_EQ(sr::f32_to_f8e4m3(std::ldexp(1.0f, -6)), 0x08);      // smallest normal
    EXPECT_EQ(sr::f32_to_f8e4m3(std::ldexp(1.0f, -9)), 0x01);      // smallest subnormal
    EXPECT_EQ(sr::f32_to_f8e4m3(7 * std::ldexp(1.0f, -9)), 0x07);  // largest subnormal
    EXPECT_EQ(sr::f32_to_f8e4m3(0.0f), 0x00);
    EXPECT_EQ(sr::f32_to_f8e4m3(-0.0f), 0x80);
    EXPECT_EQ(sr::f8e4m3_to_f32(0x7e), 448.0f);
    EXPECT_EQ(sr::f8e4m3_to_f32(0xfe), -448.0f);
    EXPECT_EQ(sr::f8e4m3_to_f32(0x01), std::ldexp(1.0f, -9));
    EXPECT_EQ(sr::f8e4m3_to_f32(0x3a), 1.25f);
    EXPECT_TRUE(std::signbit(sr::f8e4m3_to_f32(0x80)));
}

TEST(F8E4M3, SaturatesInsteadOfOverflowing) {
    // The "fn" variant has no infinity: out-of-range values, and infinities, clamp to +-448. 464 is the
    // halfway point to where 480 would be; it must not land on 0x7f, which is NaN.
    for (float v : {449.0f, 464.0f, 480.0f, 1000.0f, 1.0e30f, kInf}) {
        EXPECT_EQ(sr::f32_to_f8e4m3(v), 0x7e) << v;
        EXPECT_EQ(sr::f32_to_f8e4m3(-v), 0xfe) << -v;
    }
}

TEST(F8E4M3, RoundsToNearestEven) {
    EXPECT_EQ(sr::f32_to_f8e4m3(1.0f + 1.0f / 16), 0x38);  // tie between 0x38 and 0x39 -> even
    EXPECT_EQ(sr::f32_to_f8e4m3(1.0f + 3.0f / 16), 0x3a);  // tie between 0x39 and 0x3a -> even
    EXPECT_EQ(sr::f32_to_f8e4m3(1.9375f), 0x40);           // tie at the top of a binade carries into 2.0
    EXPECT_EQ(sr::f32_to_f8e4m3(1.05f), 0x38);
    EXPECT_EQ(sr::f32_to_f8e4m3(1.07f), 0x39);
    const float sub = std::ldexp(1.0f, -9);          // subnormal quantum
    EXPECT_EQ(sr::f32_to_f8e4m3(0.5f * sub), 0x00);  // tie -> 0
    EXPECT_EQ(sr::f32_to_f8e4m3(0.75f * sub), 0x01);
    EXPECT_EQ(sr::f32_to_f8e4m3(1.5f * sub), 0x02);    // tie between 1 and 2 -> 2
    EXPECT_EQ(sr::f32_to_f8e4m3(2.5f * sub), 0x02);    // tie between 2 and 3 -> 2
    EXPECT_EQ(sr::f32_to_f8e4m3(7.5f * sub), 0x08);    // tie rounds up into the normals
    EXPECT_EQ(sr::f32_to_f8e4m3(-0.25f * sub), 0x80);  // underflow keeps the sign
    EXPECT_EQ(sr::f32_to_f8e4m3(1.0e-30f), 0x00);
}

TEST(F8E4M3, NaNHandling) {
    EXPECT_TRUE(std::isnan(sr::f8e4m3_to_f32(0x7f)));
    EXPECT_TRUE(std::isnan(sr::f8e4m3_to_f32(0xff)));
    for (uint32_t bits : {0x7fc00000u, 0x7f800001u, 0xffc00000u}) {
        const uint8_t v = sr::f32_to_f8e4m3(sr::bits_to_f32(bits));
        EXPECT_EQ(v & 0x7f, 0x7f) << std::hex << bits << " -> " << int(v);
    }
}

TEST(F8E4M3, EveryNonNaNCodeRoundTripsThroughF32) {
    int bad = 0;
    for (int v = 0; v < 256; ++v) {
        if ((v & 0x7f) == 0x7f) continue;
        const uint8_t back = sr::f32_to_f8e4m3(sr::f8e4m3_to_f32(uint8_t(v)));
        if (back != v) {
            if (++bad <= 5) ADD_FAILURE() << std::hex << "fp8 0x" << v << " came back as 0x" << int(back);
        }
    }
    EXPECT_EQ(bad, 0);
    // And the decoded values are strictly increasing over the positive codes (no gaps, no duplicates).
    for (int v = 1; v < 0x7f; ++v) EXPECT_LT(sr::f8e4m3_to_f32(uint8_t(v - 1)), sr::f8e4m3_to_f32(uint8_t(v))) << v;
}

TEST(ConvertElements, BetweenAllFloatTypes) {
    const std::vector<float> src = {0.0f, 1.0f, -2.5f, 0.1f, 300.0f, -0.0f, 6.0e-5f};
    const size_t n = src.size();
    for (DType a : {DType::F32, DType::BF16, DType::F16, DType::F8_E4M3}) {
        for (DType b : {DType::F32, DType::BF16, DType::F16, DType::F8_E4M3}) {
            std::vector<uint8_t> in(n * sr::dtype_size(a)), out(n * sr::dtype_size(b));
            sr::convert_elements(src.data(), DType::F32, in.data(), a, n);
            sr::convert_elements(in.data(), a, out.data(), b, n);
            std::vector<float> got(n), mid(n);
            sr::convert_elements(out.data(), b, got.data(), DType::F32, n);
            sr::convert_elements(in.data(), a, mid.data(), DType::F32, n);
            for (size_t i = 0; i < n; ++i) {
                // Going a -> b must equal rounding a's value to b with the scalar converter.
                std::vector<uint8_t> one(sr::dtype_size(b));
                sr::convert_elements(&mid[i], DType::F32, one.data(), b, 1);
                float want;
                sr::convert_elements(one.data(), b, &want, DType::F32, 1);
                EXPECT_EQ(got[i], want) << sr::dtype_name(a) << " -> " << sr::dtype_name(b) << " at " << i;
            }
        }
    }
    // Spot checks against fixed values, so the loop above cannot pass by being consistently wrong.
    uint16_t h[2];
    const float two[2] = {1.0f, 65504.0f};
    sr::convert_elements(two, DType::F32, h, DType::F16, 2);
    EXPECT_EQ(h[0], 0x3c00);
    EXPECT_EQ(h[1], 0x7bff);
    uint16_t b[2];
    sr::convert_elements(h, DType::F16, b, DType::BF16, 2);
    EXPECT_EQ(b[0], 0x3f80);
    EXPECT_EQ(b[1], sr::f32_to_bf16(65504.0f));
    uint8_t f8[2];
    sr::convert_elements(b, DType::BF16, f8, DType::F8_E4M3, 2);
    EXPECT_EQ(f8[0], 0x38);
    EXPECT_EQ(f8[1], 0x7e);  // 65504 saturates
}

TEST(ConvertElements, SameTypeIsABitCopyForIntegers) {
    const int64_t src[3] = {-1, int64_t(1) << 62, 7};
    int64_t dst[3] = {};
    sr::convert_elements(src, DType::I64, dst, DType::I64, 3);
    EXPECT_EQ(dst[0], -1);
    EXPECT_EQ(dst[1], int64_t(1) << 62);
    EXPECT_EQ(dst[2], 7);
}

}  // namespace
