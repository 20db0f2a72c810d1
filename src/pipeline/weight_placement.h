// Where the pipeline's models keep their weights while they run. The pipeline brackets every use of a model
// with a ModelScope; a WeightPlacement decides what that means:
//   none (nullptr)   the weights stay where they were loaded (the CPU device)
//   DevicePlacement  the weights go to an accelerator through residency managers, by offload mode:
//     OffloadMode::None   every model resident for the whole generation (cotenant), like the reference
//                         without --offload
//     OffloadMode::Model  only the model in use is on the device; it leaves when its stage ends (the
//                         reference's --offload, diffusers' model CPU offload: text_encoder -> text_encoder_2
//                         -> transformer -> vae, one at a time; the reference briefly keeps text_encoder_2 and
//                         the VAE together for I2V, we do not)
//     OffloadMode::Block  as Model, and a model that does not fit the budget with its stage's activations
//                         streams its blocks through a ring of device buffers (the reference's
//                         --parameters_level, minus its device-wide synchronize at every group)
//
//   sr::DevicePlacement place(device, components, options, plan.reserves);
//   { sr::ModelScope use(&place, sr::PipelineModel::Transformer); model.forward(be, in, {}, use.weights()); }
#pragma once

#include <array>
#include <memory>
#include <string_view>
#include <vector>

#include "pipeline/pipeline.h"
#include "runtime/residency.h"

namespace sr {

enum class PipelineModel : uint8_t { Llama, Clip, VaeEncoder, Transformer, VaeDecoder };
constexpr size_t kPipelineModels = 5;
const char* pipeline_model_name(PipelineModel m);

enum class OffloadMode : uint8_t { None, Model, Block };
const char* offload_mode_name(OffloadMode m);
// "none" | "model" | "block"; InputError naming `what` otherwise.
OffloadMode parse_offload_mode(std::string_view text, std::string_view what);

struct MemoryOptions {
    OffloadMode offload = OffloadMode::None;
    size_t vram_budget = 0;  // bytes of device memory for weights + activations; 0 = unlimited
    HostMemoryMode host_memory = HostMemoryMode::Mmap;
    size_t pinned_budget = 0;  // Pinned mode: page-locked bytes for streamed weights; 0 = all of them
    int prefetch = 1;          // streamed blocks in flight while one computes
};

// The residency manager's options for one model under `options`, with `reserve` bytes of activations
// planned inside the budget (the plan and the placement must agree on them).
ResidencyOptions residency_options(const MemoryOptions& options, size_t reserve);

// The blocks of `model` a pipeline stage uses (host tensors of the loaded model), and
// their indices in that model's own block numbering.
struct ModelBlocks {
    std::vector<WeightBlock> blocks;
    std::vector<size_t> model_index;
    size_t bytes() const;  // device bytes, side paths included
};
ModelBlocks pipeline_model_blocks(const PipelineComponents& c, PipelineModel model);

class WeightPlacement {
public:
    virtual ~WeightPlacement() = default;
    // The provider of `model`'s weights for this use (nullptr: as loaded).
    virtual BlockWeightProvider* enter(PipelineModel model) = 0;
    virtual void leave(PipelineModel model) = 0;
};

class ModelScope {
public:
    ModelScope(WeightPlacement* placement, PipelineModel model)
        : placement_(placement), model_(model), weights_(placement ? placement->enter(model) : nullptr) {}
    ~ModelScope() {
        if (placement_) placement_->leave(model_);
    }
    ModelScope(const ModelScope&) = delete;
    ModelScope& operator=(const ModelScope&) = delete;
    BlockWeightProvider* weights() const { return weights_; }

private:
    WeightPlacement* placement_;
    PipelineModel model_;
    BlockWeightProvider* weights_;
};

struct PlacementStats {
    size_t bytes_moved = 0;                 // host -> device, all models
    size_t transformer_streamed_bytes = 0;  // streamed blocks handed to the transformer's forwards
};

class DevicePlacement final : public WeightPlacement {
public:
    // `reserves`: activation bytes per model's stage, planned inside the budget (MemoryPlan::reserves).
    DevicePlacement(Accelerator& device, const PipelineComponents& components, const MemoryOptions& options,
                    const std::array<size_t, kPipelineModels>& reserves);
    ~DevicePlacement() override;
    BlockWeightProvider* enter(PipelineModel model) override;
    void leave(PipelineModel model) override;
    // The totals since the last call (or construction), the models staying where they are: with
    // OffloadMode::None they stay resident for the next job (a Session's), so its weights move once.
    PlacementStats take_job_stats();
    // Takes every model off the device and returns the totals since the last take_job_stats().
    PlacementStats finish();
    const MemoryOptions& options() const { return options_; }
    const std::array<size_t, kPipelineModels>& reserves() const { return reserves_; }

private:
    class Placed;
    std::unique_ptr<Placed> place(PipelineModel model, bool whole) const;
    void retire(PipelineModel model);
    // Adds what model m's manager did since it was last counted.
    void count(size_t m);

    Accelerator& device_;
    const PipelineComponents& components_;
    MemoryOptions options_;
    std::array<size_t, kPipelineModels> reserves_;
    std::array<std::unique_ptr<Placed>, kPipelineModels> placed_;
    std::array<PlacementStats, kPipelineModels> counted_{};  // per placed model: its manager's totals so far
    PlacementStats stats_;
};

}  // namespace sr
