// A Session owns what outlives one video: the device (the CPU, the simulated accelerator or a CUDA GPU), the
// loaded models (loaded once; every job reuses them, their weights memory-mapped from the checkpoint), and
// the settings every job runs with (precision, offload, budgets, host memory, log level). A job is one
// Request with callbacks: Session::generate validates the request before any work, reports progress (stage,
// step, ETA, memory) to a listener, stops between denoising steps and between decoded chunks when the cancel
// callback says so (a cancelled job leaves no output file), writes the video under a temporary name that
// becomes the output only when complete, and returns the memory report. The CLI (`skyreels generate`) and
// the C API (include/skyreels.h) are front ends on it.
//
//   sr::Session session({.model = "SkyReels-V1-Hunyuan-T2V", .base = "HunyuanVideo", .device = "sim"});
//   sr::Request req;
//   req.generation.prompt = "FPS-24, A cat walks on the grass";
//   req.generation.params = session.default_params(sr::Task::T2V);
//   req.output_path = "cat.mp4";
//   sr::JobResult r = session.generate(req, {.progress = [](const sr::ProgressEvent& e) { /* e.stage, e.done */ },
//                                            .cancel = [&] { return stop_requested.load(); }});
//   if (r.status == sr::JobStatus::Cancelled) { /* no cat.mp4 */ }
//
// One job runs at a time (generate and plan lock the session); the session is not copyable.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "backends/cpu/cpu_backend.h"
#include "core/log.h"
#include "core/virtual_allocator.h"
#include "pipeline/demo_model.h"
#include "pipeline/device_run.h"
#include "pipeline/latent_preview.h"
#include "pipeline/progress.h"
#include "runtime/nccl_communicator.h"
#include "runtime/parallel_mesh.h"

