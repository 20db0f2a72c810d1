// `skyreels info` on bad checkpoints: every case exits non-zero with a message naming the culprit, and
// never crashes (a crash would exit with a signal, which these tests tell apart from exit code 1).
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "io/json.h"
#include "io/safetensors.h"
#include "support/fixtures.h"

namespace fs = std::filesystem;
using namespace sr;

namespace {

struct Result {
    int exit_code = -1;  // -1: killed by a signal
    std::string output;
};

Result run_cli(const std::string& args) {
    const std::string cmd = std::string(SKYREELS_BINARY_DIR) + "/skyreels " + args + " 2>&1";
    Result r;
    FILE* p = popen(cmd.c_str(), "r");
    if (!p) return r;
    std::array<char, 4096> buf{};
    while (fgets(buf.data(), int(buf.size()), p)) r.output += buf.data();
    const int status = pclose(p);
    r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    return r;
}

fs::path t2v_model() {
    auto dirs = test::find_fixture_dirs([](const fs::path& d) {
        return test::model_config_names(d, "_class_name", "HunyuanVideoTransformer3DModel") &&
               fs::exists(d / "model" / "diffusion_pytorch_model.safetensors.index.json");
    });
    return dirs.empty() ? fs::path() : dirs[0] / "model";
}

// A copy of the sharded fixture model that the test may damage.
fs::path copy_model(const std::string& name) {
    const fs::path src = t2v_model();
    const fs::path dir = test::scratch_dir(name);
    for (const auto& e : fs::directory_iterator(src)) fs::copy_file(e.path(), dir / e.path().filename());
    return dir;
}

std::string first_shard(const fs::path& dir) {
    for (const auto& e : fs::directory_iterator(dir))
        if (e.path().filename().string().find("-00001-of-") != std::string::npos) return e.path().string();
    return "";
}

void expect_error(const std::string& args, const std::string& needle) {
    const Result r = run_cli(args);
    EXPECT_EQ(r.exit_code, 1) << r.output;
    EXPECT_NE(r.output.find("skyreels: error:"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find(needle), std::string::npos) << "expected '" << needle << "' in: " << r.output;
}

}  // namespace

TEST(CliInfo, PrintsConfigAndCost) {
    ASSERT_FALSE(t2v_model().empty());
    const Result r = run_cli("info " + t2v_model().string() + " --frames 9 --height 64 --width 96");
    EXPECT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("parameters"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("BF16"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("video tokens"), std::string::npos) << r.output;
}

TEST(CliInfo, JsonOutputParses) {
    const Result r = run_cli("info " + t2v_model().string() + " --json --frames 9 --height 64 --width 96 2>/dev/null");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const Json j = Json::parse(r.output);
    EXPECT_EQ(j["forward"]["video_tokens"].get<int64_t>(), 3 * 4 * 6);
    EXPECT_GT(j["parameters"].get<int64_t>(), 0);
}

TEST(CliInfo, MissingFolder) {
    expect_error("info /nonexistent/model", "/nonexistent/model");
}

TEST(CliInfo, BadFlagValues) {
    expect_error("info " + t2v_model().string() + " --frames 10", "--frames 10");
    expect_error("info " + t2v_model().string() + " --height 100", "--height 100");
}

TEST(CliInfo, TruncatedShard) {
    const fs::path dir = copy_model("cli_truncated");
    const std::string shard = first_shard(dir);
    fs::resize_file(shard, fs::file_size(shard) - 100);
    expect_error("info " + dir.string(), "past the end");
}

TEST(CliInfo, AbsurdHeaderLength) {
    const fs::path dir = copy_model("cli_absurd");
    std::fstream f(first_shard(dir), std::ios::in | std::ios::out | std::ios::binary);
    const unsigned char len[8] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f};
    f.write(reinterpret_cast<const char*>(len), 8);
    f.close();
    expect_error("info " + dir.string(), "header length");
}

TEST(CliInfo, MissingShard) {
    const fs::path dir = copy_model("cli_missing_shard");
    fs::remove(first_shard(dir));
    expect_error("info " + dir.string(), "is missing");
}

TEST(CliInfo, MalformedIndexJson) {
    const fs::path dir = copy_model("cli_bad_index");
    std::ofstream(dir / "diffusion_pytorch_model.safetensors.index.json") << "{\"weight_map\": {\"a\": ";
    expect_error("info " + dir.string(), "malformed JSON");
}

TEST(CliInfo, MalformedConfig) {
    const fs::path dir = copy_model("cli_bad_config");
    std::ofstream(dir / "config.json") << "{\"num_layers\": \"two\"}";
    expect_error("info " + dir.string(), "'num_layers' must be an integer");
}

TEST(CliInfo, OverlappingOffsets) {
    const fs::path dir = copy_model("cli_overlap");
    // Rewrite the first shard with two tensors whose data ranges overlap.
    const std::string header = R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},)"
                               R"("b":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}})";
    std::ofstream f(first_shard(dir), std::ios::binary | std::ios::trunc);
    const uint64_t n = header.size();
    for (int i = 0; i < 8; ++i) f.put(char((n >> (8 * i)) & 0xff));
    f << header << std::string(24, '\0');
    f.close();
    expect_error("info " + dir.string(), "overlap");
}

