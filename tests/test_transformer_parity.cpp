// Parity of the HunyuanVideo transformer with the diffusers reference, on every fixture folder found by
// content (inputs.safetensors, output.safetensors and a model/ holding a transformer in any layout the engine
// reads: a diffusers folder, or one safetensors / GGUF file in diffusers or original names, quantized or not),
// and the model's load-time and input errors.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>

#include "backends/cpu/cpu_backend.h"
#include "io/json.h"
#include "io/safetensors.h"
#include "models/hunyuan_video_transformer.h"
#include "support/compare.h"
#include "support/fixtures.h"
#include "support/pipeline_fixture.h"

namespace fs = std::filesystem;
using namespace sr;

namespace {

std::vector<fs::path> transformer_fixtures() {
    return test::find_fixture_dirs(test::is_transformer_fixture);
}

// The ones in the diffusers folder layout (config.json beside sharded or single safetensors), which the load
// error tests rewrite.
std::vector<fs::path> diffusers_fixtures() {
    return test::find_fixture_dirs([](const fs::path& d) {
        return test::is_transformer_fixture(d) &&
               test::model_config_names(d, "_class_name", "HunyuanVideoTransformer3DModel");
    });
}

using test::read_transformer_inputs;

// Tolerances from the fixture's tolerances.json. The reference's own float32 result differs from a float64
// run by `fp32_vs_fp64_max_abs[name]` (~1e-6 here): that is the f32 rounding noise of this computation. We
// accept 100x that noise (our f32 sums run in another order, with a polynomial exp and double-precision norm
// statistics), floored at 2e-5 for tensors whose measured noise is 0 (the RoPE tables, where our cos/sin of
// the same f32 argument may differ from torch's in the last bit). The output uses the fixture's own
// suggested_max_abs_sample (documented as ~100x the f32 noise).
struct Tolerances {
    std::map<std::string, double> per_tensor;
    double sample = 5e-4;
    double of(const std::string& name) const {
        if (name == "sample") return sample;
        auto it = per_tensor.find(name);
        const double noise = it == per_tensor.end() ? 1e-6 : it->second;
        return std::max(100.0 * noise, 2e-5);
    }
};

Tolerances read_tolerances(const fs::path& dir) {
    Tolerances t;
    const fs::path p = dir / "tolerances.json";
    if (!fs::exists(p)) return t;
    const Json j = load_json_file(p.string());
    if (j.contains("suggested_max_abs_sample")) t.sample = j["suggested_max_abs_sample"].get<double>();
    if (j.contains("fp32_vs_fp64_max_abs"))
        for (auto it = j["fp32_vs_fp64_max_abs"].begin(); it != j["fp32_vs_fp64_max_abs"].end(); ++it)
            t.per_tensor[it.key()] = it.value().get<double>();
    return t;
}

struct Captured {
    std::map<std::string, Tensor> tensors;
    IntermediateHook hook() {
        return [this](std::string_view name, const Tensor& t) { tensors[std::string(name)] = t.clone(); };
    }
};

}  // namespace

TEST(TransformerParity, FixturesExist) {
    // A parity test that finds nothing to compare must fail, not pass vacuously.
    EXPECT_FALSE(transformer_fixtures().empty()) << "no transformer fixture under " << test::fixtures_root();
}

TEST(TransformerParity, OutputAndEveryIntermediateMatchReference) {
    for (const fs::path& dir : transformer_fixtures()) {
        SCOPED_TRACE(dir.string());
        const auto model = HunyuanVideoTransformer::load((dir / "model").string());
        EXPECT_TRUE(model.unused_tensors().empty());
        const WeightStore inputs = WeightStore::open((dir / "inputs.safetensors").string());
        const WeightStore expected_out = WeightStore::open((dir / "output.safetensors").string());
        const Tolerances tol = read_tolerances(dir);

        Captured got;
        CpuBackend& be = cpu_backend();
        be.set_gemm_precision(GemmPrecision::F32);
        const Tensor sample = model.forward(be, read_transformer_inputs(inputs), got.hook());

        const auto d = test::compare(sample, expected_out.get("sample"));
        EXPECT_LE(d.max_abs, tol.of("sample")) << "sample: " << d.str();
        std::printf("%s sample: %s (tolerance %.3g)\n", dir.filename().c_str(), d.str().c_str(), tol.of("sample"));

        const fs::path inter = dir / "intermediates.safetensors";
        if (!fs::exists(inter)) continue;
        const WeightStore expected = WeightStore::open(inter.string());
        int compared = 0;
        double worst_ratio = 0;
        for (const std::string& name : expected.names()) {
            auto it = got.tensors.find(name);
            ASSERT_NE(it, got.tensors.end()) << "the model produced no intermediate named '" << name << "'";
            const auto di = test::compare(it->second, expected.get(name));
            EXPECT_LE(di.max_abs, tol.of(name)) << name << ": " << di.str();
            worst_ratio = std::max(worst_ratio, di.max_abs / tol.of(name));
            if (std::getenv("SKYREELS_TEST_VERBOSE")) std::printf("  %-55s %s\n", name.c_str(), di.str().c_str());
            ++compared;
        }
        EXPECT_GT(compared, 0);
        std::printf("%s: %d intermediates, worst error/tolerance %.3f\n", dir.filename().c_str(), compared,
                    worst_ratio);
    }
}

