// Weight residency: which blocks of a model stay in device memory and which are streamed through a ring of
// device buffers, copying the next `prefetch` blocks while the current one computes. The budget is a hard
// limit: a plan that cannot fit throws OutOfMemoryError naming what did not fit; device memory comes from
// the device's budgeted allocator, which enforces it again at every allocation.
//
//   auto plan = sr::plan_residency(blocks, {.budget_bytes = 12ull << 30, .reserve_bytes = act, .prefetch = 1});
//   sr::ResidencyManager mgr(device, specs, options);
//   for (size_t i = 0; i < n; ++i) {
//       const auto& w = mgr.acquire(i);   // device tensors of block i, in the spec's order
//       run_block(i, w);
//       mgr.release(i);
//   }
//
// Blocks are acquired in execution order, cyclically (0..n-1, then 0..n-1 again for the next step): the
// prefetch follows that order, and resident blocks are reused across steps.
#pragma once

#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "models/hunyuan_video_transformer.h"
#include "runtime/simulated_device.h"

namespace sr {

struct WeightBlockSpec {
    std::string name;
    std::vector<Tensor> tensors;  // host tensors (memory-mapped or owned), any dtype; undefined ones pass through
};

// The transformer's blocks (embedders, dual blocks, single blocks, head) as residency specs.
std::vector<WeightBlockSpec> weight_block_specs(const HunyuanVideoTransformer& model);

// Device bytes a block occupies: each tensor rounded up to 64 bytes (the alignment kernels want).
size_t device_block_bytes(const WeightBlockSpec& block);

struct ResidencyOptions {
    size_t budget_bytes = 0;   // device memory for weights + reserve; 0 = unlimited (everything resident)
    size_t reserve_bytes = 0;  // activations and workspace, planned inside the same budget
    int prefetch = 1;          // streamed blocks in flight while one computes (ring of prefetch + 1 buffers)
};

struct ResidencyPlan {
    std::vector<bool> resident;  // per block, in execution order
    size_t resident_bytes = 0;
    size_t slot_bytes = 0;  // one ring buffer: the largest streamed block
    int slots = 0;          // ring buffers (0 when nothing streams)
    size_t streamed_bytes_per_pass = 0;
    size_t reserve_bytes = 0;
    size_t device_bytes() const { return resident_bytes + slot_bytes * size_t(slots) + reserve_bytes; }
    int streamed_blocks() const;
};

// `blocks`: (name, device bytes) in execution order. Minimizes the bytes streamed per pass.
ResidencyPlan plan_residency(const std::vector<std::pair<std::string, size_t>>& blocks,
                             const ResidencyOptions& options);

struct ResidencyStats {
    size_t bytes_moved = 0;  // host -> device, including the one-time upload of resident blocks
    uint64_t copies = 0;
    double copy_seconds = 0;     // copy engine busy time
    double exposed_seconds = 0;  // time compute waited for copies
    double hidden_fraction() const { return copy_seconds > 0 ? 1.0 - exposed_seconds / copy_seconds : 1.0; }
};

class ResidencyManager final : public BlockWeightProvider {
public:
    ResidencyManager(SimulatedDevice& device, std::vector<WeightBlockSpec> blocks, const ResidencyOptions& options);
    ~ResidencyManager();
    ResidencyManager(const ResidencyManager&) = delete;
    ResidencyManager& operator=(const ResidencyManager&) = delete;

    const ResidencyPlan& plan() const { return plan_; }
    // Device tensors of block i (same order as its spec), valid until release(i).
    const std::vector<Tensor>& acquire(size_t i) override;
    void release(size_t i) override;
    ResidencyStats stats();
    // Block names in the order their copies were issued (resident uploads first).
    const std::vector<std::string>& copy_log() const { return copy_log_; }

private:
    struct Slot {
        Tensor memory;        // slot_bytes of device memory
        int64_t block = -1;   // block it holds or is receiving
        uint64_t ticket = 0;  // copy completion
        bool busy = false;    // acquired and not released
    };
    uint64_t upload(size_t block, char* dst, std::vector<Tensor>& views);
    void pump();

    SimulatedDevice& device_;
    std::vector<WeightBlockSpec> blocks_;
    ResidencyPlan plan_;
    std::vector<std::vector<Tensor>> device_views_;  // per block: resident tensors, or views into its slot
    std::vector<Tensor> resident_memory_;
    std::vector<uint64_t> resident_ticket_;
    std::vector<size_t> streamed_order_;  // streamed block indices in execution order
    size_t next_streamed_ = 0;            // position in streamed_order_ of the next block to copy
    std::vector<Slot> slots_;
    std::deque<size_t> in_flight_;  // slot indices holding upcoming blocks, in order
    std::vector<std::string> copy_log_;
    size_t bytes_moved_ = 0;
    uint64_t last_ticket_ = 0;  // the latest copy issued: waiting for it waits for all (copies run in order)
};

}  // namespace sr
