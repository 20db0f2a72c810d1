// Transformer forward benchmark on named configurations with made-up weights.
//
//   build/bench/bench_transformer [--config medium|real_block|all] [--weights f32|bf16|all]
//                                 [--gemm f32|bf16|all] [--activations f32|bf16] [--reps 5] [--threads N]
//                                 [--ops]
//
// Per run: warm-up, repetitions, median / min / max seconds, achieved GFLOP/s against the analytic FLOP
// count of estimate_forward_cost (2*M*N*K per linear layer, 4*Lq*Lk*head_dim per attention head), a
// per-op profile of one extra repetition (linear and attention GFLOP/s), the oneDNN GEMM rate measured in
// the same process (1024^3, and the model's own [tokens x width x width] shape) and peak memory.
// --activations bf16 carries the residual streams and big temporaries in bf16 (TransformerInputs::
// activations, what --precision bf16 runs and the reference's bf16 run do); default f32. --ops adds
// every op of that profile (seconds, calls, GFLOP/s, and GB/s of its tensor arguments, each counted once),
// slowest first, to say which of the "other" ops to work on. Human lines go to stderr; one JSON object per
// run goes to stdout.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <vector>

#include "backends/cpu/cpu_backend.h"
#include "backends/profiling_backend.h"
#include "bench_inputs.h"
#include "core/memory_stats.h"
#include "core/parallel.h"
#include "io/json.h"
#include "models/hunyuan_video_transformer.h"

using namespace sr;

namespace {

struct NamedConfig {
    std::string name;
    HunyuanVideoConfig config;
    ForwardShape shape;  // latent units
    std::string note;
};

std::vector<NamedConfig> named_configs() {
    std::vector<NamedConfig> out;
    {
        HunyuanVideoConfig c;
        c.num_attention_heads = 4, c.attention_head_dim = 128, c.num_layers = 2, c.num_single_layers = 4;
        c.text_embed_dim = 512, c.pooled_projection_dim = 768;
        out.push_back({"medium",
                       c,
                       {.batch = 1, .frames = 4, .height = 64, .width = 64, .text_tokens = 256},
                       "512 wide (4x128), 2 dual + 4 single blocks, 4096 video + 256 text tokens"});
    }
    {
        HunyuanVideoConfig c;  // the 13B model's block shape
        c.num_layers = 1, c.num_single_layers = 1;
        out.push_back({"real_block",
                       c,
                       {.batch = 1, .frames = 4, .height = 32, .width = 32, .text_tokens = 256},
                       "3072 wide (24x128), 1 dual + 1 single block, 1024 video + 256 text tokens"});
    }
    return out;
}

double now() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

using bench::uniform;

TransformerInputs make_inputs(const HunyuanVideoConfig& c, const ForwardShape& s) {
    TransformerInputs in;
    in.hidden_states = uniform({s.batch, c.in_channels, s.frames, s.height, s.width}, 1, 1.0f);
    in.timestep = Tensor::from_vector(std::vector<float>(size_t(s.batch), 900.0f), {s.batch});
    in.guidance = Tensor::from_vector(std::vector<float>(size_t(s.batch), 1000.0f), {s.batch});
    in.encoder_hidden_states = uniform({s.batch, s.text_tokens, c.text_embed_dim}, 2, 1.0f);
    in.encoder_attention_mask =
        Tensor::from_vector(std::vector<float>(size_t(s.batch * s.text_tokens), 1.0f), {s.batch, s.text_tokens});
    in.pooled_projections = uniform({s.batch, c.pooled_projection_dim}, 3, 1.0f);
    return in;
}

// GFLOP/s of sr::gemm for an M x N x K problem (B transposed, as linear layers use it).
double gemm_rate(int64_t M, int64_t N, int64_t K, DType dtype) {
    Tensor a = Tensor::zeros({M, K}, dtype), b = Tensor::zeros({N, K}, dtype), c = Tensor::zeros({M, N}, DType::F32);
    auto run = [&] { gemm(M, N, K, a.raw_data(), K, b.raw_data(), K, true, dtype, c.data<float>(), N, false); };
    run();
    double best = 1e30;
    for (int r = 0; r < 5; ++r) {
        const double t0 = now();
        run();
        best = std::min(best, now() - t0);
    }
    return 2.0 * double(M) * double(N) * double(K) / best / 1e9;
}

// Every op of a profiled forward, slowest first.
Json op_profile(const ProfilingBackend& prof) {
    std::vector<std::pair<std::string, OpStats>> ops(prof.stats().begin(), prof.stats().end());
    std::sort(ops.begin(), ops.end(), [](const auto& a, const auto& b) { return a.second.seconds > b.second.seconds; });
    Json out = Json::array();
    for (const auto& [name, s] : ops)
        out.push_back({{"op", name},
                       {"s", s.seconds},
                       {"calls", s.calls},
                       {"gflops", s.flops / s.seconds / 1e9},
                       {"gbps", s.bytes / s.seconds / 1e9}});
    return out;
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"skyreels transformer forward benchmark"};
    std::string config_name = "all", weights = "all", gemm_mode = "all", activations = "f32";
    int reps = 5, threads = 0;
    bool per_op = false;
    app.add_option("--config", config_name, "medium, real_block or all")->capture_default_str();
    app.add_option("--weights", weights, "Weight storage: f32, bf16 or all")->capture_default_str();
    app.add_option("--gemm", gemm_mode, "GEMM precision for bf16 weights: f32, bf16 or all")->capture_default_str();
    app.add_option("--activations", activations, "Activation dtype of the forward: f32 or bf16")
        ->check(CLI::IsMember({"f32", "bf16"}))
        ->capture_default_str();
    app.add_option("--reps", reps, "Timed repetitions (after one warm-up)")->capture_default_str();
    app.add_option("--threads", threads, "Threads (default: all cores)");
    app.add_flag("--ops", per_op, "Also print every op's time, calls, GFLOP/s and GB/s (one profiled forward)");
    CLI11_PARSE(app, argc, argv);
    if (threads > 0) set_n_threads(threads);
    reps = std::max(reps, 1);