TEST(CliInfo, WrongShapeForNamedTensor) {
    const fs::path src = t2v_model();
    const fs::path dir = test::scratch_dir("cli_wrong_shape");
    fs::copy_file(src / "config.json", dir / "config.json");
    const WeightStore store = WeightStore::open(src.string());
    std::vector<std::pair<std::string, Tensor>> tensors;
    for (const auto& n : store.names())
        tensors.emplace_back(n, n == "x_embedder.proj.weight" ? Tensor::zeros({1, 2}, DType::BF16) : store.get(n));
    write_safetensors((dir / "diffusion_pytorch_model.safetensors").string(), tensors);
    expect_error("info " + dir.string(), "'x_embedder.proj.weight' has shape [1,2]");
}

TEST(CliConvert, WritesAGgufThatInfoReads) {
    const fs::path out = test::scratch_dir("cli_convert") / "m.gguf";
    const Result r = run_cli("convert " + t2v_model().string() + " --out " + out.string() + " --type q8_0 -q");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const Result info = run_cli("info " + out.string() + " --frames 9 --height 64 --width 96");
    EXPECT_EQ(info.exit_code, 0) << info.output;
    EXPECT_NE(info.output.find("Q8_0"), std::string::npos) << info.output;
    EXPECT_NE(info.output.find("original layout"), std::string::npos) << info.output;
}

TEST(CliConvert, BadArgumentsAreNamed) {
    const fs::path dir = test::scratch_dir("cli_convert_bad");
    expect_error("convert " + t2v_model().string() + " --out " + (dir / "m.gguf").string() + " --type q2_k",
                 "--type q2_k");
    expect_error("convert " + t2v_model().string() + " --out " + (dir / "m.bin").string(), "must end in .gguf");
    expect_error("convert " + t2v_model().string() + " --out " + (dir / "m.gguf").string() + " --type fp8",
                 ".safetensors file");
    expect_error("convert /nonexistent/model --out " + (dir / "m.gguf").string(), "/nonexistent/model");
    EXPECT_TRUE(fs::is_empty(dir));
}

// A hostile GGUF through the command line: a clear error naming the file, exit 1.
TEST(CliConvert, TruncatedGgufIsNamedWithExitOne) {
    const fs::path dir = test::scratch_dir("cli_gguf_truncated");
    const fs::path gguf = dir / "m.gguf";
    ASSERT_EQ(run_cli("convert " + t2v_model().string() + " --out " + gguf.string() + " --type q8_0 -q").exit_code, 0);
    fs::resize_file(gguf, fs::file_size(gguf) / 2);
    expect_error("info " + gguf.string(), gguf.string());
    fs::resize_file(gguf, 20);
    expect_error("info " + gguf.string(), gguf.string());
}

// Issue 24, item 16: sizes past generate's limits used to overflow int64 in the cost estimate.
TEST(CliInfo, SizesPastTheGenerateLimitsAreRejected) {
    expect_error("info " + t2v_model().string() + " --frames 4000000001", "--frames 4000000001");
    expect_error("info " + t2v_model().string() + " --height 1600000000", "--height 1600000000");
    expect_error("info " + t2v_model().string() + " --width 1600000000", "--width 1600000000");
}

// Items 5 and 15: a FIFO as a shard is refused at once (it used to block for ever), a symlink loop is a clear
// error with exit 1 (it used to be an internal error, exit 3).
TEST(CliInfo, FifoShardAndSymlinkLoopAreClearErrors) {
    const fs::path dir = copy_model("cli_fifo");
    const std::string shard = first_shard(dir);
    fs::remove(shard);
    ASSERT_EQ(mkfifo(shard.c_str(), 0600), 0);
    expect_error("info " + dir.string(), "FIFO");
    const fs::path loops = test::scratch_dir("cli_loop");
    fs::create_symlink(loops / "b.safetensors", loops / "a.safetensors");
    fs::create_symlink(loops / "a.safetensors", loops / "b.safetensors");
    expect_error("info " + (loops / "a.safetensors").string(), "a.safetensors");
    fs::create_directory_symlink(loops / "d2", loops / "d1");
    fs::create_directory_symlink(loops / "d1", loops / "d2");
    expect_error("info " + (loops / "d1").string(), "d1");
}

// Item 17: a checkpoint with a flood of unexpected tensors whose names carry terminal escapes: one warning,
// the count and the first few names, escaped.
TEST(CliInfo, UnusedTensorFloodIsOneEscapedWarning) {
    const fs::path src = t2v_model();
    const fs::path dir = test::scratch_dir("cli_unused_flood");
    fs::copy_file(src / "config.json", dir / "config.json");
    const WeightStore store = WeightStore::open(src.string());
    std::vector<std::pair<std::string, Tensor>> tensors;
    for (const auto& n : store.names()) tensors.emplace_back(n, store.get(n));
    const int n_extra = 300;
    for (int i = 0; i < n_extra; ++i)
        tensors.emplace_back("junk\x1b[2J\x1b]0;owned\x07\n[info] fake line " + std::to_string(i),
                             Tensor::zeros({1}, DType::F32));
    write_safetensors((dir / "diffusion_pytorch_model.safetensors").string(), tensors);
    const Result r = run_cli("info " + dir.string() + " --frames 9 --height 64 --width 96");
    EXPECT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find(std::to_string(n_extra) + " unexpected tensors"), std::string::npos) << r.output;
    EXPECT_EQ(r.output.find('\x1b'), std::string::npos) << "a raw escape reached the terminal";
    EXPECT_EQ(r.output.find("\n[info] fake line"), std::string::npos) << "a name forged a log line";
    size_t warnings = 0;
    for (size_t at = r.output.find("[warn]"); at != std::string::npos; at = r.output.find("[warn]", at + 1)) ++warnings;
    EXPECT_EQ(warnings, 1u) << r.output;
}
