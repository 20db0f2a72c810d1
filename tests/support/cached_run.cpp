#include "support/cached_run.h"

#include <chrono>

#include "backends/cpu/cpu_backend.h"
#include "models/step_cache.h"

namespace sr::test {

CachedRun run_cached(const SkyReelsPipeline& pipe, GenerationRequest req) {
    CachedRun out;
    const GenerationParams& p = req.params;
    out.passes = p.num_inference_steps;  // what an uncached loop runs; a cache reports its own count
    out.video = Tensor::zeros({1, 3, p.num_frames, p.height, p.width}, DType::F32);
    req.after_cached_loop = [&](const StepCache& c) {
        out.passes = c.passes(), out.skipped = c.skipped(), out.skipped_steps = c.skipped_steps();
        out.estimate = c.accumulated_estimate();
    };
    cpu_backend().set_gemm_precision(GemmPrecision::F32);
    const auto t0 = std::chrono::steady_clock::now();
    out.latents = pipe.generate(cpu_backend(), req, {}, [&](const Tensor& frames, int64_t first) {
        Tensor dst = out.video.slice(2, first, first + frames.dim(2));
        dst.copy_from(frames);
    });
    out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return out;
}

}  // namespace sr::test
