// The SkyReels-V1 generation pipeline: text (and, for I2V, an image) in, decoded video frames out.
// Text encoding (Llama hidden_states[-3] cropped after the template, CLIP pooled), seeded Gaussian latents
// [1,16,(F-1)/4+1,H/8,W/8], true classifier-free guidance on the batch [negative, positive] (or one row after
// the other with sequence_batch: the same result with half the activations), the guidance input
// 1000 * embedded_guidance_scale, the flow-matching Euler steps, and the VAE's streaming decode of
// latents / scaling_factor into a frame consumer. For I2V the image's VAE latent sample * scaling_factor is
// zero-padded in time and concatenated after the noisy latents on the channel axis.
// ref: SkyReels-V1 skyreelsinfer/pipelines/pipeline_skyreels_video.py (SkyreelsVideoPipeline.__call__) over
//      diffusers v0.32.2 src/diffusers/pipelines/hunyuan_video/pipeline_hunyuan_video.py
//
//   auto pipe = sr::SkyReelsPipeline::load({.model = "SkyReels-V1-Hunyuan-T2V", .base = "HunyuanVideo"});
//   sr::GenerationRequest req;
//   req.prompt = "FPS-24, A cat walks on the grass";
//   pipe.generate(sr::cpu_backend(), req, {}, [&](const sr::Tensor& frames, int64_t first) { writer.write(frames); });
//
// The pipeline's own state (text conditioning, latents, guidance, the scheduler's arithmetic) stays on the
// host: the models take their inputs from there and hand back their results (to_device / to_host in
// backends/backend.h), a few megabytes per step next to seconds of compute, and the guidance and Euler
// steps stay bit-identical to the CPU run on any device.
//
// Everything the pipeline can be given precomputed (token ids, embeddings, initial latents, the VAE sample
// noise) makes it testable draw for draw against the reference; every intermediate that the fixtures name
// ("prompt_embeds", "image_latents", "step0.transformer_output", "step0.latents_after", "latents", ...) goes
// to an optional hook, and so does each denoised estimate the request asks for ("step0.denoised").
#pragma once

#include <cstdint>
#include <functional>
#include <iosfwd>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "backends/backend.h"
#include "models/hunyuan_video_transformer.h"
#include "models/hunyuan_video_vae.h"
#include "pipeline/flow_match_scheduler.h"
#include "text/prompt_encoder.h"

namespace sr {

enum class Task { T2V, I2V };

// The stages of a job, in the order they run (image encoding for I2V only). The progress reports, the memory
// plan and the memory report name them by this enum; stage_name gives the words printed for them.
enum class Stage : uint8_t { Loading, TextEncoding, ImageEncoding, Denoising, Decoding };
constexpr size_t kStages = 5;
const char* stage_name(Stage stage);  // "loading", "text encoding", "image encoding", "denoising", "decoding"
std::ostream& operator<<(std::ostream& out, Stage stage);  // stage_name (for test messages)

// video_generate.py's default negative prompt.
extern const char* const kSkyReelsNegativePrompt;

// The largest video a request may ask for (`skyreels info` checks its sizes against the same limits).
inline constexpr int64_t kMaxVideoFrames = 100001, kMaxVideoSide = 16384;

struct GenerationParams {
    Task task = Task::T2V;
    int64_t height = 544, width = 960, num_frames = 97;
    int num_inference_steps = 30;
    double guidance_scale = 6.0;           // true CFG when > 1 (batch [negative, positive])
    double embedded_guidance_scale = 1.0;  // the transformer's guidance input is 1000 * this
    uint64_t seed = 42;
    // CFG rows one at a time (half the activations). By default both rows run through each transformer block
    // while it is resident, so a streamed model moves its weights once per step; cfg_whole_passes runs them as
    // two whole passes (SkyReels' cfg_for), moving the weights twice. Both give the same numbers.
    bool sequence_batch = false;
    bool cfg_whole_passes = false;
    // Step caching (models/step_cache.h; --cache teacache:THRESH | fbcache:THRESH): skips transformer passes
    // whose input barely moved, trading accuracy for time. Off by default. With it, CFG rows run as whole
    // passes go one block at a time instead (one decision per step needs every row's first block).
    StepCacheOptions cache;
    // The transformer's activation dtype (TransformerInputs::activations): F32, or BF16 (half the activation
    // memory; the session's --precision bf16).
    DType activations = DType::F32;
    VAETiling vae_tiling = VAETiling::enabled();

