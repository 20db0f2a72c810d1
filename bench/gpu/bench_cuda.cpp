// GPU benchmarks of the CUDA backend at the transformer's shapes (544x960x97: 25 x 34 x 60 = 51,000 video tokens
// + 256 text tokens, width 3072, 24 heads x 128):
//   gemm        y[M,N] = x[M,K] w[N,K]^T, bf16 operands, f32 accumulation, bf16 and f32 output (cuBLASLt),
//               M = tokens, K = 3072, N in {3072 (attention projections), 9216 (fused qkv), 12288 (MLP up)};
//               FLOPs 2 M N K.
//   attention   the backend's attention op on [1, L, 24, 128] f32 views, bf16 tensor-core path (its bf16
//               conversion of q, k, v included), no mask and with padded text; FLOPs 4 L^2 H D (two GEMMs).
// Timing: CUDA events around each call after two warm-ups, median and minimum of --reps calls. Inputs are
// uniform random (never zeros: zeros run faster than real data on these GPUs).
//
// Output: one JSON line per measurement on stdout, in the format bench/gpu/torch_baseline.py prints, and a
// table on stderr. `torch_baseline.py --compare ours.jsonl` prints both side by side.
//
//   build/bench/gpu/bench_cuda --reps 10 > ours.jsonl
#include <cuda_runtime.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "backends/cuda/cuda_backend.h"
#include "backends/cuda/cuda_check.h"

namespace {

using namespace sr;

struct Timing {
    double median_ms, min_ms;
};

template <class F>
Timing time_calls(CudaBackend& be, int reps, F&& fn) {
    fn();
    fn();
    be.synchronize();
    cudaEvent_t start, stop;
    SR_CUDA_CHECK(cudaEventCreate(&start));
    SR_CUDA_CHECK(cudaEventCreate(&stop));
    std::vector<double> ms;
    for (int r = 0; r < reps; ++r) {
        SR_CUDA_CHECK(cudaEventRecord(start, be.stream()));
        fn();
        SR_CUDA_CHECK(cudaEventRecord(stop, be.stream()));
        SR_CUDA_CHECK(cudaEventSynchronize(stop));
        float t = 0;
        SR_CUDA_CHECK(cudaEventElapsedTime(&t, start, stop));
        ms.push_back(t);
    }
    cudaEventDestroy(start);
    cudaEventDestroy(stop);
    std::sort(ms.begin(), ms.end());
    return {ms[ms.size() / 2], ms.front()};
}

// Uniform random values in [-1, 1) on the device, in `dtype` (xorshift on the host, then one upload).
Tensor random_device(CudaBackend& be, const Shape& shape, DType dtype, uint64_t seed) {
    Tensor host = Tensor::empty(shape, DType::F32);
    float* p = host.data<float>();
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
    for (int64_t i = 0; i < host.numel(); ++i) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        p[i] = float(int64_t(s >> 40) - (int64_t(1) << 23)) * 0x1p-23f;
    }
    Tensor dev = be.upload(host);
    if (dtype == DType::F32) return dev;
    Tensor typed = Tensor::empty(shape, dtype, be.memory(), "bench input");
    be.copy(dev, typed);
    return typed;
}

