// safetensors: round trips through write_safetensors for every dtype, the sharded fixture checkpoint read
// through WeightStore (checked against the file bytes read here independently), and hostile files: each bad
// input must raise sr::InputError whose message names the file and, where there is one, the tensor.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/tensor.h"
#include "io/json.h"
#include "io/safetensors.h"
#include "support/fixtures.h"

namespace {

namespace fs = std::filesystem;
using sr::DType;
using sr::Tensor;

// A scratch folder removed again when the test ends, so repeated runs do not fill /tmp.
using sr::test::Scratch;

std::string le64(uint64_t n) {
    std::string s(8, '\0');
    for (int i = 0; i < 8; ++i) s[size_t(i)] = char(uint8_t(n >> (8 * i)));
    return s;
}

// A safetensors image: length prefix (the header's size unless given), header text, `data_bytes` zeros.
std::string image(const std::string& header, size_t data_bytes, std::optional<uint64_t> length = {}) {
    return le64(length.value_or(header.size())) + header + std::string(data_bytes, '\0');
}

using sr::test::write_file;

std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// Runs fn, which must throw sr::InputError (not another exception, not nothing) whose message contains every
// one of `parts`. Returns the message for further checks.
template <class Fn>
std::string expect_input_error(Fn&& fn, const std::vector<std::string>& parts) {
    try {
        fn();
    } catch (const sr::InputError& e) {
        const std::string m = e.what();
        for (const auto& p : parts) EXPECT_NE(m.find(p), std::string::npos) << "message lacks '" << p << "': " << m;
        return m;
    } catch (const std::exception& e) {
        ADD_FAILURE() << "expected sr::InputError, got another exception: " << e.what();
        return {};
    }
    std::string all;
    for (const auto& p : parts) all += " '" + p + "'";
    ADD_FAILURE() << "no error was raised; expected one naming" << all;
    return {};
}

// Opens `bytes` written to a file and expects an InputError naming the file and `parts`.
void expect_bad_file(const Scratch& s, const std::string& bytes, std::vector<std::string> parts) {
    const std::string path = s / "bad.safetensors";
    write_file(path, bytes);
    parts.push_back(path);
    expect_input_error([&] { sr::SafetensorsFile::open(path); }, parts);
    expect_input_error([&] { sr::WeightStore::open(path); }, parts);
}

std::string raw_bytes(const Tensor& t) {
    const Tensor c = t.contiguous();
    return {static_cast<const char*>(c.raw_data()), c.nbytes()};
}

// ---------------------------------------------------------------------------------------------------------
// Round trips

std::vector<std::pair<std::string, Tensor>> every_dtype_tensors() {
    std::vector<std::pair<std::string, Tensor>> out;
    std::vector<float> v(720);
    for (size_t i = 0; i < v.size(); ++i) v[i] = float(i) * 0.25f - 50.0f;
    const Tensor f32 = Tensor::from_vector(v, {2, 3, 4, 5, 6});  // [B,C,F,H,W]
    out.emplace_back("video.f32", f32);
    out.emplace_back("video.bf16", f32.slice(2, 0, 2).to(DType::BF16));
    out.emplace_back("video.f16", f32.select(0, 1).to(DType::F16));
    Tensor f8 = Tensor::empty({2, 2, 2, 2, 2, 2}, DType::F8_E4M3);  // 6-D
    for (int i = 0; i < 64; ++i) f8.data<uint8_t>()[i] = uint8_t((i * 13) % 0x7e);
    out.emplace_back("six.f8", f8);
    Tensor i32 = Tensor::empty({4, 3}, DType::I32);
    for (int i = 0; i < 12; ++i) i32.data<int32_t>()[i] = (i - 6) * 100000;
    out.emplace_back("ids.i32", i32);
    Tensor i64 = Tensor::empty({5}, DType::I64);
    for (int i = 0; i < 5; ++i) i64.data<int64_t>()[i] = (int64_t(1) << 40) * (i - 2) - 1;
    out.emplace_back("ids.i64", i64);
    Tensor mask = Tensor::empty({3, 3}, DType::Bool);
    for (int i = 0; i < 9; ++i) mask.data<uint8_t>()[i] = uint8_t(i % 2);
    out.emplace_back("mask", mask);
    out.emplace_back("scalar", Tensor::from_vector({42.0f}, sr::Shape{}));
    out.emplace_back("empty.f16", Tensor::zeros({0, 4}, DType::F16));
    // A strided view: written in logical order, so it must come back equal to its contiguous copy.
    out.emplace_back("tokens.permuted", f32.permute({0, 2, 3, 4, 1}));
    return out;
}

TEST(SafetensorsRoundTrip, EveryDtypeComesBackBitExact) {
    Scratch s("st_roundtrip");
    const std::string path = s / "all.safetensors";
    const auto tensors = every_dtype_tensors();
    sr::write_safetensors(path, tensors, {{"format", "pt"}, {"note", "round trip"}});
    EXPECT_FALSE(sr::test::partial_file_exists(path)) << "the temporary file was left behind";

    const auto file = sr::SafetensorsFile::open(path);
    EXPECT_EQ(file->header().data_offset % 8, 0u) << "the data section should be 8-byte aligned";
    EXPECT_EQ(file->header().metadata.at("format"), "pt");
    EXPECT_EQ(file->header().metadata.at("note"), "round trip");
    ASSERT_EQ(file->header().entries.size(), tensors.size());

    const auto store = sr::WeightStore::open(path);
    EXPECT_EQ(store.file_count(), 1u);
    std::map<DType, size_t> want_bytes;
    for (const auto& [name, t] : tensors) {
        SCOPED_TRACE(name);
        const sr::SafetensorsEntry* e = file->find(name);
        ASSERT_NE(e, nullptr);
        EXPECT_EQ(e->dtype, t.dtype());
        EXPECT_EQ(e->shape.to_vector(), t.shape().to_vector());
        EXPECT_EQ(e->data_end - e->data_begin, t.nbytes());
        const Tensor back = store.get(name);
        EXPECT_EQ(back.dtype(), t.dtype());
        EXPECT_EQ(back.shape().to_vector(), t.shape().to_vector());
        EXPECT_TRUE(back.is_contiguous());
        EXPECT_EQ(raw_bytes(back), raw_bytes(t));
        want_bytes[t.dtype()] += t.nbytes();
    }
    EXPECT_EQ(store.bytes_by_dtype(), want_bytes);
    // Entries are listed in file order, which is what makes the overlap check a single pass.
    const auto& entries = file->header().entries;
    for (size_t i = 1; i < entries.size(); ++i) EXPECT_LE(entries[i - 1].data_end, entries[i].data_begin);
}

TEST(SafetensorsRoundTrip, TensorsOutliveTheStore) {
    Scratch s("st_keepalive");
    const std::string path = s / "w.safetensors";
    const Tensor w = Tensor::from_vector({1.0f, 2.0f, 3.0f, 4.0f}, {2, 2});
    sr::write_safetensors(path, {{"w", w}});
    Tensor view;
    {
        const auto store = sr::WeightStore::open(path);
        view = store.get("w").select(0, 1);
    }
    // The store (and its file handle) is gone; the mapping must live on inside the view.
    EXPECT_EQ(view.item_as_float(0), 3.0f);
    EXPECT_EQ(view.item_as_float(1), 4.0f);
}

TEST(SafetensorsRoundTrip, OverwriteReplacesTheFile) {
    Scratch s("st_overwrite");
    const std::string path = s / "w.safetensors";
    sr::write_safetensors(path, {{"a", Tensor::from_vector({1.0f}, {1})}});
    sr::write_safetensors(path, {{"b", Tensor::from_vector({2.0f, 3.0f}, {2})}});
    const auto store = sr::WeightStore::open(path);
    EXPECT_EQ(store.names(), std::vector<std::string>{"b"});
    EXPECT_EQ(store.get("b").item_as_float(1), 3.0f);
}

TEST(SafetensorsRoundTrip, MisalignedTensorIsCopiedWithTheRightValues) {
    // The format does not promise alignment: a one-byte BOOL first puts the F32 at an odd offset.
    Scratch s("st_misaligned");
    std::string header =
        R"({"flag":{"dtype":"BOOL","shape":[1],"data_offsets":[0,1]},"w":{"dtype":"F32","shape":[2],"data_offsets":[1,9]}})";
    while ((header.size() + 8) % 8 != 0) header.push_back(' ');
    std::string bytes = le64(header.size()) + header;
    bytes.push_back('\x01');
    const float w[2] = {1.5f, -2.0f};
    bytes.append(reinterpret_cast<const char*>(w), 8);
    const std::string path = s / "odd.safetensors";
    write_file(path, bytes);
    const auto store = sr::WeightStore::open(path);
    const Tensor t = store.get("w");
    EXPECT_EQ(reinterpret_cast<uintptr_t>(t.raw_data()) % 4, 0u) << "typed loads need an aligned copy";
    EXPECT_EQ(t.item_as_float(0), 1.5f);
    EXPECT_EQ(t.item_as_float(1), -2.0f);
    EXPECT_EQ(store.get("flag").item_as_float(0), 1.0f);
}

TEST(SafetensorsRoundTrip, FolderWithoutIndexOpensEveryFile) {
    Scratch s("st_folder");
    sr::write_safetensors(s / "a.safetensors", {{"x", Tensor::from_vector({1.0f}, {1})}});
    sr::write_safetensors(s / "b.safetensors", {{"y", Tensor::from_vector({2.0f}, {1})}});
    write_file(s / "notes.txt", "not a tensor file");
    const auto store = sr::WeightStore::open(s.dir.string());
    EXPECT_EQ(store.file_count(), 2u);
    EXPECT_EQ(store.names(), (std::vector<std::string>{"x", "y"}));
    EXPECT_EQ(store.get("y").item_as_float(0), 2.0f);
}

TEST(SafetensorsRoundTrip, OpenFilesReadsSeveralAsOne) {
    Scratch s("st_open_files");
    sr::write_safetensors(s / "inputs.safetensors", {{"latents", Tensor::zeros({1, 4}, DType::F32)}});
    sr::write_safetensors(s / "outputs.safetensors", {{"sample", Tensor::zeros({1, 4}, DType::BF16)}});
    const auto store = sr::WeightStore::open_files({s / "inputs.safetensors", s / "outputs.safetensors"});
    EXPECT_TRUE(store.contains("latents"));
    EXPECT_TRUE(store.contains("sample"));
    EXPECT_EQ(store.entry("sample").dtype, DType::BF16);
}

// ---------------------------------------------------------------------------------------------------------
// The sharded fixture checkpoint

// The *.safetensors.index.json of a model folder, or an empty path.
fs::path index_file(const fs::path& model) {
    for (const auto& de : fs::directory_iterator(model))
        if (de.path().string().ends_with(".safetensors.index.json")) return de.path();
    return {};
}

// Transformer fixtures whose model folder is sharded (has an index), found by content.
std::vector<fs::path> sharded_model_dirs() {
    std::vector<fs::path> out;
    for (const auto& dir : sr::test::find_fixture_dirs([](const fs::path& d) {
             return sr::test::model_config_names(d, "_class_name", "HunyuanVideoTransformer3DModel");
         })) {
        if (!index_file(dir / "model").empty()) out.push_back(dir / "model");
    }
    return out;
}

// The header of one shard, parsed here with nlohmann directly (not through the code under test).
sr::Json raw_header(const fs::path& file) {
    const std::string bytes = read_file(file.string());
    uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | uint8_t(bytes[size_t(i)]);
    return sr::Json::parse(bytes.substr(8, size_t(n)));
}

TEST(SafetensorsFixture, ShardedCheckpointMatchesItsHeadersAndIndex) {
    const auto dirs = sharded_model_dirs();
    ASSERT_FALSE(dirs.empty()) << "no sharded transformer fixture under " << sr::test::fixtures_root();
    for (const fs::path& model : dirs) {
        SCOPED_TRACE(model.string());
        const fs::path index_path = index_file(model);
        const sr::Json index = sr::Json::parse(read_file(index_path.string()));
        const auto store = sr::WeightStore::open(model.string());

        // Every tensor in the weight map, and nothing else; one file per distinct shard.
        std::set<std::string> shards;
        std::vector<std::string> mapped;
        for (auto it = index["weight_map"].begin(); it != index["weight_map"].end(); ++it) {
            mapped.push_back(it.key());
            shards.insert(it.value().get<std::string>());
        }
        EXPECT_EQ(store.names(), mapped);
        EXPECT_EQ(store.file_count(), shards.size());
        EXPECT_GE(shards.size(), 2u) << "the fixture is meant to be sharded";

        // Each entry agrees with its shard's header.
        std::map<std::string, sr::Json> headers;
        for (const auto& shard : shards) headers[shard] = raw_header(model / shard);
        for (auto it = index["weight_map"].begin(); it != index["weight_map"].end(); ++it) {
            const sr::Json& h = headers[it.value().get<std::string>()][it.key()];
            const sr::SafetensorsEntry& e = store.entry(it.key());
            EXPECT_EQ(sr::dtype_safetensors_name(e.dtype), h["dtype"].get<std::string>()) << it.key();
            EXPECT_EQ(e.shape.to_vector(), h["shape"].get<std::vector<int64_t>>()) << it.key();
            EXPECT_EQ(e.data_begin, h["data_offsets"][0].get<size_t>()) << it.key();
            EXPECT_EQ(e.data_end, h["data_offsets"][1].get<size_t>()) << it.key();
        }
        // The index's total_size is the sum of all tensor bytes.
        size_t total = 0;
        for (const auto& [dt, n] : store.bytes_by_dtype()) total += n;
        EXPECT_EQ(total, index["metadata"]["total_size"].get<size_t>());
    }
}

TEST(SafetensorsFixture, ProjOutIsBf16WithTheShapeTheConfigImplies) {
    const auto dirs = sharded_model_dirs();
    ASSERT_FALSE(dirs.empty()) << "no sharded transformer fixture under " << sr::test::fixtures_root();
    for (const fs::path& model : dirs) {
        SCOPED_TRACE(model.string());
        const sr::Json cfg = sr::load_json_file((model / "config.json").string());
        // proj_out maps the inner dim (heads * head_dim) to one patch of output channels.
        const int64_t out = cfg["out_channels"].get<int64_t>() * cfg["patch_size_t"].get<int64_t>() *
                            cfg["patch_size"].get<int64_t>() * cfg["patch_size"].get<int64_t>();
        const int64_t inner = cfg["num_attention_heads"].get<int64_t>() * cfg["attention_head_dim"].get<int64_t>();
        const auto store = sr::WeightStore::open(model.string());
        const Tensor w = store.get("proj_out.weight");
        EXPECT_EQ(w.dtype(), DType::BF16);
        EXPECT_EQ(w.shape().to_vector(), (std::vector<int64_t>{out, inner}));

        // The view holds exactly the shard's bytes at the header's offsets.
        const sr::Json index = sr::Json::parse(read_file(index_file(model).string()));
        const fs::path shard = model / index["weight_map"]["proj_out.weight"].get<std::string>();
        const std::string file = read_file(shard.string());
        uint64_t n = 0;
        for (int i = 7; i >= 0; --i) n = (n << 8) | uint8_t(file[size_t(i)]);
        const sr::SafetensorsEntry& e = store.entry("proj_out.weight");
        EXPECT_EQ(raw_bytes(w), file.substr(size_t(8 + n + e.data_begin), e.data_end - e.data_begin));
        // Random weights: finite and not all zero.
        float max_abs = 0;
        for (int64_t i = 0; i < w.numel(); ++i) max_abs = std::max(max_abs, std::fabs(w.item_as_float(i)));
        EXPECT_GT(max_abs, 0.0f);
        EXPECT_TRUE(std::isfinite(max_abs));

        // The 5-D patch-embedding kernel reads back with its 5-D shape, not folded.
        const Tensor k = store.get("x_embedder.proj.weight");
        EXPECT_EQ(k.rank(), 5);
        EXPECT_EQ(k.dim(1), cfg["in_channels"].get<int64_t>());
    }
}

TEST(SafetensorsFixture, UnusedNamesShrinkAsTensorsAreFetched) {
    const auto dirs = sharded_model_dirs();
    ASSERT_FALSE(dirs.empty());
    const auto store = sr::WeightStore::open(dirs[0].string());
    const auto all = store.names();
    ASSERT_GT(all.size(), 3u);
    EXPECT_EQ(store.unused_names(), all);

    store.get("proj_out.weight");
    auto unused = store.unused_names();
    EXPECT_EQ(unused.size(), all.size() - 1);
    EXPECT_EQ(std::count(unused.begin(), unused.end(), "proj_out.weight"), 0);

    store.get("proj_out.weight");  // fetching twice counts once
    EXPECT_EQ(store.unused_names().size(), all.size() - 1);
    EXPECT_TRUE(store.get_optional("proj_out.bias").has_value());
    EXPECT_EQ(store.unused_names().size(), all.size() - 2);
    // Looking a name up without fetching it, or asking for one that is absent, changes nothing.
    EXPECT_TRUE(store.contains(all[0]));
    store.entry(all[0]);
    EXPECT_FALSE(store.get_optional("no.such.tensor").has_value());
    EXPECT_EQ(store.unused_names().size(), all.size() - 2);

    for (const auto& name : all) store.get(name);
    EXPECT_TRUE(store.unused_names().empty());
}

TEST(SafetensorsFixture, IndexPathAndSingleShardOpenDirectly) {
    const auto dirs = sharded_model_dirs();
    ASSERT_FALSE(dirs.empty());
    const fs::path model = dirs[0];
    const std::string index_path = index_file(model).string();
    const auto by_index = sr::WeightStore::open(index_path);
    const auto by_folder = sr::WeightStore::open(model.string());
    EXPECT_EQ(by_index.names(), by_folder.names());
    EXPECT_EQ(by_index.source(), index_path);

    const sr::Json index = sr::Json::parse(read_file(index_path));
    const std::string shard = index["weight_map"]["proj_out.weight"].get<std::string>();
    const auto one = sr::WeightStore::open((model / shard).string());
    EXPECT_EQ(one.file_count(), 1u);
    size_t in_shard = 0;
    for (auto it = index["weight_map"].begin(); it != index["weight_map"].end(); ++it)
        in_shard += it.value().get<std::string>() == shard;
    EXPECT_EQ(one.names().size(), in_shard);
    EXPECT_LT(one.names().size(), by_index.names().size());
}

TEST(SafetensorsFixture, MissingTensorNamesTensorAndCheckpoint) {
    const auto dirs = sharded_model_dirs();
    ASSERT_FALSE(dirs.empty());
    const auto store = sr::WeightStore::open(dirs[0].string());
    expect_input_error([&] { store.get("transformer_blocks.99.attn.to_q.weight"); },
                       {"transformer_blocks.99.attn.to_q.weight", "index.json"});
    expect_input_error([&] { store.entry("nope"); }, {"'nope'", "index.json"});
}

// ---------------------------------------------------------------------------------------------------------
// Hostile files: every one is an InputError naming the file (and the tensor at fault)

const std::string kOne = R"("t":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]})";

TEST(SafetensorsBadInput, FileShorterThanTheLengthPrefix) {
    Scratch s("st_short");
    expect_bad_file(s, "", {"too short"});
    expect_bad_file(s, std::string("\x10\0\0\0\0", 5), {"5 bytes", "too short"});
    expect_bad_file(s, std::string(7, '\0'), {"7 bytes"});
}

TEST(SafetensorsBadInput, TruncatedData) {
    Scratch s("st_truncated");
    const std::string path = s / "t.safetensors";
    sr::write_safetensors(
        path, {{"first", Tensor::zeros({4}, DType::F32)}, {"last.weight", Tensor::zeros({8, 8}, DType::BF16)}});
    const std::string full = read_file(path);
    // Cutting 4 bytes leaves the first tensor intact; the last one runs past the end.
    expect_bad_file(s, full.substr(0, full.size() - 4), {"'last.weight'", "past the end", "truncated"});
    // Cutting into the header itself.
    expect_bad_file(s, full.substr(0, 20), {"header length", "past the end"});
}

TEST(SafetensorsBadInput, HeaderLengthAbsurdOrPastTheEnd) {
    Scratch s("st_header_len");
    const std::string header = "{" + kOne + "}";
    expect_bad_file(s, image(header, 16, 200ull << 20), {"header length 209715200", "exceeds", "104857600"});
    expect_bad_file(s, image(header, 16, ~0ull), {"header length 18446744073709551615", "exceeds"});
    expect_bad_file(s, image(header, 16, (100ull << 20) + 1), {"exceeds"});
    // Within the 100 MB limit but past the file's end.
    expect_bad_file(s, image(header, 16, header.size() + 17), {"runs past the end"});
    expect_bad_file(s, image(header, 0, 1000), {"header length 1000", "past the end"});
}

TEST(SafetensorsBadInput, HeaderLongerThanTheBytesGiven) {
    // parse_safetensors_header may see only the start of a file (a partial read): a header longer than what
    // was read must be refused rather than read past the buffer.
    const std::string bytes = image("{" + kOne + "}", 16);
    expect_input_error(
        [&] {
            sr::parse_safetensors_header(reinterpret_cast<const uint8_t*>(bytes.data()), 20, bytes.size(), "partial");
        },
        {"partial", "exceeds the 20 bytes read"});
    expect_input_error(
        [&] {
            sr::parse_safetensors_header(reinterpret_cast<const uint8_t*>(bytes.data()), 7, bytes.size(), "partial");
        },
        {"partial", "too short"});
}

TEST(SafetensorsBadInput, OverlappingTensors) {
    Scratch s("st_overlap");
    const std::string header = R"({"a.weight":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},)"
                               R"("b.weight":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}})";
    expect_bad_file(s, image(header, 24), {"'a.weight'", "'b.weight'", "overlap"});
    // Identical ranges overlap too; and a tensor nested inside another.
    expect_bad_file(s,
                    image(R"({"x":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},)"
                          R"("y":{"dtype":"I32","shape":[4],"data_offsets":[0,16]}})",
                          16),
                    {"'x'", "'y'", "overlap"});
    expect_bad_file(s,
                    image(R"({"outer":{"dtype":"F32","shape":[8],"data_offsets":[0,32]},)"
                          R"("inner":{"dtype":"BF16","shape":[2],"data_offsets":[8,12]}})",
                          32),
                    {"'outer'", "'inner'", "overlap"});
}

TEST(SafetensorsBadInput, OffsetsBackwards) {
    Scratch s("st_backwards");
    expect_bad_file(s, image(R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[16,0]}})", 16),
                    {"'w'", "[16, 0]", "backwards"});
}