namespace sr {

struct SessionOptions {
    // The models: a SkyReels transformer folder and the HunyuanVideo folder (PipelineLoadOptions), or the
    // built-in random-weight demo model for demo_task (pipeline/demo_model.h).
    std::string model, base;
    bool demo = false;
    Task demo_task = Task::T2V;
    DemoTransformerSize demo_transformer;  // larger: the transformer dominates memory, as at real size
    // SkyReels' --quant: the transformer's and the Llama encoder's linear weights in FP8 (torchao's rule).
    LinearQuant quant = LinearQuant::None;
    // --lora FILE[:STRENGTH] (in order), --lora-mode, --lora-ignore-unmatched: adapters on the transformer,
    // applied once at load for every job of the session (models/hunyuan_video_lora.h).
    LoraOptions lora;
    // Where jobs run: "cpu", "sim" (a simulated accelerator on the CPU: budgets, streaming) or "cuda[:N]".
    std::string device = "cpu";
    // --precision: GEMMs with bf16 weights (and attention on CUDA) and the transformer's activations (bf16:
    // its residual streams and big temporaries stored in bf16, GenerationParams::activations); nullopt: f32 on
    // cpu and sim, bf16 on cuda.
    std::optional<GemmPrecision> precision;
    // Offload mode, device budget (also the simulated device's memory), host memory mode, prefetch. The cpu
    // device runs every model where it was loaded and ignores them.
    MemoryOptions memory;
    double sim_bandwidth_gbs = 25.0;  // "sim": host-to-device GB/s from pinned memory (pageable: half)
    // "sim": the simulated device's memory, from which the default budget is taken as from a GPU's free memory.
    size_t sim_memory_bytes = size_t(24) << 30;
    // --offload auto: per job, the first of none, model and block (the cheapest in transfers) whose plan fits.
    bool offload_auto = false;
    // Bind every weight to address space only (no weight is read, no GPU is needed): plan() works,
    // generate() is refused. What `generate --dry-run` uses.
    bool planning_only = false;
    // The log level of the load and of every job on the thread that runs them (a Request may override it);
    // nullopt: the process's (core/log.h).
    std::optional<LogLevel> log_level;
    // A parallel run (runtime/mpi_communicator.h): every rank of `world` makes a Session with the same options
    // and runs the same jobs; each job is split over the mesh `parallel` ("cfg=2,ulysses=4"; "": chosen per
    // job, runtime/parallel_mesh.h). Only world rank 0 writes files. null: this process alone.
    MpiCommunicator* world = nullptr;
    std::string parallel;
};

struct Request {
    // Prompt, negative prompt, task, size, frames, steps, guidance, seed, sequence batch, VAE tiling, and
    // optional precomputed inputs (token ids for models without tokenizers, latents, an image tensor).
    GenerationRequest generation;
    // I2V: the input image, a PNG or JPEG, resize-cropped to the video size as SkyReels does (or give
    // generation.image). A demo session without either uses a colour gradient.
    std::string image_path;
    // The video (.mp4, .mov or .mkv); written as "<path>.XXXXXX.partial" (unique, created exclusively)
    // and renamed when complete. "": no file (the frames still go to JobCallbacks::frames).
    std::string output_path;
    int fps = 24, crf = 18;
    std::string png_dir;  // also every frame as PNG here
    // Denoising checkpoints (pipeline/checkpoint.h): every `checkpoint_every` steps the latents and what a
    // resumed run needs go to `checkpoint_path` (replaced atomically; removed when the video is complete).
    // `resume_path`: continue from such a checkpoint (refused, with the reason, when it is from other model
    // files or parameters); the video is bit-identical to an uninterrupted run's. With `restart_if_refused`, a
    // checkpoint that is refused (or missing) is a warning naming the reason and the job starts from its first
    // step (a server's interrupted job: a restart with other weights must not fail it).
    int checkpoint_every = 0;
    std::string checkpoint_path;
    std::string resume_path;
    bool restart_if_refused = false;
    // A look at the video while it forms (pipeline/latent_preview.h): after every `preview_every` steps and after
    // the last, the step's denoised estimate through HunyuanVideo's latent-to-RGB map (no VAE) goes to
    // `preview_path` (a folder of frame_NNNNN.png, or with a .png name one contact sheet; replaced atomically:
    // pipeline/preview_files.h) and to JobCallbacks::preview. "" and no callback: no preview is made.
    std::string preview_path;
    int preview_every = 5;
    std::optional<LogLevel> log_level;  // overrides the session's for this job
    // This job's LoRA adapters on the transformer, in order, on top of the session's (SessionOptions::lora):
    // runtime side paths for this job only. The loaded model is neither reloaded nor changed, and the next
    // job runs without them (also after an error or a cancel). A file is read once and kept while its size
    // and modification time stay the same.
    std::vector<LoraFile> loras;
    bool lora_ignore_unmatched = false;  // keys that match no layer: a warning with the count, not an error
};

enum class JobStatus { Ok, Cancelled };

struct JobCallbacks {
    ProgressListener progress = {};     // every progress report of the job, from the thread that runs it
    std::function<bool()> cancel = {};  // polled after each report: true stops the job there
    FrameSink frames = {};              // decoded frames [1, 3, n, H, W] as they come (valid during the call)
    PipelineHook hook = {};             // named intermediates (pipeline.h)
    // The preview after the steps Request::preview_every chooses: frames as 8-bit RGB with their size and step
    // (valid during the call; every rank of a parallel run gets it).
    std::function<void(const PreviewFrames&)> preview = {};
};

struct JobResult {
    JobStatus status = JobStatus::Ok;
    std::string output_path;  // the file written ("" when none, or cancelled)
    int64_t frames_written = 0;
    Tensor latents;  // the final latents [1, 16, T, h, w] (undefined when cancelled)
    // On an accelerator: the memory plan and what was measured (pipeline/device_run.h).
    std::optional<DeviceRunReport> device_report;
    std::string memory_report;  // the report as `--memory-report` prints it (device, or host memory on the cpu)
    double seconds = 0;
    // With a step cache (GenerationParams::cache): its summary line (passes skipped, accumulated estimate).
    std::string step_cache;
    int passes_skipped = 0;
};

struct SessionStats {
    int pipeline_loads = 0;       // model folders loaded (a session loads once; the demo is built, not loaded)
    size_t checkpoint_bytes = 0;  // the checkpoint files the loads opened (mapped; read as the weights are used)
    std::vector<std::string> checkpoint_files;
    int jobs = 0, jobs_cancelled = 0;  // finished and cancelled jobs
};

class Session {
public:
    // Checks the options, makes the device and loads the models (Stage::Loading events to `load_progress`).
    // InputError naming the option or file at fault.
    explicit Session(SessionOptions options, const ProgressListener& load_progress = {});
    ~Session();
    Session(const Session&) = delete;
    Session& operator=(const Session&) = delete;

    // What can be checked without loading anything; InputError naming the option, flag or file. The
    // constructor and generate() run them; front ends may call them first to fail before a load.
    static void check(const SessionOptions& options);
    static void check(const Request& request);

    // Runs one job. InputError (nothing written) for a bad request; JobStatus::Cancelled when `cancel` said so.
    JobResult generate(const Request& request, const JobCallbacks& callbacks = {});
    // The memory plan of `request` on this session's device, made without running it (pipeline/memory_plan.h).
    // A plan that does not fit the budget is returned too, its shortfalls listed (MemoryPlan::fits()). In a
    // parallel run, this rank's plan: its guidance row and share of the tokens.
    MemoryPlan plan(const Request& request);

