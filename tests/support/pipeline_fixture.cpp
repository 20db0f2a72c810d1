#include "support/pipeline_fixture.h"

#include <algorithm>

#include "support/fixtures.h"

namespace fs = std::filesystem;

namespace sr::test {

std::vector<fs::path> pipeline_fixtures() {
    return test::find_fixture_dirs([](const fs::path& d) {
        return fs::exists(d / "model_index.json") && fs::exists(d / "params.json") &&
               fs::exists(d / "inputs.safetensors") && fs::exists(d / "output.safetensors");
    });
}

double Tolerances::of(const std::string& name) const {
    const std::string key = name == "frames" ? "video" : name;
    if (auto it = suggested.find(key); it != suggested.end()) return it->second;
    if (auto it = noise.find(key); it != noise.end()) return std::max(100.0 * it->second, 1e-5);
    return 1e-4;  // no record in the fixture: the per-step bound of the first step
}

Tolerances read_tolerances(const fs::path& dir) {
    Tolerances t;
    if (!fs::exists(dir / "tolerances.json")) return t;
    const Json j = load_json_file((dir / "tolerances.json").string());
    for (const char* key : {"suggested_max_abs", "fp32_vs_fp64_max_abs"}) {
        if (!j.contains(key)) continue;
        auto& dst = std::string(key) == "suggested_max_abs" ? t.suggested : t.noise;
        for (auto it = j[key].begin(); it != j[key].end(); ++it) dst[it.key()] = it.value().get<double>();
    }
    return t;
}

Fixture Fixture::open(const fs::path& dir) {
    return Fixture{dir, load_json_file((dir / "params.json").string()),
                   WeightStore::open((dir / "inputs.safetensors").string()),
                   WeightStore::open((dir / "intermediates.safetensors").string()),
                   WeightStore::open((dir / "output.safetensors").string())};
}

SkyReelsPipeline load_pipeline(const Fixture& f, LinearQuant quant) {
    PipelineComponents c;
    const std::string d = f.dir.string();
    TransformerLoadOptions options;
    options.quant = quant;
    c.transformer = std::make_shared<const HunyuanVideoTransformer>(HunyuanVideoTransformer::load(d, options));
    c.vae = std::make_shared<const HunyuanVideoVAE>(HunyuanVideoVAE::load(d + "/vae"));
    c.llama = std::make_shared<const LlamaTextEncoder>(
        LlamaTextEncoder::load(d + "/text_encoder", std::nullopt, nullptr, quant));
    c.clip = std::make_shared<const ClipTextEncoder>(ClipTextEncoder::load(d + "/text_encoder_2"));
    const fs::path sched = f.dir / "scheduler" / "scheduler_config.json";
    c.scheduler = FlowMatchSchedulerConfig::from_json(load_json_file(sched.string()), sched.string());
    const Json& p = f.params;
    c.prompt_template.crop_start = p["crop_start"].get<int64_t>();
    c.prompt_template.max_sequence_length = p["max_sequence_length"].get<int64_t>();
    c.prompt_template.clip_max_length = p["clip_sequence_length"].get<int64_t>();
    if (p.contains("clip_skip (num_hidden_layers_to_skip)"))
        c.prompt_template.num_hidden_layers_to_skip = p["clip_skip (num_hidden_layers_to_skip)"].get<int>();
    return SkyReelsPipeline(std::move(c));
}

GenerationRequest make_request(const Fixture& f, bool sequence_batch) {
    const Json& p = f.params;
    GenerationRequest r;
    r.params.task = p["task"] == "i2v" ? Task::I2V : Task::T2V;
    r.params.height = p["height"].get<int64_t>();
    r.params.width = p["width"].get<int64_t>();
    r.params.num_frames = p["num_frames"].get<int64_t>();
    r.params.num_inference_steps = p["num_inference_steps"].get<int>();
    r.params.guidance_scale = p["guidance_scale"].get<double>();
    r.params.embedded_guidance_scale = p["embedded_guidance_scale"].get<double>();
    r.params.sequence_batch = sequence_batch;
    r.params.vae_tiling = VAETiling::enabled();  // SkyReels calls enable_tiling()
    r.tokens = TextTokens{f.inputs.get("llama_input_ids"), f.inputs.get("llama_attention_mask"),
                          f.inputs.get("clip_input_ids")};
    r.initial_latents = f.inputs.get("initial_latents");
    if (f.inputs.contains("image")) r.image = f.inputs.get("image");
    if (f.inputs.contains("vae_sample_eps")) r.vae_sample_eps = f.inputs.get("vae_sample_eps");
    return r;
}

TransformerInputs read_transformer_inputs(const WeightStore& s) {
    TransformerInputs in;
    in.hidden_states = s.get("hidden_states");
    in.timestep = s.get("timestep");
    in.encoder_hidden_states = s.get("encoder_hidden_states");
    in.encoder_attention_mask = s.get("encoder_attention_mask");
    in.pooled_projections = s.get("pooled_projections");
    if (s.contains("guidance")) in.guidance = s.get("guidance");
    return in;
}

Request fixture_session_request(const fs::path& dir, const SkyReelsPipeline& pipe) {
    const Json params = load_json_file((dir / "params.json").string());
    Request r;
    GenerationParams& p = r.generation.params;
    p.task = params["task"].get<std::string>() == "i2v" ? Task::I2V : Task::T2V;
    p.height = params["height"].get<int64_t>();
    p.width = params["width"].get<int64_t>();
    p.num_frames = params["num_frames"].get<int64_t>();
    p.num_inference_steps = 2;
    if (p.task == Task::I2V) r.generation.image = Tensor::zeros({3, p.height, p.width}, DType::F32);
    const PromptTemplate& t = pipe.components().prompt_template;
    const int64_t L = t.crop_start + t.max_sequence_length;
    TextTokens tok{Tensor::zeros({2, L}, DType::I64), Tensor::zeros({2, L}, DType::I64),
                   Tensor::zeros({2, t.clip_max_length}, DType::I64)};
    for (int64_t i = 0; i < tok.llama_mask.numel(); ++i) tok.llama_mask.data<int64_t>()[i] = i % L < L / 2;
    r.generation.tokens = tok;
    return r;
}

}  // namespace sr::test
