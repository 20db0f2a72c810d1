#include "pipeline/pipeline.h"

#include <cmath>
#include <filesystem>
#include <optional>
#include <ostream>
#include <random>

#include "core/error.h"
#include "core/log.h"
#include "io/json.h"
#include "pipeline/weight_placement.h"

namespace fs = std::filesystem;

namespace sr {

const char* const kSkyReelsNegativePrompt =
    "Aerial view, aerial view, overexposed, low quality, deformation, a poor composition, bad hands, bad teeth, "
    "bad eyes, bad limbs, distortion";

const char* stage_name(Stage stage) {
    switch (stage) {
        case Stage::Loading:
            return "loading";
        case Stage::TextEncoding:
            return "text encoding";
        case Stage::ImageEncoding:
            return "image encoding";
        case Stage::Denoising:
            return "denoising";
        case Stage::Decoding:
            return "decoding";
    }
    return "?";
}

std::ostream& operator<<(std::ostream& out, Stage stage) {
    return out << stage_name(stage);
}

void GenerationParams::validate() const {
    SR_THROW_IF(num_frames < 1 || num_frames > kMaxVideoFrames || (num_frames - 1) % 4 != 0,
                "--frames {}: must be 4k+1 (e.g. 9, 33, 97) up to {}: the causal VAE maps 4 frames to one latent frame",
                num_frames, kMaxVideoFrames);
    // 8x VAE downsampling, then the transformer's 2x2 patches.
    SR_THROW_IF(height < 16 || height > kMaxVideoSide || height % 16 != 0,
                "--height {}: must be a positive multiple of 16 up to {}", height, kMaxVideoSide);
    SR_THROW_IF(width < 16 || width > kMaxVideoSide || width % 16 != 0,
                "--width {}: must be a positive multiple of 16 up to {}", width, kMaxVideoSide);
    SR_THROW_IF(num_inference_steps < 1 || num_inference_steps > 10000, "--steps {}: must be in 1..10000",
                num_inference_steps);
    SR_THROW_IF(!std::isfinite(guidance_scale) || guidance_scale < 0.0 || guidance_scale > 100.0,
                "--guidance {}: must be in [0, 100]", guidance_scale);
    SR_THROW_IF(
        !std::isfinite(embedded_guidance_scale) || embedded_guidance_scale < 0.0 || embedded_guidance_scale > 100.0,
        "--embedded-guidance {}: must be in [0, 100]", embedded_guidance_scale);
    vae_tiling.validate();
}

Tensor gaussian_noise(const Shape& shape, uint64_t seed) {
    // Box-Muller on std::mt19937_64 (whose output the standard fixes), not std::normal_distribution (whose
    // algorithm differs between standard libraries): the same seed gives the same video everywhere.
    Tensor out = Tensor::empty(shape, DType::F32, host_allocator(), "noise");
    if (host_values_skipped()) return out;  // a plan: only the size matters
    float* o = out.data<float>();
    std::mt19937_64 rng(seed);
    constexpr double kTwoPi = 6.283185307179586;
    auto uniform = [&] { return (double(rng() >> 11) + 0.5) * (1.0 / 9007199254740992.0); };  // (0, 1)
    for (int64_t i = 0; i < out.numel(); i += 2) {
        const double r = std::sqrt(-2.0 * std::log(uniform())), a = kTwoPi * uniform();
        o[i] = float(r * std::cos(a));
        if (i + 1 < out.numel()) o[i + 1] = float(r * std::sin(a));
    }
    return out;
}

namespace {

Tensor filled(int64_t n, float value) {
    return Tensor::from_vector(std::vector<float>(size_t(n), value), Shape{n});
}

// [rows..] of `x` repeated `times` along dim 0.
Tensor repeat_rows(const Tensor& x, int64_t times) {
    Shape s = x.shape();
    s[0] *= times;
    Tensor out = Tensor::empty(s, DType::F32, host_allocator(), "CFG batch");
    if (host_values_skipped()) return out;
    for (int64_t r = 0; r < times; ++r) {
        Tensor dst = out.slice(0, r * x.dim(0), (r + 1) * x.dim(0));
        dst.copy_from(x);
    }
    return out;
}

// cat([a, b], dim=1) for [B, C, ...] tensors.
Tensor cat_channels(const Tensor& a, const Tensor& b) {
    Shape s = a.shape();
    s[1] = a.dim(1) + b.dim(1);
    Tensor out = Tensor::empty(s, DType::F32, host_allocator(), "I2V transformer input");
    if (host_values_skipped()) return out;
    Tensor lo = out.slice(1, 0, a.dim(1)), hi = out.slice(1, a.dim(1), s[1]);
    lo.copy_from(a);
    hi.copy_from(b);
    return out;
}

// NaN/Inf weights, or config values that slipped past validation, show up as non-finite activations and
// end as a black video with exit 0. Each stage's host output is checked once (one pass, cheap next to the
// model that made it), so the error names the stage and the model behind it.
void check_finite(const Tensor& t, std::string_view what, std::string_view culprit) {
    if (host_values_skipped() || !t.defined() || t.dtype() != DType::F32) return;
    const Tensor c = t.contiguous();
    const float* p = c.data<float>();
    int64_t bad = 0;
    for (int64_t i = 0; i < c.numel(); ++i) bad += !std::isfinite(p[i]);
    SR_THROW_IF(bad > 0, "{} hold {} non-finite values (NaN or Inf) of {}: {}", what, bad, c.numel(), culprit);
}

void emit(const PipelineHook& hook, std::string_view name, const Tensor& t) {
    if (hook) hook(name, t);
}

template <class T>
std::shared_ptr<const T> share(T&& value) {
    return std::make_shared<const T>(std::move(value));
}

}  // namespace

SkyReelsPipeline::SkyReelsPipeline(PipelineComponents components) : c_(std::move(components)) {
    SR_ASSERT(c_.transformer && c_.vae && c_.llama && c_.clip, "a pipeline needs all four models");
}

Task SkyReelsPipeline::native_task() const {
    return c_.transformer->config().in_channels == 2 * c_.vae->config().latent_channels ? Task::I2V : Task::T2V;
}

SkyReelsPipeline SkyReelsPipeline::load(const PipelineLoadOptions& o, const ProgressCallback& progress) {
    std::error_code ec;
    SR_THROW_IF(o.model.empty(), "--model: no model folder given (or use --demo)");
    // A folder (a transformer or a whole diffusers pipeline) or one checkpoint file (ComfyUI's single files,
    // GGUF): models/hunyuan_video_checkpoint.h reads them by content.
    SR_THROW_IF(!fs::exists(o.model, ec), "--model {}: no such folder or file", o.model);
    const bool is_pipeline = fs::is_directory(o.model, ec) && fs::exists(fs::path(o.model) / "model_index.json", ec);
    const std::string base = !o.base.empty() ? o.base : is_pipeline ? o.model : std::string();
    SR_THROW_IF(base.empty(),
                "--model {} is a transformer: --base must name the HunyuanVideo folder with text_encoder/, "
                "text_encoder_2/, tokenizer/, tokenizer_2/, vae/ and scheduler/",
                o.model);
    SR_THROW_IF(!fs::is_directory(base, ec), "--base {}: no such folder", base);
    const fs::path b(base);
    for (const char* sub : {"text_encoder", "text_encoder_2", "vae"})
        SR_THROW_IF(!fs::is_directory(b / sub, ec), "{}: missing {}/ (expected a HunyuanVideo pipeline folder)", base,
                    sub);

    const int total = 5;
    auto tick = [&](int done) {
        if (progress) progress(Stage::Loading, done, total);
    };
    tick(0);
    PipelineComponents c;
    SR_WITH_CONTEXT("loading the transformer from " + o.model,
                    c.transformer = share(HunyuanVideoTransformer::load(o.model, {.weight_dtype = o.transformer_dtype,
                                                                                  .planning_space = o.planning_space,
                                                                                  .quant = o.quant,
                                                                                  .lora = o.lora})));
    tick(1);
    SR_WITH_CONTEXT("loading the VAE from " + (b / "vae").string(),
                    c.vae = share(HunyuanVideoVAE::load((b / "vae").string(), o.planning_space)));
    tick(2);
    SR_WITH_CONTEXT("loading the Llama text encoder from " + (b / "text_encoder").string(),
                    c.llama = share(LlamaTextEncoder::load((b / "text_encoder").string(), o.text_encoder_dtype,
                                                           o.planning_space, o.quant)));
    tick(3);
    SR_WITH_CONTEXT(
        "loading the CLIP text encoder from " + (b / "text_encoder_2").string(),
        c.clip = share(ClipTextEncoder::load((b / "text_encoder_2").string(), o.text_encoder_dtype, o.planning_space)));
    tick(4);
    if (fs::is_directory(b / "tokenizer", ec))
        c.llama_tokenizer = share(BpeTokenizer::load((b / "tokenizer").string()));
    if (fs::is_directory(b / "tokenizer_2", ec))
        c.clip_tokenizer = share(ClipTokenizer::load((b / "tokenizer_2").string()));
    // A tokenizer that can produce ids past the encoder's embedding table would index out of it at the first
    // prompt: refuse the pair now, with both sizes.
    if (c.llama_tokenizer)
        SR_THROW_IF(int64_t(c.llama_tokenizer->vocab_size()) > c.llama->config().vocab_size,
                    "{}: the tokenizer has {} tokens but the Llama text encoder's vocabulary has {} (mismatched "
                    "tokenizer/ and text_encoder/)",
                    (b / "tokenizer").string(), c.llama_tokenizer->vocab_size(), c.llama->config().vocab_size);
    if (c.clip_tokenizer)
        SR_THROW_IF(c.clip_tokenizer->vocab_size() > c.clip->config().vocab_size,
                    "{}: the tokenizer has {} tokens but the CLIP text encoder's vocabulary has {} (mismatched "
                    "tokenizer_2/ and text_encoder_2/)",
                    (b / "tokenizer_2").string(), c.clip_tokenizer->vocab_size(), c.clip->config().vocab_size);
    const fs::path sched = b / "scheduler" / "scheduler_config.json";
    if (fs::exists(sched, ec)) c.scheduler = FlowMatchSchedulerConfig::from_json(load_json_file(sched.string()), sched);
    tick(5);
    return SkyReelsPipeline(std::move(c));
}

void SkyReelsPipeline::check_request(const GenerationRequest& req) const {
    const GenerationParams& p = req.params;
    p.validate();
    SR_THROW_IF(req.start_step < 0 || req.start_step > p.num_inference_steps,
                "resuming at step {}: the run has {} steps", req.start_step, p.num_inference_steps);
    SR_THROW_IF(req.start_step > 0 && !req.initial_latents.defined(),
                "resuming at step {} needs the latents of that step", req.start_step);
    const Task task = native_task();
    SR_THROW_IF(p.task != task, "--task {}: the transformer has {} input channels, a {} model",
                p.task == Task::I2V ? "i2v" : "t2v", c_.transformer->config().in_channels,
                task == Task::I2V ? "i2v" : "t2v");
    if (p.task == Task::I2V) {
        SR_THROW_IF(!req.image.defined(), "--task i2v needs an --image");
        const Tensor& im = req.image;
        const bool ok =
            (im.rank() == 3 && im.dim(0) == 3 && im.dim(1) == p.height && im.dim(2) == p.width) ||
            (im.rank() == 4 && im.dim(0) == 1 && im.dim(1) == 3 && im.dim(2) == p.height && im.dim(3) == p.width);
        SR_THROW_IF(!ok, "image {}: expected [3, {}, {}] (resize-crop it to the video size first)", im.describe(),
                    p.height, p.width);
    }
    const int64_t C = c_.vae->config().latent_channels, r = c_.vae->config().spatial_compression_ratio;
    if (req.initial_latents.defined()) {
        const Shape want{1, C, p.latent_frames(), p.height / r, p.width / r};
        SR_THROW_IF(!(req.initial_latents.shape() == want), "initial latents {}: expected {}",
                    req.initial_latents.describe(), want.str());
    }
    if (req.cache_replay && p.cache.enabled() && req.start_step > 0) {
        // The calls must be the ones the counts imply, each with latents of this run's shape.
        StepCache probe(p.cache, p.num_inference_steps);
        probe.restore(req.cache_replay->counts, req.start_step);
        std::vector<std::pair<int, bool>> listed;
        for (const StepCacheReplay::Call& call : req.cache_replay->calls) {
            SR_THROW_IF(!call.latents.defined() || !(call.latents.shape() == req.initial_latents.shape()),
                        "the step cache's replay of step {}: latents {}, expected {}", call.step + 1,
                        call.latents.defined() ? call.latents.describe() : "none", req.initial_latents.shape().str());
            listed.emplace_back(call.step, call.compute);
        }
        SR_THROW_IF(listed != probe.replays(req.start_step),
                    "the step cache's replayed calls do not match its counts (a damaged checkpoint?)");
    }
}

TextConditioning SkyReelsPipeline::encode_text(Backend& be, const GenerationRequest& req, const PipelineHook& hook,
                                               WeightPlacement* placement) const {
    TextConditioning out;
    const bool cfg = req.params.do_cfg();
    if (req.text) {
        out = *req.text;
    } else {
        const PromptTemplate& t = c_.prompt_template;
        TextTokens tok;
        if (req.tokens) {
            tok = *req.tokens;
        } else {
            SR_THROW_IF(!c_.llama_tokenizer || !c_.clip_tokenizer,
                        "the model folder has no tokenizer/ or tokenizer_2/: cannot tokenize a prompt");
            const std::vector<std::string> prompts =
                cfg ? std::vector<std::string>{req.negative_prompt, req.prompt} : std::vector<std::string>{req.prompt};
            const int64_t B = int64_t(prompts.size()), L = t.crop_start + t.max_sequence_length;
            tok.llama_ids = Tensor::empty({B, L}, DType::I64);
            tok.llama_mask = Tensor::empty({B, L}, DType::I64);
            tok.clip_ids = Tensor::empty({B, t.clip_max_length}, DType::I64);
            for (int64_t i = 0; i < B; ++i) {
                const TokenizedText lt = tokenize_llama_prompt(*c_.llama_tokenizer, t, prompts[size_t(i)]);
                const TokenizedText ct =
                    c_.clip_tokenizer->encode_padded(prompts[size_t(i)], size_t(t.clip_max_length));
                const char* which = cfg && i == 0 ? "negative prompt" : "prompt";
                if (lt.truncated)
                    SR_LOG_WARN("the {} is longer than {} Llama tokens and was truncated", which,
                                t.max_sequence_length);
                // CLIP's 77 tokens run out long before Llama's: its pooled embedding sees only the start.
                if (ct.truncated)
                    SR_LOG_WARN("the {} is longer than CLIP's {} tokens: CLIP sees only its beginning (truncated)",
                                which, t.clip_max_length);
                for (int64_t j = 0; j < L; ++j) {
                    tok.llama_ids.data<int64_t>()[i * L + j] = lt.ids[size_t(j)];
                    tok.llama_mask.data<int64_t>()[i * L + j] = lt.attention_mask[size_t(j)];
                }
                for (int64_t j = 0; j < t.clip_max_length; ++j)
                    tok.clip_ids.data<int64_t>()[i * t.clip_max_length + j] = ct.ids[size_t(j)];
            }
        }
        const int64_t L = t.crop_start + t.max_sequence_length;
        SR_THROW_IF(tok.llama_ids.rank() != 2 || tok.llama_ids.dim(1) != L ||
                        !(tok.llama_mask.shape() == tok.llama_ids.shape()),
                    "Llama ids {} / mask {}: expected [B, {}] (crop_start {} + max_sequence_length {})",
                    tok.llama_ids.describe(), tok.llama_mask.describe(), L, t.crop_start, t.max_sequence_length);
        SR_THROW_IF(tok.clip_ids.rank() != 2 || tok.clip_ids.dim(0) != tok.llama_ids.dim(0),
                    "CLIP ids {}: expected [{}, {}]", tok.clip_ids.describe(), tok.llama_ids.dim(0), t.clip_max_length);
        // hidden_states[-(skip + 1)], the template's first crop_start positions cropped away.
        {
            // One text encoder on the device at a time (model offload moves the first out before the second).
            ModelScope use(placement, PipelineModel::Llama);
            const Tensor hidden = c_.llama->forward(be, tok.llama_ids, tok.llama_mask,
                                                    -(t.num_hidden_layers_to_skip + 1), {}, use.weights());
            if (hook) emit(hook, "llama_hidden_states_skip2", to_host(be, hidden));
            out.prompt_embeds = to_host(be, hidden.slice(1, t.crop_start, L));                  // [B, max_seq, D]
            out.prompt_attention_mask = tok.llama_mask.slice(1, t.crop_start, L).contiguous();  // [B, max_seq]
        }
        ModelScope use(placement, PipelineModel::Clip);
        out.pooled_prompt_embeds = to_host(be, c_.clip->forward(be, tok.clip_ids, {}, use.weights()).pooler_output);
    }
    const int64_t B = cfg ? 2 : 1;
    // Given conditioning (a resumed run's, from its checkpoint) is checked as strictly as the encoders' own.
    const HunyuanVideoConfig& tc = c_.transformer->config();
    SR_THROW_IF(out.prompt_embeds.rank() != 3 || out.prompt_embeds.dim(0) != B ||
                    out.prompt_embeds.dim(2) != tc.text_embed_dim || out.pooled_prompt_embeds.rank() != 2 ||
                    out.pooled_prompt_embeds.dim(0) != B ||
                    out.pooled_prompt_embeds.dim(1) != tc.pooled_projection_dim ||
                    out.prompt_attention_mask.rank() != 2 || out.prompt_attention_mask.dim(0) != B ||
                    out.prompt_attention_mask.dim(1) != out.prompt_embeds.dim(1) ||
                    out.prompt_attention_mask.dtype() != DType::I64 || !dtype_is_float(out.prompt_embeds.dtype()) ||
                    !dtype_is_float(out.pooled_prompt_embeds.dtype()),
                "text conditioning {} / {} / {}: expected {} row(s) ({}) of [L, {}] float / [L] i64 / [{}] float",
                out.prompt_embeds.describe(), out.prompt_attention_mask.describe(), out.pooled_prompt_embeds.describe(),
                B, cfg ? "[negative, positive]" : "[positive]", tc.text_embed_dim, tc.pooled_projection_dim);
    check_finite(out.prompt_embeds, "the Llama text embeddings", "NaN/Inf weights in the text encoder?");
    check_finite(out.pooled_prompt_embeds, "the CLIP text embeddings", "NaN/Inf weights in the CLIP text encoder?");
    emit(hook, "prompt_embeds", out.prompt_embeds);
    emit(hook, "prompt_attention_mask", out.prompt_attention_mask);
    emit(hook, "pooled_prompt_embeds", out.pooled_prompt_embeds);
    return out;
}

Tensor SkyReelsPipeline::encode_image(Backend& be, const GenerationRequest& req, const PipelineHook& hook,
                                      WeightPlacement* placement) const {
    const GenerationParams& p = req.params;
    const Tensor image = req.image.rank() == 3 ? req.image.unsqueeze(0) : req.image;  // [1, 3, H, W]
    LatentDistribution dist;
    {
        ModelScope use(placement, PipelineModel::VaeEncoder);
        dist = c_.vae->encode(be, image.unsqueeze(2), p.vae_tiling, {}, use.weights());  // [1, 16, 1, h, w]
    }
    emit(hook, "image_latent_dist_mean", dist.mean);
    emit(hook, "image_latent_dist_logvar", dist.logvar);
    Tensor eps = req.vae_sample_eps;
    if (eps.defined()) {
        SR_THROW_IF(!(eps.shape() == dist.mean.shape()), "VAE sample noise {}: expected {}", eps.describe(),
                    dist.mean.shape().str());
        eps = eps.to(DType::F32);
    } else {
        eps = gaussian_noise(dist.mean.shape(), p.seed ^ 0x5eed1a7e5eed1a7eull);  // a stream apart from the latents'
    }
    Shape s = dist.mean.shape();
    s[2] = p.latent_frames();
    Tensor latents = Tensor::zeros(s, DType::F32, host_allocator(), "image latents");  // zero-padded in time
    const Tensor mean = dist.mean.contiguous(), std = dist.std.contiguous();
    const float sf = float(c_.vae->config().scaling_factor);
    const int64_t C = s[1], per_frame = s[3] * s[4], T = s[2];
    for (int64_t c = 0; c < (host_values_skipped() ? 0 : C); ++c)
        for (int64_t i = 0; i < per_frame; ++i) {
            const int64_t src = c * per_frame + i;  // [1, C, 1, h, w]
            latents.data<float>()[c * T * per_frame + i] =
                (mean.data<float>()[src] + std.data<float>()[src] * eps.data<float>()[src]) * sf;
        }
    check_finite(latents, "the image latents", "NaN/Inf weights in the VAE encoder, or a bad scaling_factor?");
    emit(hook, "image_latents", latents);
    return latents;
}

Tensor SkyReelsPipeline::denoise(Backend& be, const GenerationRequest& req, const TextConditioning& text,
                                 const Tensor& image_latents, const ProgressCallback& progress,
                                 const PipelineHook& hook, WeightPlacement* placement,
                                 const ParallelGroups& parallel) const {
    const GenerationParams& p = req.params;
    const int64_t C = c_.vae->config().latent_channels, r = c_.vae->config().spatial_compression_ratio;
    Tensor latents = req.initial_latents.defined()
                         ? req.initial_latents.to(DType::F32)
                         : gaussian_noise({1, C, p.latent_frames(), p.height / r, p.width / r}, p.seed);
    // Rank 0's draw on every rank: one stream of numbers whatever each rank's build or library.
    if (parallel.world && parallel.world->size() > 1) parallel.world->broadcast(latents, 0);
    // CFG parallel: this rank computes one guidance row, its pair the other; the pair swaps them each step.
    Communicator* cfg_pair = p.do_cfg() && parallel.cfg && parallel.cfg->size() == 2 ? parallel.cfg : nullptr;
    FlowMatchEulerScheduler scheduler(c_.scheduler);
    scheduler.set_timesteps(p.num_inference_steps);
    const bool cfg = p.do_cfg();
    const int64_t B = cfg ? 2 : 1;
    const Tensor image_batch = image_latents.defined() ? repeat_rows(image_latents, B) : Tensor();
    const Tensor guidance = filled(B, float(p.embedded_guidance_scale) * 1000.0f);
    emit(hook, "guidance", guidance);
    if (progress) progress(Stage::Denoising, req.start_step, p.num_inference_steps);
    // The transformer stays placed for the whole loop: resident blocks are reused across steps.
    ModelScope use(placement, PipelineModel::Transformer);
    // Step caching: one decision per step over both guidance rows and every rank (models/step_cache.h).
    std::optional<StepCache> cache;
    if (p.cache.enabled()) {
        cache.emplace(p.cache, p.num_inference_steps);
        cache->set_groups({parallel.sequence, cfg_pair});
    }
    // The job's adapters in the backend's memory for the whole loop (small: rank x (in + out) per layer); they
    // go when it ends, also when a step throws (a cancel), so none outlives the job.
    std::optional<LoraSet> job_adapters;
    if (req.adapters && !req.adapters->empty()) job_adapters = req.adapters->on_backend(be);
    TransformerPass pass;
    pass.cache = cache ? &*cache : nullptr;
    pass.adapters = job_adapters ? &*job_adapters : nullptr;
    // Step i's transformer output [B, C, T, h, w] (host f32) for the latents `at` (host f32 [1, C, T, h, w]);
    // `step_hook` sees its input and timestep.
    auto transformer_output = [&](const Tensor& at, int i, const PipelineHook& step_hook) {
        const std::string step = "step" + std::to_string(i) + ".";
        Tensor input = repeat_rows(at, B);                                    // [B, 16, T, h, w]
        if (image_batch.defined()) input = cat_channels(input, image_batch);  // [B, 32, T, h, w]
        const Tensor timestep = filled(B, scheduler.timesteps()[size_t(i)]);
        emit(step_hook, step + "transformer_input", input);
        emit(step_hook, step + "timestep", timestep);
        Tensor output;
        auto row_inputs = [&](int64_t row) {
            auto one = [&](const Tensor& t) { return t.slice(0, row, row + 1).contiguous(); };
            return TransformerInputs{one(input),
                                     one(timestep),
                                     one(text.prompt_embeds),
                                     one(text.prompt_attention_mask),
                                     one(text.pooled_prompt_embeds),
                                     one(guidance),
                                     parallel.sequence,
                                     p.activations};
        };
        if (cfg_pair) {
            const Tensor mine =
                to_host(be, c_.transformer->forward(be, row_inputs(cfg_pair->rank()), {}, use.weights(), pass));
            output = Tensor::empty({B, C, input.dim(2), input.dim(3), input.dim(4)}, DType::F32, host_allocator(),
                                   "transformer output");
            cfg_pair->all_gather(mine.contiguous(), output);  // rows [negative, positive]: ranks 0 and 1 of the pair
        } else if (cfg && p.sequence_batch && p.cfg_whole_passes && !cache) {
            // One row at a time, each a whole pass (SkyReels' cfg_for): a streamed model moves its weights twice.
            output = Tensor::empty({B, C, input.dim(2), input.dim(3), input.dim(4)}, DType::F32, host_allocator(),
                                   "transformer output");
            for (int64_t row = 0; row < B; ++row) {
                const Tensor out = to_host(be, c_.transformer->forward(be, row_inputs(row), {}, use.weights(), pass));
                Tensor dst = output.slice(0, row, row + 1);
                if (!host_values_skipped()) dst.copy_from(out);  // a plan's host tensors are address space only
            }
        } else if (cfg && p.sequence_batch) {
            // One row at a time through each block while it is resident: the numbers of the whole-pass run, the
            // activations of one row (plus the other row's residual stream), the weights moved once per step.
            std::vector<TransformerInputs> rows;
            for (int64_t row = 0; row < B; ++row) rows.push_back(row_inputs(row));
            std::vector<Tensor> outs = c_.transformer->forward_rows(be, rows, {}, use.weights(), pass);
            output = Tensor::empty({B, C, input.dim(2), input.dim(3), input.dim(4)}, DType::F32, host_allocator(),
                                   "transformer output");
            for (int64_t row = 0; row < B; ++row) {
                const Tensor out = to_host(be, outs[size_t(row)]);
                outs[size_t(row)] = Tensor();
                Tensor dst = output.slice(0, row, row + 1);
                if (!host_values_skipped()) dst.copy_from(out);  // a plan's host tensors are address space only
            }
        } else {
            const TransformerInputs in{
                input,    timestep,          text.prompt_embeds, text.prompt_attention_mask, text.pooled_prompt_embeds,
                guidance, parallel.sequence, p.activations};
            output = to_host(be, c_.transformer->forward(be, in, {}, use.weights(), pass));
        }
        return output;
    };
    // A resumed cached loop first rebuilds its cache's state: the counts, then the replayed calls (outputs
    // unused). Every rank replays its own part, so parallel runs resume their caches too. The stage's progress
    // has begun (the device's stage peaks are measured from there): the first resumed step's ETA includes the
    // replay, about one more pass.
    // The inputs of the steps a checkpoint's replay needs: the last computed step's (from the replay when the
    // loop resumed), and the current step's.
    Tensor computed_latents;
    int computed_step = -1;
    if (cache && req.cache_replay && req.start_step > 0 && req.start_step < p.num_inference_steps) {
        const StepCacheReplay& saved = *req.cache_replay;  // checked by check_request
        cache->restore(saved.counts, req.start_step);
        for (const StepCacheReplay::Call& call : saved.calls) {
            SR_LOG_INFO("step cache: replaying the transformer call of step {} ({}) to rebuild its state",
                        call.step + 1, call.compute ? "computed" : "skipped");
            const Tensor at = call.latents.to(DType::F32);
            cache->begin_replay(call.step, call.compute);
            (void)transformer_output(at, call.step, nullptr);
            if (call.compute) computed_step = call.step, computed_latents = at;
        }
    }
    for (int i = req.start_step; i < p.num_inference_steps; ++i) {
        if (cache) cache->begin_step(i);
        const std::string step = "step" + std::to_string(i) + ".";
        // (Allocated in a plan too, so that it counts them: a plan's host tensors are address space only.)
        Tensor step_latents;
        if (cache) {
            step_latents = Tensor::empty(latents.shape(), DType::F32, host_allocator(), "step cache replay latents");
            if (!host_values_skipped()) step_latents.copy_from(latents);
        }
        const Tensor output = transformer_output(latents, i, hook);
        if (cache && !cache->last_skipped()) {
            computed_step = i;
            // A plan runs one step, whose input is the computed one; a loop holds both from its second step on.
            computed_latents = host_values_skipped() ? Tensor::empty(latents.shape(), DType::F32, host_allocator(),
                                                                     "step cache replay latents")
                                                     : step_latents;
        }
        check_finite(output, fmt::format("the transformer's output at step {}", i),
                     "NaN/Inf weights in the transformer, or config values out of range?");
        emit(hook, step + "transformer_output", output);
        Tensor velocity = output;
        if (cfg) {
            // noise_pred_uncond + guidance_scale * (noise_pred_text - noise_pred_uncond), in float32.
            velocity = Tensor::empty(latents.shape(), DType::F32, host_allocator(), "CFG velocity");
            const int64_t n = host_values_skipped() ? 0 : latents.numel();
            const float g = float(p.guidance_scale);
            const float* u = output.data<float>();
            const float* c = u + n;
            float* v = velocity.data<float>();
            for (int64_t k = 0; k < n; ++k) v[k] = u[k] + g * (c[k] - u[k]);
        }
        emit(hook, step + "noise_pred_cfg", velocity);
        if (req.after_step_denoised && !host_values_skipped() && (!req.denoised_due || req.denoised_due(i + 1))) {
            const Tensor x0 = scheduler.denoised(velocity, i, latents);
            emit(hook, step + "denoised", x0);
            req.after_step_denoised(i + 1, x0);
        }
        if (!host_values_skipped()) scheduler.step(velocity, i, latents);
        emit(hook, step + "latents_after", latents);
        if (req.after_step && !host_values_skipped()) {
            StepDone done{.steps_done = i + 1, .latents = latents, .cache = nullptr};
            if (cache) {
                auto replay = std::make_shared<StepCacheReplay>();
                replay->counts = cache->counts();
                for (const auto& [at, compute] : cache->replays(i + 1)) {
                    SR_ASSERT(at == (compute ? computed_step : i), "step cache replay of step {}: no latents kept", at);
                    replay->calls.push_back({at, compute, compute ? computed_latents : step_latents});
                }
                done.cache = std::move(replay);
            }
            req.after_step(done);
        }
        if (progress) progress(Stage::Denoising, i + 1, p.num_inference_steps);
    }
    if (cache && !host_values_skipped()) {
        SR_LOG_INFO("{}", cache->summary());
        if (req.after_cached_loop) req.after_cached_loop(*cache);
    }
    emit(hook, "latents", latents);
    return latents;
}

void SkyReelsPipeline::decode(Backend& be, const Tensor& latents, const VAETiling& tiling, const FrameSink& sink,
                              const ProgressCallback& progress, WeightPlacement* placement,
                              const ParallelGroups& parallel) const {
    Tensor z = Tensor::empty(latents.shape(), DType::F32, host_allocator(), "latents / scaling_factor");
    if (!host_values_skipped()) {
        z.copy_from(latents);
        const float sf = float(c_.vae->config().scaling_factor);
        for (int64_t i = 0; i < z.numel(); ++i) z.data<float>()[i] /= sf;
    }
    const int total = int((latents.dim(2) - 1) * c_.vae->config().temporal_compression_ratio + 1);
    if (progress) progress(Stage::Decoding, 0, total);
    ModelScope use(placement, PipelineModel::VaeDecoder);
    c_.vae->decode_streaming(
        be, z, tiling,
        [&](const Tensor& frames, int64_t first) {
            check_finite(frames, fmt::format("the decoded frames from frame {}", first),
                         "NaN/Inf weights in the VAE decoder, or a bad scaling_factor?");
            sink(frames, first);
            if (progress) progress(Stage::Decoding, int(first + frames.dim(2)), total);
        },
        use.weights(), parallel.world);
}

Tensor SkyReelsPipeline::generate(Backend& be, const GenerationRequest& req, const ProgressCallback& progress,
                                  const FrameSink& sink, const PipelineHook& hook, WeightPlacement* placement,
                                  const ParallelGroups& parallel) const {
    check_request(req);
    // The host allocator keeps freed blocks for the next request of their size (core/allocator.h): inside a
    // stage that is what keeps its steps off the page-fault path; after it they are memory no tensor holds,
    // and the next stage's kept blocks are bounded by its own peak. Given back after each stage, and when the
    // job ends or throws.
    struct ReleaseKeptHostBlocks {
        ~ReleaseKeptHostBlocks() { host_allocator().release_cached(); }
    } release_at_end;
    if (progress) progress(Stage::TextEncoding, 0, 1);
    const TextConditioning text = encode_text(be, req, hook, placement);
    host_allocator().release_cached();
    if (progress) progress(Stage::TextEncoding, 1, 1);
    Tensor image_latents;
    if (req.params.task == Task::I2V) {
        if (progress) progress(Stage::ImageEncoding, 0, 1);
        image_latents = encode_image(be, req, hook, placement);
        host_allocator().release_cached();
        if (progress) progress(Stage::ImageEncoding, 1, 1);
    }
    const Tensor latents = denoise(be, req, text, image_latents, progress, hook, placement, parallel);
    host_allocator().release_cached();
    // Every rank of a parallel run decodes its share of the tiles; only rank 0 gets frames.
    const bool shares_tiles = parallel.world && parallel.world->size() > 1;
    if (sink || shares_tiles)
        decode(be, latents, req.params.vae_tiling, sink ? sink : FrameSink([](const Tensor&, int64_t) {}), progress,
               placement, parallel);
    return latents;
}

}  // namespace sr
