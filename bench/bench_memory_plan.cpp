// The memory plan of the released SkyReels-V1 models (the 13B transformer, the 8B Llama text encoder, CLIP-L,
// the causal VAE: their default configurations, weights stored in bf16), at the SkyReels shape 544x960x97
// with true CFG, made without their files: every weight is bound to address space (WeightBinder::shapes_only)
// and each stage runs on the NullBackend (pipeline/memory_plan.h). So these are the engine's own figures,
// exact for its code paths, for any machine: the device peak per offload mode and budget, the streaming a
// budget implies, and the host memory that cannot be reclaimed.
//
//   build/bench/bench_memory_plan [--task t2v|i2v] [--height 544 --width 960 --frames 97] [--device cuda|sim]
//                                 [--format bf16|fp8|Q8_0|Q6_K|Q5_K|Q4_K|Q4_0] [--budgets 24,12,8,6]
//                                 [--precision f32|bf16] [--batched]
//
// --format: how the transformer is stored. bf16 as released; fp8 as SkyReels' --quant (torchao's
// float8_weight_only on the transformer's and the Llama encoder's linear layers, made at load); a GGUF block
// type as `skyreels convert` writes it (models/hunyuan_video_convert.h: planned_conversion).
// --precision: the session's (bf16: the transformer's activations in bf16); by default as the session
// chooses for the device, bf16 on cuda and f32 on sim. The CFG rows run one at a time through each block
// where side by side they do not fit, as the session chooses; --batched keeps them side by side (the plan
// without that lever). So by default every lever the session would pull on that device is on.
//
// One JSON object per (offload mode, budget, host memory mode) on stdout; a table on stderr. A budget that
// cannot hold a stage prints the plan's own refusal (which stage, how much is missing).
#include <CLI/CLI.hpp>
#include <cstdio>

#include "core/virtual_allocator.h"
#include "io/json.h"
#include "models/hunyuan_video_convert.h"
#include "pipeline/memory_plan.h"
#include "runtime/simulated_device.h"
#ifdef SKYREELS_HAVE_CUDA
#include "runtime/cuda_accelerator.h"
#endif

using namespace sr;

