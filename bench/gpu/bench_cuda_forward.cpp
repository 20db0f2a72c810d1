// The transformer on the GPU at the SkyReels shape, 544x960x97: latents [1, 16, 25, 68, 120], 25 x 34 x 60 =
// 51,000 video tokens and 256 text tokens, weights of the real 13B configuration (random, bf16).
//
//   --blocks   one dual-stream and one single-stream block. A block's time is the forward time of a model with
//              that one block minus the forward time of a model with none (the same embedders, token refiner
//              and head around it), so it is the block's own time; torch_baseline.py --blocks times the same
//              blocks in PyTorch. FLOPs from estimate_forward_cost, the same difference.
//   --forward  the whole 13B forward (20 dual + 40 single blocks): resident (every weight on the GPU), then
//              streamed under --budget with pinned host memory and with mmap-mode host memory (staged through
//              the pinned ring from pageable memory; with a real checkpoint the pages come from the page
//              cache, the copy path is the same). Per mode: step time, its ratio to the resident step, the
//              share of copy time hidden behind compute, the host-to-device rate the copy engine achieved, bytes
//              streamed per step, and peak device memory (the allocator's bytes in use and what it holds).
//
// Weights are made on the host (26 GB of bf16 for --forward) and placed by the residency manager, as in a
// generation. Timing: wall clock around a forward and the download of its output (which waits for the GPU),
// after one warm-up forward; median of --reps. Output: JSON lines on stdout, a table on stderr.
//
//   build/bench/gpu/bench_cuda_forward --blocks --forward --budget 12G --reps 2
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "backends/cuda/cuda_backend.h"
#include "backends/null_backend.h"
#include "core/virtual_allocator.h"
#include "io/json.h"
#include "models/hunyuan_video_transformer.h"
#include "runtime/cuda_accelerator.h"
#include "runtime/residency.h"

namespace {

using namespace sr;

struct Shape3 {
    int64_t frames = 25, height = 68, width = 120;  // latent units: 97 frames, 544 x 960 pixels
};

TransformerInputs make_inputs(const HunyuanVideoConfig& c, const Shape3& s) {
    TransformerInputs in;
    in.hidden_states = Tensor::empty({1, c.in_channels, s.frames, s.height, s.width}, DType::F32);
    float* p = in.hidden_states.data<float>();
    uint64_t x = 88172645463325252ull;
    for (int64_t i = 0; i < in.hidden_states.numel(); ++i) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        p[i] = float(int64_t(x >> 40) - (int64_t(1) << 23)) * 0x1p-23f;  // uniform [-1, 1): never zeros
    }
    in.timestep = Tensor::from_vector({900.0f}, {1});
    in.guidance = Tensor::from_vector({1000.0f}, {1});
    in.encoder_hidden_states =
        Tensor::from_vector(std::vector<float>(size_t(256 * c.text_embed_dim), 0.25f), {1, 256, c.text_embed_dim});
    // 156 valid text tokens: the padded-key mask path, as with a real prompt.
    std::vector<float> mask(256, 0.0f);
    std::fill(mask.begin(), mask.begin() + 156, 1.0f);
    in.encoder_attention_mask = Tensor::from_vector(mask, {1, 256});
    in.pooled_projections =
        Tensor::from_vector(std::vector<float>(size_t(c.pooled_projection_dim), 0.5f), {1, c.pooled_projection_dim});
    return in;
}

// Activations (and uploaded inputs) of one forward on `device`, planned exactly without computing anything.
size_t planned_activations(const HunyuanVideoTransformer& model, const TransformerInputs& in, Device device) {
    VirtualAllocator space("plan", 0, device);
    NullBackend be(space);
    model.forward(be, in);
    return space.peak_bytes();
}

struct Measured {
    double median_s = 0;
    ResidencyStats stats;
    size_t streamed_blocks = 0, blocks = 0;
    size_t peak_in_use = 0, reserved = 0;
    double copy_gbs = 0;
};

