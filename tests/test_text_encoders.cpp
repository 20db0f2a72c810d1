// Parity of the Llama and CLIP text encoders with transformers 4.46.3, on every fixture folder found by
// content (model/config.json with model_type llama / clip_text_model, plus inputs.safetensors and
// outputs.safetensors): every hidden state, last_hidden_state, pooler_output; and their input errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <map>

#include "backends/cpu/cpu_backend.h"
#include "io/json.h"
#include "io/safetensors.h"
#include "support/compare.h"
#include "support/fixtures.h"
#include "text/clip_text_encoder.h"
#include "text/llama_text_encoder.h"
#include "text/prompt_encoder.h"

namespace fs = std::filesystem;
using namespace sr;

namespace {

std::vector<fs::path> model_fixtures(const std::string& model_type) {
    return test::find_fixture_dirs([&](const fs::path& d) {
        return test::model_config_names(d, "model_type", model_type) && fs::exists(d / "inputs.safetensors") &&
               fs::exists(d / "outputs.safetensors");
    });
}

// Tolerance (max abs, every position, padding included). The fixtures run float32 on f16-rounded weights;
// their float32-vs-float64 difference is <= 2e-6, the f32 rounding noise of the computation. Our f32 sums run
// in another order (oneDNN GEMM blocking, online softmax, polynomial exp), so we allow ~100x that noise: the
// fixture's suggested_max_abs (2e-4) when it gives one, else 2e-4.
double f32_tolerance(const fs::path& dir) {
    const fs::path p = dir / "tolerances.json";
    if (!fs::exists(p)) return 2e-4;
    const Json j = load_json_file(p.string());
    return json_number_or(j, "suggested_max_abs", 2e-4, p.string());
}

// The bf16 path rounds the (f16) weights and every GEMM activation to bf16 (relative error up to 2^-9 per
// element): after a few layers that is a few bf16 ulps of the largest values, so the check is relative to the
// tensor's scale, 3e-2 x max|expected| (the errors measured are printed next to it).
constexpr double kBf16RelativeToScale = 3e-2;

struct Captured {
    std::map<std::string, Tensor> tensors;
    TextIntermediateHook hook() {
        return [this](std::string_view name, const Tensor& t) { tensors[std::string(name)] = t.clone(); };
    }
};

struct PrecisionGuard {  // restores the process-wide backend's GEMM precision after a test
    GemmPrecision saved = cpu_backend().gemm_precision();
    ~PrecisionGuard() { cpu_backend().set_gemm_precision(saved); }
};

}  // namespace

TEST(TextEncoderParity, FixturesExist) {
    // A parity test that finds nothing to compare must fail, not pass vacuously.
    EXPECT_FALSE(model_fixtures("llama").empty()) << "no llama fixture under " << test::fixtures_root();
    EXPECT_FALSE(model_fixtures("clip_text_model").empty()) << "no clip fixture under " << test::fixtures_root();
}

TEST(TextEncoderParity, Llama) {
    PrecisionGuard guard;
    for (const fs::path& dir : model_fixtures("llama")) {
        SCOPED_TRACE(dir.string());
        const WeightStore in = WeightStore::open((dir / "inputs.safetensors").string());
        const WeightStore want = WeightStore::open((dir / "outputs.safetensors").string());
        const Tensor ids = in.get("input_ids");
        const Tensor mask = in.contains("attention_mask") ? in.get("attention_mask") : Tensor();
        for (GemmPrecision precision : {GemmPrecision::F32, GemmPrecision::BF16}) {
            const bool bf16 = precision == GemmPrecision::BF16;
            SCOPED_TRACE(bf16 ? "bf16 GEMMs" : "f32 GEMMs");
            cpu_backend().set_gemm_precision(precision);
            // The bf16 path is the real model's: weights stored in bf16 (rounded at load), bf16 GEMMs.
            const LlamaTextEncoder enc = LlamaTextEncoder::load(
                (dir / "model").string(), bf16 ? std::optional<DType>(DType::BF16) : std::nullopt);
            const int64_t n = enc.config().num_hidden_layers;
            Captured got;
            enc.forward(cpu_backend(), ids, mask, -1, got.hook());
            // The pipeline's input: hidden_states[-(2+1)], computed on its own (only the layers it needs).
            got.tensors["prompt_embeds"] = enc.forward(cpu_backend(), ids, mask, -3);
            int compared = 0;
            for (const std::string& name : want.names()) {
                if (!got.tensors.count(name)) continue;
                const Tensor expected = want.get(name);
                const test::Diff d = test::compare(got.tensors[name], expected);
                const double tol = bf16 ? kBf16RelativeToScale * d.max_expected : f32_tolerance(dir);
                EXPECT_FALSE(d.shape_mismatch) << name;
                EXPECT_LE(d.max_abs, tol) << name << ": " << d.str();
                std::printf("  %s %-18s max_abs %.3g (tol %.3g)\n", bf16 ? "bf16" : "f32 ", name.c_str(), d.max_abs,
                            tol);
                ++compared;
            }
            EXPECT_EQ(compared, int(n + 3))
                << "expected hidden_states.0.." << n << ", last_hidden_state, prompt_embeds";
        }
    }
}

