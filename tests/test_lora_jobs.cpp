// A job's own LoRA adapters (Request::loras) on a Session that loaded its models once, on the shared
// text-to-video pipeline fixture, on the cpu and the simulated device: job A with an adapter, then job B
// without, gives B bit-identical to a run that never saw the adapter (nothing leaks into the model); A is
// bit-identical to a session loaded with the same adapter in runtime mode (the same side path, in the same
// order, after the same matmul); on a session with a merged adapter a job's adapter does not leak either; a
// changed adapter file is read again; a bad one fails the job naming it and leaves the session as it was.
#include <gtest/gtest.h>

#include <filesystem>
#include <random>

#include "io/json.h"
#include "io/safetensors.h"
#include "pipeline/session.h"
#include "support/compare.h"
#include "support/fixtures.h"
#include "support/pipeline_fixture.h"

namespace fs = std::filesystem;
using namespace sr;

namespace {

fs::path t2v_pipeline_fixture() {
    const auto dirs = test::find_fixture_dirs([](const fs::path& d) {
        return fs::exists(d / "model_index.json") && fs::exists(d / "params.json") &&
               fs::exists(d / "transformer" / "config.json") &&
               load_json_file((d / "transformer" / "config.json").string()).value("in_channels", 0) == 16;
    });
    return dirs.empty() ? fs::path() : dirs.front();
}

// A diffusers-named adapter of rank 4 on two layers of the first dual block, values from `seed`.
void write_adapter(const fs::path& path, int64_t D, int64_t M, uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> n(0.0f, 0.2f);
    auto random = [&](Shape s) {
        Tensor t = Tensor::empty(s, DType::F32);
        for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = n(rng);
        return t;
    };
    write_safetensors(path.string(), {{"transformer.transformer_blocks.0.attn.to_q.lora_A.weight", random({4, D})},
                                      {"transformer.transformer_blocks.0.attn.to_q.lora_B.weight", random({D, 4})},
                                      {"transformer.transformer_blocks.0.ff.net.2.lora_A.weight", random({4, M})},
                                      {"transformer.transformer_blocks.0.ff.net.2.lora_B.weight", random({D, 4})}});
}

Tensor latents(Session& s, const Request& r) {
    const JobResult res = s.generate(r);
    EXPECT_TRUE(res.latents.defined());
    return res.latents;
}

}  // namespace

TEST(LoraJobs, JobAdaptersAreTheJobsAlone) {
    const fs::path p = t2v_pipeline_fixture();
    ASSERT_FALSE(p.empty()) << "no text-to-video pipeline fixture under " << test::fixtures_root();
    const Json cfg = load_json_file((p / "transformer" / "config.json").string());
    const int64_t D = cfg.at("num_attention_heads").get<int64_t>() * cfg.at("attention_head_dim").get<int64_t>();
    const int64_t M = int64_t(double(D) * cfg.value("mlp_ratio", 4.0));  // the feed-forward's width
    const fs::path dir = test::scratch_dir("lora_jobs");
    const fs::path style = dir / "style.safetensors";
    write_adapter(style, D, M, 1);
    const LoraFile job_lora{style.string(), 0.7f};

    for (const char* device : {"cpu", "sim"}) {
        SCOPED_TRACE(device);
        SessionOptions o;
        o.model = o.base = p.string();
        o.device = device;
        o.sim_bandwidth_gbs = 1000;
        Session session(o);
        const Request plain = test::fixture_session_request(p, session.pipeline());
        Request with = plain;
        with.loras = {job_lora};

        const Tensor before = latents(session, plain);
        const Tensor a = latents(session, with);
        const Tensor after = latents(session, plain);
        EXPECT_EQ(test::compare(after, before).max_abs, 0.0) << "job A's adapter leaked into job B";
        EXPECT_GT(test::compare(a, before).max_abs, 0.0) << "the job's adapter changed nothing";
        EXPECT_EQ(session.stats().pipeline_loads, 1) << "a job's adapter must not reload the model";

        // The same adapter loaded with the session, as a runtime side path: the same arithmetic.
        SessionOptions ol = o;
        ol.lora.files = {job_lora};
        ol.lora.mode = LoraMode::Runtime;
        Session loaded(ol);
        const Tensor l = latents(loaded, plain);
        EXPECT_EQ(test::compare(a, l).max_abs, 0.0) << "job adapter vs the session's runtime adapter";

        // A job's adapters come after the session's: two of the same file at half strength each are the session's
        // adapter plus the job's (within f32 noise of one at full strength; not bit-identical: two side paths).
        Request half = plain;
        half.loras = {{style.string(), 0.35f}, {style.string(), 0.35f}};
        const double two_halves = test::compare(latents(session, half), a).max_abs;
        EXPECT_LE(two_halves, 1e-4) << "two adapters at half strength vs one at full";

        // A job's plan counts its adapters: uploaded for the denoising loop, they add to its activations.
        if (std::string(device) == "sim") {
            auto denoising = [&](const Request& r) {
                for (const StagePlan& st : session.plan(r).stages)
                    if (st.name == Stage::Denoising) return st.activation_bytes;
                return size_t(0);
            };
            EXPECT_GT(denoising(with), denoising(plain)) << "the plan does not count the job's adapters";
        }

        // On a session whose own adapter is merged into its weights, a job's adapter adds to it for that job
        // only.
        SessionOptions om = o;
        om.lora.files = {{style.string(), 0.5f}};
        om.lora.mode = LoraMode::Merge;
        Session merged(om);
        const Tensor m0 = latents(merged, plain);
        EXPECT_GT(test::compare(latents(merged, with), m0).max_abs, 0.0);
        EXPECT_EQ(test::compare(latents(merged, plain), m0).max_abs, 0.0) << "leaked into a merged session";

        // A changed file is read again (its size and modification time are the cache's key).
        write_adapter(style, D, M, 2);
        fs::last_write_time(style, fs::last_write_time(style) + std::chrono::seconds(1));
        const Tensor changed = latents(session, with);
        EXPECT_GT(test::compare(changed, a).max_abs, 0.0) << "a rewritten adapter file was not read again";
        write_adapter(style, D, M, 1);
        fs::last_write_time(style, fs::last_write_time(style) + std::chrono::seconds(2));

        // A bad adapter fails the job, naming it; the session runs the next job as before.
        Request bad = plain;
        bad.loras = {{(dir / "missing.safetensors").string(), 1.0f}};
        try {
            session.generate(bad);
            ADD_FAILURE() << "a missing adapter file was accepted";
        } catch (const InputError& e) {
            EXPECT_NE(std::string(e.what()).find("missing.safetensors"), std::string::npos) << e.what();
        }
        write_safetensors((dir / "nowhere.safetensors").string(),
                          {{"transformer.nowhere.lora_A.weight", Tensor::zeros({4, D}, DType::F32)},
                           {"transformer.nowhere.lora_B.weight", Tensor::zeros({D, 4}, DType::F32)}});
        bad.loras = {{(dir / "nowhere.safetensors").string(), 1.0f}};
        try {
            session.generate(bad);
            ADD_FAILURE() << "an adapter that matches no layer was accepted";
        } catch (const InputError& e) {
            EXPECT_NE(std::string(e.what()).find("nowhere.lora_A.weight"), std::string::npos) << e.what();
        }
        EXPECT_EQ(test::compare(latents(session, plain), before).max_abs, 0.0);
        std::printf(
            "%s: job A with an adapter differs from the base by %.3g; job B after it equals the base; A "
            "equals the session-loaded runtime adapter; two half-strength copies are %.3g from one\n",
            device, test::compare(a, before).max_abs, two_halves);
    }
}
