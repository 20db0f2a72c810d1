// Hostile input that used to pass silently, hang or take minutes (issue 24): each case is now a clear
// InputError naming the culprit, or bounded work. Config values come from the fixture configs, changed one
// key at a time; tokenizer inputs are sized well past what the quadratic merge could do in time.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>

#include "backends/cpu/cpu_backend.h"
#include "core/files.h"
#include "io/json.h"
#include "io/weight_binder.h"
#include "models/hunyuan_video_config.h"
#include "models/hunyuan_video_vae.h"
#include "pipeline/demo_model.h"
#include "pipeline/flow_match_scheduler.h"
#include "runtime/residency.h"
#include "support/fixtures.h"
#include "text/bpe_tokenizer.h"

namespace fs = std::filesystem;
using namespace sr;

namespace {

// The first fixture folder holding a model config of `class_name`.
Json fixture_config(const std::string& class_name, fs::path* where = nullptr) {
    for (const fs::path& d : test::find_fixture_dirs([](const fs::path&) { return true; }))
        for (const char* sub : {"transformer", "vae", "."}) {
            const fs::path p = d / sub / "config.json";
            std::error_code ec;
            if (!fs::exists(p, ec)) continue;
            const Json j = load_json_file(p.string());
            if (j.is_object() && j.value("_class_name", "") == class_name) {
                if (where) *where = p;
                return j;
            }
        }
    return Json();
}

// The message of the InputError `f` throws ("" and a test failure when it throws none).
template <class F>
std::string error_of(F&& f) {
    try {
        f();
    } catch (const InputError& e) {
        return e.what();
    }
    ADD_FAILURE() << "no InputError";
    return "";
}

fs::path llama_tokenizer_dir() {
    for (const fs::path& d : test::find_fixture_dirs([](const fs::path&) { return true; }))
        for (const auto& e : fs::directory_iterator(d))
            if (e.is_directory() && fs::exists(e.path() / "tokenizer.json") &&
                load_json_file((e.path() / "tokenizer.json").string()).contains("added_tokens"))
                return e.path();
    return {};
}

}  // namespace

// Item 4: entries near INT64_MAX used to wrap around to the right sum and pass.
TEST(HostileConfig, RopeAxesThatOverflowAreRejectedPerEntry) {
    Json j = fixture_config("HunyuanVideoTransformer3DModel");
    ASSERT_TRUE(j.is_object()) << "no transformer fixture under " << test::fixtures_root();
    const int64_t hd = j.at("attention_head_dim").get<int64_t>();
    const int64_t big = std::numeric_limits<int64_t>::max() - 1;  // even; two of them wrap to -4
    j["rope_axes_dim"] = {big, big, hd + 4};
    uint64_t wrapped = 0;
    for (const Json& d : j["rope_axes_dim"]) wrapped += d.get<uint64_t>();
    ASSERT_EQ(int64_t(wrapped), hd) << "the entries must wrap to the head dim for this test to mean anything";
    const std::string e = error_of([&] { HunyuanVideoConfig::from_json(j, "cfg.json"); });
    EXPECT_NE(e.find("rope_axes_dim[0]"), std::string::npos) << e;
    EXPECT_NE(e.find("cfg.json"), std::string::npos) << e;
}

// Item 14: values that gave exit 0 and a black video.
TEST(HostileConfig, RopeThetaAndScalingFactorOutOfRange) {
    const Json t = fixture_config("HunyuanVideoTransformer3DModel");
    ASSERT_TRUE(t.is_object());
    for (const Json& theta : {Json(1e-320), Json(0), Json(-256.0), Json(1e300)}) {
        Json j = t;
        j["rope_theta"] = theta;
        const std::string e = error_of([&] { HunyuanVideoConfig::from_json(j, "cfg.json"); });
        EXPECT_NE(e.find("rope_theta"), std::string::npos) << theta.dump() << ": " << e;
    }
    fs::path vae_path;
    const Json v = fixture_config("AutoencoderKLHunyuanVideo", &vae_path);
    ASSERT_TRUE(v.is_object()) << "no VAE fixture";
    for (const Json& sf : {Json(0), Json(-0.476986), Json(1e-300)}) {
        Json j = v;
        j["scaling_factor"] = sf;
        const std::string e = error_of([&] { HunyuanVideoVAEConfig::from_json(j, "vae.json"); });
        EXPECT_NE(e.find("scaling_factor"), std::string::npos) << sf.dump() << ": " << e;
    }
}