    bool do_cfg() const { return guidance_scale > 1.0; }
    int64_t latent_frames() const { return (num_frames - 1) / 4 + 1; }
    // InputError naming the flag: frames 4k+1, height/width positive multiples of 16, steps >= 1, ...
    void validate() const;
};

// Text conditioning, rows [negative, positive] with CFG, [positive] without.
struct TextConditioning {
    Tensor prompt_embeds;          // [B, L, text_embed_dim] f32
    Tensor prompt_attention_mask;  // [B, L] (any numeric dtype, 1 = token)
    Tensor pooled_prompt_embeds;   // [B, pooled_projection_dim] f32
};

// Token ids as the tokenizers would give them, rows as TextConditioning's.
struct TextTokens {
    Tensor llama_ids, llama_mask;  // [B, crop_start + max_sequence_length]
    Tensor clip_ids;               // [B, 77]
};

// What rebuilds a step cache's state in a resumed loop: its counts, and the transformer calls to replay
// (StepCache::replays: the last computed step, and for TeaCache the last step when it skipped), each with the
// latents that step's call read. A few MB, whatever the model: the state itself is two activations per row.
struct StepCacheReplay {
    StepCacheCounts counts;
    struct Call {
        int step = 0;
        bool compute = true;
        Tensor latents;  // [1, 16, T, h, w] host f32: the step's input
    };
    std::vector<Call> calls;
};

// What after_step sees after each denoising step.
struct StepDone {
    int steps_done = 0;
    const Tensor& latents;  // [1, 16, T, h, w] host f32
    // With params.cache: what rebuilds the cache's state after this step (its tensors are the loop's; clone to
    // keep them past the call). Null otherwise.
    std::shared_ptr<const StepCacheReplay> cache;
};

struct GenerationRequest {
    GenerationParams params;
    std::string prompt;
    std::string negative_prompt = kSkyReelsNegativePrompt;
    Tensor image;  // I2V: [3, height, width] or [1, 3, height, width] f32 in [-1, 1] (already resize-cropped)

    // Precomputed inputs; each replaces the step that would make it.
    std::optional<TextTokens> tokens;      // replaces tokenization
    std::optional<TextConditioning> text;  // replaces tokenization and text encoding
    Tensor initial_latents;                // [1, 16, T, h, w] replaces the seeded noise
    Tensor vae_sample_eps;                 // [1, 16, 1, h, w] replaces the image latent sample's noise draw

    // This job's LoRA adapters on the transformer (HunyuanVideoTransformer::read_loras): runtime side paths on
    // top of the loaded weights (and of the session's adapters), uploaded for the denoising loop and dropped
    // after it; the loaded model never holds them. null: none.
    std::shared_ptr<const LoraSet> adapters;

