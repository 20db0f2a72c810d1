// Hostile and malformed LoRA files: every one is an InputError that names the file and the key at fault; keys
// that match no layer are listed (or, with ignore_unmatched, skipped with a warning).
#include <gtest/gtest.h>

#include <filesystem>
#include <limits>

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

using TensorList = std::vector<std::pair<std::string, Tensor>>;

// The first LoRA fixture in kohya names (fused img_attn_qkv, linear1, with .alpha tensors).
fs::path kohya_fixture() {
    for (const fs::path& d : test::find_fixture_dirs(test::is_lora_fixture))
        for (const auto& e : fs::directory_iterator(d / "lora")) {
            const WeightStore s = WeightStore::open(e.path().string());
            if (detect_lora_convention(s.names(), e.path().string()) == "kohya") return e.path();
        }
    return {};
}

TensorList read_all(const fs::path& file) {
    const WeightStore s = WeightStore::open(file.string());
    TensorList out;
    for (const std::string& n : s.names()) out.emplace_back(n, s.get(n).clone());
    return out;
}

Tensor& find(TensorList& l, const std::string& name) {
    for (auto& [n, t] : l)
        if (n == name) return t;
    throw std::runtime_error("no tensor " + name);
}

// Loads the fixture's base model with `tensors` as its one LoRA; returns the error text ("" when it loads).
std::string load_error(const TensorList& tensors, bool ignore_unmatched = false) {
    const fs::path lora = kohya_fixture();
    const fs::path file = test::scratch_dir("lora_hostile") / "adapter.safetensors";
    write_safetensors(file.string(), tensors);
    TransformerLoadOptions o;
    o.lora.files = {{file.string(), 1.0f}};
    o.lora.ignore_unmatched = ignore_unmatched;
    try {
        HunyuanVideoTransformer::load((lora.parent_path().parent_path() / "model").string(), o);
    } catch (const InputError& e) {
        return e.what();
    }
    return "";
}

const std::string kQkv = "lora_unet_double_blocks_0_img_attn_qkv";

}  // namespace

TEST(LoraHostile, TheUnmodifiedFileLoads) {
    ASSERT_FALSE(kohya_fixture().empty());
    EXPECT_EQ(load_error(read_all(kohya_fixture())), "");
}

TEST(LoraHostile, RanksThatDisagree) {
    TensorList l = read_all(kohya_fixture());
    Tensor& up = find(l, kQkv + ".lora_up.weight");
    up = Tensor::zeros({up.dim(0), up.dim(1) + 1}, DType::F32);
    const std::string e = load_error(l);
    EXPECT_NE(e.find("ranks disagree"), std::string::npos) << e;
    EXPECT_NE(e.find("img_attn_qkv"), std::string::npos) << e;
}

TEST(LoraHostile, ShapeThatDoesNotFitTheLayer) {
    TensorList l = read_all(kohya_fixture());
    Tensor& down = find(l, kQkv + ".lora_down.weight");
    down = Tensor::zeros({down.dim(0), down.dim(1) + 3}, DType::F32);
    const std::string e = load_error(l);
    EXPECT_NE(e.find("but the layer is"), std::string::npos) << e;
}

TEST(LoraHostile, NonMatrixHalves) {
    TensorList l = read_all(kohya_fixture());
    find(l, kQkv + ".lora_down.weight") = Tensor::zeros({2, 2, 2}, DType::F32);
    const std::string e = load_error(l);
    EXPECT_NE(e.find("not matrices"), std::string::npos) << e;
}

TEST(LoraHostile, NonFiniteValues) {
    for (float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity()}) {
        TensorList l = read_all(kohya_fixture());
        find(l, kQkv + ".lora_up.weight").data<float>()[5] = bad;
        const std::string e = load_error(l);
        EXPECT_NE(e.find("non-finite"), std::string::npos) << e;
        EXPECT_NE(e.find(kQkv), std::string::npos) << e;
    }
    TensorList l = read_all(kohya_fixture());
    find(l, kQkv + ".alpha").data<float>()[0] = std::numeric_limits<float>::quiet_NaN();
    EXPECT_NE(load_error(l).find("non-finite"), std::string::npos);
}

TEST(LoraHostile, MissingHalf) {
    TensorList l = read_all(kohya_fixture());
    std::erase_if(l, [](const auto& p) { return p.first == kQkv + ".lora_up.weight"; });
    const std::string e = load_error(l);
    EXPECT_NE(e.find("no up (B) half"), std::string::npos) << e;
}

TEST(LoraHostile, AlphaThatIsNotOneValue) {
    TensorList l = read_all(kohya_fixture());
    find(l, kQkv + ".alpha") = Tensor::zeros({3}, DType::F32);
    EXPECT_NE(load_error(l).find("not one value"), std::string::npos);
}