// With GemmPrecision::BF16 every GEMM input is rounded to bf16 (8 significant bits, relative error up to
// 2^-9 = 0.2%), and the error compounds through the refiner, dual and single blocks. The check is relative
// to the output's scale: 3% of max|sample| was measured to hold with margin on the fixtures (observed
// ~0.5-1%); an error in the bf16 path (wrong layout, wrong rounding) gives errors of order 100%.
TEST(TransformerParity, Bf16GemmPathStaysClose) {
    for (const fs::path& dir : transformer_fixtures()) {
        SCOPED_TRACE(dir.string());
        TransformerLoadOptions opts;
        opts.weight_dtype = DType::BF16;
        const auto model = HunyuanVideoTransformer::load((dir / "model").string(), opts);
        const WeightStore inputs = WeightStore::open((dir / "inputs.safetensors").string());
        const Tensor expected = WeightStore::open((dir / "output.safetensors").string()).get("sample");
        CpuBackend& be = cpu_backend();
        be.set_gemm_precision(GemmPrecision::BF16);
        const Tensor sample = model.forward(be, read_transformer_inputs(inputs));
        be.set_gemm_precision(GemmPrecision::F32);
        const auto d = test::compare(sample, expected);
        EXPECT_LE(d.max_abs, 0.03 * d.max_expected) << d.str();
        std::printf("%s bf16 GEMM path: %s\n", dir.filename().c_str(), d.str().c_str());
    }
}

namespace {

// Copies a fixture's model folder into a scratch folder as one safetensors file, letting `edit` change the
// tensor list first.
fs::path rewrite_model(const fs::path& src_model, const std::string& name,
                       const std::function<void(std::vector<std::pair<std::string, Tensor>>&)>& edit) {
    const fs::path dir = test::scratch_dir(name);
    fs::copy_file(src_model / "config.json", dir / "config.json");
    const WeightStore store = WeightStore::open(src_model.string());
    std::vector<std::pair<std::string, Tensor>> tensors;
    for (const auto& n : store.names()) tensors.emplace_back(n, store.get(n));
    edit(tensors);
    write_safetensors((dir / "diffusion_pytorch_model.safetensors").string(), tensors);
    return dir;
}

std::string load_error(const fs::path& dir) {
    try {
        HunyuanVideoTransformer::load(dir.string());
    } catch (const InputError& e) {
        return e.what();
    }
    return "";
}

}  // namespace

TEST(TransformerLoad, MissingTensorIsNamed) {
    const auto fixtures = diffusers_fixtures();
    ASSERT_FALSE(fixtures.empty());
    const fs::path dir = rewrite_model(fixtures[0] / "model", "missing", [](auto& t) {
        std::erase_if(t, [](const auto& p) { return p.first == "transformer_blocks.0.attn.to_k.weight"; });
    });
    const std::string err = load_error(dir);
    EXPECT_NE(err.find("missing tensor 'transformer_blocks.0.attn.to_k.weight'"), std::string::npos) << err;
}

TEST(TransformerLoad, MisshapenTensorIsNamed) {
    const auto fixtures = diffusers_fixtures();
    ASSERT_FALSE(fixtures.empty());
    const fs::path dir = rewrite_model(fixtures[0] / "model", "misshapen", [](auto& t) {
        for (auto& [n, v] : t)
            if (n == "proj_out.bias") v = Tensor::zeros({v.dim(0) + 1}, DType::F32);
    });
    const std::string err = load_error(dir);
    EXPECT_NE(err.find("'proj_out.bias' has shape"), std::string::npos) << err;
}

