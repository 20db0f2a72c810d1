// The GGUF reader on the shared fixtures (found by content: a model/ folder holding exactly one .gguf file),
// checked against the same weights in a safetensors checkpoint where the fixture set has one, and the writer
// by round trips (every metadata type, every tensor type, other alignments, a fixture file copied through it).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/quant.h"
#include "core/tensor.h"
#include "io/gguf.h"
#include "io/safetensors.h"
#include "support/fixtures.h"

namespace {

namespace fs = std::filesystem;
using sr::DType;
using sr::GgufTensor;
using sr::GgufValue;
using sr::QuantType;
using sr::Tensor;

using sr::test::Scratch;

// The one .gguf file in dir/model, or empty.
std::string single_gguf(const fs::path& dir) {
    std::error_code ec;
    if (!fs::is_directory(dir / "model", ec)) return {};
    std::vector<std::string> found;
    for (const auto& e : fs::directory_iterator(dir / "model", ec))
        if (e.is_regular_file(ec) && e.path().extension() == ".gguf") found.push_back(e.path().string());
    return found.size() == 1 ? found[0] : std::string();
}

std::vector<std::string> gguf_fixtures() {
    std::vector<std::string> out;
    for (const auto& d : sr::test::find_fixture_dirs([](const fs::path& p) { return !single_gguf(p).empty(); }))
        out.push_back(single_gguf(d));
    return out;
}

std::string raw_bytes(const Tensor& t) {
    const Tensor c = t.contiguous();
    return {static_cast<const char*>(c.raw_data()), c.nbytes()};
}

// llama.cpp's general.file_type values for the block types the fixtures use (LLAMA_FTYPE_MOSTLY_*).
std::optional<QuantType> file_type_quant(int64_t file_type) {
    switch (file_type) {
        case 2:
            return QuantType::Q4_0;
        case 3:
            return QuantType::Q4_1;
        case 7:
            return QuantType::Q8_0;
        case 8:
            return QuantType::Q5_0;
        case 9:
            return QuantType::Q5_1;
        case 11:  // Q3_K_S, _M, _L
        case 12:
        case 13:
            return QuantType::Q3_K;
        case 14:  // Q4_K_S, _M
        case 15:
            return QuantType::Q4_K;
        case 16:  // Q5_K_S, _M
        case 17:
            return QuantType::Q5_K;
        case 18:
            return QuantType::Q6_K;
        default:  // 0 F32, 1 F16, 32 BF16: no block type
            return std::nullopt;
    }
}

TEST(GgufFixtures, OpenReadAndDequantizeEveryTensor) {
    const auto files = gguf_fixtures();
    ASSERT_GE(files.size(), 2u) << "expected the format_gguf_* fixtures under " << sr::test::fixtures_root();
    for (const auto& path : files) {
        SCOPED_TRACE(path);
        const auto f = sr::GgufFile::open(path);
        EXPECT_EQ(f->architecture(), "hyvid");
        EXPECT_EQ(f->header().version, 3u);
        ASSERT_FALSE(f->tensors().empty());
        const size_t file_size = fs::file_size(path);

        std::set<QuantType> block_types;
        bool saw_66 = false;
        uint64_t covered = 0;
        for (const auto& info : f->tensors()) {
            SCOPED_TRACE(info.name);
            saw_66 |= info.name.size() > 64;  // past ggml's own name limit
            EXPECT_EQ(info.offset % f->header().alignment, 0u);
            EXPECT_LE(f->header().data_offset + info.offset + info.bytes, file_size);
            covered += info.bytes;
            const GgufTensor t = f->tensor(info);
            EXPECT_EQ(t.shape, info.shape);
            EXPECT_TRUE(t.data.is_external_view()) << "copied instead of mapped";
            const Tensor v = sr::gguf_tensor_to_f32(t);
            ASSERT_EQ(v.shape(), info.shape);
            const float* p = v.data<float>();
            for (int64_t i = 0; i < v.numel(); ++i) ASSERT_TRUE(std::isfinite(p[i])) << "element " << i;
            if (t.quantized()) {
                block_types.insert(*t.quant);
                const int64_t cols = info.shape[info.shape.rank() - 1];
                EXPECT_EQ(t.data.dtype(), DType::Bool);
                EXPECT_EQ(t.data.shape(),
                          (sr::Shape{info.shape.numel() / cols, int64_t(sr::quant_row_bytes(*t.quant, cols))}));
                EXPECT_EQ(uint64_t(t.data.nbytes()), info.bytes);
                // The same values as dequantize_blocks on the mapped row bytes, row by row.
                std::vector<float> row(static_cast<size_t>(cols));
                const int64_t r = info.shape.numel() / cols - 1;  // the last row
                sr::dequantize_blocks(*t.quant, t.data.data<uint8_t>() + r * t.data.dim(1), row.data(),
                                      cols / sr::quant_info(*t.quant).block_elems);
                EXPECT_EQ(std::memcmp(row.data(), p + r * cols, row.size() * 4), 0);
            } else {
                EXPECT_EQ(t.data.shape(), info.shape);
                EXPECT_EQ(uint64_t(t.data.nbytes()), info.bytes);
            }
        }
        EXPECT_TRUE(saw_66) << "the fixture was expected to hold a name longer than ggml's 64-byte limit";
        // Every byte of the data section belongs to a tensor or to alignment padding.
        EXPECT_LE(file_size - f->header().data_offset - covered, f->tensors().size() * f->header().alignment);

        // The block type is the one general.file_type names, on the transformer blocks' weights.
        const GgufValue* ft = f->find_metadata("general.file_type");
        ASSERT_TRUE(ft && ft->as_int());
        const std::optional<QuantType> want = file_type_quant(*ft->as_int());
        if (want) {
            ASSERT_EQ(block_types.size(), 1u);
            EXPECT_EQ(*want, *block_types.begin());
        } else {
            EXPECT_TRUE(block_types.empty()) << "general.file_type " << *ft->as_int() << " names no block type";
        }
        for (const auto& info : f->tensors()) {
            const bool block_weight =
                (info.name.rfind("double_blocks.", 0) == 0 || info.name.rfind("single_blocks.", 0) == 0) &&
                info.shape.rank() == 2;
            if (block_weight) {
                EXPECT_EQ(info.quant.has_value(), want.has_value()) << info.name;
            }
        }

        // Shapes outermost first, as PyTorch has them (the file stores them innermost first).
        const auto* img_in = f->find("img_in.proj.weight");
        const auto* img_bias = f->find("img_in.proj.bias");
        ASSERT_TRUE(img_in && img_bias);
        ASSERT_EQ(img_in->shape.rank(), 5);               // [out, in, t, h, w]
        EXPECT_EQ(img_in->shape[0], img_bias->shape[0]);  // out channels first
        EXPECT_EQ(img_in->shape[2], 1);                   // patch 1 x 2 x 2 (the released constants)
        EXPECT_EQ(img_in->shape[3], 2);
        EXPECT_EQ(img_in->shape[4], 2);
        const auto* qkv = f->find("double_blocks.0.img_attn_qkv.weight");
        ASSERT_TRUE(qkv);
        ASSERT_EQ(qkv->shape.rank(), 2);
        EXPECT_EQ(qkv->shape[0], 3 * qkv->shape[1]);  // [3 * hidden, hidden]
        EXPECT_EQ(qkv->shape[1], img_in->shape[0]);
    }
}

// The fixture set holds the same random transformer in several layouts: where a 16-bit safetensors
// checkpoint has exactly the GGUF file's tensor names and shapes, the GGUF's values must be its values (BF16 tensors
// bit for bit; F32 ones to bf16 rounding, as the bf16 file rounded them; block tensors to within their quantization
// step plus that rounding).
TEST(GgufFixtures, AgreeWithTheSameWeightsInSafetensors) {
    std::vector<sr::WeightStore> stores;
    for (const auto& d : sr::test::find_fixture_dirs([](const fs::path& p) {
             std::error_code ec;
             if (!fs::is_directory(p / "model", ec) || fs::exists(p / "model" / "config.json", ec)) return false;
             int n = 0;
             for (const auto& e : fs::directory_iterator(p / "model", ec)) n += e.path().extension() == ".safetensors";
             return n == 1;
         }))
        stores.push_back(sr::WeightStore::open((d / "model").string()));
    int compared = 0;
    for (const auto& path : gguf_fixtures()) {
        SCOPED_TRACE(path);
        const auto f = sr::GgufFile::open(path);
        for (const auto& store : stores) {
            bool same_layout = store.names().size() == f->tensors().size();
            for (const auto& info : f->tensors())
                same_layout = same_layout && store.contains(info.name) && store.entry(info.name).shape == info.shape &&
                              store.entry(info.name).dtype != DType::F8_E4M3;  // the FP8 cast is another layout
            if (!same_layout) continue;
            ++compared;
            for (const auto& info : f->tensors()) {
                SCOPED_TRACE(info.name);
                const Tensor ref = store.get(info.name).to(DType::F32);
                const Tensor got = sr::gguf_tensor_to_f32(f->tensor(info));
                const float* a = got.data<float>();
                const float* b = ref.data<float>();
                float amax = 0, worst = 0;
                for (int64_t i = 0; i < ref.numel(); ++i) {
                    amax = std::max(amax, std::fabs(b[i]));
                    worst = std::max(worst, std::fabs(a[i] - b[i]));
                }
                if (info.dtype == DType::BF16) {
                    EXPECT_EQ(raw_bytes(f->tensor(info).data), raw_bytes(store.get(info.name)));
                    continue;
                }
                const float bf16 = amax * 0.00390625f;  // 2^-8 of the largest value: one bf16 rounding
                float step = 0;
                if (info.quant == QuantType::Q8_0) step = amax / 127 * 0.6f;  // half a step + the fp16 scale
                if (info.quant == QuantType::Q4_0) step = amax / 8 * 1.01f;   // up to a full step (clipping)
                EXPECT_LE(worst, step + bf16) << "largest |value| " << amax;
            }
        }
    }
    EXPECT_GT(compared, 0) << "no safetensors twin of a GGUF fixture was found: the cross-check ran on nothing";
}

// ---------------------------------------------------------------------------------------------------------
// Writer round trips

sr::GgufMetadata every_metadata_type() {
    sr::GgufMetadata m;
    m.emplace_back("general.architecture", GgufValue::string("hyvid"));
    m.emplace_back("u8", GgufValue::scalar<uint8_t>(250));
    m.emplace_back("i8", GgufValue::scalar<int8_t>(-100));
    m.emplace_back("u16", GgufValue::scalar<uint16_t>(65000));
    m.emplace_back("i16", GgufValue::scalar<int16_t>(-32000));
    m.emplace_back("u32", GgufValue::scalar<uint32_t>(4000000000u));
    m.emplace_back("i32", GgufValue::scalar<int32_t>(-2000000000));
    m.emplace_back("f32", GgufValue::scalar<float>(0.1f));
    m.emplace_back("bool", GgufValue::scalar<bool>(true));
    m.emplace_back("u64", GgufValue::scalar<uint64_t>(UINT64_MAX));
    m.emplace_back("i64", GgufValue::scalar<int64_t>(INT64_MIN));
    m.emplace_back("f64", GgufValue::scalar<double>(-1e300));
    m.emplace_back("empty string", GgufValue::string(""));
    m.emplace_back("ids", GgufValue::array<int32_t>({1, -2, 3}));
    m.emplace_back("scales", GgufValue::array<float>({0.5f, -0.25f}));
    m.emplace_back("flags", GgufValue::array<bool>({true, false, true}));
    m.emplace_back("none", GgufValue::array<uint64_t>({}));
    m.emplace_back("tokens", GgufValue::string_array({"a", "", "ünïcödé", std::string(300, 'x')}));
    return m;
}

std::vector<std::pair<std::string, GgufTensor>> every_tensor_type() {
    std::vector<std::pair<std::string, GgufTensor>> out;
    std::vector<float> v(256 * 6);
    for (size_t i = 0; i < v.size(); ++i) v[i] = std::sin(float(i) * 0.37f) * (1 + float(i % 7));
    const Tensor f32 = Tensor::from_vector(std::vector<float>(v.begin(), v.begin() + 2 * 3 * 1 * 2 * 2 * 4),
                                           {2, 3, 1, 2, 2, 4});  // 6-D
    out.push_back({"six_d.f32", GgufTensor{f32, std::nullopt, f32.shape()}});
    const Tensor f16 = Tensor::from_vector(std::vector<float>(v.begin(), v.begin() + 15), {3, 5}).to(DType::F16);
    out.push_back({"half.f16", GgufTensor{f16, std::nullopt, f16.shape()}});
    const Tensor bf16 = Tensor::from_vector(std::vector<float>(v.begin(), v.begin() + 7), {7}).to(DType::BF16);
    out.push_back({"vector.bf16", GgufTensor{bf16, std::nullopt, bf16.shape()}});
    const Tensor m = Tensor::from_vector(v, {6, 256});
    for (QuantType q : {QuantType::Q8_0, QuantType::Q4_0, QuantType::Q4_1, QuantType::Q5_0, QuantType::Q5_1,
                        QuantType::Q3_K, QuantType::Q4_K, QuantType::Q5_K, QuantType::Q6_K})
        out.push_back({"w." + std::string(sr::quant_info(q).name), sr::quantize_tensor(m, q)});
    const Tensor m3 = Tensor::from_vector(v, {2, 3, 256});  // a 3-D block tensor: rows = 6
    out.push_back({"three_d.q8_0", sr::quantize_tensor(m3, QuantType::Q8_0)});
    const std::string name66 = "txt_in.individual_token_refiner.blocks.0.adaLN_modulation.1.weight";
    out.push_back({name66, GgufTensor{f32, std::nullopt, f32.shape()}});
    const Tensor empty = Tensor::zeros({0, 4}, DType::F32);
    out.push_back({"empty", GgufTensor{empty, std::nullopt, empty.shape()}});
    return out;
}

void expect_round_trip(const std::string& path, const sr::GgufMetadata& metadata,
                       const std::vector<std::pair<std::string, GgufTensor>>& tensors, uint64_t alignment) {
    sr::write_gguf(path, metadata, tensors);
    EXPECT_FALSE(sr::test::partial_file_exists(path));
    const auto f = sr::GgufFile::open(path);
    EXPECT_EQ(f->header().alignment, alignment);
    ASSERT_EQ(f->metadata().size(), metadata.size());
    for (size_t i = 0; i < metadata.size(); ++i) {
        EXPECT_EQ(f->metadata()[i].first, metadata[i].first);
        EXPECT_TRUE(f->metadata()[i].second == metadata[i].second)
            << metadata[i].first << ": " << f->metadata()[i].second.str() << " vs " << metadata[i].second.str();
    }
    ASSERT_EQ(f->tensors().size(), tensors.size());
    for (size_t i = 0; i < tensors.size(); ++i) {
        const auto& [name, want] = tensors[i];
        SCOPED_TRACE(name);
        const auto& info = f->tensors()[i];
        EXPECT_EQ(info.name, name);
        EXPECT_EQ(info.shape, want.shape);
        EXPECT_EQ(info.quant, want.quant);
        EXPECT_EQ(info.offset % alignment, 0u);
        const GgufTensor got = f->tensor(info);
        EXPECT_EQ(got.data.dtype(), want.data.dtype());
        EXPECT_EQ(got.data.shape(), want.data.shape());
        EXPECT_EQ(raw_bytes(got.data), raw_bytes(want.data));
    }
}

TEST(GgufWriter, RoundTripsEveryMetadataAndTensorType) {
    Scratch s("gguf_round_trip");
    const auto metadata = every_metadata_type();
    expect_round_trip(s / "all.gguf", metadata, every_tensor_type(), 32);

    // The accessors read back what was written.
    const auto f = sr::GgufFile::open(s / "all.gguf");
    EXPECT_EQ(f->find_metadata("u8")->as_int(), 250);
    EXPECT_EQ(f->find_metadata("i8")->as_int(), -100);
    EXPECT_EQ(f->find_metadata("u32")->as_uint(), 4000000000u);
    EXPECT_EQ(f->find_metadata("u64")->as_uint(), UINT64_MAX);
    EXPECT_FALSE(f->find_metadata("u64")->as_int());  // does not fit
    EXPECT_EQ(f->find_metadata("i64")->as_int(), INT64_MIN);
    EXPECT_FALSE(f->find_metadata("i64")->as_uint());
    EXPECT_EQ(f->find_metadata("f32")->as_float(), double(0.1f));
    EXPECT_EQ(f->find_metadata("f64")->as_float(), -1e300);
    EXPECT_EQ(f->find_metadata("bool")->as_bool(), true);
    EXPECT_EQ(f->find_metadata("empty string")->as_string(), "");
    EXPECT_FALSE(f->find_metadata("f32")->as_string());
    const GgufValue& ids = *f->find_metadata("ids");
    EXPECT_EQ(ids.type(), sr::GgufType::Array);
    EXPECT_EQ(ids.array_type(), sr::GgufType::I32);
    ASSERT_EQ(ids.array_size(), 3u);
    EXPECT_EQ(ids.array_int(1), -2);
    EXPECT_FALSE(ids.array_int(3));
    EXPECT_EQ(f->find_metadata("scales")->array_float(1), -0.25);
    EXPECT_EQ(f->find_metadata("flags")->array_int(2), 1);
    const GgufValue& tokens = *f->find_metadata("tokens");
    ASSERT_EQ(tokens.array_size(), 4u);
    EXPECT_EQ(tokens.array_string(1), "");
    EXPECT_EQ(tokens.array_string(2), "ünïcödé");
    EXPECT_EQ(tokens.array_string(3)->size(), 300u);
    EXPECT_EQ(ids.str(), "i32[3] = [1, -2, 3]");
    EXPECT_EQ(f->find_metadata("general.architecture")->str(), "hyvid");

    // Block tensors dequantize to what quantize_row + dequantize_blocks give.
    const GgufTensor q = f->tensor("w.Q4_K");
    const Tensor deq = sr::gguf_tensor_to_f32(q);
    EXPECT_EQ(deq.shape(), (sr::Shape{6, 256}));
    for (const auto& [name, t] : every_tensor_type())
        if (name == "w.Q4_K") {
            EXPECT_EQ(raw_bytes(deq), raw_bytes(sr::gguf_tensor_to_f32(t)));
        }
    EXPECT_THROW(f->tensor("no.such.tensor"), sr::InputError);
}

TEST(GgufWriter, HonoursGeneralAlignment) {
    Scratch s("gguf_alignment");
    for (uint32_t alignment : {1u, 8u, 64u, 4096u}) {
        SCOPED_TRACE(alignment);
        auto metadata = every_metadata_type();
        metadata.emplace_back("general.alignment", GgufValue::scalar<uint32_t>(alignment));
        expect_round_trip(s / "aligned.gguf", metadata, every_tensor_type(), alignment);
    }
    // Alignment 1 puts f32 tensors at odd addresses: they are copied rather than viewed misaligned. A key of 0
    // to 3 bytes moves the data section so that one of these files misaligns the f32 tensor.
    int copied = 0;
    for (int pad = 0; pad < 4; ++pad) {
        sr::GgufMetadata metadata{{"general.alignment", GgufValue::scalar<uint32_t>(1)},
                                  {std::string(size_t(pad), 'p'), GgufValue::scalar<uint8_t>(0)}};
        const Tensor bf16 = Tensor::from_vector({7}, {1}).to(DType::BF16);
        const Tensor f32 = Tensor::from_vector({4, 5, 6}, {3});
        const std::vector<std::pair<std::string, GgufTensor>> tensors = {
            {"bf16", GgufTensor{bf16, std::nullopt, bf16.shape()}},
            {"f32", GgufTensor{f32, std::nullopt, f32.shape()}}};
        sr::write_gguf(s / "odd.gguf", metadata, tensors);
        const auto f = sr::GgufFile::open(s / "odd.gguf");
        const auto* info = f->find("f32");
        EXPECT_EQ(info->offset, 2u);
        const GgufTensor t = f->tensor(*info);
        const bool aligned = (f->header().data_offset + info->offset) % 4 == 0;
        EXPECT_EQ(t.data.is_external_view(), aligned);
        copied += !aligned;
        EXPECT_EQ(raw_bytes(t.data), raw_bytes(f32));
    }
    EXPECT_GT(copied, 0);
}

TEST(GgufWriter, CopiesAFixtureFileExactly) {
    // What a converter does: read every tensor, write them with the metadata; the copy reads back the same.
    Scratch s("gguf_copy");
    const auto files = gguf_fixtures();
    ASSERT_FALSE(files.empty());
    const auto src = sr::GgufFile::open(files[0]);
    std::vector<std::pair<std::string, GgufTensor>> tensors;
    for (const auto& info : src->tensors()) tensors.emplace_back(info.name, src->tensor(info));
    expect_round_trip(s / "copy.gguf", src->metadata(), tensors, src->header().alignment);
}

TEST(GgufWriter, RejectsWhatGgufCannotHold) {
    Scratch s("gguf_writer_errors");
    const Tensor f32 = Tensor::from_vector({1, 2, 3, 4}, {2, 2});
    const GgufTensor ok{f32, std::nullopt, f32.shape()};
    const auto write = [&](const sr::GgufMetadata& m, const std::vector<std::pair<std::string, GgufTensor>>& t) {
        sr::write_gguf(s / "bad.gguf", m, t);
    };
    EXPECT_THROW(write({}, {{"a", ok}, {"a", ok}}), sr::InputError);
    EXPECT_THROW(write({}, {{std::string(5000, 'n'), ok}}), sr::InputError);
    EXPECT_THROW(write({{"k", GgufValue::scalar<int32_t>(1)}, {"k", GgufValue::scalar<int32_t>(2)}}, {}),
                 sr::InputError);
    EXPECT_THROW(write({{"general.alignment", GgufValue::scalar<uint32_t>(24)}}, {}), sr::InputError);
    const Tensor i64 = Tensor::zeros({2}, DType::I64);
    EXPECT_THROW(write({}, {{"i64", GgufTensor{i64, std::nullopt, i64.shape()}}}), sr::InputError);
    const Tensor scalar = Tensor::from_vector({1}, sr::Shape{});
    EXPECT_THROW(write({}, {{"scalar", GgufTensor{scalar, std::nullopt, scalar.shape()}}}), sr::InputError);
    GgufTensor q = sr::quantize_tensor(Tensor::from_vector(std::vector<float>(64, 1.0f), {2, 32}), QuantType::Q8_0);
    q.shape = sr::Shape{4, 32};  // blocks for 2 rows
    EXPECT_THROW(write({}, {{"q", q}}), sr::InputError);
    EXPECT_THROW(sr::quantize_tensor(Tensor::from_vector(std::vector<float>(48, 1.0f), {48}), QuantType::Q4_0),
                 sr::InputError);
    EXPECT_FALSE(fs::exists(s / "bad.gguf"));
}

}  // namespace