    // The video settings a request starts from: the demo's small ones for a demo session, else the reference's.
    GenerationParams default_params(Task task) const;
    Task task() const { return pipe_->native_task(); }
    const SkyReelsPipeline& pipeline() const { return *pipe_; }
    const SessionOptions& options() const { return options_; }
    const SessionStats& stats() const { return stats_; }
    std::string device_name() const;
    // The accelerator's memory (nullptr on the cpu device or when planning only for cuda).
    const Allocator* device_memory() const;
    // The memory settings jobs run with: the options', with the budget filled in when none was given (the
    // device's free memory less a margin: runtime/gpu_probe.h; the simulated device's configured size) and, for
    // --offload auto, the mode the last plan or job chose.
    const MemoryOptions& memory_options() const { return memory_; }
    // Where the budget came from, for the plan's header: "" when given, else the default's rule and figures.
    const std::string& budget_note() const { return budget_note_; }
    // The smallest --vram-budget that fits `request` under each offload mode, as lines for --dry-run.
    std::string smallest_budgets(const Request& request);

private:
    GenerationRequest prepare(const Request& request) const;
    // The transformer's activation dtype under this session's precision (bf16 with --precision bf16).
    DType activation_dtype() const { return precision_ == GemmPrecision::BF16 ? DType::BF16 : DType::F32; }
    GenerationRequest plannable(const Request& request) const;  // checked, with a stand-in image for I2V
    // The memory options for `job`: memory_ with --offload auto resolved by planning each mode.
    MemoryOptions memory_for(const GenerationRequest& job);
    // Turns on sequence_batch (the CFG rows one at a time through each resident block) when the batched rows
    // do not fit the budget and one row at a time does: the same video in less memory.
    void choose_cfg_rows(GenerationRequest& job);
    // The fingerprint of the loaded model files (pipeline/checkpoint.h), computed once.
    const std::string& model_fingerprint();
    std::string model_fingerprint_;
    void choose_default_budget();
    // What made a video (prompt, seed, steps, guidance, size, model, engine version), for its metadata.
    std::vector<std::pair<std::string, std::string>> video_metadata(const GenerationRequest& job,
                                                                    const std::vector<LoraFile>& job_loras) const;
    // The adapters of `request` (Request::loras) read onto the transformer, through the cache; null when none.
    std::shared_ptr<const LoraSet> job_adapters(const Request& request);
    // Adapter files read for jobs, by path, strength and ignore flag, with the size and modification time they
    // had; the oldest goes beyond kLoraCacheEntries.
    struct CachedLora {
        std::string key;
        uintmax_t size = 0;
        int64_t mtime = 0;
        std::shared_ptr<const LoraSet> set;
    };
    static constexpr size_t kLoraCacheEntries = 8;
    std::vector<CachedLora> lora_cache_;
    std::optional<LogLevel> level_for(const Request* request) const;
    // The mesh for `job` (none: one process), made on first use and kept, and its groups: on CUDA the Ulysses
    // group moves device memory through NCCL.
    const ParallelMesh* mesh_for(const GenerationRequest& job);
    ParallelGroups groups_for(const GenerationRequest& job);
    bool is_root() const { return !options_.world || options_.world->rank() == 0; }

    SessionOptions options_;
    GemmPrecision precision_ = GemmPrecision::F32;
    SessionStats stats_;
    size_t host_baseline_anon_ = 0;
    MemoryOptions memory_;
    std::string budget_note_;
    CpuBackend cpu_;  // the cpu device's backend, with this session's precision
    std::unique_ptr<Accelerator> device_;
    PlanTarget target_{0, Device::cpu(), 0};
    std::unique_ptr<VirtualAllocator> planning_space_;  // planning_only: where the weights are "bound"
    std::optional<SkyReelsPipeline> pipe_;
    // The models' placement on the device, kept from job to job (after pipe_ and device_, so it goes first):
    // with --offload none the weights are uploaded once, not once per video.
    std::unique_ptr<DevicePlacement> placement_;
    std::map<std::string, std::unique_ptr<ParallelMesh>> meshes_;
    std::map<std::string, std::unique_ptr<NcclCommunicator>> nccl_;  // per mesh, its Ulysses group on CUDA
    std::mutex mutex_;
};

// --device's values: "cuda" or "cuda:N".
bool is_cuda_device(const std::string& device);

}  // namespace sr