TEST(TransformerLoad, WrongDtypeIsNamed) {
    const auto fixtures = diffusers_fixtures();
    ASSERT_FALSE(fixtures.empty());
    const fs::path dir = rewrite_model(fixtures[0] / "model", "wrongdtype", [](auto& t) {
        for (auto& [n, v] : t)
            if (n == "norm_out.linear.weight") v = Tensor::zeros(v.shape(), DType::I32);
    });
    const std::string err = load_error(dir);
    EXPECT_NE(err.find("'norm_out.linear.weight' has dtype I32"), std::string::npos) << err;
}

TEST(TransformerLoad, ExtraTensorIsReported) {
    const auto fixtures = diffusers_fixtures();
    ASSERT_FALSE(fixtures.empty());
    const fs::path dir = rewrite_model(fixtures[0] / "model", "extra", [](auto& t) {
        t.emplace_back("lora_unexpected.weight", Tensor::zeros({2, 2}, DType::F32));
    });
    const auto model = HunyuanVideoTransformer::load(dir.string());
    ASSERT_EQ(model.unused_tensors().size(), 1u);
    EXPECT_EQ(model.unused_tensors()[0], "lora_unexpected.weight");
}

TEST(TransformerLoad, BadConfigValueIsNamed) {
    const auto fixtures = diffusers_fixtures();
    ASSERT_FALSE(fixtures.empty());
    const fs::path dir = test::scratch_dir("badconfig");
    Json cfg = load_json_file((fixtures[0] / "model" / "config.json").string());
    cfg["rope_axes_dim"] = {4, 6, 8};
    std::ofstream((dir / "config.json").string()) << cfg.dump();
    const std::string err = load_error(dir);
    EXPECT_NE(err.find("rope_axes_dim sums to 18"), std::string::npos) << err;
}

TEST(TransformerForward, WrongInputShapesAreNamed) {
    const auto fixtures = transformer_fixtures();
    ASSERT_FALSE(fixtures.empty());
    const auto model = HunyuanVideoTransformer::load((fixtures[0] / "model").string());
    const WeightStore inputs = WeightStore::open((fixtures[0] / "inputs.safetensors").string());
    auto expect_error = [&](TransformerInputs in, const std::string& needle) {
        try {
            model.forward(cpu_backend(), in);
            ADD_FAILURE() << "no error for " << needle;
        } catch (const InputError& e) {
            EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
        }
    };
    TransformerInputs in = read_transformer_inputs(inputs);
    TransformerInputs bad = in;
    bad.hidden_states = Tensor::zeros({1, model.config().in_channels + 1, 1, 2, 2}, DType::F32);
    expect_error(bad, "channels");
    bad = in;
    bad.hidden_states = Tensor::zeros({in.hidden_states.dim(0), model.config().in_channels, 1, 3, 2}, DType::F32);
    expect_error(bad, "multiples of");
    bad = in;
    bad.pooled_projections = Tensor::zeros({in.hidden_states.dim(0), 3}, DType::F32);
    expect_error(bad, "pooled_projections");
    bad = in;
    bad.guidance = Tensor();
    expect_error(bad, "guidance is required");
}

// At 544x960x97 (25x34x60 = 51,000 video tokens + 256 text), attention is 4 * S^2 * 3072 per block over
// 60 blocks: DESIGN.md's 1.9 PFLOP. For the linear layers DESIGN.md quotes 1.3 PFLOP, which is
// 2 x 12.8B parameters x 51,000 tokens; but the dual blocks' text-stream weights see only the 256 text
// tokens and the adaLN weights one row per sample, so the weights that multiply video tokens are
// 20 x (4D^2 + 2DM) + 40 x (3D^2 + DM + (D+M)D) = 6.8B, giving 2 x 6.8B x 51,256 = 0.70 PFLOP.
TEST(TransformerCost, RealModelAt544x960x97MatchesDesignEstimate) {
    const HunyuanVideoConfig real;  // defaults are the 13B model's config
    const ForwardCost cost =
        estimate_forward_cost(real, {.batch = 1, .frames = 25, .height = 68, .width = 120, .text_tokens = 256});
    EXPECT_EQ(cost.video_tokens, 25 * 34 * 60);
    const double D = 3072, M = 4 * D, S = 25 * 34 * 60 + 256;
    const double video_params = 20 * (4 * D * D + 2 * D * M) + 40 * (3 * D * D + D * M + (D + M) * D);
    EXPECT_NEAR(cost.linear_flops, 2 * video_params * S, 0.02 * cost.linear_flops);
    EXPECT_NEAR(cost.linear_flops / 1e15, 0.70, 0.03);
    EXPECT_NEAR(cost.attention_flops / 1e15, 1.9, 0.19);
}