TEST(TextEncoderParity, Clip) {
    PrecisionGuard guard;
    for (const fs::path& dir : model_fixtures("clip_text_model")) {
        SCOPED_TRACE(dir.string());
        const WeightStore in = WeightStore::open((dir / "inputs.safetensors").string());
        const WeightStore want = WeightStore::open((dir / "outputs.safetensors").string());
        for (GemmPrecision precision : {GemmPrecision::F32, GemmPrecision::BF16}) {
            const bool bf16 = precision == GemmPrecision::BF16;
            SCOPED_TRACE(bf16 ? "bf16 GEMMs" : "f32 GEMMs");
            cpu_backend().set_gemm_precision(precision);
            const ClipTextEncoder enc = ClipTextEncoder::load((dir / "model").string(),
                                                              bf16 ? std::optional<DType>(DType::BF16) : std::nullopt);
            Captured got;
            const ClipTextOutput out = enc.forward(cpu_backend(), in.get("input_ids"), got.hook());
            if (want.contains("eos_positions")) {
                const Tensor pos = want.get("eos_positions");
                for (int64_t b = 0; b < pos.numel(); ++b)
                    EXPECT_EQ(out.pooled_positions[size_t(b)], pos.data<int64_t>()[b]) << "row " << b;
            }
            int compared = 0;
            for (const std::string& name : want.names()) {
                if (!got.tensors.count(name)) continue;
                const test::Diff d = test::compare(got.tensors[name], want.get(name));
                const double tol = bf16 ? kBf16RelativeToScale * d.max_expected : f32_tolerance(dir);
                EXPECT_FALSE(d.shape_mismatch) << name;
                EXPECT_LE(d.max_abs, tol) << name << ": " << d.str();
                std::printf("  %s %-18s max_abs %.3g (tol %.3g)\n", bf16 ? "bf16" : "f32 ", name.c_str(), d.max_abs,
                            tol);
                ++compared;
            }
            EXPECT_EQ(compared, int(enc.config().num_hidden_layers + 3));
        }
    }
}

TEST(TextEncoderInput, BadIdsMaskAndIndexAreInputErrors) {
    const auto dirs = model_fixtures("llama");
    ASSERT_FALSE(dirs.empty());
    const LlamaTextEncoder enc = LlamaTextEncoder::load((dirs[0] / "model").string());
    const int64_t V = enc.config().vocab_size, n = enc.config().num_hidden_layers;
    Tensor ids = Tensor::zeros({1, 4}, DType::I64);
    ids.data<int64_t>()[2] = V;  // one past the table
    EXPECT_THROW(enc.forward(cpu_backend(), ids, Tensor(), -1), InputError);
    ids.data<int64_t>()[2] = -1;
    EXPECT_THROW(enc.forward(cpu_backend(), ids, Tensor(), -1), InputError);
    ids.data<int64_t>()[2] = 1;
    EXPECT_THROW(enc.forward(cpu_backend(), ids, Tensor(), int(n + 1)), InputError);
    EXPECT_THROW(enc.forward(cpu_backend(), ids, Tensor(), int(-n - 2)), InputError);
    EXPECT_THROW(enc.forward(cpu_backend(), ids, Tensor::zeros({1, 3}, DType::I64), -1), InputError);
    EXPECT_NO_THROW(enc.forward(cpu_backend(), ids, Tensor(), int(-n - 1)));
    EXPECT_THROW(LlamaTextEncoder::load(test::scratch_dir("llama_missing").string()), InputError);
    EXPECT_THROW(ClipTextEncoder::load(test::scratch_dir("clip_missing").string()), InputError);
}

