// Block quantization (core/quant.h, core/quant_blocks.h) against the gguf Python package, which reproduces
// ggml in numpy: dequantization bit for bit on every type (tests/data/quant, made by
// scripts/fixtures/make_quant_fixtures.py), quantization byte for byte on the types the package quantizes,
// and round-trip error bounds plus exactness on representable blocks for the K types it cannot quantize.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/quant.h"
#include "core/quant_blocks.h"
#include "core/quant_dispatch.h"
#include "io/json.h"

namespace {

using sr::QuantType;

constexpr QuantType kAllTypes[] = {QuantType::Q8_0, QuantType::Q4_0, QuantType::Q4_1, QuantType::Q5_0, QuantType::Q5_1,
                                   QuantType::Q3_K, QuantType::Q4_K, QuantType::Q5_K, QuantType::Q6_K};

std::string data_dir() {
    return std::string(SKYREELS_SOURCE_DIR) + "/tests/data/quant";
}

std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// One type's reference data (see the script's docstring for the layout).
struct Reference {
    int64_t cols = 0, rows = 0, quantized_rows = 0;
    size_t row_bytes = 0;
    std::vector<uint8_t> blocks;     // rows x row_bytes
    std::vector<float> dequantized;  // rows x cols, from gguf.quants.dequantize
    std::vector<float> input;        // quantized_rows x cols: the floats blocks[0 .. quantized_rows) came from
};

Reference load_reference(QuantType type) {
    const std::string name(sr::quant_info(type).name);
    const sr::Json index = sr::load_json_file(data_dir() + "/index.json");
    const sr::Json& t = index.at("types").at(name);
    Reference r;
    r.cols = t.at("cols").get<int64_t>();
    r.rows = t.at("rows").get<int64_t>();
    r.quantized_rows = t.at("quantized_rows").get<int64_t>();
    r.row_bytes = t.at("row_bytes").get<size_t>();
    EXPECT_EQ(t.at("ggml_type").get<uint32_t>(), sr::quant_info(type).ggml_type) << name;
    const std::string bytes = read_file(data_dir() + "/" + t.at("file").get<std::string>());
    const auto section = [&](const char* key, auto& out, size_t expected_bytes) {
        const auto& s = t.at("sections").at(key);
        const size_t begin = s.at(0).get<size_t>(), end = s.at(1).get<size_t>();
        ASSERT_LE(end, bytes.size()) << name << " " << key;
        ASSERT_EQ(end - begin, expected_bytes) << name << " " << key;
        out.resize(expected_bytes / sizeof(out[0]));
        if (!out.empty()) std::memcpy(out.data(), bytes.data() + begin, out.size() * sizeof(out[0]));
    };
    section("blocks", r.blocks, size_t(r.rows) * r.row_bytes);
    section("dequantized", r.dequantized, size_t(r.rows * r.cols) * 4);
    section("input", r.input, size_t(r.quantized_rows * r.cols) * 4);
    return r;
}

// Same bits, or both NaN (the reference has NaN where a scale is NaN or Inf x 0; payloads are not compared).
bool same_float(float a, float b) {
    return (std::isnan(a) && std::isnan(b)) || sr::f32_to_bits(a) == sr::f32_to_bits(b);
}

std::vector<float> dequantize_row(QuantType type, const uint8_t* row, int64_t cols) {
    std::vector<float> out(static_cast<size_t>(cols));
    sr::dequantize_blocks(type, row, out.data(), cols / sr::quant_info(type).block_elems);
    return out;
}

std::vector<uint8_t> quantize_row(QuantType type, const float* x, int64_t cols) {
    std::vector<uint8_t> out(sr::quant_row_bytes(type, cols));
    sr::quantize_row(type, x, out.data(), cols);
    return out;
}

std::vector<float> gaussian(size_t n, uint64_t seed, float scale = 1.0f) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> dist(0.0f, scale);
    std::vector<float> v(n);
    for (auto& x : v) x = dist(rng);
    return v;
}

// ---------------------------------------------------------------------------------------------------------