// Item 15: wrong JSON types in the scheduler config were read through nlohmann's get<> (exit 3, or a
// truncation: 1e30 -> some int64, "true" -> false).
TEST(HostileConfig, SchedulerConfigTypesAreChecked) {
    const std::map<std::string, Json> bad = {
        {"num_train_timesteps", 1e30}, {"num_train_timesteps", "1000"}, {"shift", "7.0"}, {"use_karras_sigmas", "true"},
        {"invert_sigmas", 1},
    };
    for (const auto& [key, value] : bad) {
        Json j = {{"_class_name", "FlowMatchEulerDiscreteScheduler"}, {"num_train_timesteps", 1000}, {"shift", 7.0}};
        j[key] = value;
        const std::string e = error_of([&] { FlowMatchSchedulerConfig::from_json(j, "scheduler_config.json"); });
        EXPECT_NE(e.find(key), std::string::npos) << key << " = " << value.dump() << ": " << e;
        EXPECT_NE(e.find("scheduler_config.json"), std::string::npos) << e;
    }
    // Within range and well typed: accepted.
    const Json ok = {{"num_train_timesteps", 1000}, {"shift", 7.0}, {"use_karras_sigmas", false}};
    EXPECT_EQ(FlowMatchSchedulerConfig::from_json(ok, "ok").num_train_timesteps, 1000);
}

TEST(HostileConfig, NumbersMustBeFinite) {
    // The parser refuses an out-of-range literal; a value built in code (a config made by a converter) is
    // checked again where it is read.
    EXPECT_NE(error_of([] { parse_json(R"({"x": 1e999})", "t.json"); }).find("t.json"), std::string::npos);
    const Json j = {{"x", std::numeric_limits<double>::infinity()}};
    const std::string e = error_of([&] { json_number(j, "x", "t.json"); });
    EXPECT_NE(e.find("'x' must be a finite number"), std::string::npos) << e;
}

// Item 7: a long run of one character class is one pre-token; merging 120 KB of it used to take 45-65 s
// (quadratic: ~15 s at the 64 KB used here). The merge is O(n log n) now, and the ids still spell the input
// back exactly.
TEST(HostileTokenizer, LongRunsOfOneCharacterClassAreFast) {
    const fs::path dir = llama_tokenizer_dir();
    ASSERT_FALSE(dir.empty()) << "no Llama-3 tokenizer fixture under " << test::fixtures_root();
    const BpeTokenizer tok = BpeTokenizer::load(dir.string());
    std::map<std::string, uint8_t> byte_of;
    for (int b = 0; b < 256; ++b) byte_of[byte_level_alphabet()[size_t(b)]] = uint8_t(b);
    for (const std::string& unit : {std::string("!"), std::string(" "), std::string("\r\n")}) {
        std::string text;
        while (text.size() < 64 * 1024) text += unit;
        const auto start = std::chrono::steady_clock::now();
        const std::vector<int32_t> ids = tok.encode(text, false);
        const TokenizedText padded = tok.encode_padded(text, 351);
        const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        // Release: ~0.1 s; sanitizer builds run several times slower, the quadratic merge far slower still.
        EXPECT_LT(seconds, 5.0) << "a run of '" << printable(unit) << "'";
        EXPECT_TRUE(padded.truncated);
        std::string spelled;
        for (int32_t id : ids) {
            const std::string t = tok.id_to_token(id);
            for (size_t i = 0; i < t.size();) {
                size_t len = 1;
                while (i + len < t.size() && (uint8_t(t[i + len]) & 0xC0) == 0x80) ++len;
                const auto it = byte_of.find(t.substr(i, len));
                ASSERT_NE(it, byte_of.end()) << "token " << id << " is not byte-level";
                spelled += char(it->second);
                i += len;
            }
        }
        EXPECT_TRUE(spelled == text) << "the ids of a run of '" << printable(unit) << "' do not spell it";
    }
}