TEST(TextEncoderInput, LlamaLeftPaddingMatchesUnpaddedRun) {
    // A non-right-padded mask takes the dense-mask path: valid tokens must not see the padding.
    const auto dirs = model_fixtures("llama");
    ASSERT_FALSE(dirs.empty());
    const LlamaTextEncoder enc = LlamaTextEncoder::load((dirs[0] / "model").string());
    Tensor ids = Tensor::zeros({1, 6}, DType::I64), mask = Tensor::zeros({1, 6}, DType::I64);
    Tensor ids_short = Tensor::zeros({1, 4}, DType::I64);
    for (int i = 0; i < 6; ++i) ids.data<int64_t>()[i] = 3 + i;
    for (int i = 0; i < 4; ++i) ids_short.data<int64_t>()[i] = 3 + i;
    for (int i = 0; i < 6; ++i) mask.data<int64_t>()[i] = (i < 4 || i == 5) ? 1 : 0;  // a hole at position 4
    const Tensor full = enc.forward(cpu_backend(), ids, mask, -1);
    const Tensor ref = enc.forward(cpu_backend(), ids_short, Tensor(), -1);
    // Positions 0..3 see only positions 0..3 in both runs (causal), so they agree to f32 rounding.
    const test::Diff d = test::compare(full.slice(1, 0, 4), ref);
    EXPECT_LE(d.max_abs, 1e-5) << d.str();
}

// ---- prompt encoding (the pipeline's _get_llama_prompt_embeds / _get_clip_prompt_embeds) ----

namespace {

// Pipeline fixtures: text_encoder/ (llama) and text_encoder_2/ (clip) folders, the token ids in
// inputs.safetensors and the encoded prompts in intermediates.safetensors, the crop in params.json.
std::vector<fs::path> pipeline_fixtures() {
    return test::find_fixture_dirs([](const fs::path& d) {
        auto type_is = [](const fs::path& cfg, const char* type) {
            if (!fs::exists(cfg)) return false;
            const Json j = load_json_file(cfg.string());
            return j.value("model_type", "") == type;
        };
        return type_is(d / "text_encoder" / "config.json", "llama") &&
               type_is(d / "text_encoder_2" / "config.json", "clip_text_model") && fs::exists(d / "params.json") &&
               fs::exists(d / "inputs.safetensors") && fs::exists(d / "intermediates.safetensors");
    });
}

fs::path tokenizer_dir(const char* file) {
    for (const fs::path& d : test::find_fixture_dirs(
             [&](const fs::path& p) { return fs::exists(p / file) && fs::exists(p / "pipeline.json"); }))
        return d;
    return {};
}

}  // namespace