TEST(LoraHostile, UnmatchedKeysAreListedOrIgnored) {
    TensorList l = read_all(kohya_fixture());
    l.emplace_back("lora_unet_double_blocks_7_img_attn_qkv.lora_down.weight", Tensor::zeros({2, 32}, DType::F32));
    l.emplace_back("lora_unet_double_blocks_7_img_attn_qkv.lora_up.weight", Tensor::zeros({96, 2}, DType::F32));
    l.emplace_back("lora_unet_double_blocks_0_img_attn_qkv.dora_scale", Tensor::zeros({1, 32}, DType::F32));
    const std::string e = load_error(l);
    EXPECT_NE(e.find("3 keys match no layer"), std::string::npos) << e;
    EXPECT_NE(e.find("double_blocks_7_img_attn_qkv.lora_down.weight"), std::string::npos) << e;
    EXPECT_NE(e.find("dora_scale"), std::string::npos) << e;
    EXPECT_EQ(load_error(l, /*ignore_unmatched=*/true), "");
}

TEST(LoraHostile, NotALoraFile) {
    const std::string e = load_error({{"model.weight", Tensor::zeros({2, 2}, DType::F32)}});
    EXPECT_NE(e.find("not a LoRA file"), std::string::npos) << e;
}

TEST(LoraHostile, MixedConventions) {
    TensorList l = read_all(kohya_fixture());
    l.emplace_back("diffusion_model.double_blocks.0.img_attn_proj.lora_A.weight", Tensor::zeros({2, 32}, DType::F32));
    EXPECT_NE(load_error(l).find("mix"), std::string::npos);
}

TEST(LoraArgument, FileAndStrength) {
    EXPECT_EQ(parse_lora_argument("a.safetensors").path, "a.safetensors");
    EXPECT_EQ(parse_lora_argument("a.safetensors").strength, 1.0f);
    const LoraFile f = parse_lora_argument("dir/a.safetensors:0.75");
    EXPECT_EQ(f.path, "dir/a.safetensors");
    EXPECT_EQ(f.strength, 0.75f);
    EXPECT_EQ(parse_lora_argument("a.safetensors:-1.5").strength, -1.5f);
    EXPECT_EQ(parse_lora_argument("C:/x.safetensors").path, "C:/x.safetensors");  // not a number after ':'
    EXPECT_THROW(parse_lora_argument("a.safetensors:nan"), InputError);
    EXPECT_EQ(parse_lora_mode("runtime"), LoraMode::Runtime);
    EXPECT_THROW(parse_lora_mode("fast"), InputError);
}

// final_layer.adaLN_modulation.1 holds [shift; scale] where diffusers' norm_out.linear holds [scale; shift]: a
// kohya adapter on the original layer is the diffusers adapter with its up matrix's halves swapped, and both
// merge into the same weights (bit-identical outputs).
TEST(LoraMapping, FinalLayerHalvesAreSwapped) {
    const fs::path model = kohya_fixture().parent_path().parent_path() / "model";
    const Json cfg = load_json_file((model / "config.json").string());
    const int64_t D = cfg.at("num_attention_heads").get<int64_t>() * cfg.at("attention_head_dim").get<int64_t>();
    const int64_t rank = 2;
    Tensor down = Tensor::empty({rank, D}, DType::F32), up = Tensor::empty({2 * D, rank}, DType::F32);
    for (int64_t i = 0; i < down.numel(); ++i) down.data<float>()[i] = 0.05f * float((i * 7) % 11) - 0.2f;
    for (int64_t i = 0; i < up.numel(); ++i) up.data<float>()[i] = 0.04f * float((i * 5) % 13) - 0.25f;
    Tensor swapped = Tensor::empty({2 * D, rank}, DType::F32);
    for (int64_t r = 0; r < 2 * D; ++r)
        for (int64_t k = 0; k < rank; ++k)
            swapped.data<float>()[r * rank + k] = up.data<float>()[((r + D) % (2 * D)) * rank + k];
    const fs::path dir = test::scratch_dir("lora_final_layer");
    write_safetensors((dir / "kohya.safetensors").string(),
                      {{"lora_unet_final_layer_adaLN_modulation_1.lora_down.weight", down},
                       {"lora_unet_final_layer_adaLN_modulation_1.lora_up.weight", up}});
    write_safetensors(
        (dir / "diffusers.safetensors").string(),
        {{"transformer.norm_out.linear.lora_A.weight", down}, {"transformer.norm_out.linear.lora_B.weight", swapped}});
    const fs::path fixture = model.parent_path();
    const WeightStore in = WeightStore::open((fixture / "inputs.safetensors").string());
    auto forward = [&](const fs::path& lora) {
        TransformerLoadOptions o;
        o.lora.files = {{lora.string(), 0.9f}};
        o.lora.mode = LoraMode::Merge;
        CpuBackend& be = cpu_backend();
        be.set_gemm_precision(GemmPrecision::F32);
        return HunyuanVideoTransformer::load(model.string(), o).forward(be, test::read_transformer_inputs(in));
    };
    const Tensor a = forward(dir / "kohya.safetensors"), b = forward(dir / "diffusers.safetensors");
    const Tensor base =
        HunyuanVideoTransformer::load(model.string()).forward(cpu_backend(), test::read_transformer_inputs(in));
    EXPECT_EQ(test::compare(a, b).max_abs, 0.0);
    EXPECT_GT(test::compare(a, base).max_abs, 1e-3);  // the adapter did change the output
}
