// skyreels convert (models/hunyuan_video_convert.h): a transformer fixture of each kind the engine
// reads, written as GGUF (BF16 and a block type) and as ComfyUI's scaled FP8, then loaded back by content and
// run on the fixture's inputs. Each tolerance is the storage's rounding, carried through the forward pass.
#include <gtest/gtest.h>

#include <filesystem>
#include <map>

#include "backends/cpu/cpu_backend.h"
#include "io/gguf.h"
#include "io/safetensors.h"
#include "models/hunyuan_video_checkpoint.h"
#include "models/hunyuan_video_convert.h"
#include "models/hunyuan_video_transformer.h"
#include "support/compare.h"
#include "support/fixtures.h"

namespace fs = std::filesystem;
using namespace sr;

namespace {

ConvertOptions options(const std::string& output, ConvertFormat format, std::optional<QuantType> block = {}) {
    ConvertOptions o;
    o.output = output;
    o.format = format;
    o.block_type = block;
    return o;
}

TransformerInputs read_inputs(const fs::path& dir) {
    const WeightStore in = WeightStore::open((dir / "inputs.safetensors").string());
    return {in.get("hidden_states"),         in.get("timestep"),
            in.get("encoder_hidden_states"), in.get("encoder_attention_mask"),
            in.get("pooled_projections"),    in.contains("guidance") ? in.get("guidance") : Tensor()};
}

Tensor forward(const std::string& model, const TransformerInputs& in) {
    cpu_backend().set_gemm_precision(GemmPrecision::F32);
    return HunyuanVideoTransformer::load(model).forward(cpu_backend(), in);
}

}  // namespace

// One fixture of each kind of source (a diffusers folder, a single safetensors file, a GGUF file): the
// conversion reads every kind through the same TensorSource, so one of each covers the readers while keeping
// the test to seconds.
std::vector<fs::path> one_fixture_per_kind() {
    std::map<std::string, fs::path> first;
    for (const fs::path& dir : test::find_fixture_dirs(test::is_transformer_fixture)) {
        std::string kind = "folder";
        if (test::single_checkpoint_model(dir))
            for (const auto& e : fs::directory_iterator(dir / "model")) kind = e.path().extension().string();
        first.emplace(kind, dir);
    }
    std::vector<fs::path> out;
    for (const auto& [kind, dir] : first) out.push_back(dir);
    return out;
}

// BF16 GGUF of a checkpoint stored in bf16 (or f32, rounded once): every tensor carries the same values as
// the source (bf16 tensors bit for bit, small ones in F32), so the forward matches to f32 noise when the
// source was bf16 and to bf16 rounding (2^-8 relative, compounding through the blocks: 2% of max|sample|)
// otherwise. A block type and FP8 change the block weights by their quantization step: Q8_0 ~0.5% and e4m3
// ~6% of a weight rms; through a few blocks the output moves less than 10% / 25% of max|sample|, while a wrong
// name, row or scale lands at 100% or more.
TEST(Convert, EachKindOfCheckpointRoundTripsThroughGgufAndScaledFp8) {
    const auto dirs = one_fixture_per_kind();
    ASSERT_FALSE(dirs.empty());
    const fs::path out = test::scratch_dir("convert");
    for (const fs::path& dir : dirs) {
        SCOPED_TRACE(dir.string());
        const TransformerInputs in = read_inputs(dir);
        const Tensor want = forward((dir / "model").string(), in);
        const TransformerCheckpoint src = open_transformer_checkpoint((dir / "model").string());
        bool source_bf16 = true;
        for (const std::string& n : src.source->names()) {
            const TensorInfo i = src.source->info(n);
            if (i.shape.rank() == 2 && i.shape.numel() > 1024 && (i.block || i.dtype != DType::BF16))
                source_bf16 = false;
        }
        struct Case {
            std::string file;
            ConvertOptions options;
            double max_rel;  // of max|sample|
        };
        const std::vector<Case> cases = {
            {"bf16.gguf", options("", ConvertFormat::Gguf), source_bf16 ? 1e-5 : 0.02},
            {"q8_0.gguf", options("", ConvertFormat::Gguf, QuantType::Q8_0), 0.10},
            {"fp8.safetensors", options("", ConvertFormat::ScaledFp8), 0.25},
        };
        for (Case c : cases) {
            SCOPED_TRACE(c.file);
            c.options.output = (out / (dir.filename().string() + "_" + c.file)).string();
            const ConvertReport r = convert_transformer((dir / "model").string(), c.options);
            EXPECT_GT(r.tensors, 0);
            EXPECT_FALSE(test::partial_file_exists(c.options.output));
            const Tensor got = forward(c.options.output, in);
            const auto d = test::compare(got, want);
            EXPECT_LE(d.max_abs, c.max_rel * d.max_expected) << d.str();
            std::printf("%s -> %s: %s\n", dir.filename().c_str(), c.file.c_str(), d.str().c_str());
        }
    }
}

