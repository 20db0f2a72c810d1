// `skyreels generate`: prompt (or image) in, MP4 out; a thin front end on sr::Session (pipeline/session.h).
// Accepts the flags of SkyReels-V1's video_generate.py under their original spellings as aliases (--offload ->
// --offload model, --parameters_level -> --offload block, --high_cpu_memory -> --host-memory pinned); the ones
// we do not implement yet are refused, not ignored. Flags become SessionOptions and one Request per video;
// everything a user can get wrong is checked before any model is loaded, the models are loaded once for all
// --video-num videos, and each video is written to a temporary name that only becomes the output when it is
// complete.
#include <charconv>
#include <cstdio>
#include <filesystem>
#include <random>

#include "core/error.h"
#include "core/log.h"
#include "pipeline/demo_model.h"
#include "pipeline/session.h"
#include "tools/skyreels/commands.h"

namespace fs = std::filesystem;

namespace sr::cli {

namespace {

struct GenerateOptions {
    std::string model, base, task = "t2v", image, out, outdir, png_dir;
    std::string prompt = "FPS-24, A 3D model of a 1800s victorian house.";
    std::string negative_prompt = kSkyReelsNegativePrompt;
    int64_t height = 544, width = 960, frames = 97;
    int steps = 30, fps = 24, video_num = 1, crf = 18, gpu_num = 1;
    double guidance = 6.0, embedded_guidance = 1.0;
    std::string seed = "42";  // parsed here: CLI11 clamps integers past INT64_MAX instead of refusing them
    bool sequence_batch = false, demo = false, quiet = false;
    bool high_cpu_memory = false, parameters_level = false, compiler_transformer = false;
    std::string quant;  // "" (not given), "fp8" (also the bare --quant, as SkyReels spells it) or "none"
    // Memory: where the models run and how their weights get there.
    std::string device = "cpu", offload, host_memory, vram_budget, pinned_budget, precision;
    int prefetch = 1;
    double sim_bandwidth_gbs = 25.0;
    bool dry_run = false, memory_report = false;
    CLI::App* cmd = nullptr;
    bool given(const char* name) const { return cmd->count(name) > 0; }
};

// The output file of video `index`: --out (with _<index> before the extension when several), or SkyReels'
// naming under --outdir: "<prompt[:100] without '/'>_<seed>_<index>.mp4".
std::string output_path(const GenerateOptions& o, int index, uint64_t seed) {
    if (!o.outdir.empty()) {
        std::string stem = o.prompt.substr(0, 100);
        std::erase(stem, '/');
        return (fs::path(o.outdir) / fmt::format("{}_{}_{}.mp4", stem, seed, index)).string();
    }
    const fs::path out = o.out.empty() ? fs::path("skyreels.mp4") : fs::path(o.out);
    if (o.video_num == 1) return out.string();
    return (out.parent_path() / fmt::format("{}_{}{}", out.stem().string(), index, out.extension().string())).string();
}

// --offload/--vram-budget/--host-memory/... with SkyReels' spellings mapped on, checked against --device.
MemoryOptions memory_options(const GenerateOptions& o) {
    MemoryOptions m;
    std::string offload = o.offload;
    if (o.given("--offload") && offload.empty()) offload = "model";  // SkyReels' bare --offload
    if (o.parameters_level) {
        SR_THROW_IF(!offload.empty() && offload != "block",
                    "--parameters_level means --offload block, not --offload {}", offload);
        offload = "block";
    }
    if (!offload.empty()) m.offload = parse_offload_mode(offload, "--offload");
    std::string host = o.host_memory;
    if (o.high_cpu_memory) {
        SR_THROW_IF(!host.empty() && host != "pinned", "--high_cpu_memory means --host-memory pinned, not {}", host);
        host = "pinned";
    }
    if (!host.empty()) m.host_memory = parse_host_memory_mode(host, "--host-memory");
    if (!o.vram_budget.empty()) m.vram_budget = parse_bytes(o.vram_budget, "--vram-budget");
    if (!o.pinned_budget.empty()) m.pinned_budget = parse_bytes(o.pinned_budget, "--pinned-budget");
    SR_THROW_IF(o.given("--vram-budget") && m.vram_budget == 0, "--vram-budget {}: must be more than zero",
                o.vram_budget);
    // 0 is refused rather than read as "no limit" (leave the flag out for that) or "no page-locked memory" (the
    // staging ring needs some; --host-memory mmap or pageable pin no weights).
    SR_THROW_IF(o.given("--pinned-budget") && m.pinned_budget == 0,
                "--pinned-budget {}: must be more than zero (leave it out for no limit; --host-memory mmap pins only "
                "the staging ring)",
                o.pinned_budget);
    m.prefetch = o.prefetch;
    if (o.device == "cpu") {
        // The CPU runs every model where it was loaded: there is no device memory to budget or stream into.
        for (const char* flag : {"--offload", "--vram-budget", "--host-memory", "--pinned-budget", "--prefetch",
                                 "--parameters_level", "--high_cpu_memory"})
            SR_THROW_IF(o.given(flag),
                        "{} needs an accelerator: add --device sim (simulated, on the CPU) or --device cuda", flag);
    }
    SR_THROW_IF(o.given("--pinned-budget") && m.host_memory != HostMemoryMode::Pinned,
                "--pinned-budget needs --host-memory pinned");
    return m;
}

// The flags that choose the models, the device and the memory settings; checked (Session::check).
SessionOptions session_options(const GenerateOptions& o, Task task) {
    SessionOptions s;
    s.model = o.model;
    s.base = o.base;
    s.demo = o.demo;
    s.demo_task = task;
    s.device = o.device;
    s.memory = memory_options(o);
    s.sim_bandwidth_gbs = o.sim_bandwidth_gbs;
    s.planning_only = o.dry_run;
    const std::string quant = o.given("--quant") && o.quant.empty() ? "fp8" : o.quant;  // SkyReels' bare --quant
    SR_THROW_IF(!quant.empty() && quant != "fp8" && quant != "none", "--quant {}: expected fp8 or none", quant);
    if (quant == "fp8") s.quant = LinearQuant::Float8WeightOnly;
    // --precision: how GEMMs with bf16 weights (and, on CUDA, attention) compute. Default: f32 on the CPU,
    // whose bf16 speed depends on the processor, and bf16 on CUDA, as the reference runs on a GPU.
    if (!o.precision.empty()) {
        SR_THROW_IF(o.precision != "f32" && o.precision != "bf16", "--precision {}: expected f32 or bf16", o.precision);
        s.precision = o.precision == "bf16" ? GemmPrecision::BF16 : GemmPrecision::F32;
    }
    Session::check(s);
    return s;
}

// One request per video (seed + i, its own output file), checked (Session::check).
std::vector<Request> requests(GenerateOptions& o, Task task) {
    if (o.demo) {
        // The demo model's small defaults, unless set on the command line.
        const GenerationParams d = demo_params(task);
        if (!o.given("--height")) o.height = d.height;
        if (!o.given("--width")) o.width = d.width;
        if (!o.given("--frames")) o.frames = d.num_frames;
        if (!o.given("--steps")) o.steps = d.num_inference_steps;
    }
    SR_THROW_IF(o.video_num < 1 || o.video_num > 1000, "--video-num {}: must be in 1..1000", o.video_num);
    int64_t given_seed = 0;
    const auto [end, err] = std::from_chars(o.seed.data(), o.seed.data() + o.seed.size(), given_seed);
    SR_THROW_IF(err != std::errc() || end != o.seed.data() + o.seed.size() || given_seed < -1,
                "--seed {}: must be an integer in 0..9223372036854775807 (or -1 for a random seed)", o.seed);
    uint64_t seed = uint64_t(given_seed);
    if (given_seed == -1) seed = std::random_device{}() & 0xffffffffu;  // as video_generate.py: a random seed
    std::vector<Request> out;
    for (int i = 0; i < o.video_num; ++i) {
        Request r;
        GenerationParams& p = r.generation.params;
        p.task = task;
        p.height = o.height;
        p.width = o.width;
        p.num_frames = o.frames;
        p.num_inference_steps = o.steps;
        p.guidance_scale = o.guidance;
        p.embedded_guidance_scale = o.embedded_guidance;
        p.sequence_batch = o.sequence_batch;
        p.seed = seed + uint64_t(i);
        r.generation.prompt = o.prompt;
        r.generation.negative_prompt = o.negative_prompt;
        r.fps = o.fps;
        r.crf = o.crf;
        if (!o.png_dir.empty()) r.png_dir = o.video_num == 1 ? o.png_dir : fmt::format("{}/{}", o.png_dir, i);
        if (!o.dry_run) r.output_path = output_path(o, i, p.seed);
        // The image is the same for every video: decode it once here.
        Request checked = r;
        if (i == 0) checked.image_path = o.image;
        Session::check(checked);
        r.image_path = o.image;
        out.push_back(std::move(r));
    }
    return out;
}

int run_generate(GenerateOptions& o) {
    // Flags of video_generate.py that select machinery we do not have yet: refuse rather than ignore.
    const std::pair<bool, const char*> refused[] = {{o.compiler_transformer, "--compiler_transformer"},
                                                    {o.gpu_num != 1, "--gpu_num other than 1 (multi-GPU parallelism)"}};
    for (const auto& [set, what] : refused) SR_THROW_IF(set, "{} is not implemented yet in skyreels.cpp", what);
    SR_THROW_IF(o.task != "t2v" && o.task != "i2v", "--task {}: must be t2v or i2v", o.task);
    const Task task = o.task == "i2v" ? Task::I2V : Task::T2V;
    const std::vector<Request> jobs = requests(o, task);
    SR_THROW_IF(!o.demo && o.model.empty(), "--model is required (a SkyReels-V1 folder), or --demo");
    SR_THROW_IF(!o.demo && task == Task::I2V && o.image.empty(), "--task i2v needs --image (a PNG or JPEG)");
    if (o.prompt.rfind("FPS-24, ", 0) != 0)
        SR_LOG_WARN("the prompt does not start with \"FPS-24, \": SkyReels-V1 was trained with that prefix");
    const SessionOptions options = session_options(o, task);

    Progress progress(!o.quiet && Progress::is_terminal(), !o.quiet);
    if (o.demo && !o.quiet)
        std::fprintf(stderr,
                     "skyreels: --demo runs a tiny model with RANDOM weights: the video is noise, not a picture. It "
                     "shows the whole path (tokenizers, text encoders, transformer with CFG, VAE, MP4) working.\n"
                     "          For real videos, point it at real weights: --model SkyReels-V1-Hunyuan-%s --base "
                     "HunyuanVideo (the folder with text_encoder/, tokenizer/, vae/, scheduler/).\n",
                     task == Task::I2V ? "I2V" : "T2V");
    // --dry-run binds every weight to address space only: the plan comes before any weight is read.
    Session session(options, progress.listener());
    progress.show_device_memory(session.device_memory());
    if (o.dry_run) {
        const MemoryPlan plan = session.plan(jobs[0]);
        std::printf("%s", plan.format(options.memory, session.device_name()).c_str());
        // The plan is printed either way; one that does not fit is still an error (exit 1) for scripts.
        if (!plan.fits()) throw OutOfMemoryError(plan.shortfalls.front());
        return 0;
    }
    for (const Request& job : jobs) {
        const JobResult r = session.generate(job, {.progress = progress.listener()});
        if (o.memory_report) std::fprintf(stderr, "%s", r.memory_report.c_str());
        if (!o.quiet)
            std::fprintf(stderr, "skyreels: wrote %s (%ld frames at %d fps)\n", r.output_path.c_str(),
                         long(r.frames_written), job.fps);
        std::printf("%s\n", r.output_path.c_str());
    }
    progress.finish();
    return 0;
}

}  // namespace

Command add_generate_command(CLI::App& app) {
    auto o = std::make_shared<GenerateOptions>();
    CLI::App* cmd =
        app.add_subcommand("generate", "Generate a video from a prompt (t2v) or a prompt and an image (i2v)");
    o->cmd = cmd;
    cmd->add_option("--model,--model_id", o->model,
                    "SkyReels-V1 transformer folder, or a full diffusers pipeline folder (model_index.json)");
    cmd->add_option("--base", o->base, "HunyuanVideo folder: text encoders, tokenizers, VAE, scheduler");
    cmd->add_option("--task,--task_type", o->task, "t2v or i2v")->capture_default_str();
    cmd->add_option("--image", o->image, "Input image for i2v (PNG or JPEG)");
    cmd->add_option("--prompt", o->prompt, "Prompt (SkyReels expects the \"FPS-24, \" prefix)")->capture_default_str();
    cmd->add_option("--negative-prompt,--negative_prompt", o->negative_prompt, "Negative prompt (SkyReels' default)");
    cmd->add_option("--height", o->height, "Height in pixels (multiple of 16)")->capture_default_str();
    cmd->add_option("--width", o->width, "Width in pixels (multiple of 16)")->capture_default_str();
    cmd->add_option("--frames,--num_frames", o->frames, "Frames (4k+1)")->capture_default_str();
    cmd->add_option("--steps,--num_inference_steps", o->steps, "Denoising steps")->capture_default_str();
    cmd->add_option("--guidance,--guidance_scale", o->guidance, "True CFG scale (> 1: with the negative prompt)")
        ->capture_default_str();
    cmd->add_option("--embedded-guidance,--embedded_guidance_scale", o->embedded_guidance,
                    "Embedded guidance scale (the transformer's guidance input / 1000)")
        ->capture_default_str();
    cmd->add_option("--seed", o->seed, "Seed (-1: random); video i uses seed + i")->capture_default_str();
    cmd->add_option("--fps", o->fps, "Frames per second of the MP4")->capture_default_str();
    cmd->add_option("--video-num,--video_num", o->video_num, "Videos to generate")->capture_default_str();
    cmd->add_option("--out,-o", o->out, "Output file (.mp4); default skyreels.mp4");
    cmd->add_option("--outdir", o->outdir, "Output folder, with SkyReels' file naming (instead of --out)");
    cmd->add_option("--png-dir", o->png_dir,
                    "Also write every frame as PNG into this folder (must be new or empty: a non-empty folder is "
                    "refused; the frames appear there only when the video is finished)");
    cmd->add_option("--crf", o->crf, "x264 quality (0 lossless .. 51)")->capture_default_str();
    cmd->add_flag("--sequence-batch,--sequence_batch", o->sequence_batch,
                  "Run the CFG rows one after the other (same result, half the activation memory)");
    cmd->add_flag("--demo", o->demo, "Run a tiny built-in random-weight model (no files needed)");
    cmd->add_flag("--quiet,-q", o->quiet, "No progress line and no summary");
    cmd->add_option("--quant", o->quant,
                    "fp8 (also bare --quant, as SkyReels): the transformer's and the text encoder's linear weights in "
                    "FP8 e4m3 with a scale per row, as SkyReels' --quant (torchao float8_weight_only); none: as stored")
        ->expected(0, 1);
    cmd->add_option("--device", o->device,
                    "cpu, sim (a simulated accelerator on the CPU: budgets, streaming) or cuda[:N]")
        ->capture_default_str();
    cmd->add_option("--precision", o->precision,
                    "f32 or bf16: arithmetic of GEMMs with bf16 weights (and attention on CUDA); default f32 on "
                    "cpu/sim, bf16 on cuda");
    cmd->add_option("--offload", o->offload,
                    "none: every model on the device; model: only the one in use (bare --offload, as SkyReels); "
                    "block: also stream weights in blocks within --vram-budget")
        ->expected(0, 1);
    cmd->add_option("--vram-budget", o->vram_budget,
                    "Device memory for weights and activations, e.g. 12G (hard limit)");
    cmd->add_option(
        "--host-memory", o->host_memory,
        "Where streamed weights wait: pinned, pageable or mmap (page cache + a small pinned ring; default)");
    cmd->add_option(
        "--pinned-budget", o->pinned_budget,
        "With --host-memory pinned: at most this much page-locked, the staging ring included (more than 0)");
    cmd->add_option("--prefetch", o->prefetch, "Streamed blocks copied ahead of compute")->capture_default_str();
    cmd->add_option("--sim-bandwidth", o->sim_bandwidth_gbs, "--device sim: host-to-device GB/s from pinned memory")
        ->capture_default_str();
    cmd->add_flag("--dry-run", o->dry_run, "Print the memory plan (device peak per stage, host memory) and stop");
    cmd->add_flag("--memory-report", o->memory_report, "Print measured memory and copy figures after each video");
    cmd->add_flag("--high_cpu_memory", o->high_cpu_memory, "SkyReels' spelling of --host-memory pinned");
    cmd->add_flag("--parameters_level", o->parameters_level, "SkyReels' spelling of --offload block");
    cmd->add_flag("--compiler_transformer", o->compiler_transformer, "(not implemented yet: refused)");
    cmd->add_option("--gpu_num", o->gpu_num, "(only 1 is implemented)");
    cmd->get_option("--out")->excludes(cmd->get_option("--outdir"));
    return [o] { return run_generate(*o); };
}

}  // namespace sr::cli