void report(const std::string& bench, const std::string& shape, const std::string& dtype, const Timing& t,
            double flops) {
    const double tflops = flops / (t.median_ms * 1e-3) * 1e-12;
    std::printf(
        "{\"impl\": \"skyreels\", \"bench\": \"%s\", \"shape\": \"%s\", \"dtype\": \"%s\", \"median_ms\": %.4f, "
        "\"min_ms\": %.4f, \"tflops\": %.1f}\n",
        bench.c_str(), shape.c_str(), dtype.c_str(), t.median_ms, t.min_ms, tflops);
    std::fflush(stdout);
    std::fprintf(stderr, "%-10s %-34s %-16s %10.3f ms %10.3f ms %8.1f TFLOP/s\n", bench.c_str(), shape.c_str(),
                 dtype.c_str(), t.median_ms, t.min_ms, tflops);
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"CUDA backend benchmarks at the transformer's shapes (JSON lines on stdout)"};
    int64_t tokens = 51000 + 256;
    int reps = 10;
    bool skip_gemm = false, skip_attention = false;
    app.add_option("--tokens", tokens, "sequence length (video + text tokens)");
    app.add_option("--reps", reps, "timed calls per measurement (median reported)")->check(CLI::PositiveNumber);
    app.add_flag("--no-gemm", skip_gemm, "skip the GEMMs");
    app.add_flag("--no-attention", skip_attention, "skip attention");
    std::string impl_text = "all";
    app.add_option("--attention-impl", impl_text, "bf16 attention through cudnn, kernel, or all (both, one row each)")
        ->check(CLI::IsMember({"cudnn", "kernel", "all"}))
        ->capture_default_str();
    CLI11_PARSE(app, argc, argv);

    const std::string why = cuda_unavailable_reason();
    if (!why.empty()) {
        std::fprintf(stderr, "bench_cuda: no CUDA device: %s\n", why.c_str());
        return 2;
    }
    try {
        CudaBackend& be = cuda_backend();
        cudaDeviceProp prop{};
        SR_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
        std::fprintf(stderr, "bench_cuda on %s (%d SMs), %lld tokens\n", prop.name, prop.multiProcessorCount,
                     static_cast<long long>(tokens));
        const int64_t K = 3072;
        if (!skip_gemm) {
            const Tensor x = random_device(be, {tokens, K}, DType::BF16, 1);
            for (int64_t N : {3072, 9216, 12288}) {
                const Tensor w = random_device(be, {N, K}, DType::BF16, uint64_t(N));
                Tensor y16 = Tensor::empty({tokens, N}, DType::BF16, be.memory(), "gemm out");
                const std::string shape = fmt::format("M{} K{} N{}", tokens, K, N);
                const double flops = 2.0 * double(tokens) * double(N) * double(K);
                report("gemm", shape, "bf16->bf16",
                       time_calls(be, reps,
                                  [&] {
                                      be.matmul(tokens, N, K, x.raw_data(), w.raw_data(), DType::BF16, y16.raw_data(),
                                                DType::BF16, N, nullptr);
                                  }),
                       flops);
                y16 = Tensor();
                Tensor y32 = Tensor::empty({tokens, N}, DType::F32, be.memory(), "gemm out");
                report("gemm", shape, "bf16->f32",
                       time_calls(be, reps,
                                  [&] {
                                      be.matmul(tokens, N, K, x.raw_data(), w.raw_data(), DType::BF16, y32.raw_data(),
                                                DType::F32, N, nullptr);
                                  }),
                       flops);
            }
        }
        if (!skip_attention) {
            const int64_t H = 24, D = 128;
            be.set_attention_precision(GemmPrecision::BF16);
            const Tensor qb = random_device(be, {1, tokens, H, D}, DType::F32, 11);
            const Tensor kb = random_device(be, {1, tokens, H, D}, DType::F32, 12);
            const Tensor vb = random_device(be, {1, tokens, H, D}, DType::F32, 13);
            Tensor ob = Tensor::empty({1, tokens, H, D}, DType::F32, be.memory(), "attention out");
            const Tensor q = qb.permute({0, 2, 1, 3}), k = kb.permute({0, 2, 1, 3}), v = vb.permute({0, 2, 1, 3});
            Tensor o = ob.permute({0, 2, 1, 3});
            const double flops = 4.0 * double(tokens) * double(tokens) * double(H) * double(D);
            const float scale = 0.08838834764831845f;  // 1/sqrt(128)
            const std::string shape = fmt::format("B1 H{} L{} D{}", H, tokens, D);
            for (const CudaImpl impl : {CudaImpl::Cudnn, CudaImpl::Kernel}) {
                if (impl_text != "all" && impl_text != cuda_impl_name(impl)) continue;
                be.set_attention_impl(impl);
                // The path that really runs (cuDNN falls back to the kernel where it cannot build a plan).
                const std::string path = attention_path_name(be.attention_path(D, false, false));
                if (impl == CudaImpl::Cudnn) std::fprintf(stderr, "%s\n", be.cudnn_status().c_str());
                report("attention", shape, "f32 io, bf16 " + path,
                       time_calls(be, reps, [&] { be.attention(q, k, v, o, AttentionMask{}, scale); }), flops);
                // The joint attention's padded text: 156 of 256 text keys valid (FLOPs counted for all keys).
                AttentionMask padded;
                padded.kv_len = {tokens - 100};
                report("attention", shape + " kv_len-100", "f32 io, bf16 " + path,
                       time_calls(be, reps, [&] { be.attention(q, k, v, o, padded, scale); }), flops);
            }
        }
        be.synchronize();
    } catch (const std::exception& e) {
        std::fprintf(stderr, "bench_cuda: %s\n", e.what());
        return 1;
    }
    return 0;
}
