#include "support/memory_planning.h"

#include <memory>

#include "io/weight_binder.h"

namespace sr::test {

size_t tightest_budget(const SkyReelsPipeline& pipe, const GenerationRequest& req, MemoryOptions options,
                       const PlanTarget& target) {
    options.vram_budget = 0;
    size_t lo = 1, hi = plan_memory(pipe, req, options, target).device_peak();
    while (hi - lo > 4096) {
        options.vram_budget = lo + (hi - lo) / 2;
        (plan_memory(pipe, req, options, target, /*require_fit=*/false).fits() ? hi : lo) = options.vram_budget;
    }
    return hi;
}

SkyReelsPipeline released_model_shapes(VirtualAllocator& weights) {
    PipelineComponents c;
    WeightBinder bt = WeightBinder::shapes_only(DType::BF16, weights);
    c.transformer = std::make_shared<const HunyuanVideoTransformer>(HunyuanVideoConfig{}, bt);
    WeightBinder bv = WeightBinder::shapes_only(DType::BF16, weights);
    c.vae = std::make_shared<const HunyuanVideoVAE>(HunyuanVideoVAEConfig{}, bv);
    WeightBinder bl = WeightBinder::shapes_only(DType::BF16, weights);
    c.llama = std::make_shared<const LlamaTextEncoder>(LlamaConfig{}, bl);
    WeightBinder bc = WeightBinder::shapes_only(DType::BF16, weights);
    c.clip = std::make_shared<const ClipTextEncoder>(ClipTextConfig{}, bc);
    return SkyReelsPipeline(std::move(c));
}

}  // namespace sr::test
