// VAE decode benchmark: untiled decode at named shapes with random weights, median of repetitions after a
// warm-up, GFLOP/s from the convolution count, peak host memory; one JSON line per shape on stdout. Then
// the predicted peak memory of the real 544x960x97 decode with the default tiles, extrapolated from two
// measured tile sizes of the real-width model.
//
//   bench_vae [--reps 3]
//
// FLOP count: the sum over every convolution of 2 * C_in * kt*kh*kw * C_out * output voxels, plus the mid
// block's four C x C projections (2*C*C per token each) and its frame-causal attention (QK^T and PV:
// 4 * C * sum over frames of HW * (f+1)HW). Norms, activations and copies are not counted.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>

#include "backends/cpu/cpu_backend.h"
#include "core/parallel.h"
#include "models/hunyuan_video_vae.h"

using namespace sr;

namespace {

double decoder_flops(const HunyuanVideoVAEConfig& c, int64_t T, int64_t h, int64_t w) {
    const auto& boc = c.block_out_channels;
    const int64_t n = int64_t(boc.size());
    double f = 0;
    auto conv = [&](int64_t in, int64_t out, int64_t k, double vox) { f += 2.0 * in * k * k * k * out * vox; };
    double vox = double(T * h * w);
    conv(c.latent_channels, c.latent_channels, 1, vox);  // post_quant_conv
    int64_t C = boc.back();
    conv(c.latent_channels, C, 3, vox);                                              // conv_in
    for (int r = 0; r < 4; ++r) conv(C, C, 3, vox);                                  // mid resnets
    f += 4 * 2.0 * C * C * vox + 4.0 * C * (h * w) * (h * w) * (T * (T + 1) / 2.0);  // mid attention
    for (int64_t i = 0; i < n; ++i) {
        const int64_t out = boc[size_t(n - 1 - i)];
        for (int64_t j = 0; j <= c.layers_per_block; ++j) {
            const int64_t in = j == 0 ? C : out;
            conv(in, out, 3, vox);
            conv(out, out, 3, vox);
            if (in != out) conv(in, out, 1, vox);
        }
        C = out;
        const bool space = i < 3, time = i >= n - 3 && i != n - 1;  // ratios 8 and 4
        if (space || time) {
            T = time ? 1 + (T - 1) * 2 : T;
            h *= space ? 2 : 1;
            w *= space ? 2 : 1;
            vox = double(T * h * w);
            conv(out, out, 3, vox);
        }
    }
    conv(C, c.out_channels, 3, vox);  // conv_out
    return f;
}

struct Result {
    double median_ms, min_ms, max_ms, flops;
    size_t peak;
};

Result run(const HunyuanVideoVAE& vae, const Shape& z_shape, int reps) {
    Tensor z = Tensor::empty(z_shape, DType::F32);
    std::mt19937_64 rng(1);
    std::normal_distribution<float> nd;
    for (int64_t i = 0; i < z.numel(); ++i) z.data<float>()[i] = nd(rng);
    CpuBackend& be = cpu_backend();
    vae.decode_untiled(be, z);  // warm-up: oneDNN primitive creation
    std::vector<double> ms;
    size_t peak = 0;
    for (int r = 0; r < reps; ++r) {
        host_allocator().reset_peak();
        const size_t base = host_allocator().in_use_bytes();
        const auto t0 = std::chrono::steady_clock::now();
        Tensor y = vae.decode_untiled(be, z);
        ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
        peak = std::max(peak, host_allocator().peak_bytes() - base);
    }
    std::sort(ms.begin(), ms.end());
    return {ms[ms.size() / 2], ms.front(), ms.back(), decoder_flops(vae.config(), z_shape[2], z_shape[3], z_shape[4]),
            peak};
}

void print(const char* name, const Shape& z, const Result& r, int reps) {
    std::printf(
        "{\"bench\":\"vae_decode\",\"shape\":\"%s\",\"latents\":\"%s\",\"threads\":%d,\"reps\":%d,"
        "\"median_ms\":%.2f,\"min_ms\":%.2f,\"max_ms\":%.2f,\"gflop\":%.3f,\"gflops\":%.1f,\"peak_bytes\":%zu}\n",
        name, z.str().c_str(), n_threads(), reps, r.median_ms, r.min_ms, r.max_ms, r.flops * 1e-9,
        r.flops / (r.median_ms * 1e-3) * 1e-9, r.peak);
    std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app("VAE decode benchmark");
    int reps = 3;
    app.add_option("--reps", reps, "timed repetitions (median reported)");
    CLI11_PARSE(app, argc, argv);
    try {
        HunyuanVideoVAEConfig small;  // the fixture's tiny widths
        small.block_out_channels = {8, 16, 16, 16};
        small.norm_num_groups = 4;
        const HunyuanVideoVAE small_vae = HunyuanVideoVAE::random(small, DType::F32, 1);
        const Shape s1{1, 16, 5, 8, 8};
        print("small_17x64x64", s1, run(small_vae, s1, reps), reps);

        const HunyuanVideoVAEConfig real;  // 128/256/512/512, 32 groups: the released checkpoint's widths
        const HunyuanVideoVAE real_vae = HunyuanVideoVAE::random(real, DType::F32, 1);
        const Shape s2{1, 16, 2, 4, 4};
        print("real_widths_5x32x32", s2, run(real_vae, s2, reps), reps);

        // Peak memory of one temporal tile (5 latent frames -> 17 frames) at two spatial sizes, linear in the
        // pixel count (every large buffer is a full-resolution activation), extrapolated to the default
        // 256x256 tile (32x32 latents).
        const Shape a{1, 16, 5, 4, 4}, b{1, 16, 5, 6, 6};
        const Result ra = run(real_vae, a, 1), rb = run(real_vae, b, 1);
        print("real_widths_17x32x32", a, ra, 1);
        print("real_widths_17x48x48", b, rb, 1);
        const double per_px = (double(rb.peak) - double(ra.peak)) / (48.0 * 48 - 32.0 * 32);
        const double tile = double(ra.peak) + per_px * (256.0 * 256 - 32.0 * 32);
        // Around the tile decoder the streamed 544x960x97 decode holds: the current temporal tile's output
        // (3 x 17 x 544 x 960 f32) and the previous one (blend source), the copy that drops the overlap frame,
        // and two rows of spatial tiles (5 tiles of 3 x 17 x 256 x 256 each); decode() adds the whole video.
        const double frame = 3.0 * 544 * 960 * 4;
        const double streaming = tile + 3 * 17 * frame + 2 * 5 * 17 * 3.0 * 256 * 256 * 4;
        const double whole = streaming + 97 * frame;
        const double weights = double(real_vae.parameter_count()) * 4;
        std::printf(
            "{\"bench\":\"vae_predicted_peak\",\"shape\":\"544x960x97\",\"tiles\":\"256x256x16 stride 192x192x12\","
            "\"tile_decoder_bytes\":%.0f,\"decode_streaming_bytes\":%.0f,\"decode_bytes\":%.0f,"
            "\"f32_weight_bytes\":%.0f}\n",
            tile, streaming, whole, weights);
        std::fprintf(stderr,
                     "predicted 544x960x97 peak (activations): tile %s, streaming %s, decode() %s; weights %s\n",
                     format_bytes(tile).c_str(), format_bytes(streaming).c_str(), format_bytes(whole).c_str(),
                     format_bytes(weights).c_str());
    } catch (const Error& e) {
        std::fprintf(stderr, "bench_vae: %s\n", e.what());
        return 1;
    }
    return 0;
}