TEST(SafetensorsBadInput, ByteCountDoesNotMatchDtypeTimesShape) {
    Scratch s("st_bytecount");
    expect_bad_file(s, image(R"({"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,12]}})", 16),
                    {"'w'", "12 bytes", "F32[2,2]", "16"});
    expect_bad_file(s, image(R"({"w":{"dtype":"BF16","shape":[2,2],"data_offsets":[0,16]}})", 16),
                    {"'w'", "BF16[2,2]", "needs 8"});
    // A scalar needs one element's bytes, not zero.
    expect_bad_file(s, image(R"({"s":{"dtype":"I64","shape":[],"data_offsets":[0,0]}})", 8), {"'s'", "needs 8"});
}

TEST(SafetensorsBadInput, UnknownDtype) {
    Scratch s("st_dtype");
    expect_bad_file(s, image(R"({"q":{"dtype":"Q4_K","shape":[4],"data_offsets":[0,4]}})", 4),
                    {"'q'", "unsupported dtype 'Q4_K'"});
    expect_bad_file(s, image(R"({"q":{"dtype":7,"shape":[4],"data_offsets":[0,4]}})", 4), {"'q'", "'dtype'"});
    expect_bad_file(s, image(R"({"q":{"shape":[4],"data_offsets":[0,4]}})", 4), {"'q'", "missing key 'dtype'"});
}