int main(int argc, char** argv) {
    CLI::App app{"memory plan of the released SkyReels-V1 models, without their files"};
    std::string task = "t2v", device = "cuda";
    int64_t height = 544, width = 960, frames = 97;
    bool sequence_batch = false, cfg_whole_passes = false, batched = false;
    std::string format = "bf16", cache = "none";
    std::vector<int> budgets = {24, 12, 8, 6};
    std::string precision;
    app.add_option("--task", task, "t2v or i2v")->capture_default_str();
    app.add_option("--height", height)->capture_default_str();
    app.add_option("--width", width)->capture_default_str();
    app.add_option("--frames", frames)->capture_default_str();
    app.add_option("--device", device, "cuda (its scratch bound and staging ring) or sim")->capture_default_str();
    app.add_flag("--sequence-batch", sequence_batch,
                 "one CFG row at a time through each resident block (without it: only where batched rows do not "
                 "fit, as the session chooses)");
    app.add_flag("--cfg-whole-passes", cfg_whole_passes,
                 "with --sequence-batch (implied): each CFG row as a whole pass (weights streamed twice per step)");
    app.add_flag("--batched", batched,
                 "keep the CFG rows side by side where they do not fit (the plan without the CFG-per-block lever)");
    app.add_option("--format", format, "bf16, fp8 (--quant) or a GGUF block type")->capture_default_str();
    app.add_option("--budgets", budgets, "--offload block budgets in GiB")->delimiter(',');
    app.add_option("--cache", cache, "step caching (teacache:THRESH, fbcache:THRESH): its residual counted")
        ->capture_default_str();
    app.add_option("--precision", precision, "f32 or bf16 (activations); default: bf16 on cuda, f32 on sim");
    CLI11_PARSE(app, argc, argv);

    try {
        SR_THROW_IF(task != "t2v" && task != "i2v", "--task {}: t2v or i2v", task);
        SR_THROW_IF(device != "cuda" && device != "sim", "--device {}: cuda or sim", device);
        if (precision.empty()) precision = device == "cuda" ? "bf16" : "f32";
        SR_THROW_IF(precision != "f32" && precision != "bf16", "--precision {}: f32 or bf16", precision);
        VirtualAllocator weights("planned weights");
        PipelineComponents c;
        HunyuanVideoConfig dit;
        if (task == "i2v") dit.in_channels = 32;  // SkyReels-V1-Hunyuan-I2V: the image latents concatenated
        const bool quant_fp8 = format == "fp8";
        const LinearQuant quant = quant_fp8 ? LinearQuant::Float8WeightOnly : LinearQuant::None;
        const std::optional<QuantType> block = quant_type_from_name(format);
        SR_THROW_IF(!quant_fp8 && format != "bf16" && !block, "--format {}: bf16, fp8 or a GGUF block type", format);
        ConvertOptions converted;
        converted.block_type = block;
        const std::unique_ptr<TensorSource> planned = planned_conversion(dit, converted);
        WeightBinder bt =
            block ? WeightBinder(*planned, std::nullopt, &weights) : WeightBinder::shapes_only(DType::BF16, weights);
        c.transformer = std::make_shared<const HunyuanVideoTransformer>(dit, bt, quant);
        WeightBinder bv = WeightBinder::shapes_only(DType::BF16, weights);
        c.vae = std::make_shared<const HunyuanVideoVAE>(HunyuanVideoVAEConfig{}, bv);
        WeightBinder bl = WeightBinder::shapes_only(DType::BF16, weights);
        c.llama = std::make_shared<const LlamaTextEncoder>(LlamaConfig{}, bl, "", quant);
        WeightBinder bc = WeightBinder::shapes_only(DType::BF16, weights);
        c.clip = std::make_shared<const ClipTextEncoder>(ClipTextConfig{}, bc);
        std::fprintf(stderr,
                     "parameters: transformer %.2f B, Llama %.2f B, CLIP %.0f M, VAE %.0f M (%.1f GiB in all)\n",
                     double(bt.parameter_count()) * 1e-9, double(bl.parameter_count()) * 1e-9,
                     double(bc.parameter_count()) * 1e-6, double(bv.parameter_count()) * 1e-6,
                     double(weights.in_use_bytes()) / double(1ull << 30));
        size_t transformer_bytes = 0;
        for (const WeightBlock& b : c.transformer->weight_blocks()) transformer_bytes += b.bytes();
        std::fprintf(stderr, "transformer weights (%s): %s\n", format.c_str(),
                     format_bytes(double(transformer_bytes)).c_str());
        const SkyReelsPipeline pipe(std::move(c));

        GenerationRequest req;
        req.params.task = task == "i2v" ? Task::I2V : Task::T2V;
        req.params.height = height;
        req.params.width = width;
        req.params.num_frames = frames;
        req.params.sequence_batch = sequence_batch || cfg_whole_passes;
        req.params.cfg_whole_passes = cfg_whole_passes;
        req.params.cache = parse_step_cache(cache, "--cache");
        req.params.activations = precision == "bf16" ? DType::BF16 : DType::F32;
        std::fprintf(stderr, "--precision %s: transformer activations in %s\n", precision.c_str(), precision.c_str());
        if (req.params.task == Task::I2V) req.image = Tensor::zeros({3, height, width}, DType::F32);

        PlanTarget target;
        if (device == "cuda") {
#ifdef SKYREELS_HAVE_CUDA
            target = PlanTarget::of_cuda({});
#else
            SR_THROW("--device cuda: this build has no CUDA backend (its scratch bound is defined there)");
#endif
        } else {
            SimulatedDevice sim;
            target = PlanTarget::of(sim);
        }
        struct Case {
            OffloadMode offload;
            size_t budget;
            HostMemoryMode host;
        };
        std::vector<Case> cases = {{OffloadMode::None, 0, HostMemoryMode::Mmap},
                                   {OffloadMode::Model, 0, HostMemoryMode::Mmap}};
        for (int gib : budgets)
            for (HostMemoryMode host : {HostMemoryMode::Mmap, HostMemoryMode::Pinned})
                cases.push_back({OffloadMode::Block, size_t(gib) << 30, host});
        std::fprintf(stderr, "%-6s %-8s %-7s %-9s %12s %12s %12s %12s %10s %12s %14s\n", "offload", "budget", "host",
                     "cfg rows", "text", "image", "denoise", "decode", "streamed", "per step", "host non-recl.");
        for (const Case& k : cases) {
            const MemoryOptions o{.offload = k.offload, .vram_budget = k.budget, .host_memory = k.host};
            Json j{{"task", task},
                   {"shape", fmt::format("{}x{}x{}", height, width, frames)},
                   {"device", device},
                   {"format", format},
                   {"precision", precision},
                   {"transformer_weight_bytes", transformer_bytes},
                   {"offload", offload_mode_name(k.offload)},
                   {"vram_budget", k.budget},
                   {"host_memory", host_memory_mode_name(k.host)}};
            const std::string budget = k.budget ? format_bytes(double(k.budget)) : "none";
            try {
                // As the session chooses: the CFG rows one at a time through each block where side by side
                // they do not fit.
                GenerationRequest job = req;
                if (!batched && !plan_memory(pipe, job, o, target, /*require_fit=*/false).fits() && job.params.do_cfg())
                    job.params.sequence_batch = true;
                const MemoryPlan plan = plan_memory(pipe, job, o, target);
                const char* rows = !job.params.do_cfg()          ? "-"
                                   : !job.params.sequence_batch  ? "batched"
                                   : job.params.cfg_whole_passes ? "passes"
                                                                 : "per-block";
                j["sequence_batch"] = job.params.sequence_batch;
                j["cfg_rows"] = rows;
                j["transformer_passes_per_step"] = plan.transformer_passes_per_step;
                std::string row = fmt::format("{:<7} {:<8} {:<7} {:<9}", offload_mode_name(k.offload), budget,
                                              host_memory_mode_name(k.host), rows);
                std::map<std::string, size_t> peaks;
                for (const auto& s : plan.stages) peaks[stage_name(s.name)] = s.device_peak();
                for (const char* stage : {"text encoding", "image encoding", "denoising", "decoding"}) {
                    const auto it = peaks.find(stage);
                    row += fmt::format(" {:>12}", it == peaks.end() ? "-" : format_bytes(double(it->second)));
                    if (it != peaks.end()) j["device_peak"][stage] = it->second;
                }
                row += fmt::format(" {:>10} {:>12} {:>14}",
                                   fmt::format("{}/{}", plan.streamed_blocks, plan.transformer_blocks),
                                   format_bytes(double(plan.streamed_bytes_per_step)),
                                   format_bytes(double(plan.host_nonreclaimable())));
                j["device_peak_bytes"] = plan.device_peak();
                j["streamed_blocks"] = plan.streamed_blocks;
                j["streamed_bytes_per_step"] = plan.streamed_bytes_per_step;
                j["pinned_bytes"] = plan.pinned_bytes;
                j["host_nonreclaimable_bytes"] = plan.host_nonreclaimable();
                std::fprintf(stderr, "%s\n", row.c_str());
            } catch (const OutOfMemoryError& e) {
                j["refused"] = e.what();
                std::fprintf(stderr, "%-7s %-8s %-7s refused: %s\n", offload_mode_name(k.offload), budget.c_str(),
                             host_memory_mode_name(k.host), e.what());
            }
            std::printf("%s\n", j.dump().c_str());
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "bench_memory_plan: %s\n", e.what());
        return 1;
    }
    return 0;
}