TEST(QuantInfo, MatchesGgml) {
    struct Expected {
        QuantType type;
        const char* name;
        int64_t elems;
        size_t bytes;
        uint32_t ggml;
    };
    // ggml.h type ids and ggml-common.h block sizes.
    const Expected expected[] = {{QuantType::Q8_0, "Q8_0", 32, 34, 8},    {QuantType::Q4_0, "Q4_0", 32, 18, 2},
                                 {QuantType::Q4_1, "Q4_1", 32, 20, 3},    {QuantType::Q5_0, "Q5_0", 32, 22, 6},
                                 {QuantType::Q5_1, "Q5_1", 32, 24, 7},    {QuantType::Q3_K, "Q3_K", 256, 110, 11},
                                 {QuantType::Q4_K, "Q4_K", 256, 144, 12}, {QuantType::Q5_K, "Q5_K", 256, 176, 13},
                                 {QuantType::Q6_K, "Q6_K", 256, 210, 14}};
    for (const auto& e : expected) {
        const sr::QuantInfo& q = sr::quant_info(e.type);
        EXPECT_EQ(q.name, e.name);
        EXPECT_EQ(q.block_elems, e.elems) << e.name;
        EXPECT_EQ(q.block_bytes, e.bytes) << e.name;
        EXPECT_EQ(q.ggml_type, e.ggml) << e.name;
        EXPECT_EQ(sr::quant_type_from_ggml(e.ggml), e.type) << e.name;
        EXPECT_EQ(sr::quant_type_from_name(e.name), e.type);
        std::string lower = e.name;
        for (auto& c : lower) c = char(std::tolower(static_cast<unsigned char>(c)));
        EXPECT_EQ(sr::quant_type_from_name(lower), e.type);
        EXPECT_TRUE(sr::quant_row_fits(e.type, e.elems * 3));
        EXPECT_EQ(sr::quant_row_bytes(e.type, e.elems * 3), e.bytes * 3);
        EXPECT_FALSE(sr::quant_row_fits(e.type, e.elems + 16)) << e.name;
        EXPECT_FALSE(sr::quant_row_fits(e.type, 0)) << e.name;
        EXPECT_FALSE(sr::quant_row_fits(e.type, -e.elems)) << e.name;
    }
    // F32, F16, BF16 (0, 1, 30), the unsupported Q2_K (10), Q8_K (15) and unknown ids are not block types here.
    for (uint32_t id : {0u, 1u, 30u, 10u, 15u, 4u, 5u, 9u, 39u, 1000u, 0xffffffffu})
        EXPECT_FALSE(sr::quant_type_from_ggml(id)) << id;
    for (const char* name : {"", "Q8", "Q8_00", "F16", "q2_k", "Q4_K_M"}) EXPECT_FALSE(sr::quant_type_from_name(name));
}

TEST(QuantHalf, MatchesTheDtypeConversionsBitForBit) {
    // Every fp16 value through the header's device-side conversion and the engine's dtype.h one.
    for (uint32_t h = 0; h < 65536; ++h) {
        const float a = sr::qblock::half_to_float(uint16_t(h)), b = sr::f16_to_f32(uint16_t(h));
        ASSERT_EQ(sr::f32_to_bits(a), sr::f32_to_bits(b)) << std::hex << h;
        if (!std::isnan(a)) {
            ASSERT_EQ(sr::qblock::float_to_half(a), h) << std::hex << h;  // exact round trip
        }
    }
    // Rounding: random bit patterns across the whole range, and the halfway points next to every fp16 value.
    std::mt19937 rng(7);
    for (int i = 0; i < 2000000; ++i) {
        const float f = sr::bits_to_f32(uint32_t(rng()));
        if (std::isnan(f)) continue;
        ASSERT_EQ(sr::qblock::float_to_half(f), sr::f32_to_f16(f)) << f;
    }
    for (uint32_t h = 0; h < 0x7c00; ++h) {
        const float lo = sr::f16_to_f32(uint16_t(h)), hi = sr::f16_to_f32(uint16_t(h + 1));
        const float mid = (lo + hi) / 2;  // exact: fp16 neighbours differ in bits f32 has room for
        const uint16_t even = (h & 1) ? uint16_t(h + 1) : uint16_t(h);
        ASSERT_EQ(sr::qblock::float_to_half(mid), even) << std::hex << h;
        ASSERT_EQ(sr::qblock::float_to_half(-mid), uint16_t(even | 0x8000)) << std::hex << h;
    }
    EXPECT_EQ(sr::qblock::float_to_half(65519.996f), 0x7bff);
    EXPECT_EQ(sr::qblock::float_to_half(65520.0f), 0x7c00);
    EXPECT_EQ(sr::qblock::float_to_half(-1e30f), 0xfc00);
    EXPECT_EQ(sr::qblock::float_to_half(1e-30f), 0x0000);
    EXPECT_EQ(sr::qblock::float_to_half(-0.0f), 0x8000);
    EXPECT_EQ(sr::qblock::float_to_half(std::ldexp(1.0f, -25)), 0x0000);  // a tie: to even (0)
    EXPECT_EQ(sr::qblock::float_to_half(std::nextafter(std::ldexp(1.0f, -25), 1.0f)), 0x0001);
    EXPECT_TRUE(std::isnan(sr::qblock::half_to_float(sr::qblock::float_to_half(NAN))));
}