Measured time_forward(const HunyuanVideoTransformer& model, const TransformerInputs& in, size_t budget,
                      HostMemoryMode host, GemmPrecision precision, int reps) {
    CudaAccelerator dev({.memory_budget = budget});
    dev.cuda().set_gemm_precision(precision);
    dev.cuda().set_attention_precision(precision);
    const size_t reserve = planned_activations(model, in, dev.memory().device()) + dev.backend().workspace_bytes();
    ResidencyManager mgr(
        dev, model.weight_blocks(),
        {.budget_bytes = budget, .reserve_bytes = budget ? reserve : 0, .prefetch = 1, .host_memory = host});
    auto once = [&] {
        const auto t0 = std::chrono::steady_clock::now();
        const Tensor out = to_host(dev.backend(), model.forward(dev.backend(), in, {}, &mgr));
        return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    };
    once();  // warm-up: resident uploads, cuBLASLt heuristics, the caching allocator's first cudaMallocs
    const ResidencyStats before = mgr.stats();
    const CopyEngineStats copies_before = dev.stats();
    std::vector<double> t;
    for (int r = 0; r < std::max(reps, 1); ++r) t.push_back(once());
    std::sort(t.begin(), t.end());
    Measured m;
    m.median_s = t[t.size() / 2];
    const ResidencyStats after = mgr.stats();
    const CopyEngineStats copies = dev.stats();
    m.stats.streamed_bytes = (after.streamed_bytes - before.streamed_bytes) / t.size();
    m.stats.copy_seconds = after.copy_seconds - before.copy_seconds;
    m.stats.exposed_seconds = after.exposed_seconds - before.exposed_seconds;
    m.stats.pinned_bytes = after.pinned_bytes;
    const double busy = copies.busy_seconds - copies_before.busy_seconds;
    m.copy_gbs = busy > 0 ? double(copies.bytes - copies_before.bytes) / busy * 1e-9 : 0;
    m.streamed_blocks = size_t(mgr.plan().streamed_blocks());
    m.blocks = mgr.plan().resident.size();
    m.peak_in_use = dev.memory().peak_bytes();
    m.reserved = dev.cuda().memory().reserved_bytes();
    return m;
}

void print_json(const Json& j) {
    std::printf("%s\n", j.dump().c_str());
    std::fflush(stdout);
}