TEST(SafetensorsBadInput, NegativeDimension) {
    Scratch s("st_negative");
    expect_bad_file(s, image(R"({"w":{"dtype":"F32","shape":[-1,4],"data_offsets":[0,16]}})", 16),
                    {"'w'", "negative dimension -1"});
}

TEST(SafetensorsBadInput, ShapeOverflow) {
    Scratch s("st_overflow");
    // 2^32 cubed overflows 64 bits while each dimension alone is fine.
    expect_bad_file(
        s, image(R"({"w":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,16]}})", 16),
        {"'w'", "overflows"});
    // The element count fits, the byte count does not.
    expect_bad_file(s, image(R"({"w":{"dtype":"F32","shape":[4611686018427387904],"data_offsets":[0,16]}})", 16),
                    {"'w'", "overflows"});
    // A zero dimension makes the element count 0, but the later dimensions still define strides: their
    // product must fit too (found by fuzzing: accepted, then overflowed in contiguous_strides).
    expect_bad_file(
        s,
        image(R"({"w":{"dtype":"F32","shape":[0,4611686018427387904,4611686018427387904],"data_offsets":[0,0]}})", 0),
        {"'w'", "overflows"});
    // Dimensions above INT64_MAX are out of range, not silently negative.
    expect_bad_file(s, image(R"({"w":{"dtype":"F32","shape":[18446744073709551615],"data_offsets":[0,0]}})", 0),
                    {"'w'", "out of range"});
    expect_bad_file(s, image(R"({"w":{"dtype":"F32","shape":[1,1,1,1,1,1,1,1,1],"data_offsets":[0,4]}})", 4),
                    {"'w'", "rank 9"});
    expect_bad_file(s, image(R"({"w":{"dtype":"F32","shape":[2.5],"data_offsets":[0,10]}})", 10), {"'w'", "'shape'"});
    expect_bad_file(s, image(R"({"w":{"dtype":"F32","shape":"4","data_offsets":[0,16]}})", 16), {"'w'", "'shape'"});
}

