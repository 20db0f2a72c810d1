// Weight streaming on the simulated device: the transformer with the 13B model's block shapes, its weights
// streamed through a ring of device buffers under budgets from "everything resident" down to the minimum,
// compared with the all-resident step time. Copies run at a simulated PCIe bandwidth on their own thread
// while the CPU computes.
//
//   OMP_WAIT_POLICY=passive build/bench/bench_residency [--dual 2] [--single 4] [--tokens 512]
//                                                       [--bandwidth-gbs 25] [--reps 2] [--host-memory all]
//
// One JSON object per (host memory mode, budget) on stdout: budget, streamed blocks, bytes moved per step,
// median step time, time relative to all-resident, and the fraction of copy time hidden behind compute.
// Host memory modes: pinned (packed page-locked copies, full bandwidth), mmap (staged through the pinned
// ring: the CPU copy into the ring overlaps the transfer), pageable (the driver's path, half bandwidth).
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>

#include "backends/cpu/cpu_backend.h"
#include "io/json.h"
#include "models/hunyuan_video_transformer.h"
#include "runtime/residency.h"
#include "runtime/simulated_device.h"

using namespace sr;

int main(int argc, char** argv) {
    CLI::App app{"skyreels weight-streaming benchmark (simulated device)"};
    int dual = 2, single = 4, reps = 2;
    int64_t tokens = 512;
    double bandwidth_gbs = 25;
    app.add_option("--dual", dual, "Dual-stream blocks")->capture_default_str();
    app.add_option("--single", single, "Single-stream blocks")->capture_default_str();
    app.add_option("--tokens", tokens, "Video tokens (a multiple of 64)")->capture_default_str();
    app.add_option("--bandwidth-gbs", bandwidth_gbs, "Simulated host-to-device GB/s")->capture_default_str();
    app.add_option("--reps", reps, "Timed steps per budget")->capture_default_str();
    std::string modes = "all";
    app.add_option("--host-memory", modes, "pinned, pageable, mmap or all")->capture_default_str();
    CLI11_PARSE(app, argc, argv);

    HunyuanVideoConfig c;  // the 13B model's block shape, fewer blocks
    c.num_layers = dual, c.num_single_layers = single;
    const auto model = HunyuanVideoTransformer::random(c, DType::BF16, 7);
    // Latent frames of 16x16 (8x8 = 64 video tokens each after 2x2 patching).
    const int64_t side = 8, frames = std::max<int64_t>(1, tokens / (side * side));
    TransformerInputs in;
    in.hidden_states = Tensor::zeros({1, c.in_channels, frames, side * 2, side * 2}, DType::F32);
    in.timestep = Tensor::from_vector({900.0f}, {1});
    in.guidance = Tensor::from_vector({1000.0f}, {1});
    in.encoder_hidden_states = Tensor::zeros({1, 256, c.text_embed_dim}, DType::F32);
    in.encoder_attention_mask = Tensor::from_vector(std::vector<float>(256, 1.0f), {1, 256});
    in.pooled_projections = Tensor::zeros({1, c.pooled_projection_dim}, DType::F32);
    const int64_t n_video = frames * side * side;

    const auto specs = model.weight_blocks();
    size_t total = 0, largest = 0;
    for (const auto& s : specs) total += device_block_bytes(s), largest = std::max(largest, device_block_bytes(s));
    auto time_steps = [&](BlockWeightProvider* provider) {
        model.forward(cpu_backend(), in, {}, provider);  // warm-up
        std::vector<double> t;
        for (int r = 0; r < std::max(reps, 1); ++r) {
            const auto t0 = std::chrono::steady_clock::now();
            model.forward(cpu_backend(), in, {}, provider);
            t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
        }
        std::sort(t.begin(), t.end());
        return t[t.size() / 2];
    };
    const double resident_s = time_steps(nullptr);
    std::fprintf(stderr,
                 "%zu blocks, %s of bf16 weights (largest %s), %ld video + 256 text tokens: %.3f s/step resident\n",
                 specs.size(), format_bytes(double(total)).c_str(), format_bytes(double(largest)).c_str(),
                 long(n_video), resident_s);
    std::vector<HostMemoryMode> host_modes;
    if (modes == "all")
        host_modes = {HostMemoryMode::Pinned, HostMemoryMode::Mmap, HostMemoryMode::Pageable};
    else
        host_modes = {parse_host_memory_mode(modes, "--host-memory")};
    for (HostMemoryMode mode : host_modes)
        for (double fraction : {1.0, 0.75, 0.5, 0.0}) {  // 0: the two-buffer minimum
            const size_t minimum = 2 * largest;
            const size_t budget = std::max(minimum, size_t(double(total) * fraction) + (fraction == 1.0 ? 1 : 0));
            SimulatedDevice device({.memory_budget = budget,
                                    .bandwidth_bytes_per_s = bandwidth_gbs * 1e9,
                                    .pageable_bandwidth_bytes_per_s = bandwidth_gbs * 0.5e9});
            ResidencyManager mgr(device, specs, {.budget_bytes = budget, .prefetch = 1, .host_memory = mode});
            const double s = time_steps(&mgr);
            const ResidencyStats st = mgr.stats();
            const double per_step_moved = double(mgr.plan().streamed_bytes_per_pass);
            Json j = {{"host_memory", host_memory_mode_name(mode)},
                      {"budget_bytes", budget},
                      {"budget_fraction", double(budget) / double(total)},
                      {"streamed_blocks", mgr.plan().streamed_blocks()},
                      {"blocks", specs.size()},
                      {"bytes_moved_per_step", per_step_moved},
                      {"step_s", s},
                      {"resident_step_s", resident_s},
                      {"relative", s / resident_s},
                      {"hidden_copy_fraction", st.hidden_fraction()},
                      {"bandwidth_gbs", bandwidth_gbs},
                      {"peak_device_bytes", device.memory().peak_bytes()},
                      {"pinned_bytes", device.pinned_memory().peak_bytes()}};
            std::printf("%s\n", j.dump().c_str());
            std::fprintf(stderr,
                         "%-8s budget %9s (%3.0f%%): %d/%zu blocks streamed, %9s moved/step, %.3f s/step = %.3fx "
                         "resident, %.0f%% of copy time hidden\n",
                         host_memory_mode_name(mode), format_bytes(double(budget)).c_str(),
                         100.0 * double(budget) / double(total), mgr.plan().streamed_blocks(), specs.size(),
                         format_bytes(per_step_moved).c_str(), s, s / resident_s, 100 * st.hidden_fraction());
        }
    return 0;
}
