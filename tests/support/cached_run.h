// One pipeline run on the CPU with what a step-cache comparison needs (models/step_cache.h): the final
// latents, the decoded video, the wall time and the cache's counts. Shared by test_step_cache (skips and bit
// identity per threshold) and bench_step_cache (skips and error per threshold).
//
//   const sr::test::CachedRun plain = sr::test::run_cached(pipe, req);   // req.params.cache off
//   req.params.cache = sr::parse_step_cache("teacache:0.1", "--cache");
//   const sr::test::CachedRun fast = sr::test::run_cached(pipe, req);    // fast.skipped of fast.passes
#pragma once

#include <vector>

#include "core/tensor.h"
#include "pipeline/pipeline.h"

namespace sr::test {

struct CachedRun {
    Tensor latents;  // the loop's final latents [1, 16, T, h, w]
    Tensor video;    // the decoded frames [1, 3, num_frames, height, width], ~[-1, 1]
    double seconds = 0;
    // Transformer passes the loop would run (the steps) and those it skipped; uncached: steps and 0.
    int passes = 0, skipped = 0;
    std::vector<int> skipped_steps;
    double estimate = 0;  // StepCache::accumulated_estimate() (0 uncached)
};

// Runs `req` on the CPU backend with f32 GEMMs (the fixtures' precision, and the same arithmetic for every
// setting compared), decoding the whole video.
CachedRun run_cached(const SkyReelsPipeline& pipe, GenerationRequest req);

}  // namespace sr::test
