#include "pipeline/session.h"

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <filesystem>

#include "core/build_info.h"
#include "core/error.h"
#include "core/memory_stats.h"
#include "io/json.h"
#include "pipeline/checkpoint.h"
#include "pipeline/demo_model.h"
#include "pipeline/preview_files.h"
#include "runtime/gpu_probe.h"
#include "runtime/simulated_device.h"
#ifdef SKYREELS_HAVE_CUDA
#include "runtime/cuda_accelerator.h"
#endif
#ifdef SKYREELS_HAVE_MEDIA
#include "media/image.h"
#include "media/video_writer.h"
#endif

namespace fs = std::filesystem;

namespace sr {

namespace {

// Thrown from the progress path when the cancel callback says so; caught in Session::generate only. Not an
// sr::Error: no error handler on the way mistakes it for a failure or adds context to it.
struct JobCancelled {};

// "cuda" -> 0, "cuda:N" -> N; InputError naming the flag otherwise.
int cuda_device_index(const std::string& device) {
    if (device == "cuda") return 0;
    const std::string n = device.substr(std::min<size_t>(device.size(), 5));
    const bool digits = device.rfind("cuda:", 0) == 0 && !n.empty() && n.size() <= 2 &&
                        std::all_of(n.begin(), n.end(), [](char c) { return c >= '0' && c <= '9'; });
    SR_THROW_IF(!digits, "--device {}: expected cuda or cuda:N (N a device number)", device);
    return std::stoi(n);
}

void check_writable(const std::string& path) {
    std::error_code ec;
    const fs::path p(path);
    const fs::path dir = p.parent_path().empty() ? fs::path(".") : p.parent_path();
    SR_THROW_IF(fs::is_directory(p, ec), "--out {}: is a folder, not a file name", path);
    SR_THROW_IF(!fs::is_directory(dir, ec), "--out {}: folder {} does not exist", path, dir.string());
    SR_THROW_IF(::access(dir.c_str(), W_OK) != 0, "--out {}: folder {} is not writable", path, dir.string());
    std::string ext = p.extension().string();
    for (char& c : ext) c = char(std::tolower(static_cast<unsigned char>(c)));  // .MP4 from a camera's habits
    SR_THROW_IF(ext != ".mp4" && ext != ".mov" && ext != ".mkv", "--out {}: the name must end in .mp4, .mov or .mkv",
                path);
}

#ifdef SKYREELS_HAVE_MEDIA
// The input image as the pipeline takes it: decoded (InputError naming the file) and resize-cropped.
Tensor load_input_image(const std::string& path, const GenerationParams& p) {
    return skyreels_resize_crop(load_image(path), p.height, p.width);
}
#endif

// Session::check without decoding the image (generate decodes it once, to use it).
void check_settings(const Request& r) {
    const GenerationParams& p = r.generation.params;
    p.validate();
    SR_THROW_IF(r.fps < 1 || r.fps > 240, "--fps {}: must be in 1..240", r.fps);
    SR_THROW_IF(r.crf < 0 || r.crf > 51, "--crf {}: must be in 0..51", r.crf);
    SR_THROW_IF(p.task == Task::T2V && !r.image_path.empty(), "--image is only used with --task i2v");
    SR_THROW_IF(r.preview_every < 1, "--preview-every {}: must be >= 1 (a preview every N steps)", r.preview_every);
    if (!r.preview_path.empty()) check_preview_path(r.preview_path);
    if (!r.output_path.empty()) {
#ifndef SKYREELS_HAVE_MEDIA
        SR_THROW("this build has no video output (skyreels_media was not built: FFmpeg's libraries were missing)");
#endif
        check_writable(r.output_path);
    }
    for (size_t i = 0; i < r.loras.size(); ++i) {
        const LoraFile& f = r.loras[i];
        std::error_code ec;
        SR_THROW_IF(f.path.empty(), "job LoRA {}: no file named", i);
        SR_THROW_IF(!std::isfinite(f.strength), "job LoRA {}: strength {} is not finite", f.path, f.strength);
        SR_THROW_IF(!fs::is_regular_file(f.path, ec), "job LoRA {}: no such file", f.path);
    }
}

// `job` continued from the checkpoint at `path` (pipeline/checkpoint.h): its latents, step, text conditioning
// and step cache state. InputError naming the checkpoint when it is not one of this run (`run_params`) on
// these model files, or does not fit the job; `job` itself is left as it was.
GenerationRequest resumed(GenerationRequest job, const std::string& path, const std::string& run_params,
                          const std::string& fingerprint, const SkyReelsPipeline& pipe) {
    const DenoiseCheckpoint c = read_checkpoint(path);
    c.check_matches(run_params, fingerprint, path);
    SR_THROW_IF(c.steps_done > job.params.num_inference_steps, "--resume {}: {} steps done of {}", path, c.steps_done,
                job.params.num_inference_steps);
    if (c.text.prompt_embeds.defined()) job.text = c.text;
    job.initial_latents = c.latents;
    job.start_step = c.steps_done;
    job.cache_replay = c.cache;
    if (job.params.cache.enabled() && !c.cache)
        SR_LOG_WARN(
            "--resume {}: the checkpoint holds no step cache state (one from an older version): the resumed run "
            "starts with an empty cache, so its first step computes and its video is not bit-identical to an "
            "uninterrupted run's",
            path);
    pipe.check_request(job);
    SR_LOG_INFO("resuming {} after step {} of {}", path, c.steps_done, job.params.num_inference_steps);
    return job;
}

// The checkpoint files a successful SkyReelsPipeline::load(o) opened: every *.safetensors of the transformer,
// VAE and text encoder folders it read from (the folders resolved as the load resolves them).
std::vector<std::string> checkpoint_files(const PipelineLoadOptions& o) {
    std::error_code ec;
    const bool is_pipeline = fs::exists(fs::path(o.model) / "model_index.json", ec);
    const fs::path base = !o.base.empty() ? fs::path(o.base) : is_pipeline ? fs::path(o.model) : fs::path();
    std::vector<std::string> files;
    for (const fs::path& dir :
         {fs::path(resolve_transformer_dir(o.model)), base / "vae", base / "text_encoder", base / "text_encoder_2"}) {
        std::vector<std::string> here;
        for (const auto& e : fs::directory_iterator(dir, ec))
            if (e.is_regular_file(ec) && e.path().extension() == ".safetensors") here.push_back(e.path().string());
        std::sort(here.begin(), here.end());
        files.insert(files.end(), here.begin(), here.end());
    }
    return files;
}

std::string host_memory_report() {
    const HostMemory h = read_host_memory();
    return fmt::format("memory report: device cpu: peak RSS {} (now: anonymous {}, file-backed {})\n",
                       format_bytes(double(h.peak_rss)), format_bytes(double(h.anon)), format_bytes(double(h.file)));
}

}  // namespace

bool is_cuda_device(const std::string& device) {
    return device.rfind("cuda", 0) == 0;
}

void Session::check(const SessionOptions& o) {
    SR_THROW_IF(o.device != "cpu" && o.device != "sim" && !is_cuda_device(o.device),
                "--device {}: expected cpu, sim or cuda[:N]", o.device);
    SR_THROW_IF(!o.demo && o.model.empty(), "--model is required (a SkyReels-V1 folder), or --demo");
    SR_THROW_IF(o.memory.prefetch < 0 || o.memory.prefetch > 64, "--prefetch {}: must be in 0..64", o.memory.prefetch);
    SR_THROW_IF(o.memory.pinned_budget && o.memory.host_memory != HostMemoryMode::Pinned,
                "--pinned-budget needs --host-memory pinned");
    // Finite and realistic: 1e-300 GB/s would make every simulated copy sleep for ever.
    SR_THROW_IF(!(std::isfinite(o.sim_bandwidth_gbs) && o.sim_bandwidth_gbs >= 0.1 && o.sim_bandwidth_gbs <= 10000),
                "--sim-bandwidth {}: must be in [0.1, 10000] GB/s", o.sim_bandwidth_gbs);
    if (is_cuda_device(o.device)) {
        (void)cuda_device_index(o.device);  // the syntax, before anything is loaded
#ifdef SKYREELS_HAVE_CUDA
        // A plan needs no GPU: a planning session plans a CUDA run anywhere.
        const std::string why = o.planning_only ? std::string() : cuda_unavailable_reason();
        SR_THROW_IF(!why.empty(), "--device {}: no usable CUDA device: {}; use --device sim or cpu", o.device, why);
#else
        SR_THROW(
            "--device {}: this build has no CUDA backend (configure with -DSKYREELS_CUDA=ON where nvcc is "
            "installed); use --device sim or cpu",
            o.device);
#endif
    }
}

void Session::check(const Request& r) {
    check_settings(r);
    const GenerationParams& p = r.generation.params;
    if (p.task == Task::I2V && !r.image_path.empty()) {
#ifdef SKYREELS_HAVE_MEDIA
        (void)load_input_image(r.image_path, p);  // a bad image fails here, before any model runs
#else
        SR_THROW("--image {}: this build has no image reader (skyreels_media was not built)", r.image_path);
#endif
    }
}

Session::Session(SessionOptions options, const ProgressListener& load_progress) : options_(std::move(options)) {
    std::optional<LogScope> log;
    if (options_.log_level) log.emplace(*options_.log_level);
    check(options_);
    const bool cuda = is_cuda_device(options_.device);
    precision_ = options_.precision.value_or(cuda ? GemmPrecision::BF16 : GemmPrecision::F32);
    cpu_.set_gemm_precision(precision_);
    memory_ = options_.memory;
    choose_default_budget();
    if (options_.device == "sim") {
        SimulatedDeviceOptions so;
        so.memory_budget = memory_.vram_budget;
        so.bandwidth_bytes_per_s = options_.sim_bandwidth_gbs * 1e9;
        so.pageable_bandwidth_bytes_per_s = so.bandwidth_bytes_per_s / 2;
        auto sim = std::make_unique<SimulatedDevice>(so);
        sim->kernels().cpu().set_gemm_precision(precision_);
        device_ = std::move(sim);
    }
#ifdef SKYREELS_HAVE_CUDA
    if (cuda) {
        const CudaAcceleratorOptions cuda_options{.device = cuda_device_index(options_.device),
                                                  .memory_budget = memory_.vram_budget};
        target_ = PlanTarget::of_cuda(cuda_options);  // planning needs no GPU
        if (!options_.planning_only) {
            auto dev = std::make_unique<CudaAccelerator>(cuda_options);
            dev->cuda().set_gemm_precision(precision_);
            dev->cuda().set_attention_precision(precision_);
            device_ = std::move(dev);
        }
    }
#endif
    if (device_) target_ = PlanTarget::of(*device_);

    host_baseline_anon_ = read_host_memory().anon;
    if (options_.demo) {
        SR_THROW_IF(!options_.lora.files.empty(), "--lora needs a model: the demo model has random weights");
        pipe_.emplace(make_demo_pipeline(options_.demo_task, 0, options_.demo_transformer, options_.quant));
        return;
    }
    PipelineLoadOptions load;
    load.model = options_.model;
    load.base = options_.base;
    load.quant = options_.quant;
    load.lora = options_.lora;
    if (options_.planning_only) {
        // Every weight checked against its file's header and bound to address space: none is read.
        planning_space_ = std::make_unique<VirtualAllocator>("dry-run weights");
        load.planning_space = planning_space_.get();
    }
    ProgressTracker tracker;
    ProgressCallback on_progress;
    if (load_progress)
        on_progress = [&](Stage s, int done, int total) { load_progress(tracker.update(s, done, total)); };
    pipe_.emplace(SkyReelsPipeline::load(load, on_progress));
    ++stats_.pipeline_loads;
    for (const std::string& f : checkpoint_files(load)) {
        std::error_code ec;
        const auto size = fs::file_size(f, ec);
        if (ec) continue;  // the load opened it a moment ago; a file gone since counts nothing
        stats_.checkpoint_bytes += size_t(size);
        stats_.checkpoint_files.push_back(f);
    }
}

Session::~Session() = default;

std::string Session::device_name() const {
    return device_ ? device_->name() : options_.device;
}

const Allocator* Session::device_memory() const {
    return device_ ? &device_->memory() : nullptr;
}

GenerationParams Session::default_params(Task task) const {
    if (options_.demo) return demo_params(task);
    GenerationParams p;
    p.task = task;
    return p;
}

std::optional<LogLevel> Session::level_for(const Request* request) const {
    if (request && request->log_level) return request->log_level;
    return options_.log_level;
}

GenerationRequest Session::prepare(const Request& r) const {
    GenerationRequest job = r.generation;
    job.params.activations = activation_dtype();
    const GenerationParams& p = job.params;
    const bool read_image = p.task == Task::I2V && !job.image.defined() && !r.image_path.empty();
    if (read_image) {
        check_settings(r);
#ifdef SKYREELS_HAVE_MEDIA
        job.image = load_input_image(r.image_path, p);  // decoded once, here; InputError naming the file
#else
        check(r);  // says that this build reads no images
#endif
    } else {
        check(r);
    }
    if (p.task == Task::I2V && !job.image.defined()) {
        SR_THROW_IF(!options_.demo, "--task i2v needs --image (a PNG or JPEG)");
        job.image = demo_image(p.height, p.width);
    }
    pipe_->check_request(job);
    if (options_.world && options_.world->size() > 1)  // the mesh's checks, before any work
        choose_mesh(options_.world->size(), parse_mesh_spec(options_.parallel), job.params.do_cfg(),
                    pipe_->components().transformer->config().num_attention_heads);
    return job;
}

const ParallelMesh* Session::mesh_for(const GenerationRequest& job) {
    if (!options_.world || options_.world->size() == 1) return nullptr;
    const MeshShape shape = choose_mesh(options_.world->size(), parse_mesh_spec(options_.parallel), job.params.do_cfg(),
                                        pipe_->components().transformer->config().num_attention_heads);
    std::unique_ptr<ParallelMesh>& mesh = meshes_[shape.str()];
    if (!mesh) mesh = std::make_unique<ParallelMesh>(*options_.world, shape);  // collective: every rank, same order
    return mesh.get();
}

ParallelGroups Session::groups_for(const GenerationRequest& job) {
    const ParallelMesh* mesh = mesh_for(job);
    if (!mesh) return {};
    Communicator* sequence = nullptr;
#if defined(SKYREELS_HAVE_CUDA) && SKYREELS_HAVE_NCCL
    if (mesh->shape().ulysses > 1 && is_cuda_device(options_.device)) {
        std::unique_ptr<NcclCommunicator>& nccl = nccl_[mesh->shape().str()];
        auto& cuda = static_cast<CudaAccelerator&>(*device_).cuda();
        if (!nccl)
            nccl =
                std::make_unique<NcclCommunicator>(mesh->ulysses(), cuda_device_index(options_.device), cuda.stream());
        sequence = nccl.get();
    }
#endif
    return mesh->groups(sequence);
}

std::shared_ptr<const LoraSet> Session::job_adapters(const Request& request) {
    if (request.loras.empty()) return nullptr;
    auto set = std::make_shared<LoraSet>();
    for (const LoraFile& f : request.loras) {
        std::error_code ec;
        const uintmax_t size = fs::file_size(f.path, ec);
        SR_THROW_IF(ec, "job LoRA {}: {}", f.path, ec.message());
        const int64_t mtime = int64_t(fs::last_write_time(f.path, ec).time_since_epoch().count());
        SR_THROW_IF(ec, "job LoRA {}: {}", f.path, ec.message());
        const std::string key = fmt::format("{}\n{}\n{}", f.path, f.strength, request.lora_ignore_unmatched);
        auto it =
            std::find_if(lora_cache_.begin(), lora_cache_.end(), [&](const CachedLora& c) { return c.key == key; });
        if (it != lora_cache_.end() && (it->size != size || it->mtime != mtime)) {
            lora_cache_.erase(it);  // the file changed: read it again
            it = lora_cache_.end();
        }
        if (it == lora_cache_.end()) {
            LoraOptions one{.files = {f}, .mode = LoraMode::Runtime, .ignore_unmatched = request.lora_ignore_unmatched};
            auto read = std::make_shared<const LoraSet>(pipe_->components().transformer->read_loras(one));
            if (lora_cache_.size() >= kLoraCacheEntries) lora_cache_.erase(lora_cache_.begin());
            lora_cache_.push_back({key, size, mtime, read});
            it = lora_cache_.end() - 1;
        }
        set->append(*it->set);
    }
    set->mode = LoraMode::Runtime;
    return set;
}

std::vector<std::pair<std::string, std::string>> Session::video_metadata(const GenerationRequest& job,
                                                                         const std::vector<LoraFile>& job_loras) const {
    const GenerationParams& p = job.params;
    Json made;
    made["prompt"] = job.prompt;
    made["negative_prompt"] = job.negative_prompt;
    made["seed"] = p.seed;
    made["steps"] = p.num_inference_steps;
    made["guidance_scale"] = p.guidance_scale;
    made["embedded_guidance_scale"] = p.embedded_guidance_scale;
    made["height"] = p.height;
    made["width"] = p.width;
    made["frames"] = p.num_frames;
    made["task"] = p.task == Task::I2V ? "i2v" : "t2v";
    made["model"] = options_.demo ? "built-in demo model (random weights)" : options_.model;
    if (!options_.demo) made["base"] = options_.base;
    made["quant"] = options_.quant == LinearQuant::Float8WeightOnly ? "fp8" : "none";
    if (p.cache.enabled()) made["cache"] = p.cache.str();  // step caching: the video is not the uncached one
    if (!options_.lora.files.empty() || !job_loras.empty()) {
        // Every adapter the video was made with, in the order applied: the session's, then the job's.
        Json loras = Json::array();
        for (const LoraFile& f : options_.lora.files)
            loras.push_back({{"file", f.path}, {"strength", f.strength}, {"scope", "session"}});
        // A job's by file name: a server's folder is not the client's business.
        for (const LoraFile& f : job_loras)
            loras.push_back(
                {{"file", fs::path(f.path).filename().string()}, {"strength", f.strength}, {"scope", "job"}});
        made["loras"] = loras;
    }
    const std::string engine = fmt::format("skyreels.cpp {}", build::kVersion);
    made["engine"] = engine;
    // "comment" holds everything as JSON (ffprobe -show_entries format_tags=comment reads it back);
    // "description" the prompt alone, which players show.
    return {{"comment", made.dump()}, {"description", job.prompt}, {"software", engine}};
}

JobResult Session::generate(const Request& request, const JobCallbacks& callbacks) {
    std::lock_guard<std::mutex> lock(mutex_);
    std::optional<LogScope> log;
    if (const auto level = level_for(&request)) log.emplace(*level);
    SR_THROW_IF(options_.planning_only, "this session only plans (--dry-run): it has no weights to run");
    const auto start = std::chrono::steady_clock::now();
    GenerationRequest job = prepare(request);  // every check before any work
    job.adapters = job_adapters(request);      // a bad adapter file fails here, before any work too
    choose_cfg_rows(job);
    SR_THROW_IF(request.checkpoint_every < 0, "--checkpoint-every {}: must be >= 0", request.checkpoint_every);
    SR_THROW_IF(request.checkpoint_every > 0 && request.checkpoint_path.empty(),
                "--checkpoint-every needs a checkpoint file (it goes next to the output)");
    Json run_settings{{"precision", int(precision_)}, {"quant", options_.quant == LinearQuant::None ? "none" : "fp8"}};
    if (!request.loras.empty()) {  // a resumed job must run with the same adapters
        Json loras = Json::array();
        for (const LoraFile& f : request.loras) loras.push_back({{"file", f.path}, {"strength", f.strength}});
        run_settings["job_loras"] = loras;
    }
    const std::string run_params = checkpoint_params(job, run_settings);
    if (!request.resume_path.empty()) {
        try {
            job = resumed(job, request.resume_path, run_params, model_fingerprint(), *pipe_);
        } catch (const InputError& e) {
            if (!request.restart_if_refused) throw;
            SR_LOG_WARN("{}; the job starts from its first step", e.what());
        }
    }
    // The text conditioning as the run makes it (its hook), for the checkpoints.
    TextConditioning ckpt_text;
    PipelineHook hook = callbacks.hook;
    if (request.checkpoint_every > 0 && is_root()) {
        const int every = request.checkpoint_every, total = job.params.num_inference_steps;
        const std::string path = request.checkpoint_path, model = model_fingerprint();
        hook = [&ckpt_text, inner = callbacks.hook](std::string_view name, const Tensor& t) {
            if (name == "prompt_embeds") ckpt_text.prompt_embeds = t.clone();
            if (name == "prompt_attention_mask") ckpt_text.prompt_attention_mask = t.clone();
            if (name == "pooled_prompt_embeds") ckpt_text.pooled_prompt_embeds = t.clone();
            if (inner) inner(name, t);
        };
        job.after_step = [&ckpt_text, every, total, path, model, run_params](const StepDone& step) {
            if (step.steps_done % every != 0 || step.steps_done >= total) return;
            // A checkpoint that cannot be written (a full disk) is a warning: it never costs the video. The last
            // complete one stays in place.
            try {
                write_checkpoint(path, {.steps_done = step.steps_done,
                                        .latents = step.latents,
                                        .text = ckpt_text,
                                        .params = run_params,
                                        .model = model,
                                        .cache = step.cache});
            } catch (const InputError& e) {
                SR_LOG_WARN("the checkpoint after step {} was not saved: {}; the run goes on", step.steps_done,
                            e.what());
            }
        };
    }

    // The preview: the steps' denoised estimates through the latent-to-RGB map, to the files (rank 0) and the
    // callback. A preview that cannot be written (a full disk) is a warning: it never costs the video.
    bool preview_files = !request.preview_path.empty() && is_root();
    if (preview_files || callbacks.preview) {
        const int channels = int(pipe_->components().vae->config().latent_channels);
        SR_THROW_IF(channels != kPreviewLatentChannels,
                    "--preview: the latent-to-RGB map is HunyuanVideo's ({} channels); this VAE has {}",
                    kPreviewLatentChannels, channels);
        const int every = request.preview_every, total = job.params.num_inference_steps;
        // The estimate is formed only on the steps a preview is due: on the others it would be thrown away.
        job.denoised_due = [every, total](int done) { return preview_due(done, total, every); };
        job.after_step_denoised = [&, total](int done, const Tensor& denoised) {
            const PreviewFrames preview = latent_preview(denoised, done, total);
            if (preview_files) {
                try {
                    write_preview(request.preview_path, preview);
                } catch (const InputError& e) {
                    SR_LOG_WARN("{}; the run goes on without previews", e.what());
                    preview_files = false;
                }
            }
            if (callbacks.preview) callbacks.preview(preview);
        };
    }

    JobResult result;
    job.after_cached_loop = [&result](const StepCache& cache) {
        result.step_cache = cache.summary();
        result.passes_skipped = cache.skipped();
    };
    ProgressTracker tracker(device_memory());
    const ProgressCallback on_progress = [&](Stage stage, int done, int total) {
        if (callbacks.progress) callbacks.progress(tracker.update(stage, done, total));
        if (callbacks.cancel && callbacks.cancel()) throw JobCancelled{};
    };
    const ParallelGroups parallel = groups_for(job);
    // Every rank has checked its job by here: a bad input on one rank ends them all (MPI_Abort), and a rank
    // killed so cannot remove a file it made. Only after this does rank 0 create the video's partial file.
    if (parallel.world && parallel.world->size() > 1) parallel.world->barrier();
#ifdef SKYREELS_HAVE_MEDIA
    // Opened before the run so an unwritable path fails early; its partial file goes unless finish() completes.
    std::unique_ptr<VideoWriter> writer;
    if (!request.output_path.empty() && is_root())
        writer = std::make_unique<VideoWriter>(request.output_path, job.params.width, job.params.height,
                                               VideoWriterOptions{.fps = request.fps,
                                                                  .crf = request.crf,
                                                                  .png_dir = request.png_dir,
                                                                  .metadata = video_metadata(job, request.loras)});
    const FrameSink sink = [&](const Tensor& frames, int64_t first) {
        if (writer) writer->write(frames.select(0, 0));
        if (callbacks.frames) callbacks.frames(frames, first);
    };
#else
    const FrameSink sink = [&](const Tensor& frames, int64_t first) {
        if (callbacks.frames) callbacks.frames(frames, first);
    };
#endif
    try {
        if (device_) {
            DeviceRunReport report;
            result.latents = generate_on_device(*pipe_, *device_,
                                                {.memory = memory_for(job),
                                                 .device_memory_is_host = options_.device == "sim",
                                                 .host_baseline_anon = host_baseline_anon_,
                                                 .kept_placement = &placement_,
                                                 .parallel = parallel},
                                                job, on_progress, sink, hook, &report);
            result.memory_report = report.format(memory_);
            result.device_report = std::move(report);
        } else {
            result.latents = pipe_->generate(cpu_, job, on_progress, sink, hook, nullptr, parallel);
            result.memory_report = host_memory_report();
        }
#ifdef SKYREELS_HAVE_MEDIA
        if (writer) {
            writer->finish();
            result.output_path = writer->path();
            result.frames_written = writer->frames_written();
        }
#endif
        if (request.checkpoint_every > 0 && is_root()) {
            std::error_code ec;  // the video is complete: its checkpoint is no longer needed
            fs::remove(request.checkpoint_path, ec);
        }
    } catch (const JobCancelled&) {
        // Everything the job held has unwound (device memory, placed weights); the writer's partial file goes
        // with it, so no file is left.
#ifdef SKYREELS_HAVE_MEDIA
        writer.reset();
#endif
        ++stats_.jobs_cancelled;
        JobResult cancelled;
        cancelled.status = JobStatus::Cancelled;
        cancelled.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        return cancelled;
    }
    ++stats_.jobs;
    result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return result;
}

GenerationRequest Session::plannable(const Request& request) const {
    Request r = request;
    r.output_path.clear();  // a plan writes nothing
    check(r);
    GenerationRequest job = r.generation;
    job.params.activations = activation_dtype();
    // Pixel values do not change a plan: an I2V plan needs only the image's size, not the image.
    if (job.params.task == Task::I2V && !job.image.defined())
        job.image = Tensor::zeros({3, job.params.height, job.params.width}, DType::F32);
    pipe_->check_request(job);
    return job;
}

MemoryPlan Session::plan(const Request& request) {
    std::lock_guard<std::mutex> lock(mutex_);
    std::optional<LogScope> log;
    if (const auto level = level_for(&request)) log.emplace(*level);
    GenerationRequest job = plannable(request);
    job.adapters = job_adapters(request);  // uploaded for the denoising loop: the plan counts them
    choose_cfg_rows(job);
    if (!options_.world || options_.world->size() == 1)
        return plan_memory(*pipe_, job, memory_for(job), target_, /*require_fit=*/false);
    // This rank's place in the mesh, on communicators that move nothing: the plan needs the shapes only.
    const int P = options_.world->size(), w = options_.world->rank();
    const MeshShape m = choose_mesh(P, parse_mesh_spec(options_.parallel), job.params.do_cfg(),
                                    pipe_->components().transformer->config().num_attention_heads);
    PlanningCommunicator world(w, P), cfg(w / m.ulysses, m.cfg), sequence(w % m.ulysses, m.ulysses);
    const ParallelGroups groups{
        .world = &world, .cfg = m.cfg > 1 ? &cfg : nullptr, .sequence = m.ulysses > 1 ? &sequence : nullptr};
    return plan_memory(*pipe_, job, memory_for(job), target_, /*require_fit=*/false, groups);
}

void Session::choose_default_budget() {
    if (memory_.vram_budget != 0 || !(options_.device == "sim" || is_cuda_device(options_.device))) return;
    if (options_.device == "sim") {
        memory_.vram_budget = default_device_budget(options_.sim_memory_bytes, options_.sim_memory_bytes);
        budget_note_ = fmt::format("default: the simulated device's {} ({}); --sim-memory sets its size",
                                   format_bytes(double(options_.sim_memory_bytes)), default_budget_rule());
        return;
    }
    const GpuProbe probe = probe_gpus();
    const int index = cuda_device_index(options_.device);
    for (const GpuInfo& g : probe.gpus)
        if (g.index == index && g.free_bytes > 0) {
            memory_.vram_budget = default_device_budget(g.total_bytes, g.free_bytes);
            budget_note_ = fmt::format("default: {} has {} free of {}; {}", g.name, format_bytes(double(g.free_bytes)),
                                       format_bytes(double(g.total_bytes)), default_budget_rule());
            return;
        }
    budget_note_ = "unlimited: no GPU to ask for its free memory here (" + probe.why_none + "); give --vram-budget";
}

const std::string& Session::model_fingerprint() {
    if (!model_fingerprint_.empty()) return model_fingerprint_;
    if (options_.demo) {
        const DemoTransformerSize& d = options_.demo_transformer;
        model_fingerprint_ = fmt::format("demo:{}:{}x{}:{}+{}", options_.demo_task == Task::I2V ? "i2v" : "t2v",
                                         d.heads, d.head_dim, d.dual_blocks, d.single_blocks);
    } else {
        std::vector<std::string> paths{options_.model};
        if (!options_.base.empty() && options_.base != options_.model) paths.push_back(options_.base);
        model_fingerprint_ = sr::model_fingerprint(paths);
    }
    return model_fingerprint_;
}

void Session::choose_cfg_rows(GenerationRequest& job) {
    GenerationParams& p = job.params;
    // In a parallel run the mesh decides where the rows go; without a budget everything fits.
    if (!p.do_cfg() || p.sequence_batch || memory_.vram_budget == 0) return;
    if (options_.world && options_.world->size() > 1) return;
    const MemoryOptions saved = memory_;  // memory_for settles the offload mode: settle it for the chosen rows
    if (plan_memory(*pipe_, job, memory_for(job), target_, /*require_fit=*/false).fits()) return;
    GenerationRequest rows = job;
    rows.params.sequence_batch = true;
    memory_ = saved;
    if (!plan_memory(*pipe_, rows, memory_for(rows), target_, /*require_fit=*/false).fits()) {
        memory_ = saved;
        return;  // neither fits: the plan says by how much, with --sequence-batch as a hint
    }
    memory_ = saved;
    p.sequence_batch = true;
    SR_LOG_INFO(
        "the two guidance rows do not fit side by side in --vram-budget {}: running them one after the "
        "other through each transformer block (--sequence-batch)",
        format_bytes(double(memory_.vram_budget)));
}

MemoryOptions Session::memory_for(const GenerationRequest& job) {
    if (!options_.offload_auto) return memory_;
    // The cheapest mode in transfers that fits: everything resident, then one model at a time, then streaming.
    for (OffloadMode mode : {OffloadMode::None, OffloadMode::Model, OffloadMode::Block}) {
        MemoryOptions m = memory_;
        m.offload = mode;
        if (plan_memory(*pipe_, job, m, target_, /*require_fit=*/false).fits()) {
            memory_.offload = mode;
            return m;
        }
    }
    memory_.offload = OffloadMode::Block;  // nothing fits: the plan or the run says by how much
    return memory_;
}

std::string Session::smallest_budgets(const Request& request) {
    std::lock_guard<std::mutex> lock(mutex_);
    GenerationRequest job = plannable(request);
    // Under a budget too small for the two CFG rows side by side the session runs them one at a time
    // (choose_cfg_rows): the smallest budget is theirs.
    if (job.params.do_cfg() && !(options_.world && options_.world->size() > 1)) job.params.sequence_batch = true;
    std::string out = "smallest --vram-budget that fits this job:\n";
    size_t model_peak = 0;
    for (OffloadMode mode : {OffloadMode::None, OffloadMode::Model, OffloadMode::Block}) {
        MemoryOptions m = memory_;
        m.offload = mode;
        m.vram_budget = 0;  // unlimited: what the mode needs
        const size_t peak = plan_memory(*pipe_, job, m, target_, false).device_peak();
        size_t need = peak;
        if (mode == OffloadMode::Model) model_peak = peak;
        if (mode == OffloadMode::Block) {
            // Streaming needs less the smaller the budget lets it keep: search the smallest budget that fits,
            // to 1 MiB, between nothing and what offloading whole models needs.
            size_t lo = 0, hi = std::max(model_peak, peak);
            while (hi - lo > (size_t(1) << 20)) {
                m.vram_budget = lo + (hi - lo) / 2;
                if (plan_memory(*pipe_, job, m, target_, false).fits())
                    hi = m.vram_budget;
                else
                    lo = m.vram_budget;
            }
            need = hi;
        }
        out += fmt::format("  --offload {:<6} {}\n", offload_mode_name(mode), format_bytes(double(need)));
    }
    return out;
}

}  // namespace sr