TEST(SafetensorsBadInput, DataOffsetsMalformed) {
    Scratch s("st_offsets");
    for (const char* off : {"[-1,4]", "[0]", "[0,4,8]", "\"0,4\"", "[0.0,4]", "[0,4e0]", "{}"}) {
        SCOPED_TRACE(off);
        expect_bad_file(s, image(std::string(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":)") + off + "}}", 8),
                        {"'w'", "data_offsets"});
    }
    expect_bad_file(s, image(R"({"w":{"dtype":"F32","shape":[1]}})", 8), {"'w'", "missing key 'data_offsets'"});
}

TEST(SafetensorsBadInput, HeaderIsNotAnObject) {
    Scratch s("st_not_object");
    for (const char* header : {"[1,2,3]", "\"text\"", "42", "null"}) {
        SCOPED_TRACE(header);
        expect_bad_file(s, image(header, 0), {"not a JSON object"});
    }
    expect_bad_file(s, image(R"({"w":5})", 0), {"'w'", "not an object"});
    expect_bad_file(s, image(R"({"__metadata__":[1]})", 0), {"__metadata__"});
}

TEST(SafetensorsBadInput, MalformedHeaderJson) {
    Scratch s("st_malformed");
    expect_bad_file(s, image(R"({"w":{"dtype":"F32",)", 0), {"malformed JSON"});
    expect_bad_file(s, image(std::string("{\"w\xff\":1}"), 0), {"malformed JSON"});  // invalid UTF-8
    expect_bad_file(s, image("", 0), {"malformed JSON"});
}