    CpuBackend& cpu = cpu_backend();
    for (const NamedConfig& nc : named_configs()) {
        if (config_name != "all" && config_name != nc.name) continue;
        const ForwardCost cost = estimate_forward_cost(nc.config, nc.shape);
        const int64_t S = cost.video_tokens + nc.shape.text_tokens, D = nc.config.inner_dim();
        TransformerInputs inputs = make_inputs(nc.config, nc.shape);
        inputs.activations = activations == "bf16" ? DType::BF16 : DType::F32;
        for (const std::string w : {"f32", "bf16"}) {
            if (weights != "all" && weights != w) continue;
            const DType wdt = w == "f32" ? DType::F32 : DType::BF16;
            const auto model = HunyuanVideoTransformer::random(nc.config, wdt, 42);
            // Making the weights (f32, then converted) set the host allocator's high-water mark: the forwards'
            // kept blocks are bounded by their own (core/allocator.h), as in a pipeline stage.
            host_allocator().release_cached();
            for (const std::string g : {"f32", "bf16"}) {
                if (gemm_mode != "all" && gemm_mode != g) continue;
                if (w == "f32" && g == "bf16") continue;  // f32 weights always multiply in f32
                cpu.set_gemm_precision(g == "f32" ? GemmPrecision::F32 : GemmPrecision::BF16);
                const DType gdt = g == "f32" ? DType::F32 : DType::BF16;
                model.forward(cpu, inputs);  // warm-up: oneDNN kernels are generated on first use
                // Made-up weights live in host_allocator too: activations are the peak above what is held now.
                const size_t held = host_allocator().in_use_bytes();
                host_allocator().reset_peak();
                std::vector<double> times;
                for (int r = 0; r < reps; ++r) {
                    const double t0 = now();
                    model.forward(cpu, inputs);
                    times.push_back(now() - t0);
                }
                std::sort(times.begin(), times.end());
                const double median = times[times.size() / 2];
                ProfilingBackend prof(cpu);
                model.forward(prof, inputs);
                const OpStats lin = prof.stats().at("linear"), att = prof.stats().at("attention");
                const double gemm_1024 = gemm_rate(1024, 1024, 1024, gdt);
                const double gemm_model = gemm_rate(S, D, D, gdt);
                const double linear_rate = lin.flops / lin.seconds / 1e9;
                Json j = {{"impl", "skyreels.cpp"},
                          {"config", nc.name},
                          {"weights", w},
                          {"gemm", g},
                          {"activations", activations},
                          {"threads", n_threads()},
                          {"reps", reps},
                          {"median_s", median},
                          {"min_s", times.front()},
                          {"max_s", times.back()},
                          {"flops", cost.total_flops()},
                          {"gflops", cost.total_flops() / median / 1e9},
                          {"linear_s", lin.seconds},
                          {"linear_gflops", linear_rate},
                          {"attention_s", att.seconds},
                          {"attention_gflops", att.flops / att.seconds / 1e9},
                          {"other_s", prof.total_seconds() - lin.seconds - att.seconds},
                          {"gemm_1024_gflops", gemm_1024},
                          {"gemm_model_shape_gflops", gemm_model},
                          {"linear_vs_gemm_1024", linear_rate / gemm_1024},
                          {"peak_activation_bytes", double(host_allocator().peak_bytes() - held)},
                          {"activation_estimate_bytes", cost.activation_bytes},
                          {"peak_rss_bytes", double(read_host_memory().peak_rss)},
                          {"note", nc.note}};
                if (per_op) j["ops"] = op_profile(prof);
                std::printf("%s\n", j.dump().c_str());
                std::fflush(stdout);
                std::fprintf(
                    stderr,
                    "%-10s weights %-4s gemm %-4s act %-4s  median %.3f s (min %.3f, max %.3f)  %.1f GFLOP/s | linear "
                    "%.3f s %.0f GFLOP/s (%.0f%% of gemm 1024^3 %.0f) | attention %.3f s %.0f GFLOP/s | other "
                    "%.3f s | peak act %.0f MiB\n",
                    nc.name.c_str(), w.c_str(), g.c_str(), activations.c_str(), median, times.front(), times.back(),
                    cost.total_flops() / median / 1e9, lin.seconds, linear_rate, 100 * linear_rate / gemm_1024,
                    gemm_1024, att.seconds, att.flops / att.seconds / 1e9,
                    prof.total_seconds() - lin.seconds - att.seconds,
                    double(host_allocator().peak_bytes() - held) / 1048576.0);
                if (per_op)
                    for (const Json& o : j["ops"])
                        std::fprintf(stderr, "  %-22s %8.4f s %5lld calls %8.1f GFLOP/s %7.2f GB/s\n",
                                     o["op"].get<std::string>().c_str(), o["s"].get<double>(),
                                     static_cast<long long>(o["calls"].get<int64_t>()), o["gflops"].get<double>(),
                                     o["gbps"].get<double>());
            }
        }
    }
    return 0;
}