TEST(QuantDequantize, MatchesTheGgufPackageBitForBit) {
    for (QuantType type : kAllTypes) {
        const std::string name(sr::quant_info(type).name);
        SCOPED_TRACE(name);
        const Reference r = load_reference(type);
        ASSERT_GT(r.rows, 0);
        ASSERT_EQ(sr::quant_row_bytes(type, r.cols), r.row_bytes);
        int64_t nan = 0;
        for (int64_t row = 0; row < r.rows; ++row) {
            const std::vector<float> got = dequantize_row(type, r.blocks.data() + size_t(row) * r.row_bytes, r.cols);
            for (int64_t c = 0; c < r.cols; ++c) {
                const float want = r.dequantized[size_t(row * r.cols + c)];
                nan += std::isnan(want);
                ASSERT_TRUE(same_float(got[size_t(c)], want))
                    << "row " << row << " col " << c << ": " << got[size_t(c)] << " vs the package's " << want;
            }
        }
        // The special-scale rows reach NaN (NaN and Inf scales); the data is meant to cover that.
        EXPECT_GT(nan, 0);
    }
}

TEST(QuantDequantize, OneElementAtATimeAndAtAnyAddressAgreeWithTheBlock) {
    // What a GPU thread computes (dequantize_one) equals the whole-block function, and a block at an odd
    // address (a GGUF row of 18-byte Q4_0 blocks puts them anywhere) reads the same.
    for (QuantType type : kAllTypes) {
        SCOPED_TRACE(std::string(sr::quant_info(type).name));
        const Reference r = load_reference(type);
        sr::with_block_type(type, [&]<class Block>() {
            std::vector<uint8_t> shifted(1, 0);
            shifted.insert(shifted.end(), r.blocks.begin(), r.blocks.end());
            const size_t n_blocks = r.blocks.size() / sizeof(Block);
            for (size_t b = 0; b < n_blocks; ++b) {
                const auto& block = *reinterpret_cast<const Block*>(r.blocks.data() + b * sizeof(Block));
                const auto& odd = *reinterpret_cast<const Block*>(shifted.data() + 1 + b * sizeof(Block));
                float whole[Block::kElems], whole_odd[Block::kElems];
                sr::qblock::dequantize(block, whole);
                sr::qblock::dequantize(odd, whole_odd);
                for (int i = 0; i < Block::kElems; ++i) {
                    ASSERT_TRUE(same_float(sr::qblock::dequantize_one(block, i), whole[i]))
                        << "block " << b << " " << i;
                    ASSERT_TRUE(same_float(whole_odd[i], whole[i])) << "block " << b << " " << i;
                }
            }
        });
    }
}