TEST(SafetensorsBadInput, DeeplyNestedHeaderIsAnErrorNotAStackOverflow) {
    Scratch s("st_nested");
    expect_bad_file(s, image(std::string(100000, '['), 0), {"nested deeper than 64"});
    std::string objects;
    for (int i = 0; i < 100000; ++i) objects += "{\"a\":";
    expect_bad_file(s, image(objects, 0), {"nested deeper than 64"});
}

// ---------------------------------------------------------------------------------------------------------
// Hostile sharded checkpoints

// Fills `dir` with two valid shards and an index whose weight_map is `map` (JSON text); returns the index path.
std::string make_sharded(const fs::path& dir, const std::string& map) {
    sr::write_safetensors((dir / "model-00001-of-00002.safetensors").string(),
                          {{"a.weight", Tensor::zeros({2, 2}, DType::BF16)}});
    sr::write_safetensors((dir / "model-00002-of-00002.safetensors").string(),
                          {{"b.weight", Tensor::zeros({3}, DType::F32)}});
    const std::string index = (dir / "model.safetensors.index.json").string();
    write_file(index, R"({"metadata":{"total_size":20},"weight_map":)" + map + "}");
    return index;
}

TEST(SafetensorsIndex, ValidIndexOpens) {
    Scratch s("st_index_ok");
    make_sharded(s.dir,
                 R"({"a.weight":"model-00001-of-00002.safetensors","b.weight":"model-00002-of-00002.safetensors"})");
    const auto store = sr::WeightStore::open(s.dir.string());
    EXPECT_EQ(store.file_count(), 2u);
    EXPECT_EQ(store.get("b.weight").dtype(), DType::F32);
}

