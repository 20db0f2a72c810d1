// `skyreels generate`: prompt (or image) in, MP4 out; a thin front end on sr::Session (pipeline/session.h).
// Accepts the flags of SkyReels-V1's video_generate.py under their original spellings, with their meaning
// (bare --offload -> --offload model, refined by --parameters_level to --offload block; --high_cpu_memory ->
// --host-memory pinned; --quant -> fp8); the ones we do not implement yet are refused, not ignored. Every
// conflict between flags is reported at once, and everything a user can get wrong (flags, prompts, images,
// output paths) is checked before any model is loaded; the models are loaded once for all videos, and each
// video is written to a temporary name that only becomes the output when it is complete.
#include <charconv>
#include <cstdio>
#include <filesystem>
#include <map>
#include <random>

#include "core/build_info.h"
#include "core/error.h"
#include "core/log.h"
#include "core/parallel.h"
#include "io/hf_cache.h"
#include "io/json.h"
#include "models/hunyuan_video_checkpoint.h"
#include "pipeline/demo_model.h"
#include "pipeline/preview_files.h"
#include "pipeline/session.h"
#include "runtime/gpu_probe.h"
#include "runtime/mpi_communicator.h"
#include "runtime/parallel_mesh.h"
#include "text/bpe_tokenizer.h"
#include "tools/skyreels/commands.h"
#include "tools/skyreels/output_names.h"
#include "tools/skyreels/prompt_file.h"
#include "tools/skyreels/relaunch.h"
#include "tools/skyreels/session_flags.h"

namespace fs = std::filesystem;

