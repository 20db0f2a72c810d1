// Memory-plan helpers shared by the device, denoising and session tests: the smallest budget a plan accepts,
// and the released models by shape alone (no file, no weight read).
#pragma once

#include <cstddef>

#include "core/virtual_allocator.h"
#include "pipeline/memory_plan.h"
#include "pipeline/pipeline.h"

namespace sr::test {

// The smallest device budget plan_memory accepts for `req` under `options` on `target` (bisection to 4 KiB,
// down from the peak of the unbudgeted plan).
size_t tightest_budget(const SkyReelsPipeline& pipe, const GenerationRequest& req, MemoryOptions options,
                       const PlanTarget& target = {});

// The released SkyReels-V1 / HunyuanVideo models (13B transformer, Llama, CLIP, VAE) in bf16, shapes only, bound
// to `weights` (an address space: plans only).
SkyReelsPipeline released_model_shapes(VirtualAllocator& weights);

}  // namespace sr::test