TEST(SafetensorsIndex, MissingShard) {
    Scratch s("st_index_missing");
    const std::string index = make_sharded(
        s.dir, R"({"a.weight":"model-00001-of-00002.safetensors","c.weight":"model-00003-of-00003.safetensors"})");
    expect_input_error([&] { sr::WeightStore::open(s.dir.string()); },
                       {index, "'model-00003-of-00003.safetensors'", "'c.weight'", "missing"});
}

TEST(SafetensorsIndex, ShardNameWithAPathSeparatorIsRefused) {
    Scratch s("st_index_traversal");
    // The shard "../x.safetensors" exists and holds the tensor: it must be refused by its name alone.
    const fs::path model = s.dir / "model";
    fs::create_directories(model / "sub");
    sr::write_safetensors(s / "x.safetensors", {{"a.weight", Tensor::zeros({2, 2}, DType::BF16)}});
    sr::write_safetensors((model / "sub" / "x.safetensors").string(),
                          {{"a.weight", Tensor::zeros({2, 2}, DType::BF16)}});
    for (const char* shard :
         {"../x.safetensors", "sub/x.safetensors", "/etc/passwd", "..", ".", "", "a\\\\b.safetensors"}) {
        SCOPED_TRACE(shard);
        const std::string index = make_sharded(model, std::string(R"({"a.weight":")") + shard + "\"}");
        expect_input_error([&] { sr::WeightStore::open(index); }, {index, "'a.weight'", "is not a file name"});
    }
}