TEST(QuantQuantize, MatchesGgmlByteForByte) {
    // The simple types' source rows were quantized by the gguf package (numpy ports of ggml's
    // quantize_row_*_ref, checked equal to ggml's C when the data was made); the K types', which the package
    // cannot quantize, by ggml's C reference itself, built without floating-point contraction (index.json).
    for (QuantType type : kAllTypes) {
        SCOPED_TRACE(std::string(sr::quant_info(type).name));
        const Reference r = load_reference(type);
        ASSERT_GE(r.quantized_rows, 8);
        for (int64_t row = 0; row < r.quantized_rows; ++row) {
            const std::vector<uint8_t> got = quantize_row(type, r.input.data() + row * r.cols, r.cols);
            const uint8_t* want = r.blocks.data() + size_t(row) * r.row_bytes;
            for (size_t i = 0; i < r.row_bytes; ++i)
                ASSERT_EQ(int(got[i]), int(want[i])) << "row " << row << " byte " << i;
        }
    }
}

// Round-trip error on N(0,1) rows, per block. The simple types have a worst case: half a step (a step is the
// block's scale: amax / 127, amax / 8, (max - min) / 15, ...) plus the fp16 rounding of the scale (2^-11
// relative, times the largest quant), except that the symmetric 4- and 5-bit types clip the extreme of the
// other sign to 7 / 15 steps: a full step. On all types the RMS error relative to the data's RMS is bounded
// too; measured on these rows (mt19937_64, libstdc++'s normal_distribution): Q8_0 0.0053, Q4_0 0.086, Q4_1
// 0.078, Q5_0 0.043, Q5_1 0.038, Q3_K 0.151, Q4_K 0.071, Q5_K 0.036, Q6_K 0.018. The limits leave ~10% over
// those (another normal_distribution moves them by far less; a broken scale search costs far more).
TEST(QuantQuantize, RoundTripErrorIsBounded) {
    constexpr int64_t kCols = 256 * 8;
    const std::vector<float> x = gaussian(kCols * 16, 42);
    for (QuantType type : kAllTypes) {
        const sr::QuantInfo& q = sr::quant_info(type);
        SCOPED_TRACE(std::string(q.name));
        double err2 = 0, x2 = 0;
        for (int64_t row = 0; row < 16; ++row) {
            const float* src = x.data() + row * kCols;
            const std::vector<float> y = dequantize_row(type, quantize_row(type, src, kCols).data(), kCols);
            for (int64_t b = 0; b < kCols / q.block_elems; ++b) {
                float amax = 0, mn = src[b * q.block_elems], mx = mn;
                double worst = 0;
                for (int64_t i = b * q.block_elems; i < (b + 1) * q.block_elems; ++i) {
                    amax = std::max(amax, std::fabs(src[i]));
                    mn = std::min(mn, src[i]);
                    mx = std::max(mx, src[i]);
                    const double e = double(y[size_t(i)]) - src[i];
                    worst = std::max(worst, std::fabs(e));
                    err2 += e * e;
                    x2 += double(src[i]) * src[i];
                }
                const double fp16 = std::ldexp(1.0, -11);
                double bound = -1;
                switch (type) {
                    case QuantType::Q8_0:
                        bound = amax / 127 * (0.5 + 127 * fp16);
                        break;
                    case QuantType::Q4_0:
                        bound = amax / 8 * (1 + 8 * fp16);
                        break;
                    case QuantType::Q5_0:
                        bound = amax / 16 * (1 + 16 * fp16);
                        break;
                    case QuantType::Q4_1:  // the minimum is rounded to fp16 too
                        bound = (mx - mn) / 15 * (0.5 + 15 * fp16) + std::fabs(mn) * fp16;
                        break;
                    case QuantType::Q5_1:
                        bound = (mx - mn) / 31 * (0.5 + 31 * fp16) + std::fabs(mn) * fp16;
                        break;
                    default:
                        break;
                }
                if (bound >= 0) {
                    ASSERT_LE(worst, bound * (1 + 1e-6)) << "row " << row << " block " << b;
                }
            }
        }
        const double rel_rms = std::sqrt(err2 / x2);
        double limit = 0;
        switch (type) {
            case QuantType::Q8_0:
                limit = 0.0059;
                break;
            case QuantType::Q4_0:
                limit = 0.095;
                break;
            case QuantType::Q4_1:
                limit = 0.086;
                break;
            case QuantType::Q5_0:
                limit = 0.047;
                break;
            case QuantType::Q5_1:
                limit = 0.042;
                break;
            case QuantType::Q3_K:
                limit = 0.166;
                break;
            case QuantType::Q4_K:
                limit = 0.078;
                break;
            case QuantType::Q5_K:
                limit = 0.040;
                break;
            case QuantType::Q6_K:
                limit = 0.020;
                break;
        }
        EXPECT_LE(rel_rms, limit);
        std::printf("[ measure  ] %s relative RMS round-trip error on N(0,1): %.4f\n", std::string(q.name).c_str(),
                    rel_rms);
    }
}

