// What a denoising preview costs (generate --preview, the server's page), at a named video size: the denoised
// estimate x0 = latents - sigma * velocity, the latent-to-RGB map, and writing each kind of preview file (a
// contact sheet PNG, a folder of frame PNGs swapped in whole, an animated PNG). Median, min and max of
// repetitions after a warm-up, the file's bytes; one JSON line per part on stdout.
//
//   bench_preview [--size 544x960x97] [--reps 5] [--dir /tmp]
//
// The latents are Gaussian noise, which PNG cannot compress: the file sizes and encoding times are the worst
// case (a real preview, smooth regions of colour, compresses several times better).
#include <CLI/CLI.hpp>

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <vector>

#include "core/error.h"
#include "pipeline/flow_match_scheduler.h"
#include "pipeline/latent_preview.h"
#include "pipeline/pipeline.h"
#include "pipeline/preview_files.h"

using namespace sr;
namespace fs = std::filesystem;

namespace {

// Milliseconds of each repetition of `fn` after one warm-up run.
std::vector<double> time_ms(int reps, const std::function<void()>& fn) {
    fn();
    std::vector<double> ms;
    for (int r = 0; r < reps; ++r) {
        const auto t0 = std::chrono::steady_clock::now();
        fn();
        ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    }
    std::sort(ms.begin(), ms.end());
    return ms;
}

void print(const std::string& size, const char* part, const std::vector<double>& ms, uintmax_t bytes) {
    std::printf(
        "{\"bench\": \"preview\", \"size\": \"%s\", \"part\": \"%s\", \"median_ms\": %.2f, \"min_ms\": %.2f, "
        "\"max_ms\": %.2f, \"bytes\": %ju}\n",
        size.c_str(), part, ms[ms.size() / 2], ms.front(), ms.back(), bytes);
}

uintmax_t bytes_of(const fs::path& p) {
    if (!fs::is_directory(p)) return fs::file_size(p);
    uintmax_t n = 0;
    for (const auto& e : fs::directory_iterator(p)) n += e.file_size();
    return n;
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app("Cost of a denoising preview (latent to RGB, files)");
    std::string size = "544x960x97", dir = fs::temp_directory_path().string();
    int reps = 5;
    app.add_option("--size", size, "HEIGHTxWIDTHxFRAMES of the video")->capture_default_str();
    app.add_option("--reps", reps, "Repetitions after a warm-up")->check(CLI::Range(1, 1000))->capture_default_str();
    app.add_option("--dir", dir, "Where the preview files go (a fresh folder inside, removed at the end)");
    CLI11_PARSE(app, argc, argv);
    try {
        int64_t h = 0, w = 0, f = 0;
        SR_THROW_IF(std::sscanf(size.c_str(), "%ldx%ldx%ld", &h, &w, &f) != 3 || h < 8 || w < 8 || f < 1,
                    "--size {}: expected HEIGHTxWIDTHxFRAMES", size);
        const Shape shape{1, 16, (f - 1) / 4 + 1, h / 8, w / 8};
        const Tensor latents = gaussian_noise(shape, 1), velocity = gaussian_noise(shape, 2);
        FlowMatchEulerScheduler scheduler;
        scheduler.set_timesteps(30);
        const fs::path out = fs::path(dir) / fmt::format("bench_preview.{}", ::getpid());
        fs::create_directories(out);

        Tensor x0;
        print(size, "denoised estimate", time_ms(reps, [&] { x0 = scheduler.denoised(velocity, 10, latents); }), 0);
        PreviewFrames p;
        print(size, "latent to RGB", time_ms(reps, [&] { p = latent_preview(x0, 10, 30); }), 0);
        const Image8 sheet = contact_sheet(p);
        std::fprintf(stderr,
                     "%s: %ld latent frames of %ld x %ld (height x width), drawn %dx: %ld x %ld; contact sheet %ld x "
                     "%ld\n",
                     size.c_str(), long(shape[2]), long(shape[3]), long(shape[4]), p.upscale, long(p.height),
                     long(p.width), long(sheet.height), long(sheet.width));
        for (const char* name : {"sheet.png", "frames", "animation.apng"}) {
            const fs::path target = out / name;
            const std::vector<double> ms = time_ms(reps, [&] { write_preview(target.string(), p); });
            print(size, name, ms, bytes_of(target));
        }
        fs::remove_all(out);
    } catch (const Error& e) {
        std::fprintf(stderr, "bench_preview: %s\n", e.what());
        return 1;
    }
    return 0;
}