TEST(PromptEncoding, PipelineFixtures) {
    const auto dirs = pipeline_fixtures();
    ASSERT_FALSE(dirs.empty()) << "no pipeline fixture (text_encoder/ + text_encoder_2/) under "
                               << test::fixtures_root();
    const fs::path llama_tok = tokenizer_dir("tokenizer.json"), clip_tok = tokenizer_dir("vocab.json");
    ASSERT_FALSE(llama_tok.empty() || clip_tok.empty());
    const BpeTokenizer bpe = BpeTokenizer::load(llama_tok.string());
    const ClipTokenizer clip_tokenizer = ClipTokenizer::load(clip_tok.string());
    for (const fs::path& dir : dirs) {
        SCOPED_TRACE(dir.string());
        const Json params = load_json_file((dir / "params.json").string());
        PromptTemplate tmpl;
        tmpl.crop_start = params.at("crop_start").get<int64_t>();
        tmpl.max_sequence_length = params.at("max_sequence_length").get<int64_t>();
        const LlamaTextEncoder llama = LlamaTextEncoder::load((dir / "text_encoder").string());
        const ClipTextEncoder clip = ClipTextEncoder::load((dir / "text_encoder_2").string());
        const PromptEncoder enc(bpe, llama, clip_tokenizer, clip, tmpl);
        const WeightStore in = WeightStore::open((dir / "inputs.safetensors").string());
        const WeightStore want = WeightStore::open((dir / "intermediates.safetensors").string());
        const PromptEmbeds e = enc.encode_tokens(cpu_backend(), in.get("llama_input_ids"),
                                                 in.get("llama_attention_mask"), in.get("clip_input_ids"));
        // Same computation as the llama / clip fixtures (f32 on f16-rounded weights): the same 2e-4 (~100x the
        // 1.6e-6 f32-vs-f64 noise the fixture reports).
        const test::Diff d = test::compare(e.prompt_embeds, want.get("prompt_embeds"));
        EXPECT_LE(d.max_abs, 2e-4) << "prompt_embeds: " << d.str();
        const test::Diff p = test::compare(e.pooled_prompt_embeds, want.get("pooled_prompt_embeds"));
        EXPECT_LE(p.max_abs, 2e-4) << "pooled_prompt_embeds: " << p.str();
        EXPECT_EQ(read_mask(e.prompt_attention_mask), read_mask(want.get("prompt_attention_mask")));
    }
}

TEST(PromptEncoding, TemplateMatchesTheTokenizerFixture) {
    const fs::path dir = tokenizer_dir("tokenizer.json");
    ASSERT_FALSE(dir.empty());
    const PromptTemplate tmpl;
    const Json call = load_json_file((dir / "pipeline.json").string());
    EXPECT_EQ(tmpl.text, call.at("prompt_template").get<std::string>());
    EXPECT_EQ(tmpl.crop_start, call.at("crop_start").get<int64_t>());
    // diffusers' crop_start: the template's tokens without the placeholder's neighbours' BOS/closing eot.
    const BpeTokenizer bpe = BpeTokenizer::load(dir.string());
    EXPECT_EQ(int64_t(bpe.encode(tmpl.text).size()) - 2, tmpl.crop_start);
}

TEST(PromptEncoding, EncodeWithTruncationFlagsAndShapes) {
    // Real tokenizers, tiny random encoders with the real vocabularies: shapes, crop and truncation flags.
    const fs::path llama_tok = tokenizer_dir("tokenizer.json"), clip_tok = tokenizer_dir("vocab.json");
    ASSERT_FALSE(llama_tok.empty() || clip_tok.empty());
    const BpeTokenizer bpe = BpeTokenizer::load(llama_tok.string());
    const ClipTokenizer clip_tokenizer = ClipTokenizer::load(clip_tok.string());
    LlamaConfig lc;
    lc.vocab_size = 128320, lc.hidden_size = 8, lc.intermediate_size = 16, lc.num_hidden_layers = 3;
    lc.num_attention_heads = 2, lc.num_key_value_heads = 1, lc.head_dim = 4;
    WeightBinder lb = WeightBinder::random(1, DType::BF16);
    const LlamaTextEncoder llama(lc, lb);
    ClipTextConfig cc;
    cc.hidden_size = 8, cc.intermediate_size = 16, cc.num_hidden_layers = 1, cc.num_attention_heads = 2;
    WeightBinder cb = WeightBinder::random(2, DType::F32);
    const ClipTextEncoder clip(cc, cb);
    const PromptEncoder enc(bpe, llama, clip_tokenizer, clip);
    std::string long_prompt;
    for (int i = 0; i < 300; ++i) long_prompt += "cat ";
    const PromptEmbeds e = enc.encode(cpu_backend(), {"a cat", long_prompt, ""});
    EXPECT_EQ(e.prompt_embeds.shape(), (Shape{3, 256, 8}));
    EXPECT_EQ(e.prompt_attention_mask.shape(), (Shape{3, 256}));
    EXPECT_EQ(e.pooled_prompt_embeds.shape(), (Shape{3, 8}));
    EXPECT_EQ(e.llama_truncated, (std::vector<bool>{false, true, false}));
    EXPECT_EQ(e.clip_truncated, (std::vector<bool>{false, true, false}));
    // "a cat" + <|eot_id|>: 3 valid positions after the crop; the empty prompt keeps only <|eot_id|>.
    const std::vector<int32_t> m = read_mask(e.prompt_attention_mask);
    EXPECT_EQ(std::count(m.begin(), m.begin() + 256, 1), 3);
    EXPECT_EQ(std::count(m.begin() + 256, m.begin() + 512, 1), 256);
    EXPECT_EQ(std::count(m.begin() + 512, m.end(), 1), 1);
    EXPECT_THROW(enc.encode(cpu_backend(), {}), InputError);
    EXPECT_THROW(enc.encode(cpu_backend(), {std::string("bad \xff")}), InputError);
}