std::string gib(double bytes) {
    return fmt::format("{:.2f} GiB", bytes / double(1ull << 30));
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"the transformer on the GPU at 544x960x97: blocks, and the 13B forward resident and streamed"};
    bool blocks = false, forward = false;
    int reps = 2;
    std::string budget_text = "12G", precision_text = "bf16";
    Shape3 shape;
    app.add_flag("--blocks", blocks, "time one dual-stream and one single-stream block");
    app.add_flag("--forward", forward, "time the 13B forward: resident, then streamed (pinned, mmap)");
    app.add_option("--budget", budget_text, "device memory budget of the streamed runs")->capture_default_str();
    app.add_option("--precision", precision_text, "bf16 (tensor cores) or f32")->capture_default_str();
    app.add_option("--reps", reps, "timed forwards per measurement (median)")->capture_default_str();
    app.add_option("--latent-frames", shape.frames, "latent frames (97 video frames: 25)")->capture_default_str();
    app.add_option("--latent-height", shape.height, "latent height (544 px: 68)")->capture_default_str();
    app.add_option("--latent-width", shape.width, "latent width (960 px: 120)")->capture_default_str();
    CLI11_PARSE(app, argc, argv);
    if (!blocks && !forward) blocks = forward = true;

    const std::string why = cuda_unavailable_reason();
    if (!why.empty()) {
        std::fprintf(stderr, "bench_cuda_forward: no CUDA device: %s\n", why.c_str());
        return 2;
    }
    try {
        SR_THROW_IF(precision_text != "bf16" && precision_text != "f32", "--precision {}: bf16 or f32", precision_text);
        const GemmPrecision precision = precision_text == "bf16" ? GemmPrecision::BF16 : GemmPrecision::F32;
        const size_t budget = parse_bytes(budget_text, "--budget");
        const HunyuanVideoConfig full;  // the released 13B configuration
        const TransformerInputs in = make_inputs(full, shape);
        const ForwardShape fs{1, shape.frames, shape.height, shape.width, 256};
        const int64_t tokens = estimate_forward_cost(full, fs).video_tokens + 256;
        const std::string shape_name = fmt::format("L{} D{} H{}", tokens, full.inner_dim(), full.num_attention_heads);

        if (blocks) {
            auto config = [&](int64_t dual, int64_t single) {
                HunyuanVideoConfig c = full;
                c.num_layers = dual;
                c.num_single_layers = single;
                return c;
            };
            const auto base_model = HunyuanVideoTransformer::random(config(0, 0), DType::BF16, 7);
            const double base = time_forward(base_model, in, 0, HostMemoryMode::Pinned, precision, reps).median_s;
            const double base_flops = estimate_forward_cost(config(0, 0), fs).total_flops();
            for (const auto& [name, dual, single] : {std::tuple{"dual_block", int64_t(1), int64_t(0)},
                                                     std::tuple{"single_block", int64_t(0), int64_t(1)}}) {
                const auto model = HunyuanVideoTransformer::random(config(dual, single), DType::BF16, 7);
                const double t = time_forward(model, in, 0, HostMemoryMode::Pinned, precision, reps).median_s - base;
                const double flops = estimate_forward_cost(config(dual, single), fs).total_flops() - base_flops;
                const double ms = t * 1e3;
                print_json({{"impl", "skyreels"},
                            {"bench", name},
                            {"shape", shape_name},
                            {"dtype", precision_text + " gemm+attention, f32 io"},
                            {"median_ms", ms},
                            {"min_ms", ms},
                            {"tflops", flops / t * 1e-12}});
                std::fprintf(stderr,
                             "%-12s %-24s %10.1f ms %8.1f TFLOP/s (forward minus the 0-block forward %.1f ms)\n", name,
                             shape_name.c_str(), ms, flops / t * 1e-12, base * 1e3);
            }
        }

        if (forward) {
            std::fprintf(stderr, "making the 13B model's random bf16 weights on the host...\n");
            const auto model = HunyuanVideoTransformer::random(full, DType::BF16, 7);
            const double flops = estimate_forward_cost(full, fs).total_flops();
            const Measured resident = time_forward(model, in, 0, HostMemoryMode::Pinned, precision, reps);
            struct Mode {
                const char* name;
                size_t budget;
                HostMemoryMode host;
            };
            for (const Mode& mode :
                 {Mode{"resident", 0, HostMemoryMode::Pinned}, Mode{"streamed-pinned", budget, HostMemoryMode::Pinned},
                  Mode{"streamed-mmap", budget, HostMemoryMode::Mmap}}) {
                const Measured m =
                    mode.budget == 0 ? resident : time_forward(model, in, mode.budget, mode.host, precision, reps);
                const double ratio = m.median_s / resident.median_s;
                print_json({{"impl", "skyreels"},
                            {"bench", "forward_13b"},
                            {"mode", mode.name},
                            {"shape", shape_name},
                            {"budget_bytes", mode.budget},
                            {"step_s", m.median_s},
                            {"ratio_to_resident", ratio},
                            {"tflops", flops / m.median_s * 1e-12},
                            {"streamed_blocks", m.streamed_blocks},
                            {"blocks", m.blocks},
                            {"streamed_bytes_per_step", m.stats.streamed_bytes},
                            {"copy_hidden_fraction", m.stats.hidden_fraction()},
                            {"h2d_gbs", m.copy_gbs},
                            {"pinned_bytes", m.stats.pinned_bytes},
                            {"peak_in_use_bytes", m.peak_in_use},
                            {"reserved_bytes", m.reserved}});
                std::fprintf(stderr,
                             "forward %-16s %8.2f s  x%.3f  %6.1f TFLOP/s  streams %zu/%zu blocks (%s/step)  hidden "
                             "%3.0f%%  %.1f GB/s  peak %s (held %s)\n",
                             mode.name, m.median_s, ratio, flops / m.median_s * 1e-12, m.streamed_blocks, m.blocks,
                             gib(double(m.stats.streamed_bytes)).c_str(), 100 * m.stats.hidden_fraction(), m.copy_gbs,
                             gib(double(m.peak_in_use)).c_str(), gib(double(m.reserved)).c_str());
            }
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "bench_cuda_forward: %s\n", e.what());
        return 1;
    }
    return 0;
}
