// The memory plan of a generation, made before any weight is read: per stage (text encoding, image
// encoding, denoising, decoding) the device memory its weights and activations need, the bytes streamed per
// denoising step, and the host memory that cannot be reclaimed (page-locked buffers, weights held in owned
// memory, host-side tensors). `skyreels generate --dry-run` prints it; a real run places weights by it and
// prints it next to what was measured.
//
// Activations are not estimated from formulas: each stage's real code runs once on a NullBackend over a
// VirtualAllocator (kernels do nothing, memory is address space only), so the activation peak is the peak
// of the allocations the real run makes, to the byte, in milliseconds. The denoising stage runs one step
// (every step allocates the same).
//
//   sr::MemoryPlan plan = sr::plan_memory(pipe, request, options, device_staging_bytes);
//   fmt::print("{}", plan.format(options));
#pragma once

#include <array>
#include <string>
#include <vector>

#include "pipeline/weight_placement.h"

namespace sr {

struct CudaAcceleratorOptions;

struct StagePlan {
    Stage name = Stage::TextEncoding;  // text encoding, image encoding (I2V), denoising, decoding
    size_t weight_bytes = 0;           // weights on the device during the stage (resident + ring buffers)
    size_t activation_bytes = 0;       // activation and workspace peak, including earlier stages' live outputs
    size_t device_peak() const { return weight_bytes + activation_bytes; }
};

struct MemoryPlan {
    std::vector<StagePlan> stages;
    std::array<size_t, kPipelineModels> reserves{};     // activation bytes planned inside each model's budget
    std::array<size_t, kPipelineModels> model_bytes{};  // device bytes of each model's weights
    size_t streamed_bytes_per_step = 0;  // transformer weights copied per denoising step (0: all resident)
    int streamed_blocks = 0, transformer_blocks = 0;
    // The transformer's runtime LoRA side paths: resident on the device while it runs (one allocation, in the
    // weights above, never streamed).
    size_t side_path_bytes = 0;
    int transformer_passes_per_step = 1;  // 2 with CFG rows run as whole passes (cfg_whole_passes)
    size_t pinned_weight_bytes = 0;       // page-locked copies of streamed blocks (pinned mode)
    size_t staging_bytes = 0;             // the device's pinned staging ring (every mode but pageable)
    size_t pinned_bytes = 0;              // both
    size_t owned_weight_bytes = 0;  // weights in owned host memory (dtype-converted or made up), not the page cache
    size_t host_tensor_bytes = 0;   // peak of host-side tensors (latents, text embeddings, CFG, ...)
    // What does not fit the budget, one line each (empty: the plan fits). Only plan_memory(..., require_fit =
    // false) returns a plan with shortfalls; format() prints them under "does not fit".
    std::vector<std::string> shortfalls;
    bool fits() const { return shortfalls.empty(); }

    size_t device_peak() const;
    // Host memory the kernel cannot reclaim under pressure (mapped file pages can be), above the process's
    // baseline (code, libraries).
    size_t host_nonreclaimable() const { return pinned_bytes + owned_weight_bytes + host_tensor_bytes; }
    // `budget_note`: where the budget came from when it was not given (Session::budget_note), printed under
    // the header.
    std::string format(const MemoryOptions& options, const std::string& device,
                       const std::string& budget_note = {}) const;
};

// The device a plan is for. `staging_bytes`: its pinned staging ring (allocated when weights are staged).
// `device`: only whether it is the host matters (an accelerator's runs upload inputs and tables into its
// memory, which the plan counts; a CPU run's do not). `workspace_bytes`: its backend's bound on one op's
// own scratch (Backend::workspace_bytes), reserved on top of every model's activations.
struct PlanTarget {
    size_t staging_bytes = 0;
    Device device = Device{DeviceType::Simulated, 0};
    size_t workspace_bytes = 0;
    // The device allocator's rounding of each allocation (Allocator::block_bytes; null: none), applied to every
    // planned activation and weight block as the real allocator charges them.
    size_t (*block_bytes)(size_t) = nullptr;
    static PlanTarget of(Accelerator& accelerator);
#ifdef SKYREELS_HAVE_CUDA
    // A CUDA device with these options, without touching a GPU (--dry-run plans a CUDA run anywhere).
    static PlanTarget of_cuda(const CudaAcceleratorOptions& options);
#endif
};

// Throws OutOfMemoryError naming the stage and what does not fit when a stage exceeds options.vram_budget;
// with require_fit = false, returns the plan with its shortfalls listed instead (--dry-run prints a plan that
// does not fit too: what each stage would need is the point of asking).
// `parallel`: one rank's groups in a parallel run (PlanningCommunicators: the shapes, no data): its share of
// the tokens and the guidance rows.
MemoryPlan plan_memory(const SkyReelsPipeline& pipe, const GenerationRequest& req, const MemoryOptions& options,
                       const PlanTarget& target = {}, bool require_fit = true, const ParallelGroups& parallel = {});

}  // namespace sr