TEST(QuantQuantize, DequantizedRowsOfTheSimpleTypesQuantizeToThemselves) {
    // A row that dequantize() produced is representable; quantizing it again gives the same bytes. (The K
    // types' scale search does not promise this for any representable row: see the hand-built blocks below.)
    constexpr int64_t kCols = 256;
    for (QuantType type : {QuantType::Q8_0, QuantType::Q4_0, QuantType::Q4_1, QuantType::Q5_0, QuantType::Q5_1}) {
        SCOPED_TRACE(std::string(sr::quant_info(type).name));
        for (uint64_t seed = 1; seed <= 16; ++seed) {
            const std::vector<float> x = gaussian(kCols, seed, seed % 2 ? 1.0f : 0.02f);
            const std::vector<uint8_t> q1 = quantize_row(type, x.data(), kCols);
            const std::vector<float> x1 = dequantize_row(type, q1.data(), kCols);
            EXPECT_EQ(quantize_row(type, x1.data(), kCols), q1) << "seed " << seed;
        }
    }
}

namespace qb = sr::qblock;

// Hand-built representable K blocks, packed here independently of the quantizers: each sub-block's scale
// is a power-of-two fp16 super-block scale times a small integer, the largest sub-block carries the extreme
// integer scale (so the super-block scale comes back as stored), and every sub-block holds the quant of
// largest magnitude (so its scale search lands on the exact fit). Quantizing their values must give the
// same bytes.
void pack_k4_scales(uint8_t* s, const int* sc, const int* m) {
    for (int j = 0; j < 8; ++j) {
        if (j < 4) {
            s[j] = uint8_t(sc[j]);
            s[j + 4] = uint8_t(m[j]);
        } else {
            s[j + 4] = uint8_t((sc[j] & 0xf) | ((m[j] & 0xf) << 4));
            s[j - 4] = uint8_t(s[j - 4] | ((sc[j] >> 4) << 6));
            s[j] = uint8_t(s[j] | ((m[j] >> 4) << 6));
        }
    }
}

template <class Block>
void expect_block_kept(const Block& b, const char* name) {
    float v[Block::kElems];
    qb::dequantize(b, v);
    Block again{};
    qb::quantize(v, again);
    float w[Block::kElems];
    qb::dequantize(again, w);
    for (int i = 0; i < Block::kElems; ++i) ASSERT_EQ(sr::f32_to_bits(w[i]), sr::f32_to_bits(v[i])) << name << " " << i;
    EXPECT_EQ(std::memcmp(&b, &again, sizeof b), 0) << name << ": same values, other bytes";
}