TEST(PromptEncoding, LoadFromAPipelineFolder) {
    // A diffusers-layout folder assembled from the fixtures: the real tokenizers with the pipeline fixture's
    // encoders. Whether the real ids fit the encoders' tables is read from the fixture: ids past a table must
    // be rejected with the id and the limit; ids within both tables must encode.
    const auto dirs = pipeline_fixtures();
    const fs::path llama_tok = tokenizer_dir("tokenizer.json"), clip_tok = tokenizer_dir("vocab.json");
    ASSERT_FALSE(dirs.empty() || llama_tok.empty() || clip_tok.empty());
    const fs::path root = test::scratch_dir("prompt_pipeline");
    fs::create_directory_symlink(fs::absolute(llama_tok), root / "tokenizer");
    fs::create_directory_symlink(fs::absolute(clip_tok), root / "tokenizer_2");
    fs::create_directory_symlink(fs::absolute(dirs[0] / "text_encoder_2"), root / "text_encoder_2");
    try {
        PromptEncoder::load(root.string());
        ADD_FAILURE() << "loaded without text_encoder/";
    } catch (const InputError& e) {
        EXPECT_NE(std::string(e.what()).find("text_encoder"), std::string::npos) << e.what();
    }
    fs::create_directory_symlink(fs::absolute(dirs[0] / "text_encoder"), root / "text_encoder");
    const PromptEncoder enc = PromptEncoder::load(root.string());

    const std::string prompt = "a cat";
    const PromptTemplate tmpl;
    const int64_t llama_vocab =
        LlamaConfig::from_json(load_json_file((root / "text_encoder/config.json").string()), "").vocab_size;
    const int64_t clip_vocab =
        ClipTextConfig::from_json(load_json_file((root / "text_encoder_2/config.json").string()), "").vocab_size;
    const TokenizedText llama_ids = tokenize_llama_prompt(BpeTokenizer::load(llama_tok.string()), tmpl, prompt);
    const TokenizedText clip_ids =
        ClipTokenizer::load(clip_tok.string()).encode_padded(prompt, size_t(tmpl.clip_max_length));
    const int64_t llama_max = *std::max_element(llama_ids.ids.begin(), llama_ids.ids.end());
    const int64_t clip_max = *std::max_element(clip_ids.ids.begin(), clip_ids.ids.end());
    const int64_t limit = llama_max >= llama_vocab ? llama_vocab : clip_max >= clip_vocab ? clip_vocab : 0;
    if (limit) {
        try {
            enc.encode(cpu_backend(), {prompt});
            ADD_FAILURE() << "ids past a " << limit << "-row table were accepted";
        } catch (const InputError& e) {
            EXPECT_NE(std::string(e.what()).find(fmt::format("outside the vocabulary [0, {})", limit)),
                      std::string::npos)
                << e.what();
        }
    } else {
        const PromptEmbeds out = enc.encode(cpu_backend(), {prompt});
        EXPECT_EQ(out.prompt_embeds.dim(1), tmpl.max_sequence_length);
        EXPECT_EQ(out.pooled_prompt_embeds.dim(0), 1);
    }
}