// The GGUF holds the original HunyuanVideo names (what ComfyUI-GGUF reads), city96's types per tensor, and
// the config it was converted with.
TEST(Convert, GgufFollowsCity96sRules) {
    const auto dirs = test::find_fixture_dirs(test::is_transformer_fixture);
    ASSERT_FALSE(dirs.empty());
    const fs::path dir = dirs.front();
    const std::string path = (test::scratch_dir("convert_rules") / "m.gguf").string();
    convert_transformer((dir / "model").string(), options(path, ConvertFormat::Gguf, QuantType::Q8_0));
    const GgufStore g = GgufStore::open(path);
    EXPECT_EQ(g.file().architecture(), "hyvid");
    EXPECT_TRUE(g.metadata(kTransformerConfigKey).has_value());
    int quantized = 0;
    for (const std::string& name : g.names()) {
        SCOPED_TRACE(name);
        EXPECT_EQ(name.find("transformer_blocks"), std::string::npos) << "a diffusers name";
        const TensorInfo i = g.info(name);
        const bool block_weight = (name.rfind("double_blocks.", 0) == 0 || name.rfind("single_blocks.", 0) == 0) &&
                                  name.ends_with(".weight") && i.shape.rank() == 2 && i.shape.numel() > 1024;
        if (i.shape.rank() != 2 || i.shape.numel() <= 1024) {
            EXPECT_EQ(i.dtype, DType::F32);
        } else if (block_weight && quant_row_fits(QuantType::Q8_0, i.shape[1])) {
            EXPECT_EQ(i.block, QuantType::Q8_0);
            ++quantized;
        } else if (!block_weight) {
            EXPECT_EQ(i.dtype, DType::BF16);
        }
    }
    EXPECT_GT(quantized, 0);
    EXPECT_TRUE(g.contains("img_in.proj.weight") && g.contains("final_layer.adaLN_modulation.1.weight"));
}

TEST(Convert, BadRequestsLeaveNoFile) {
    const auto dirs = test::find_fixture_dirs(test::is_transformer_fixture);
    ASSERT_FALSE(dirs.empty());
    const std::string model = (dirs.front() / "model").string();
    const fs::path dir = test::scratch_dir("convert_bad");
    EXPECT_THROW(convert_transformer(model, options((dir / "no/such/folder/m.gguf").string(), ConvertFormat::Gguf)),
                 InputError);
    EXPECT_THROW(
        convert_transformer((dir / "missing").string(), options((dir / "m.gguf").string(), ConvertFormat::Gguf)),
        InputError);
    EXPECT_THROW(convert_transformer(
                     model, options((dir / "m.safetensors").string(), ConvertFormat::ScaledFp8, QuantType::Q4_K)),
                 InputError);
    EXPECT_TRUE(fs::is_empty(dir)) << "a failed conversion left a file";
}