    // Resuming a run (pipeline/checkpoint.h): initial_latents are the latents after this many steps, which are
    // not run again; the scheduler continues at this step. With params.cache, `cache_replay` rebuilds the step
    // cache's state after that step (the loop replays its calls first: about one transformer pass), so that
    // the resumed loop skips what the uninterrupted one would, on one rank or several; null: the resumed loop
    // starts with an empty cache (its first step computes).
    int start_step = 0;
    std::shared_ptr<const StepCacheReplay> cache_replay;
    // Called after each denoising step (host values; valid during the call).
    std::function<void(const StepDone& step)> after_step;
    // With params.cache: called once the loop is done, with its counts (StepCache::summary(), skipped_steps()).
    std::function<void(const StepCache& cache)> after_cached_loop;
    // Called after the denoising steps `denoised_due` picks (every step when it is empty) with the steps done
    // and that step's denoised estimate x0 = latents - sigma * velocity ([1, 16, T, h, w], host; valid during
    // the call), what previews show (pipeline/latent_preview.h). The estimate is formed only on those steps
    // (a 544x960x97 one is a 13 MB tensor and ~30 ms), and goes to the hook too, as "step{i}.denoised".
    std::function<void(int steps_done, const Tensor& denoised)> after_step_denoised;
    std::function<bool(int steps_done)> denoised_due;
};

// Pipeline progress: `stage` starts with done == 0 (a resumed denoising loop: with the steps done before), then
// each unit of `total` reports done = 1..total (the next one). Reports
// come from the calling thread between units of work (denoising steps, decoded chunks), never from inside a
// kernel, so a callback may throw to stop the job: everything it holds unwinds (see pipeline/session.h).
using ProgressCallback = std::function<void(Stage stage, int done, int total)>;
using PipelineHook = std::function<void(std::string_view name, const Tensor& value)>;
// Decoded frames [1, 3, n, H, W] f32 (~[-1, 1], unclamped) starting at output frame `first_frame`; a view
// valid only during the call.
using FrameSink = VAEFrameSink;

struct PipelineLoadOptions {
    std::string model;  // a SkyReels transformer folder, or a diffusers pipeline folder (model_index.json)
    std::string base;   // the HunyuanVideo folder (text encoders, tokenizers, VAE, scheduler); "" = model
    std::optional<DType> transformer_dtype;  // nullopt: as stored (zero-copy mmap)
    std::optional<DType> text_encoder_dtype;
    // SkyReels' --quant: the transformer's and the Llama text encoder's linear weights in FP8 at load.
    LinearQuant quant = LinearQuant::None;
    // LoRA adapters on the transformer, merged or attached at load (models/hunyuan_video_lora.h).
    LoraOptions lora;
    // Memory planning (--dry-run): every weight is checked against its file's header and bound to this
    // address space (core/virtual_allocator.h); no weight is read.
    Allocator* planning_space = nullptr;
};

// The parts of a pipeline. The tokenizers may be null: then requests must carry tokens or text.
struct PipelineComponents {
    std::shared_ptr<const HunyuanVideoTransformer> transformer;
    std::shared_ptr<const HunyuanVideoVAE> vae;
    std::shared_ptr<const LlamaTextEncoder> llama;
    std::shared_ptr<const ClipTextEncoder> clip;
    std::shared_ptr<const BpeTokenizer> llama_tokenizer;
    std::shared_ptr<const ClipTokenizer> clip_tokenizer;
    FlowMatchSchedulerConfig scheduler;
    PromptTemplate prompt_template;
};

// Where models keep their weights while they run (pipeline/weight_placement.h); nullptr: as loaded.
class WeightPlacement;

class SkyReelsPipeline {
public:
    explicit SkyReelsPipeline(PipelineComponents components);
    // Loads every part; errors name the folder and file at fault. Tokenizer folders are optional.
    static SkyReelsPipeline load(const PipelineLoadOptions& options, const ProgressCallback& progress = {});

    const PipelineComponents& components() const { return c_; }
    Task native_task() const;  // from the transformer's in_channels (16: T2V, 32: I2V)

    // Prompt -> conditioning (rows [negative, positive] when params.do_cfg()).
    TextConditioning encode_text(Backend& be, const GenerationRequest& req, const PipelineHook& hook = {},
                                 WeightPlacement* placement = nullptr) const;
    // I2V: image -> VAE latent sample * scaling_factor, zero-padded to T frames: [1, 16, T, h, w].
    Tensor encode_image(Backend& be, const GenerationRequest& req, const PipelineHook& hook = {},
                        WeightPlacement* placement = nullptr) const;
    // The denoising loop; returns the final latents [1, 16, T, h, w].
    Tensor denoise(Backend& be, const GenerationRequest& req, const TextConditioning& text, const Tensor& image_latents,
                   const ProgressCallback& progress = {}, const PipelineHook& hook = {},
                   WeightPlacement* placement = nullptr, const ParallelGroups& parallel = {}) const;
    // latents / scaling_factor through the VAE's streaming decode.
    void decode(Backend& be, const Tensor& latents, const VAETiling& tiling, const FrameSink& sink,
                const ProgressCallback& progress = {}, WeightPlacement* placement = nullptr,
                const ParallelGroups& parallel = {}) const;

    // All of the above. Returns the final latents.
    Tensor generate(Backend& be, const GenerationRequest& req, const ProgressCallback& progress, const FrameSink& sink,
                    const PipelineHook& hook = {}, WeightPlacement* placement = nullptr,
                    const ParallelGroups& parallel = {}) const;

    // InputError naming what is wrong: params.validate(), the task against the transformer, the image and
    // initial latents against the video size. generate() runs it first.
    void check_request(const GenerationRequest& req) const;

private:
    PipelineComponents c_;
};

// Seeded N(0, 1) noise of `shape` (f32), from our own generator (std::mt19937_64, not torch's stream).
Tensor gaussian_noise(const Shape& shape, uint64_t seed);

}  // namespace sr