// The released SkyReels folders hold the transformer at their root; a diffusers pipeline folder holds it
// in transformer/. Both load unchanged.
TEST(TransformerLoad, PipelineFolderWithTransformerSubfolder) {
    const auto fixtures = diffusers_fixtures();
    ASSERT_FALSE(fixtures.empty());
    const fs::path root = test::scratch_dir("pipeline_layout");
    fs::create_directories(root / "transformer");
    for (const auto& e : fs::directory_iterator(fixtures[0] / "model"))
        fs::copy_file(e.path(), root / "transformer" / e.path().filename());
    std::ofstream(root / "model_index.json") << R"({"_class_name": "HunyuanVideoPipeline"})";
    const auto model = HunyuanVideoTransformer::load(root.string());
    EXPECT_GT(model.parameter_count(), 0);
}

// Weights stay in the memory-mapped files: loading copies only the small f32 vectors (biases, norm
// weights), never the matrices, so owned host memory grows by far less than the checkpoint's size.
TEST(TransformerLoad, WeightsStayMemoryMapped) {
    for (const fs::path& dir : diffusers_fixtures()) {
        SCOPED_TRACE(dir.string());
        const WeightStore store = WeightStore::open((dir / "model").string());
        size_t checkpoint_bytes = 0, vector_bytes = 0;
        for (const auto& name : store.names()) {
            const auto& e = store.entry(name);
            checkpoint_bytes += e.data_end - e.data_begin;
            if (e.shape.rank() == 1) vector_bytes += size_t(e.shape.numel()) * 4;  // widened to f32 at most
        }
        const size_t before = host_allocator().in_use_bytes();
        const auto model = HunyuanVideoTransformer::load((dir / "model").string());
        const size_t grown = host_allocator().in_use_bytes() - before;
        EXPECT_LE(grown, vector_bytes) << "load copied " << grown << " bytes of a " << checkpoint_bytes
                                       << " byte checkpoint";
        EXPECT_LT(grown, checkpoint_bytes / 4);
    }
}

// Single checkpoint files (original names, FP8, GGUF blocks) stay mapped too: quantized matrices are bound as
// their stored bytes and fused q,k,v rows as views. What load may copy: norms and biases widened to f32, the
// final layer's swapped halves (2 x width^2 values) and tensors of other kinds dequantized at load; a quarter
// of the file bounds all of it for these models, where a dequantized copy of the blocks would be several
// times the file.
TEST(TransformerLoad, SingleFileAndQuantizedWeightsStayMapped) {
    int checked = 0;
    for (const fs::path& dir : transformer_fixtures()) {
        if (!test::single_checkpoint_model(dir)) continue;
        SCOPED_TRACE(dir.string());
        size_t file_bytes = 0;
        for (const auto& e : fs::directory_iterator(dir / "model")) file_bytes += size_t(e.file_size());
        const size_t before = host_allocator().in_use_bytes();
        const auto model = HunyuanVideoTransformer::load((dir / "model").string());
        const size_t grown = host_allocator().in_use_bytes() - before;
        EXPECT_LT(grown, file_bytes / 4) << "load copied " << grown << " bytes of a " << file_bytes << " byte file";
        ++checked;
    }
    EXPECT_GT(checked, 0) << "no single-file transformer fixture";
}