TEST(SafetensorsIndex, TensorMappedToAShardThatLacksIt) {
    Scratch s("st_index_lacks");
    const std::string index = make_sharded(
        s.dir, R"({"a.weight":"model-00001-of-00002.safetensors","b.weight":"model-00001-of-00002.safetensors"})");
    expect_input_error([&] { sr::WeightStore::open(s.dir.string()); },
                       {index, "'b.weight'", "'model-00001-of-00002.safetensors'", "does not hold it"});
}

TEST(SafetensorsIndex, MalformedIndex) {
    Scratch s("st_index_malformed");
    const std::string index = make_sharded(s.dir, R"({"a.weight":)");  // truncated JSON
    expect_input_error([&] { sr::WeightStore::open(s.dir.string()); }, {index, "malformed JSON"});
    write_file(index, R"({"metadata":{}})");
    expect_input_error([&] { sr::WeightStore::open(index); }, {index, "missing key 'weight_map'"});
    write_file(index, R"({"weight_map":["a.weight"]})");
    expect_input_error([&] { sr::WeightStore::open(index); }, {index, "weight_map is not an object"});
    write_file(index, R"({"weight_map":{"a.weight":1}})");
    expect_input_error([&] { sr::WeightStore::open(index); }, {index, "'a.weight'", "not a file name"});
    write_file(index, std::string(100000, '['));
    expect_input_error([&] { sr::WeightStore::open(index); }, {index, "nested deeper"});
}