namespace sr::cli {

namespace {

// The session's flags (models, device, memory: session_flags.h) and the job's.
struct GenerateOptions : SessionFlags {
    std::string task, image, out, outdir, png_dir, prompt_file;
    std::string prompt = "FPS-24, A 3D model of a 1800s victorian house.";
    std::string negative_prompt = kSkyReelsNegativePrompt;
    int64_t height = 544, width = 960, frames = 97;
    int steps = 30, fps = 24, video_num = 1, crf = 18;
    double guidance = 6.0, embedded_guidance = 1.0;
    std::string seed = "42";  // parsed here: CLI11 clamps integers past INT64_MAX instead of refusing them
    bool sequence_batch = false, cfg_whole_passes = false, quiet = false, json = false, no_overwrite = false;
    bool dry_run = false, memory_report = false;
    std::string parallel;  // --parallel cfg=N,ulysses=M
    int checkpoint_every = 0;
    std::string resume;
    std::string cache = "none";  // --cache teacache:THRESH | fbcache:THRESH
    std::string preview;
    int preview_every = 5;
};

// Every conflict and bad value among the flags, all at once (a user fixing a SkyReels command line should not
// need one run per mistake). Values the Session checks again (sizes, frames) are left to it.
std::vector<std::string> flag_problems(const GenerateOptions& o, const std::string& device) {
    std::vector<std::string> p;
    auto need = [&](bool ok, std::string message) {
        if (!ok) p.push_back(std::move(message));
    };
    need(o.task.empty() || o.task == "t2v" || o.task == "i2v", fmt::format("--task {}: must be t2v or i2v", o.task));
    need(o.checkpoint_every >= 0, fmt::format("--checkpoint-every {}: must be >= 0", o.checkpoint_every));
    need(o.resume.empty() || (o.prompt_file.empty() && o.video_num == 1),
         "--resume continues one video: not with --prompt-file or --video-num");
    need(o.preview_every >= 1, fmt::format("--preview-every {}: must be >= 1", o.preview_every));
    need(!o.given("--preview-every") || !o.preview.empty(), "--preview-every needs --preview PATH");
    for (std::string& problem : session_flag_problems(o, device)) p.push_back(std::move(problem));
    try {
        (void)parse_step_cache(o.cache, "--cache");
    } catch (const InputError& e) {
        p.push_back(e.what());
    }
    need(o.video_num >= 1 && o.video_num <= 1000, fmt::format("--video-num {}: must be in 1..1000", o.video_num));
    need(!(o.given("--prompt") && o.given("--prompt-file")), "--prompt and --prompt-file: give one of them");
    return p;
}

// The task: --task, or i2v when --image is given and the transformer takes image latents (32 channels).
Task choose_task(const GenerateOptions& o) {
    if (!o.task.empty()) return o.task == "i2v" ? Task::I2V : Task::T2V;
    if (o.image.empty()) return Task::T2V;
    if (o.demo) return Task::I2V;
    const TransformerCheckpoint ckpt = open_transformer_checkpoint(o.model);
    SR_THROW_IF(ckpt.config.in_channels != 32,
                "--image needs an image-to-video model: {} has {} input channels (text-to-video); use "
                "SkyReels-V1-Hunyuan-I2V, or drop --image",
                o.model, ckpt.config.in_channels);
    return Task::I2V;
}

uint64_t parse_seed(const std::string& text) {
    int64_t v = 0;
    const auto [end, err] = std::from_chars(text.data(), text.data() + text.size(), v);
    SR_THROW_IF(err != std::errc() || end != text.data() + text.size() || v < -1,
                "--seed {}: must be an integer in 0..9223372036854775807 (or -1 for a random seed)", text);
    // -1: a random seed in SkyReels' range, printed and recorded so the video can be made again.
    return v == -1 ? uint64_t(std::random_device{}() % 4294967294u) : uint64_t(v);
}

// One Request per video: per prompt (the --prompt, or each line of --prompt-file), --video-num videos with
// seeds seed, seed + 1, ...; each checked (Session::check), prompts checked for UTF-8 first.
std::vector<Request> requests(GenerateOptions& o, Task task) {
    if (o.demo) {
        // The demo model's small defaults, unless set on the command line.
        const GenerationParams d = demo_params(task);
        if (!o.given("--height")) o.height = d.height;
        if (!o.given("--width")) o.width = d.width;
        if (!o.given("--frames")) o.frames = d.num_frames;
        if (!o.given("--steps")) o.steps = d.num_inference_steps;
    }
    std::vector<PromptLine> lines;
    if (!o.prompt_file.empty()) {
        lines = read_prompt_file(o.prompt_file);
    } else {
        PromptLine one;
        one.prompt = o.prompt;
        lines.push_back(one);
    }
    const uint64_t first_seed = parse_seed(o.seed);
    if (!o.outdir.empty() && !o.dry_run) {  // as SkyReels' os.makedirs(out_dir, exist_ok=True)
        std::error_code ec;
        fs::create_directories(o.outdir, ec);
        SR_THROW_IF(ec, "--outdir {}: cannot create the folder: {}", o.outdir, ec.message());
    }
    std::vector<Request> out;
    for (const PromptLine& line : lines) {
        const std::string where =
            o.prompt_file.empty() ? std::string() : fmt::format("--prompt-file {}, line {}", o.prompt_file, line.line);
        SR_WITH_CONTEXT(where, {
            check_utf8(line.prompt, "--prompt");
            check_utf8(line.negative_prompt.value_or(o.negative_prompt), "--negative-prompt");
        });
        if (line.prompt.rfind("FPS-24, ", 0) != 0)
            SR_LOG_WARN("the prompt does not start with \"FPS-24, \": SkyReels-V1 was trained with that prefix");
        const uint64_t seed = line.seed ? uint64_t(*line.seed) : first_seed;
        for (int i = 0; i < o.video_num; ++i) {
            Request r;
            GenerationParams& p = r.generation.params;
            p.task = task;
            p.height = line.height.value_or(o.height);
            p.width = line.width.value_or(o.width);
            p.num_frames = line.frames.value_or(o.frames);
            p.num_inference_steps = int(line.steps.value_or(o.steps));
            p.guidance_scale = line.guidance.value_or(o.guidance);
            p.embedded_guidance_scale = o.embedded_guidance;
            p.sequence_batch = o.sequence_batch || o.cfg_whole_passes;
            p.cfg_whole_passes = o.cfg_whole_passes;
            p.cache = parse_step_cache(o.cache, "--cache");
            p.seed = seed + uint64_t(i);
            r.generation.prompt = line.prompt;
            r.generation.negative_prompt = line.negative_prompt.value_or(o.negative_prompt);
            r.fps = o.fps;
            r.crf = o.crf;
            const size_t n = out.size();
            const bool many = lines.size() * size_t(o.video_num) > 1;
            if (!o.png_dir.empty()) r.png_dir = many ? fmt::format("{}/{}", o.png_dir, n) : o.png_dir;
            if (!o.dry_run) {
                if (line.out) {
                    r.output_path = with_video_extension(*line.out);
                } else if (!o.outdir.empty()) {
                    r.output_path = outdir_file(o.outdir, line.prompt, p.seed, i);
                } else {
                    const fs::path base = with_video_extension(o.out.empty() ? "skyreels.mp4" : o.out);
                    r.output_path = !many ? base.string()
                                          : (base.parent_path() /
                                             fmt::format("{}_{}{}", base.stem().string(), n, base.extension().string()))
                                                .string();
                }
                std::error_code ec;
                SR_THROW_IF(o.no_overwrite && fs::exists(r.output_path, ec), "{} exists and --no-overwrite was given",
                            r.output_path);
            }
            if (o.checkpoint_every > 0 && !r.output_path.empty()) {
                r.checkpoint_every = o.checkpoint_every;
                r.checkpoint_path = r.output_path + ".ckpt";
            }
            r.resume_path = o.resume;
            if (!o.preview.empty() && !o.dry_run) {
                // One preview per video: several videos each get their own (PATH_i, or STEM_i.png / .apng).
                const fs::path pv = o.preview;
                r.preview_path = o.preview;
                if (many && preview_is_file(o.preview))
                    r.preview_path =
                        (pv.parent_path() / fmt::format("{}_{}{}", pv.stem().string(), n, pv.extension().string()))
                            .string();
                else if (many)
                    r.preview_path = fmt::format("{}_{}", o.preview, n);
            }
            r.preview_every = o.preview_every;
            const std::string image = line.image.value_or(o.image);
            SR_THROW_IF(task == Task::T2V && !image.empty(),
                        "--image is only used by an image-to-video model (--task i2v)");
            Request checked = r;
            if (out.empty() || line.image) checked.image_path = image;  // the same image is decoded once
            SR_WITH_CONTEXT(where, Session::check(checked));
            r.image_path = image;
            out.push_back(std::move(r));
        }
    }
    return out;
}

// The lines that say what is about to run, before the load.
void print_header(const GenerateOptions& o, const SessionOptions& s, const std::vector<Request>& jobs) {
    const GenerationParams& p = jobs[0].generation.params;
    std::fprintf(stderr, "skyreels %s: %s on %s, %s, quant %s\n", build::kVersion,
                 p.task == Task::I2V ? "image-to-video" : "text-to-video", s.device.c_str(),
                 s.precision                ? (*s.precision == GemmPrecision::BF16 ? "bf16" : "f32")
                 : is_cuda_device(s.device) ? "bf16"
                                            : "f32",
                 s.quant == LinearQuant::Float8WeightOnly ? "fp8" : "none");
    if (o.demo)
        std::fprintf(stderr, "  model: the built-in demo (random weights: the video is noise)\n");
    else
        std::fprintf(stderr, "  model: %s\n  base:  %s\n", s.model.c_str(),
                     s.base.empty() ? s.model.c_str() : s.base.c_str());
    std::fprintf(stderr, "  %ldx%ld (width x height), %ld frames at %d fps, %d steps, guidance %g, embedded %g\n",
                 long(p.width), long(p.height), long(p.num_frames), jobs[0].fps, p.num_inference_steps,
                 p.guidance_scale, p.embedded_guidance_scale);
    if (p.cache.enabled())
        std::fprintf(stderr, "  step cache: %s (skips transformer passes: faster, less exact)\n",
                     p.cache.str().c_str());
    std::fprintf(stderr, "  %zu video%s, seed %llu%s\n", jobs.size(), jobs.size() == 1 ? "" : "s",
                 static_cast<unsigned long long>(p.seed), jobs.size() > 1 ? " (video i: seed + i)" : "");
}

// A parallel --dry-run: rank 0's plan above, then each rank's device peak (its guidance row and share of the
// tokens) and each host's non-reclaimable host memory (its ranks' sum; the checkpoint files' page cache is
// shared by them).
void print_rank_plans(MpiCommunicator& world, const MemoryPlan& plan) {
    const std::vector<int64_t> peaks = world.all_values(int64_t(plan.device_peak()));
    const std::vector<int64_t> host_memory = world.all_values(int64_t(plan.host_nonreclaimable()));
    const std::vector<std::string> hosts = world.all_strings(MpiRuntime::host_name());
    if (world.rank() != 0) return;
    std::printf("parallel run over %d ranks (this plan is rank 0's):\n", world.size());
    std::map<std::string, std::pair<int, int64_t>> per_host;
    for (int r = 0; r < world.size(); ++r) {
        std::printf("  rank %d on %s: device peak %s, host %s\n", r, hosts[size_t(r)].c_str(),
                    format_bytes(double(peaks[size_t(r)])).c_str(),
                    format_bytes(double(host_memory[size_t(r)])).c_str());
        auto& [ranks, bytes] = per_host[hosts[size_t(r)]];
        ++ranks;
        bytes += host_memory[size_t(r)];
    }
    for (const auto& [host, total] : per_host)
        std::printf("  host %s: %d ranks, non-reclaimable host memory %s in all\n", host.c_str(), total.first,
                    format_bytes(double(total.second)).c_str());
}

int run_generate(GenerateOptions& o) {
    // A parallel run: every rank runs this same command; rank 0 alone prints and writes (errors: any rank).
    const std::unique_ptr<MpiCommunicator> world = MpiRuntime::active() ? MpiRuntime::world() : nullptr;
    SR_THROW_IF(o.gpu_num > 1 && world, "--gpu_num: this command already runs under an MPI launcher ({} ranks)",
                world->size());
    if (o.gpu_num > 1) relaunch_under_mpirun(o.gpu_num);
    SR_THROW_IF(!o.parallel.empty() && !world,
                "--parallel {}: a parallel run starts under an MPI launcher (mpirun -np N skyreels generate ..., srun "
                "--mpi=pmix, or --gpu_num N)",
                o.parallel);
    if (!o.parallel.empty()) parse_mesh_spec(o.parallel);  // a malformed mesh fails before anything loads
    if (world && world->rank() != 0) o.quiet = true, o.json = false, o.memory_report = false;
    std::string device = choose_device(o, o.dry_run, o.quiet);
    // One GPU per rank: the ranks of one host take its GPUs in turn (cuda:N given explicitly is kept).
    if (world && world->size() > 1 && (o.device == "auto" || o.device == "cuda") && is_cuda_device(device))
        device = fmt::format("cuda:{}", world->split_by_host()->rank());
    throw_problems(flag_problems(o, device));
    if (o.crf == 0 && !o.quiet)
        SR_LOG_WARN(
            "--crf 0 writes lossless H.264 (the High 4:4:4 Predictive profile), which browsers, QuickTime and most "
            "phones do not play; --crf 1..17 looks the same and plays everywhere");
    check_utf8(o.prompt, "--prompt");  // before anything is loaded (--prompt-file lines: in requests())
    check_utf8(o.negative_prompt, "--negative-prompt");
    if (o.threads > 0) set_n_threads(o.threads);
    resolve_models(o);
    const Task task = choose_task(o);
    const std::vector<Request> jobs = requests(o, task);

    SessionOptions options = session_options(o, device, task, o.dry_run);
    options.world = world.get();
    options.parallel = o.parallel;

    if (!o.quiet) print_header(o, options, jobs);
    Progress progress(Progress::mode_for(stderr, o.quiet));
    const LogSinkScope log_sink(progress.log_sink());  // warnings go above the progress line, never onto it
    progress.set_videos(int(jobs.size()));
    // --dry-run binds every weight to address space only: the plan comes before any weight is read.
    Session session(options, progress.listener());
    progress.show_device_memory(session.device_memory());
    if (o.dry_run) {
        const MemoryPlan plan = session.plan(jobs[0]);
        const bool root = !world || world->rank() == 0;
        if (root) {
            std::printf("%s",
                        plan.format(session.memory_options(), session.device_name(), session.budget_note()).c_str());
            if (!world && (session.device_memory() || is_cuda_device(options.device) || options.device == "sim"))
                std::printf("%s", session.smallest_budgets(jobs[0]).c_str());
        }
        if (world && world->size() > 1) print_rank_plans(*world, plan);
        // The plan is printed either way; one that does not fit is still an error (exit 1) for scripts.
        if (!plan.fits()) throw OutOfMemoryError(plan.shortfalls.front());
        return 0;
    }
    Json summary;
    summary["engine"] = fmt::format("skyreels.cpp {}", build::kVersion);
    summary["device"] = session.device_name();
    summary["videos"] = Json::array();
    std::vector<std::string> written;
    for (size_t i = 0; i < jobs.size(); ++i) {
        const Request& job = jobs[i];
        progress.start_video(int(i) + 1);
        const JobResult r = session.generate(job, {.progress = progress.listener()});
        if (o.memory_report) progress.print(r.memory_report);
        if (!o.quiet)
            progress.print(fmt::format("skyreels: wrote {} ({} frames at {} fps, seed {}, {:.1f} s)\n", r.output_path,
                                       r.frames_written, job.fps, job.generation.params.seed, r.seconds));
        if (!r.output_path.empty()) written.push_back(r.output_path);
        Json v;
        v["file"] = r.output_path;
        v["seed"] = job.generation.params.seed;
        v["prompt"] = job.generation.prompt;
        v["frames"] = r.frames_written;
        v["seconds"] = r.seconds;
        if (r.device_report) v["device_peak_bytes"] = r.device_report->device_peak;
        if (!r.step_cache.empty()) v["step_cache"] = r.step_cache, v["passes_skipped"] = r.passes_skipped;
        summary["videos"].push_back(v);
    }
    const std::string done = progress.finish();
    // The files on stdout for scripts, once the progress line is gone (stdout may be the same terminal).
    if (!o.json)
        for (const std::string& f : written) std::printf("%s\n", f.c_str());
    if (o.json) {
        Json stages = Json::object();
        for (const Progress::StageTime& s : progress.stages()) stages[stage_name(s.stage)] = s.seconds;
        summary["stage_seconds"] = stages;
        summary["peak_rss_bytes"] = progress.peak_rss();
        std::printf("%s\n", summary.dump(2).c_str());
    }
    return 0;
}

}  // namespace

Command add_generate_command(CLI::App& app) {
    auto o = std::make_shared<GenerateOptions>();
    CLI::App* cmd =
        app.add_subcommand("generate", "Generate a video from a prompt (t2v) or a prompt and an image (i2v)");
    o->cmd = cmd;
    add_model_flags(cmd, *o);
    cmd->add_option("--task,--task_type", o->task, "t2v or i2v (default: i2v when --image is given to an I2V model)");
    cmd->add_option("--image", o->image, "Input image for i2v (PNG or JPEG)");
    cmd->add_option("--prompt", o->prompt, "Prompt (SkyReels expects the \"FPS-24, \" prefix)")->capture_default_str();
    cmd->add_option("--prompt-file", o->prompt_file,
                    "One video per line (the prompt, or JSON with prompt, negative_prompt, seed, height, width, "
                    "frames, steps, guidance, image, out), on models loaded once");
    cmd->add_option("--negative-prompt,--negative_prompt", o->negative_prompt, "Negative prompt (SkyReels' default)");
    cmd->add_option("--height", o->height, "Height in pixels (multiple of 16, 16..16384)")->capture_default_str();
    cmd->add_option("--width", o->width, "Width in pixels (multiple of 16, 16..16384)")->capture_default_str();
    cmd->add_option("--frames,--num_frames", o->frames, "Frames (4k+1)")->capture_default_str();
    cmd->add_option("--steps,--num_inference_steps", o->steps, "Denoising steps")->capture_default_str();
    cmd->add_option("--guidance,--guidance_scale", o->guidance, "True CFG scale (> 1: with the negative prompt)")
        ->capture_default_str();
    cmd->add_option("--embedded-guidance,--embedded_guidance_scale", o->embedded_guidance,
                    "Embedded guidance scale (the transformer's guidance input / 1000)")
        ->capture_default_str();
    cmd->add_option("--seed", o->seed,
                    "Seed (-1: random, printed and recorded in the video); video i uses seed + i (SkyReels reuses "
                    "one seed, so its --video_num videos are the same video)")
        ->capture_default_str();
    cmd->add_option("--fps", o->fps, "Frames per second of the MP4")->capture_default_str();
    cmd->add_option("--video-num,--video_num", o->video_num, "Videos per prompt (SkyReels' default is 2; ours 1)")
        ->capture_default_str();
    cmd->add_option("--out,-o", o->out, "Output file (.mp4 added when there is no extension); default skyreels.mp4");
    cmd->add_option("--outdir", o->outdir,
                    "Output folder (created), files named as SkyReels names them: <first 100 characters of the "
                    "prompt>_<seed>_<i>.mp4 (SkyReels writes to results/<outdir>)");
    cmd->add_flag("--no-overwrite", o->no_overwrite, "Refuse to replace an existing output file");
    cmd->add_option("--png-dir", o->png_dir,
                    "Also write every frame as PNG into this folder (must be new or empty: a non-empty folder is "
                    "refused; the frames appear there only when the video is finished)");
    cmd->add_option("--crf", o->crf, "x264 quality (0 lossless, which few players decode .. 51)")
        ->capture_default_str();
    cmd->add_flag("--sequence-batch,--sequence_batch", o->sequence_batch,
                  "Run the CFG rows one after the other through each transformer block while it is resident "
                  "(same result, the activation memory of one row, weights streamed once per step); the default "
                  "when the two rows side by side do not fit --vram-budget");
    cmd->add_option("--checkpoint-every", o->checkpoint_every,
                    "Every K denoising steps, save the latents and what a resumed run needs to <output>.ckpt "
                    "(replaced atomically; removed when the video is complete)");
    cmd->add_option("--resume", o->resume,
                    "Continue a killed run from its .ckpt file (the same model and parameters, or it is refused "
                    "with the reason): the video is bit-identical to an uninterrupted run's");
    cmd->add_option("--preview", o->preview,
                    "Show the video while it forms: every --preview-every steps (and after the last) the current "
                    "prediction through HunyuanVideo's latent-to-RGB map (no VAE; 1/8 of the size, enlarged to at "
                    "least 240 px) goes to PATH, a folder of frame_NNNNN.png (one per latent frame), or for a name "
                    "ending in .png one contact sheet, in .apng an animated PNG; replaced atomically at each update")
        ->type_name("PATH");
    cmd->add_option("--preview-every", o->preview_every, "With --preview: a preview every N denoising steps")
        ->capture_default_str();
    cmd->add_flag("--cfg-whole-passes", o->cfg_whole_passes,
                  "With --sequence-batch (implied): each CFG row as a whole transformer pass, as SkyReels' "
                  "cfg_for does (same result; a streamed model moves its weights twice per step)");
    cmd->add_option("--cache", o->cache,
                    "Step caching, off by default: teacache:THRESH (TeaCache's estimate on the first block's "
                    "modulated input; first and last steps always computed) or fbcache:THRESH (first-block cache). "
                    "Skips transformer passes whose input barely moved, reusing the last computed step's residual: "
                    "faster, less exact (e.g. teacache:0.1, teacache:0.15; 0 never skips)");
    cmd->add_option("--parallel", o->parallel,
                    "Under an MPI launcher (mpirun -np N, srun --mpi=pmix): the mesh cfg=A,ulysses=B with A*B = N "
                    "(cfg: the two guidance rows on two ranks; ulysses: the video tokens split over B ranks, which "
                    "must divide the heads). Default: 2 ranks cfg=2, 4 ranks 2x2, 8 ranks 2x4");
    cmd->add_option("--gpu_num,--gpu-num", o->gpu_num,
                    "Run this command on N processes of this host under mpirun (SkyReels' flag; one GPU each)")
        ->check(CLI::Range(1, 1024));
    cmd->add_flag("--quiet,-q", o->quiet, "No header, progress or summary (errors still)");
    cmd->add_flag("--json", o->json, "Print a JSON summary on stdout (files, seeds, timings, peaks)");
    add_device_flags(cmd, *o);
    cmd->add_flag("--dry-run", o->dry_run,
                  "Print the memory plan (device peak per stage, host memory) and the smallest --vram-budget for "
                  "each --offload mode, and stop");
    cmd->add_flag("--memory-report", o->memory_report, "Print measured memory and copy figures after each video");
    cmd->get_option("--out")->excludes(cmd->get_option("--outdir"));
    return [o] { return run_generate(*o); };
}

}  // namespace sr::cli