// Single files that are not what they seem: each an InputError naming the file and what is wrong.
TEST(TransformerLoad, HostileSingleFilesAreNamed) {
    const auto originals = test::find_fixture_dirs([](const fs::path& d) {
        if (!test::single_checkpoint_model(d)) return false;
        for (const auto& e : fs::directory_iterator(d / "model"))
            if (e.path().extension() == ".safetensors") return true;
        return false;
    });
    ASSERT_FALSE(originals.empty()) << "no single-file safetensors transformer fixture";
    fs::path src;
    for (const auto& e : fs::directory_iterator(originals[0] / "model")) src = e.path();
    const WeightStore store = WeightStore::open(src.string());
    std::vector<std::pair<std::string, Tensor>> tensors;
    for (const auto& n : store.names()) tensors.emplace_back(n, store.get(n));
    const fs::path dir = test::scratch_dir("hostile_single");
    auto write = [&](const std::string& name, std::vector<std::pair<std::string, Tensor>> t) {
        const fs::path f = dir / name;
        write_safetensors(f.string(), t);
        return f;
    };
    auto error_of = [](const fs::path& p) { return load_error(p); };

    // Both layouts' names in one file.
    auto mixed = tensors;
    mixed.emplace_back("transformer_blocks.0.attn.to_q.weight", Tensor::zeros({2, 2}, DType::F32));
    std::string err = error_of(write("mixed.safetensors", mixed));
    EXPECT_NE(err.find("mixes HunyuanVideo's original tensor names"), std::string::npos) << err;
    // Names that match no transformer.
    err = error_of(write("other.safetensors", {{"encoder.conv.weight", Tensor::zeros({2, 2}, DType::F32)}}));
    EXPECT_NE(err.find("not a HunyuanVideo transformer"), std::string::npos) << err;
    // A tensor missing: named in diffusers' terms, with the file.
    auto missing = tensors;
    std::erase_if(missing,
                  [](const auto& p) { return p.first.find("txt_in.c_embedder.linear_2.weight") != std::string::npos; });
    const fs::path missing_file = write("missing.safetensors", missing);
    err = error_of(missing_file);
    EXPECT_NE(err.find(missing_file.string()), std::string::npos) << err;
    EXPECT_NE(err.find("context_embedder.time_text_embed.text_embedder.linear_2.weight"), std::string::npos) << err;
    // A fused q,k,v weight with rows that do not split by three.
    auto odd = tensors;
    for (auto& [n, t] : odd)
        if (n.find("double_blocks.0.img_attn_qkv.weight") != std::string::npos)
            t = Tensor::zeros({t.dim(0) + 1, t.dim(1)}, t.dtype());
    err = error_of(write("odd.safetensors", odd));
    EXPECT_NE(err.find("'double_blocks.0.img_attn_qkv.weight' has"), std::string::npos) << err;
    EXPECT_NE(err.find("not three equal q, k, v parts"), std::string::npos) << err;
    // A folder with two checkpoints and no config: ambiguous, both named.
    const fs::path two = dir / "two";
    fs::create_directories(two);
    fs::copy_file(src, two / "a.safetensors");
    fs::copy_file(src, two / "b.safetensors");
    err = error_of(two);
    EXPECT_NE(err.find("a.safetensors"), std::string::npos) << err;
    EXPECT_NE(err.find("b.safetensors"), std::string::npos) << err;
    // Not a checkpoint at all.
    std::ofstream(dir / "junk.safetensors") << "not a checkpoint";
    err = error_of(dir / "junk.safetensors");
    EXPECT_NE(err.find("neither a safetensors nor a GGUF file"), std::string::npos) << err;
}

// A model made up by WeightBinder::random runs end to end and is deterministic for a seed.
TEST(TransformerRandom, DeterministicForSeed) {
    HunyuanVideoConfig c;
    c.num_attention_heads = 2, c.attention_head_dim = 16, c.num_layers = 1, c.num_single_layers = 1;
    c.text_embed_dim = 8, c.pooled_projection_dim = 8, c.rope_axes_dim = {4, 6, 6};
    const auto a = HunyuanVideoTransformer::random(c, DType::F32, 7);
    const auto b = HunyuanVideoTransformer::random(c, DType::F32, 7);
    TransformerInputs in;
    in.hidden_states = Tensor::zeros({1, 16, 1, 4, 4}, DType::F32);
    in.timestep = Tensor::from_vector({500.0f}, {1});
    in.guidance = Tensor::from_vector({1000.0f}, {1});
    in.encoder_hidden_states = Tensor::from_vector(std::vector<float>(3 * 8, 0.5f), {1, 3, 8});
    in.encoder_attention_mask = Tensor::from_vector({1, 1, 0}, {1, 3});
    in.pooled_projections = Tensor::from_vector(std::vector<float>(8, 0.25f), {1, 8});
    const Tensor ya = a.forward(cpu_backend(), in), yb = b.forward(cpu_backend(), in);
    EXPECT_EQ(test::compare(ya, yb).max_abs, 0.0);
    EXPECT_GT(test::compare(ya, Tensor::zeros(ya.shape(), DType::F32)).max_abs, 0.0);  // not all zeros
}
