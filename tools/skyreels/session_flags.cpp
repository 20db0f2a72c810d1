#include "tools/skyreels/session_flags.h"

#include <cstdio>
#include <filesystem>

#include "core/error.h"
#include "core/log.h"
#include "io/hf_cache.h"
#include "runtime/gpu_probe.h"

namespace fs = std::filesystem;

namespace sr::cli {

namespace {

// The HunyuanVideo folder SkyReels' pipelines take their text encoders, tokenizers and VAE from.
constexpr const char* kDefaultBaseRepo = "hunyuanvideo-community/HunyuanVideo";

// --offload/--vram-budget/--host-memory/... with SkyReels' spellings mapped on (session_flag_problems checked
// them).
MemoryOptions memory_options(const SessionFlags& o, bool& offload_auto) {
    MemoryOptions m;
    std::string offload = o.offload;
    if (o.given("--offload") && offload.empty()) offload = o.parameters_level ? "block" : "model";  // SkyReels
    if (!o.given("--offload") && o.parameters_level)
        SR_LOG_WARN("--parameters_level acts only together with --offload (as in SkyReels): ignored");
    offload_auto = offload == "auto";
    if (!offload.empty() && !offload_auto) m.offload = parse_offload_mode(offload, "--offload");
    const std::string host = o.high_cpu_memory ? "pinned" : o.host_memory;
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
    return m;
}

}  // namespace

void add_model_flags(CLI::App* cmd, SessionFlags& o) {
    o.cmd = cmd;
    cmd->add_option("--model,--model_id", o.model,
                    "SkyReels-V1 transformer: a folder, one checkpoint file (safetensors, GGUF), a diffusers "
                    "pipeline folder, or a Hugging Face name found in the local cache "
                    "(Skywork/SkyReels-V1-Hunyuan-T2V; never downloaded)");
    cmd->add_option("--base", o.base,
                    "HunyuanVideo folder (text encoders, tokenizers, VAE, scheduler); default: "
                    "hunyuanvideo-community/HunyuanVideo from the Hugging Face cache");
    cmd->add_flag("--demo", o.demo, "Run a tiny built-in random-weight model (no files needed)");
    cmd->add_option("--demo-size", o.demo_size,
                    "small, or large: a 73 MiB transformer, so that --offload block under a small --vram-budget "
                    "streams weights every step")
        ->capture_default_str();
    cmd->add_option("--lora", o.loras,
                    "LoRA adapter FILE[:STRENGTH] on the transformer (repeatable, applied in order; strength 1 by "
                    "default): diffusers/PEFT, kohya/musubi-tuner or ComfyUI safetensors, told apart by content")
        ->type_name("FILE[:STRENGTH]");
    cmd->add_option("--lora-mode", o.lora_mode,
                    "auto: merge into dense weights the load owns, a low-rank side path for quantized or "
                    "memory-mapped ones; merge; runtime")
        ->check(CLI::IsMember({"auto", "merge", "runtime"}))
        ->capture_default_str();
    cmd->add_flag("--lora-ignore-unmatched", o.lora_ignore_unmatched,
                  "Skip LoRA keys that match no transformer layer (warn with their count) instead of failing");
}

void add_device_flags(CLI::App* cmd, SessionFlags& o) {
    o.cmd = cmd;
    cmd->add_option("--threads", o.threads, "CPU threads (0: all cores, or OMP_NUM_THREADS)")->capture_default_str();
    cmd->add_option("--quant", o.quant,
                    "fp8 (also bare --quant, as SkyReels): the transformer's and the text encoder's linear weights in "
                    "FP8 e4m3 with a scale per row, as SkyReels' --quant (torchao float8_weight_only); none: as stored")
        ->expected(0, 1);
    cmd->add_option("--device", o.device,
                    "auto (cuda when a usable GPU is present, else cpu), cpu, sim (a simulated accelerator on the "
                    "CPU: budgets, streaming) or cuda[:N]")
        ->capture_default_str();
    cmd->add_option("--precision", o.precision,
                    "f32 or bf16: arithmetic of GEMMs with bf16 weights and of attention and the dtype of "
                    "the transformer's activations (bf16: residual streams and big temporaries in bf16, half the "
                    "memory); default f32 on cpu/sim, bf16 on cuda");
    cmd->add_option("--offload", o.offload,
                    "none: every model on the device; model: only the one in use (bare --offload, as SkyReels); "
                    "block: also stream weights in blocks within --vram-budget (bare --offload with "
                    "--parameters_level); auto: the cheapest that fits")
        ->expected(0, 1);
    cmd->add_option("--vram-budget", o.vram_budget,
                    "Device memory for weights and activations, e.g. 12G (hard limit); default: the device's free "
                    "memory less a margin (see the plan's header)");
    cmd->add_option(
        "--host-memory", o.host_memory,
        "Where streamed weights wait: pinned, pageable or mmap (page cache + a small pinned ring; default)");
    cmd->add_option(
        "--pinned-budget", o.pinned_budget,
        "With --host-memory pinned: at most this much page-locked, the staging ring included (more than 0)");
    cmd->add_option("--prefetch", o.prefetch, "Streamed blocks copied ahead of compute")->capture_default_str();
    cmd->add_option("--sim-bandwidth", o.sim_bandwidth_gbs, "--device sim: host-to-device GB/s from pinned memory")
        ->capture_default_str();
    cmd->add_option("--sim-memory", o.sim_memory, "--device sim: the simulated device's memory")->capture_default_str();
    cmd->add_flag("--high_cpu_memory", o.high_cpu_memory, "SkyReels' spelling of --host-memory pinned");
    cmd->add_flag("--parameters_level", o.parameters_level,
                  "SkyReels: with --offload, stream parameters in blocks (= --offload block)");
    cmd->add_flag("--compiler_transformer", o.compiler_transformer, "(not implemented yet: refused)");
}

std::string choose_device(const SessionFlags& o, bool dry_run, bool quiet) {
    if (o.device != "auto") return o.device;
    if (dry_run) return o.given("--vram-budget") || o.given("--offload") || o.parameters_level ? "cuda" : "cpu";
    const GpuProbe gpus = probe_gpus();
    for (const GpuInfo& g : gpus.gpus)
        if (g.usable) return fmt::format("cuda:{}", g.index);
    const bool memory_flags = o.given("--offload") || o.given("--vram-budget") || o.parameters_level;
    if (!quiet && !o.demo && !memory_flags)
        std::fprintf(stderr,
                     "skyreels: no usable GPU (%s): running on the CPU, where a 13B model takes hours per video. "
                     "--device cpu says so explicitly; skyreels devices shows what was found.\n",
                     gpus.why_none.c_str());
    return "cpu";
}

std::string quant_value(const SessionFlags& o) {
    return o.given("--quant") && o.quant.empty() ? "fp8" : o.quant;
}

std::vector<std::string> session_flag_problems(const SessionFlags& o, const std::string& device) {
    std::vector<std::string> p;
    auto need = [&](bool ok, std::string message) {
        if (!ok) p.push_back(std::move(message));
    };
    need(!(o.demo && o.given("--model")), "--demo runs the built-in model: give --demo or --model, not both");
    need(!(o.demo && o.given("--base")), "--demo runs the built-in model: it takes no --base");
    need(o.demo_size == "small" || o.demo_size == "large",
         fmt::format("--demo-size {}: expected small or large", o.demo_size));
    need(o.demo || !o.given("--demo-size"), "--demo-size goes with --demo");
    need(!o.compiler_transformer, "--compiler_transformer is not implemented yet in skyreels.cpp");
    need(!(o.demo && !o.loras.empty()), "--lora needs a --model: the demo model has random weights");
    need(!o.loras.empty() || (!o.given("--lora-mode") && !o.lora_ignore_unmatched),
         "--lora-mode and --lora-ignore-unmatched go with --lora");
    const std::string quant = quant_value(o);
    need(quant.empty() || quant == "fp8" || quant == "none", fmt::format("--quant {}: expected fp8 or none", quant));
    need(o.precision.empty() || o.precision == "f32" || o.precision == "bf16",
         fmt::format("--precision {}: expected f32 or bf16", o.precision));
    if (o.parameters_level && o.given("--offload") && !o.offload.empty())
        need(o.offload == "block" || o.offload == "auto",
             fmt::format("--parameters_level refines --offload to block, not --offload {}", o.offload));
    if (o.high_cpu_memory)
        need(o.host_memory.empty() || o.host_memory == "pinned",
             fmt::format("--high_cpu_memory means --host-memory pinned, not {}", o.host_memory));
    if (device == "cpu")
        for (const char* flag : {"--offload", "--vram-budget", "--host-memory", "--pinned-budget", "--prefetch",
                                 "--parameters_level", "--high_cpu_memory"})
            need(!o.given(flag), fmt::format("{} needs an accelerator: {}add --device sim (simulated, on the CPU) or "
                                             "--device cuda",
                                             flag, o.device == "auto" ? "no usable GPU was found here; " : ""));
    const bool pinned = o.host_memory == "pinned" || o.high_cpu_memory;
    need(!o.given("--pinned-budget") || pinned, "--pinned-budget needs --host-memory pinned");
    need(o.threads >= 0 && o.threads <= 4096,
         fmt::format("--threads {}: must be in 1..4096 (0: all cores)", o.threads));
    return p;
}

void throw_problems(const std::vector<std::string>& problems) {
    if (problems.empty()) return;
    if (problems.size() == 1) SR_THROW("{}", problems[0]);
    SR_THROW("{} problems with the flags:\n  {}", problems.size(), fmt::join(problems, "\n  "));
}

void resolve_models(SessionFlags& o) {
    if (o.demo) return;
    SR_THROW_IF(o.model.empty(), "--model is required (a SkyReels-V1 folder, file or Hugging Face name), or --demo");
    o.model = resolve_model_path(o.model, "--model");
    std::error_code ec;
    const bool pipeline_folder = fs::exists(fs::path(o.model) / "model_index.json", ec);
    if (!o.base.empty()) {
        o.base = resolve_model_path(o.base, "--base");
    } else if (!pipeline_folder && fs::exists(o.model, ec)) {
        const auto cached = hf_cached_snapshot(kDefaultBaseRepo);
        SR_THROW_IF(!cached,
                    "--model {} is a transformer: give --base (the HunyuanVideo folder with text_encoder/, "
                    "text_encoder_2/, tokenizer/, tokenizer_2/, vae/, scheduler/), or put {} in the Hugging Face "
                    "cache ({}):\n    huggingface-cli download {}",
                    o.model, kDefaultBaseRepo, hf_hub_cache_dir(), kDefaultBaseRepo);
        o.base = *cached;
    }
}

SessionOptions session_options(const SessionFlags& o, const std::string& device, Task task, bool planning_only) {
    SessionOptions options;
    options.model = o.model;
    options.base = o.base;
    options.demo = o.demo;
    options.demo_task = task;
    // "large": a transformer of 73 MiB, larger than the VAE's decoding peak, so that a budget between the two
    // makes the denoising stream weights every step (what --offload block does at real size).
    if (o.demo_size == "large")
        options.demo_transformer = {.heads = 6, .head_dim = 64, .dual_blocks = 2, .single_blocks = 4};
    options.device = device;
    options.memory = memory_options(o, options.offload_auto);
    options.sim_bandwidth_gbs = o.sim_bandwidth_gbs;
    options.sim_memory_bytes = parse_bytes(o.sim_memory, "--sim-memory");
    options.planning_only = planning_only;
    if (quant_value(o) == "fp8") options.quant = LinearQuant::Float8WeightOnly;
    for (const std::string& l : o.loras) options.lora.files.push_back(parse_lora_argument(l));
    options.lora.mode = parse_lora_mode(o.lora_mode);
    options.lora.ignore_unmatched = o.lora_ignore_unmatched;
    // --precision: how GEMMs with bf16 weights and attention compute, and whether the transformer
    // carries its activations in bf16. Default: f32 on the CPU, whose bf16 speed depends on the processor, and
    // bf16 on CUDA, as the reference runs on a GPU.
    if (!o.precision.empty()) options.precision = o.precision == "bf16" ? GemmPrecision::BF16 : GemmPrecision::F32;
    Session::check(options);
    return options;
}

}  // namespace sr::cli
