// Attention op benchmark at the transformer's shapes (CPU backend, f32 inputs).
//
//   build/bench/bench_attention [--reps 5] [--kernel f32|bf16|flash|all]
//
// --kernel: f32 (GemmPrecision::F32: f32 oneDNN GEMM tiles), bf16 (GemmPrecision::BF16 on oneDNN tiles:
// bf16 operands, f32 accumulation, on AMX or AVX512-BF16 where the processor has them) or flash (BF16 on our
// own kernel, attention_flash_bf16.h, on the engine the processor has: AMX tiles or AVX-512 BF16 dot products,
// named in the output; skipped where it has neither); `all` runs each, alternating, in one process.
//
// Shapes: "medium" (1 x 4 heads x 4352 tokens x 128, the medium transformer's joint attention) and
// "real_1k" (1 x 24 heads x 1280 x 128, the real block shape at 1024 video + 256 text tokens). FLOPs are
// 4 * B * H * Lq * Lk * D (QK^T and PV). One JSON object per shape on stdout.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <vector>

#include "backends/cpu/attention_flash_bf16.h"
#include "backends/cpu/cpu_backend.h"
#include "core/parallel.h"
#include "io/json.h"

using namespace sr;

int main(int argc, char** argv) {
    CLI::App app{"skyreels attention benchmark"};
    int reps = 5;
    std::string kernel = "all";
    app.add_option("--reps", reps, "Timed repetitions")->capture_default_str();
    app.add_option("--kernel", kernel, "f32 or bf16 oneDNN tiles, our bf16 flash kernel, or all")
        ->check(CLI::IsMember({"f32", "bf16", "flash", "all"}))
        ->capture_default_str();
    CLI11_PARSE(app, argc, argv);
    std::vector<std::string> kernels;
    for (const std::string g : {"f32", "bf16", "flash"})
        if ((kernel == "all" || kernel == g) && (g != "flash" || flash_attention_available())) kernels.push_back(g);
    if (kernel == "flash" && kernels.empty())
        std::fprintf(stderr, "bench_attention: no AMX or AVX-512 BF16 here (build or CPU)\n");
    struct Case {
        const char* name;
        int64_t B, H, L, D;
    };
    for (const Case& c : {Case{"medium", 1, 4, 4352, 128}, Case{"real_1k", 1, 24, 1280, 128}}) {
        // [B, L, H, D] buffers as the model lays them out, passed as [B, H, L, D] views.
        auto make = [&](float v) {
            Tensor t = Tensor::empty({c.B, c.L, c.H, c.D}, DType::F32);
            float* d = t.data<float>();
            for (int64_t i = 0; i < t.numel(); ++i) d[i] = v * float((i * 2654435761u) % 1000) / 1000.0f;
            return t;
        };
        Tensor q = make(0.5f), k = make(0.4f), v = make(1.0f), o = Tensor::empty({c.B, c.L, c.H, c.D}, DType::F32);
        Tensor ov = o.permute({0, 2, 1, 3});
        AttentionMask mask;
        for (const std::string& g : kernels) {
            cpu_backend().set_gemm_precision(g == "f32" ? GemmPrecision::F32 : GemmPrecision::BF16);
            cpu_backend().set_flash_attention(g == "flash");
            auto run = [&] {
                cpu_backend().attention(q.permute({0, 2, 1, 3}), k.permute({0, 2, 1, 3}), v.permute({0, 2, 1, 3}), ov,
                                        mask, 0.088f);
            };
            run();
            std::vector<double> t;
            for (int r = 0; r < std::max(reps, 1); ++r) {
                const auto t0 = std::chrono::steady_clock::now();
                run();
                t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
            }
            std::sort(t.begin(), t.end());
            const double flops = 4.0 * double(c.B * c.H) * double(c.L) * double(c.L) * double(c.D);
            const double med = t[t.size() / 2];
            Json j = {{"op", "attention"},
                      {"shape", c.name},
                      {"B", c.B},
                      {"H", c.H},
                      {"L", c.L},
                      {"D", c.D},
                      {"kernel", g},
                      {"engine", g == "flash" ? flash_attention_engine() : "onednn"},
                      {"threads", n_threads()},
                      {"median_s", med},
                      {"min_s", t.front()},
                      {"gflops", flops / med / 1e9}};
            std::printf("%s\n", j.dump().c_str());
            std::fprintf(stderr, "attention %-8s %-5s (%s) B%ld H%ld L%ld D%ld  median %.4f s  %.1f GFLOP/s\n", c.name,
                         g.c_str(), g == "flash" ? flash_attention_engine() : "onednn", long(c.B), long(c.H), long(c.L),
                         long(c.D), med, flops / med / 1e9);
        }
    }
    return 0;
}