TEST(QuantQuantize, HandBuiltRepresentableBlocksKeepTheirBytes) {
    qb::BlockQ8_0 a{};  // scale 0.5, quants -127 .. 127 with the extreme present
    qb::store_half(a.d, 0.5f);
    for (int i = 0; i < 32; ++i) a.qs[i] = int8_t(i == 5 ? -127 : (i * 37) % 255 - 127);
    expect_block_kept(a, "Q8_0");

    const int sc63[8] = {63, 63, 63, 63, 63, 63, 63, 63}, m0[8] = {};
    qb::BlockQ4_K k4{};  // all sub-block scales 63, no minimum, quants 0 .. 15 in every sub-block
    qb::store_half(k4.d, 0.0078125f);
    qb::store_half(k4.dmin, 0.0f);
    pack_k4_scales(k4.scales, sc63, m0);
    for (int i = 0; i < 128; ++i) k4.qs[i] = uint8_t((i % 16) | (((i * 7) % 16) << 4));
    expect_block_kept(k4, "Q4_K");

    qb::BlockQ5_K k5{};  // the same with quants 0 .. 31
    qb::store_half(k5.d, 0.001953125f);
    qb::store_half(k5.dmin, 0.0f);
    pack_k4_scales(k5.scales, sc63, m0);
    for (int i = 0; i < 256; ++i) {
        const int j = i / 32, q = (i % 32 * 7 + j) % 32;
        k5.qs[(j / 2) * 32 + i % 32] = uint8_t(k5.qs[(j / 2) * 32 + i % 32] | ((q & 0xf) << (4 * (j & 1))));
        k5.qh[i % 32] = uint8_t(k5.qh[i % 32] | ((q >> 4) << j));
    }
    expect_block_kept(k5, "Q5_K");

    qb::BlockQ6_K k6{};  // d = -2^-7, sub-block scales -128 .. -23, quant 0 (value -32) first in each group
    qb::store_half(k6.d, -0.0078125f);
    for (int g = 0; g < 16; ++g) k6.scales[g] = int8_t(-128 + 7 * g);
    for (int i = 0; i < 256; ++i) {
        const int g = i / 16, q = i % 16 == 0 ? 0 : (i * 5 + g) % 63 + 1;
        const int half = i / 128, part = (i % 128) / 32, l = i % 32;
        uint8_t& low = k6.ql[half * 64 + l + 32 * (part & 1)];
        low = uint8_t(low | ((q & 0xf) << (part < 2 ? 0 : 4)));
        k6.qh[half * 32 + l] = uint8_t(k6.qh[half * 32 + l] | ((q >> 4) << (2 * part)));
    }
    expect_block_kept(k6, "Q6_K");

    qb::BlockQ3_K k3{};  // d = -2^-6, scales -32 .. -2, quant 0 (value -4) first in each group
    qb::store_half(k3.d, -0.015625f);
    for (int k = 0; k < 16; ++k) {
        const int s = -32 + 2 * k + 32;  // stored with the +32 offset
        if (k < 8)
            k3.scales[k] = uint8_t(k3.scales[k] | (s & 0xf));
        else
            k3.scales[k - 8] = uint8_t(k3.scales[k - 8] | ((s & 0xf) << 4));
        k3.scales[8 + k % 4] = uint8_t(k3.scales[8 + k % 4] | ((s >> 4) << (2 * (k / 4))));
    }
    for (int i = 0; i < 256; ++i) {
        const int g = i / 16, q = i % 16 == 0 ? 0 : (i * 3 + g) % 7 + 1;  // value q - 4
        const int half = i / 128, plane = (i % 128) / 32, l = i % 32;
        k3.qs[half * 32 + l] = uint8_t(k3.qs[half * 32 + l] | ((q & 3) << (2 * plane)));
        k3.hmask[l] = uint8_t(k3.hmask[l] | ((q >> 2) << (half * 4 + plane)));
    }
    expect_block_kept(k3, "Q3_K");

    // All-zero input gives all-zero values in every type (a zero scale, quants at the zero point).
    for (QuantType type : kAllTypes) {
        const std::vector<float> zeros(256, 0.0f);
        const std::vector<float> back = dequantize_row(type, quantize_row(type, zeros.data(), 256).data(), 256);
        for (float f : back) ASSERT_EQ(f, 0.0f) << sr::quant_info(type).name;
    }
}

TEST(QuantQuantize, NonFiniteInputIsSafe) {
    // NaN and Inf weights give meaningless blocks but no undefined behaviour (the sanitizer build checks).
    std::vector<float> x = gaussian(256, 3);
    x[3] = NAN;
    x[100] = INFINITY;
    x[200] = -INFINITY;
    for (QuantType type : kAllTypes) {
        const std::vector<uint8_t> q = quantize_row(type, x.data(), 256);
        (void)dequantize_row(type, q.data(), 256);
    }
}

}  // namespace