// Item 14: non-finite activations end the job with an error naming the stage, not a black video.
TEST(HostilePipeline, NonFiniteLatentsAreAnError) {
    const SkyReelsPipeline pipe = make_demo_pipeline(Task::T2V);
    GenerationRequest req;
    req.params = demo_params(Task::T2V);
    req.params.num_frames = 5, req.params.height = 32, req.params.width = 32, req.params.num_inference_steps = 1;
    req.prompt = "FPS-24, a cat";
    const HunyuanVideoVAEConfig& vae = pipe.components().vae->config();
    const int64_t r = vae.spatial_compression_ratio;
    req.initial_latents = Tensor::zeros(
        {1, vae.latent_channels, req.params.latent_frames(), req.params.height / r, req.params.width / r}, DType::F32);
    req.initial_latents.data<float>()[3] = std::nanf("");
    CpuBackend be;
    const std::string e = error_of([&] { pipe.generate(be, req, {}, [](const Tensor&, int64_t) {}, {}); });
    EXPECT_NE(e.find("non-finite"), std::string::npos) << e;
    EXPECT_NE(e.find("transformer"), std::string::npos) << e;
}

// Item 17: names from files are printed escaped; a flood of unused tensors is one summarised warning.
TEST(HostileNames, ControlCharactersAreEscaped) {
    EXPECT_EQ(printable("a\x1b[31mred\n"), "a\\x1b[31mred\\n");
    EXPECT_EQ(printable("tab\there\\"), "tab\\there\\\\");
    EXPECT_EQ(printable("caf\xc3\xa9 \xff"), "caf\xc3\xa9 \\xff");
    EXPECT_EQ(printable("\xc2\x9b"), "\\xc2\\x9b");  // a C1 control (CSI) in UTF-8
    EXPECT_EQ(printable(std::string(500, 'x'), 10), std::string(10, 'x') + "...");
    EXPECT_EQ(terminal_safe("line one\nline\x07 two"), "line one\nline\\x07 two");
}

TEST(HostileNames, UnusedTensorsAreSummarised) {
    std::vector<std::string> names;
    for (int i = 0; i < 1000; ++i) names.push_back("extra\x1b]0;pwned\x07." + std::to_string(i));
    const std::string m = unused_tensors_message(names, "model.safetensors", "the VAE");
    EXPECT_NE(m.find("1000 unexpected tensors"), std::string::npos) << m;
    EXPECT_NE(m.find("and " + std::to_string(names.size() - kShownUnusedTensors) + " more"), std::string::npos) << m;
    EXPECT_EQ(m.find('\x1b'), std::string::npos) << "raw escape in: " << m;
    EXPECT_EQ(m.find(".5'"), std::string::npos) << "more than " << kShownUnusedTensors << " names listed: " << m;
    EXPECT_LT(m.size(), 600u) << m;
}

// Item 16: the pinned budget bounds all page-locked memory, the device's staging ring included.
TEST(HostileConfig, PinnedBudgetCountsTheStagingRing) {
    const std::vector<std::pair<std::string, size_t>> blocks = {{"a", 1000}, {"b", 1000}, {"c", 1000}};
    ResidencyPlan plan;
    plan.resident.assign(blocks.size(), false);
    ResidencyOptions o;
    o.host_memory = HostMemoryMode::Pinned;
    o.staging_bytes = 500;
    o.pinned_budget_bytes = o.staging_bytes + blocks[0].second + blocks[1].second / 2;  // room for one block
    EXPECT_EQ(planned_pinned_bytes(blocks, plan, o), blocks[0].second);
    o.pinned_budget_bytes = 0;  // no limit: every streamed block
    EXPECT_EQ(planned_pinned_bytes(blocks, plan, o), 3000u);
    o.pinned_budget_bytes = o.staging_bytes / 2;
    EXPECT_NE(error_of([&] { planned_pinned_bytes(blocks, plan, o); }).find("staging ring"), std::string::npos);
}
