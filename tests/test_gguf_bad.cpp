// Hostile GGUF files: each must be refused with an sr::InputError whose message names the file and, where
// there is one, the tensor or key at fault, and says what was wrong (the value and the limit). The files are
// written field by field (support/gguf_builder.h) so that each states exactly one lie.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "io/gguf.h"
#include "support/fixtures.h"
#include "support/gguf_builder.h"

namespace {

namespace fs = std::filesystem;
using sr::test::GgufBuilder;

using sr::test::Scratch;

using sr::test::write_file;

// Writes `bytes` and expects GgufFile::open to throw an InputError containing the path and every one of
// `parts`. Returns the message.
std::string expect_bad(const Scratch& s, const std::string& bytes, const std::vector<std::string>& parts) {
    const std::string path = s / "bad.gguf";
    write_file(path, bytes);
    try {
        sr::GgufFile::open(path);
    } catch (const sr::InputError& e) {
        const std::string m = e.what();
        EXPECT_NE(m.find(path), std::string::npos) << "message lacks the file: " << m;
        for (const auto& p : parts) EXPECT_NE(m.find(p), std::string::npos) << "message lacks '" << p << "': " << m;
        return m;
    } catch (const std::exception& e) {
        ADD_FAILURE() << "expected sr::InputError, got: " << e.what();
        return {};
    }
    ADD_FAILURE() << "the file was accepted";
    return {};
}

// A valid file: metadata of several kinds, an F32, a BF16 and a Q8_0 tensor.
std::string valid_image() {
    GgufBuilder b;
    b.header(3, 3, 4);
    b.kv_string("general.architecture", "hyvid");
    b.kv_u32("general.file_type", 7);
    b.str("tokens").u32(9).u32(8).u64(2).str("a").str("bc");                // array of 2 strings
    b.str("ids").u32(9).u32(5).u64(3).u32(1).u32(2).u32(3);                 // array of 3 i32
    b.tensor_info("img_in.proj.weight", {2, 2, 1, 4, 8}, 0, 0);             // 5-D, 128 f32 = 512 bytes
    b.tensor_info("time_in.mlp.0.weight", {8, 4}, 30, 512);                 // bf16, 64 bytes
    b.tensor_info("double_blocks.0.img_attn_qkv.weight", {32, 6}, 8, 576);  // Q8_0, 6 x 34 bytes
    b.pad(32).zeros(576 + 6 * 34);
    return b.bytes();
}

// A header with `n_tensors` tensor infos produced by `infos`, and `data` zero bytes.
template <class Fn>
std::string image_with(uint64_t n_tensors, Fn&& infos, size_t data) {
    GgufBuilder b;
    b.header(3, n_tensors, 1).kv_string("general.architecture", "hyvid");
    infos(b);
    b.pad(32).zeros(data);
    return b.bytes();
}

TEST(GgufBadInput, TheValidBaseFileOpens) {
    Scratch s("gguf_valid");
    write_file(s / "ok.gguf", valid_image());
    const auto f = sr::GgufFile::open(s / "ok.gguf");
    EXPECT_EQ(f->architecture(), "hyvid");
    ASSERT_EQ(f->tensors().size(), 3u);
    EXPECT_EQ(f->tensors()[0].shape, (sr::Shape{8, 4, 1, 2, 2}));
    EXPECT_EQ(f->tensors()[2].quant, sr::QuantType::Q8_0);
    EXPECT_EQ(f->tensors()[2].shape, (sr::Shape{6, 32}));
}

TEST(GgufBadInput, TruncatedAtEveryByte) {
    Scratch s("gguf_truncated");
    const std::string full = valid_image();
    for (size_t cut = 0; cut < full.size(); ++cut) {
        SCOPED_TRACE(cut);
        const std::string m = expect_bad(s, full.substr(0, cut), {});
        // Cuts in the header say what they were reading; cuts in the data say which tensor lost its bytes.
        const bool said = m.find("truncated") != std::string::npos || m.find("too short") != std::string::npos;
        EXPECT_TRUE(said) << m;
        if (HasFailure()) break;
    }
}

TEST(GgufBadInput, BadMagicAndVersions) {
    Scratch s("gguf_magic");
    std::string bad = valid_image();
    bad[0] = 'G', bad[1] = 'G', bad[2] = 'M', bad[3] = 'L';
    expect_bad(s, bad, {"not a GGUF file", "47 47 4d 4c"});
    expect_bad(s, "PK\x03\x04 a zip file, not a model", {"not a GGUF file"});
    expect_bad(s, "", {"too short"});
    for (uint32_t version : {0u, 1u, 4u, 0xffffffffu}) {
        std::string v = valid_image();
        for (int i = 0; i < 4; ++i) v[size_t(4 + i)] = char(uint8_t(version >> (8 * i)));
        expect_bad(s, v, {"version", version == 1 ? "version 1 is not supported" : std::to_string(version)});
    }
    std::string big = valid_image();
    big[4] = 0, big[7] = 3;  // version 3 written big-endian
    expect_bad(s, big, {"big-endian"});
}

TEST(GgufBadInput, LyingCounts) {
    Scratch s("gguf_counts");
    const std::string full = valid_image();
    const auto with_counts = [&](uint64_t n_tensors, uint64_t n_kv) {
        std::string v = full;
        for (int i = 0; i < 8; ++i) v[size_t(8 + i)] = char(uint8_t(n_tensors >> (8 * i)));
        for (int i = 0; i < 8; ++i) v[size_t(16 + i)] = char(uint8_t(n_kv >> (8 * i)));
        return v;
    };
    expect_bad(s, with_counts(3, 1000000), {"key-value count 1000000", "cannot fit"});
    expect_bad(s, with_counts(3, UINT64_MAX), {"key-value count 18446744073709551615", "limit"});
    expect_bad(s, with_counts(1000000, 4), {"tensor count 1000000", "cannot fit"});
    expect_bad(s, with_counts(uint64_t(1) << 62, 4), {"tensor count 4611686018427387904", "limit"});
    // Counts one too high: the parser reads the next fields as the extra entry and stops at what they hold.
    expect_bad(s, with_counts(3, 5), {});
    expect_bad(s, with_counts(4, 4), {"tensor"});
}

TEST(GgufBadInput, LengthsPastTheEnd) {
    Scratch s("gguf_lengths");
    GgufBuilder key;
    key.header(3, 0, 1).u64(1000000).raw("general.architecture");
    expect_bad(s, key.bytes(), {"key #0", "1000000 bytes long", "4096 byte limit"});
    GgufBuilder key2;
    key2.header(3, 0, 1).u64(4000).raw("general.architecture");
    expect_bad(s, key2.bytes(), {"key #0", "4000 bytes long", "truncated"});
    GgufBuilder value;
    value.header(3, 0, 1).str("general.architecture").u32(8).u64(UINT64_MAX - 3).raw("hyvid");
    expect_bad(s, value.bytes(), {"key 'general.architecture'", "18446744073709551612 bytes long", "truncated"});
    GgufBuilder array;
    array.header(3, 0, 1).str("ids").u32(9).u32(6).u64(uint64_t(1) << 61).u32(0);
    expect_bad(s, array.bytes(), {"key 'ids'", "2305843009213693952", "f32"});
    GgufBuilder strings;
    strings.header(3, 0, 1).str("tokens").u32(9).u32(8).u64(2).str("a").u64(99).raw("b");
    expect_bad(s, strings.bytes(), {"key 'tokens'", "string element 1", "99 bytes long"});
}

TEST(GgufBadInput, BadMetadata) {
    Scratch s("gguf_metadata");
    GgufBuilder type;
    type.header(3, 0, 1).str("k").u32(13).u32(0);
    expect_bad(s, type.bytes(), {"key 'k'", "unknown value type 13"});
    GgufBuilder nested;
    nested.header(3, 0, 1).str("k").u32(9).u32(9).u64(1).u32(4).u64(1).u32(0);
    expect_bad(s, nested.bytes(), {"key 'k'", "arrays of arrays"});
    GgufBuilder elem;
    elem.header(3, 0, 1).str("k").u32(9).u32(77).u64(1).u32(0);
    expect_bad(s, elem.bytes(), {"key 'k'", "unknown array element type 77"});
    GgufBuilder boolean;
    boolean.header(3, 0, 1).str("k").u32(7).u8(2);
    expect_bad(s, boolean.bytes(), {"key 'k'", "bool value 2"});
    GgufBuilder dup;
    dup.header(3, 0, 2).kv_u32("k", 1).kv_u32("k", 2);
    expect_bad(s, dup.bytes(), {"key 'k'", "twice"});
    for (uint32_t a : {0u, 3u, 48u, 1u << 31}) {
        GgufBuilder align;
        align.header(3, 0, 1).kv_u32("general.alignment", a);
        expect_bad(s, align.bytes(), {"general.alignment", "power of two", std::to_string(a)});
    }
    GgufBuilder align_str;
    align_str.header(3, 0, 1).kv_string("general.alignment", "32");
    expect_bad(s, align_str.bytes(), {"general.alignment", "string"});
    // A file without general.architecture opens; asking for it names the problem.
    Scratch ok("gguf_no_arch");
    GgufBuilder none;
    none.header(3, 0, 0);
    write_file(ok / "none.gguf", none.bytes());
    try {
        sr::GgufFile::open(ok / "none.gguf")->architecture();
        ADD_FAILURE() << "no error";
    } catch (const sr::InputError& e) {
        EXPECT_NE(std::string(e.what()).find("general.architecture"), std::string::npos) << e.what();
    }
}

TEST(GgufBadInput, BadTensorInfos) {
    Scratch s("gguf_tensors");
    const auto one = [](const std::vector<uint64_t>& ne, uint32_t type, uint64_t offset) {
        return [=](GgufBuilder& b) { b.tensor_info("blocks.0.w", ne, type, offset); };
    };
    expect_bad(s, image_with(1, one({4, 4}, 0, 4096), 64), {"tensor 'blocks.0.w'", "[4096, 4160)", "past the end"});
    expect_bad(s, image_with(1, one({4, 4}, 0, UINT64_MAX - 31), 64), {"tensor 'blocks.0.w'", "past the end"});
    expect_bad(s, image_with(1, one({4, 4}, 0, 0), 63), {"tensor 'blocks.0.w'", "[0, 64)", "63 bytes"});
    expect_bad(s, image_with(1, one({4, 4}, 0, 16), 128), {"tensor 'blocks.0.w'", "offset 16", "alignment 32"});
    expect_bad(s, image_with(1, one({4, 4}, 10, 0), 64), {"tensor 'blocks.0.w'", "unsupported tensor type 10 (Q2_K)"});
    expect_bad(s, image_with(1, one({4, 4}, 99, 0), 64), {"tensor 'blocks.0.w'", "unsupported tensor type 99"});
    expect_bad(s, image_with(1, one({}, 0, 0), 64), {"tensor 'blocks.0.w'", "0 dimensions"});
    expect_bad(s, image_with(1, one({1, 1, 1, 1, 1, 1, 1, 1, 1}, 0, 0), 64),
               {"tensor 'blocks.0.w'", "9 dimensions", "8 supported"});
    expect_bad(s, image_with(1, one({uint64_t(1) << 32, uint64_t(1) << 32}, 0, 0), 64),
               {"tensor 'blocks.0.w'", "overflow"});
    expect_bad(s, image_with(1, one({uint64_t(1) << 32, uint64_t(1) << 32, 0}, 0, 0), 64),
               {"tensor 'blocks.0.w'", "overflow"});  // zero elements, but strides would overflow
    expect_bad(s, image_with(1, one({uint64_t(1) << 63}, 0, 0), 64), {"tensor 'blocks.0.w'", "dimension 0"});
    expect_bad(s, image_with(1, one({uint64_t(1) << 62}, 0, 0), 64), {"tensor 'blocks.0.w'", "byte size overflows"});
    expect_bad(s, image_with(1, one({100, 2}, 12, 0), 512),
               {"tensor 'blocks.0.w'", "row length 100", "Q4_K block size 256"});
    expect_bad(s, image_with(1, one({48, 2}, 8, 0), 512), {"tensor 'blocks.0.w'", "row length 48", "Q8_0", "32"});
    expect_bad(s, image_with(1, one({0, 2}, 8, 0), 512), {"tensor 'blocks.0.w'", "row length 0"});
    expect_bad(s,
               image_with(
                   2,
                   [](GgufBuilder& b) {
                       b.tensor_info("a", {16}, 0, 0);   // [0, 64)
                       b.tensor_info("b", {16}, 0, 32);  // [32, 96)
                   },
                   128),
               {"'a' [0, 64)", "'b' [32, 96)", "overlap"});
    expect_bad(s,
               image_with(
                   2,
                   [](GgufBuilder& b) {
                       b.tensor_info("same", {16}, 0, 0);
                       b.tensor_info("same", {16}, 0, 64);
                   },
                   128),
               {"tensor 'same'", "twice"});
    expect_bad(s,
               image_with(
                   1, [](GgufBuilder& b) { b.tensor_info("", {4}, 0, 0).u32(0); }, 0),
               {"tensor ''", "past the end"});
}

TEST(GgufBadInput, NameLengths) {
    Scratch s("gguf_names");
    // 66 characters: a real HunyuanVideo name, past ggml's 64; accepted.
    const std::string name66 = "txt_in.individual_token_refiner.blocks.0.adaLN_modulation.1.weight";
    ASSERT_EQ(name66.size(), 66u);
    write_file(s / "ok.gguf", image_with(
                                  1, [&](GgufBuilder& b) { b.tensor_info(name66, {4}, 0, 0); }, 16));
    const auto f = sr::GgufFile::open(s / "ok.gguf");
    ASSERT_NE(f->find(name66), nullptr);
    EXPECT_EQ(f->find(name66)->shape, sr::Shape{4});
    // The longest accepted and one byte more.
    const std::string longest(sr::kMaxGgufNameBytes, 'n');
    write_file(s / "long.gguf", image_with(
                                    1, [&](GgufBuilder& b) { b.tensor_info(longest, {4}, 0, 0); }, 16));
    EXPECT_NE(sr::GgufFile::open(s / "long.gguf")->find(longest), nullptr);
    expect_bad(s,
               image_with(
                   1, [&](GgufBuilder& b) { b.tensor_info(longest + "n", {4}, 0, 0); }, 16),
               {"tensor #0 name", "4097 bytes long", "4096 byte limit"});
    // A 1 MB name is refused by its length field, before anything is read or allocated.
    expect_bad(s,
               image_with(
                   1, [](GgufBuilder& b) { b.tensor_info(std::string(1 << 20, 'x'), {4}, 0, 0); }, 16),
               {"tensor #0 name", "1048576 bytes long", "4096 byte limit"});
}

}  // namespace