TEST(SafetensorsIndex, CorruptShardIsNamed) {
    Scratch s("st_index_corrupt");
    const std::string index = make_sharded(
        s.dir, R"({"a.weight":"model-00001-of-00002.safetensors","b.weight":"model-00002-of-00002.safetensors"})");
    const std::string shard = s / "model-00002-of-00002.safetensors";
    const std::string bytes = read_file(shard);
    write_file(shard, bytes.substr(0, bytes.size() - 1));
    expect_input_error([&] { sr::WeightStore::open(index); }, {shard, "'b.weight'", "past the end"});
    // A shard that is a folder, not a file.
    fs::remove(shard);
    fs::create_directory(shard);
    expect_input_error([&] { sr::WeightStore::open(index); }, {shard, "not a regular file"});
}

TEST(SafetensorsFolder, BadFolders) {
    Scratch s("st_folders");
    expect_input_error([&] { sr::WeightStore::open((s.dir / "absent").string()); }, {"absent", "no such file"});
    expect_input_error([&] { sr::WeightStore::open(s.dir.string()); }, {s.dir.string(), "no .safetensors files"});
    // The same tensor in two files of an unindexed folder: ambiguous, so an error naming both files.
    sr::write_safetensors(s / "a.safetensors", {{"dup.weight", Tensor::zeros({1}, DType::F32)}});
    sr::write_safetensors(s / "b.safetensors", {{"dup.weight", Tensor::zeros({1}, DType::F32)}});
    expect_input_error([&] { sr::WeightStore::open(s.dir.string()); },
                       {"'dup.weight'", s / "a.safetensors", s / "b.safetensors"});
    // Two indexes: which one is meant cannot be guessed.
    write_file(s / "a.safetensors.index.json", R"({"weight_map":{}})");
    write_file(s / "b.safetensors.index.json", R"({"weight_map":{}})");
    expect_input_error([&] { sr::WeightStore::open(s.dir.string()); }, {"more than one", "a.safetensors.index.json"});
}

}  // namespace
