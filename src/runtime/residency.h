// Weight residency: which blocks of a model stay in device memory and which are streamed through a ring of
// device buffers, copying the next `prefetch` blocks while the current one computes. The budget is a hard
// limit: a plan that cannot fit throws OutOfMemoryError naming what did not fit; device memory comes from
// the device's budgeted allocator, which enforces it again at every allocation (activations included).
//
//   sr::ResidencyManager mgr(device, model.weight_blocks(),
//                            {.budget_bytes = 12ull << 30, .reserve_bytes = activations, .prefetch = 1,
//                             .host_memory = sr::HostMemoryMode::Mmap});
//   model.forward(device.backend(), inputs, {}, &mgr);   // the model acquires/releases its blocks in order
//
// Blocks are acquired in the order the model announces for each pass (begin_pass; by default every block in
// index order), and the next pass is expected to repeat it: the prefetch follows that order across passes,
// and resident blocks are reused across steps. A pass that skips blocks or acquires one twice is announced
// as such; a pass announced with another order re-aims the prefetch (copies already made for blocks the new
// order wants next are kept).
//
// Host memory modes (where streamed weights are read from, each weight held in host memory once):
//   Pinned   streamed blocks are packed into page-locked memory at setup (up to pinned_budget_bytes; the
//            rest are staged as in Mmap); their file pages are then dropped from this process.
//   Pageable streamed blocks are copied from wherever they are (the mapped file, or memory a dtype
//            conversion produced) by the driver's own slow path.
//   Mmap     weights stay in the page cache of the safetensors files and go through the device's small
//            pinned staging ring: non-reclaimable host memory stays that ring, whatever the model size.
// Resident blocks are uploaded once (staged, or pageable in Pageable mode); afterwards their file pages are
// dropped from this process (they stay in the page cache, reclaimable).
#pragma once

#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/tensor.h"
#include "nn/weight_blocks.h"
#include "runtime/accelerator.h"

namespace sr {

enum class HostMemoryMode : uint8_t { Pinned, Pageable, Mmap };
const char* host_memory_mode_name(HostMemoryMode mode);
// "pinned" | "pageable" | "mmap"; InputError naming `what` otherwise.
HostMemoryMode parse_host_memory_mode(std::string_view text, std::string_view what);

// Device bytes a block occupies when it is placed or streamed: each tensor rounded up to 64 bytes (the
// alignment kernels want), its side-path tensors (WeightBlock::side_path) left out.
size_t device_block_bytes(const WeightBlock& block);
// Device bytes of a block's side-path tensors (a runtime LoRA's down and up), rounded as above: resident for the
// whole run wherever the rest of the block is, so they never travel with it.
size_t side_path_bytes(const WeightBlock& block);

struct ResidencyOptions {
    size_t budget_bytes = 0;   // device memory for weights + reserve; 0 = unlimited (everything resident)
    size_t reserve_bytes = 0;  // activations and workspace, planned inside the same budget
    int prefetch = 1;          // streamed blocks in flight while one computes (ring of prefetch + 1 buffers)
    HostMemoryMode host_memory = HostMemoryMode::Mmap;
    size_t pinned_budget_bytes = 0;  // Pinned mode: page-locked bytes in all (staging ring included); 0 = no limit
    size_t staging_bytes = 0;        // the device's pinned staging ring: counts against pinned_budget_bytes
};

struct ResidencyPlan {
    std::vector<bool> resident;  // per block, in execution order
    size_t resident_bytes = 0;
    size_t slot_bytes = 0;  // one ring buffer: the largest streamed block
    int slots = 0;          // ring buffers (0 when nothing streams)
    size_t streamed_bytes_per_pass = 0;
    size_t reserve_bytes = 0;
    size_t side_path_bytes = 0;  // every block's side-path tensors, resident (counted once, never streamed)
    size_t weight_bytes() const { return resident_bytes + side_path_bytes + slot_bytes * size_t(slots); }
    size_t device_bytes() const { return weight_bytes() + reserve_bytes; }
    int streamed_blocks() const;
};

// `blocks`: (name, device bytes) in execution order; `side_path`: bytes that stay resident besides them (the
// blocks' side-path tensors). Minimizes the bytes streamed per pass.
ResidencyPlan plan_residency(const std::vector<std::pair<std::string, size_t>>& blocks, const ResidencyOptions& options,
                             size_t side_path = 0);

// The streamed blocks a manager with this plan packs into page-locked memory (Pinned mode: in execution
// order, each while it fits the pinned budget less the staging ring), and their bytes. A pinned budget
// smaller than the staging ring is an InputError.
std::vector<bool> pinned_blocks(const std::vector<std::pair<std::string, size_t>>& blocks, const ResidencyPlan& plan,
                                const ResidencyOptions& options);
size_t planned_pinned_bytes(const std::vector<std::pair<std::string, size_t>>& blocks, const ResidencyPlan& plan,
                            const ResidencyOptions& options);

struct ResidencyStats {
    size_t bytes_moved = 0;      // host -> device by this manager, including the one-time upload of resident blocks
    size_t streamed_bytes = 0;   // bytes of streamed blocks handed to compute (acquire): per pass, the plan's
    size_t pinned_bytes = 0;     // page-locked host memory this manager holds
    uint64_t copies = 0;         // the device's copy engine (shared by every manager on it)
    double copy_seconds = 0;     // copy engine busy time
    double exposed_seconds = 0;  // time compute waited for copies
    double hidden_fraction() const { return copy_seconds > 0 ? 1.0 - exposed_seconds / copy_seconds : 1.0; }
};

class ResidencyManager final : public BlockWeightProvider {
public:
    ResidencyManager(Accelerator& device, std::vector<WeightBlock> blocks, const ResidencyOptions& options);
    ~ResidencyManager() override;
    ResidencyManager(const ResidencyManager&) = delete;
    ResidencyManager& operator=(const ResidencyManager&) = delete;

    const ResidencyPlan& plan() const { return plan_; }
    // The blocks the coming pass acquires, in order (repeats and omissions allowed).
    void begin_pass(const std::vector<size_t>& order) override { begin(order, false); }
    // An open pass prefetches nothing past `first` until continue_pass() names the rest.
    void begin_open_pass(const std::vector<size_t>& first) override { begin(first, true); }
    void continue_pass(const std::vector<size_t>& rest) override;
    // Device tensors of block i (same order as its WeightBlock's), valid until release(i). A streamed block
    // must be the next streamed one of the announced order.
    const std::vector<Tensor>& acquire(size_t i) override;
    void release(size_t i) override;
    ResidencyStats stats();
    // Block names in the order their copies were issued (resident uploads first).
    const std::vector<std::string>& copy_log() const { return copy_log_; }
    // How each block's copies travel (resident blocks: their one-time upload).
    CopyPath copy_path(size_t block) const { return sources_[block].path; }

private:
    struct Slot {
        Tensor memory;              // slot_bytes of device memory
        std::vector<Tensor> views;  // the block's tensors in this slot
        int64_t block = -1;         // block it holds or is receiving
        uint64_t ticket = 0;        // copy completion
        uint64_t freed_after = 0;   // compute marker after which the slot may be overwritten
        bool busy = false;          // acquired and not released
    };
    struct Source {
        CopyPath path = CopyPath::Staged;
        Tensor packed;  // Pinned: the whole block packed in page-locked memory in the device layout
    };
    uint64_t upload(size_t block, char* dst, std::vector<Tensor>& views, uint64_t after_compute);
    void pump();
    void begin(const std::vector<size_t>& order, bool open);
    void pin_blocks(const std::vector<bool>& pinned);

    Accelerator& device_;
    std::vector<WeightBlock> blocks_;
    ResidencyPlan plan_;
    std::vector<Source> sources_;
    std::vector<std::vector<Tensor>> resident_views_;  // per resident block: its device tensors
    std::vector<Tensor> resident_memory_;
    std::vector<uint64_t> resident_ticket_;
    std::vector<bool> host_pages_dropped_;
    std::vector<size_t> streamed_order_;  // the streamed blocks of the pass order, in order (repeats kept)
    size_t next_streamed_ = 0;            // position in streamed_order_ of the next block to copy
    bool open_ = false;                   // the order is the first part of a pass: no copies past its end
    bool split_ = false;                  // the pass was stated in two parts (continue_pass) ...
    bool wrapped_ = false;                // ... and the prefetch has wrapped to the next pass's start ...
    size_t first_part_ = 0;               // ... where it stops after the first part's streamed blocks
    std::vector<Slot> slots_;
    std::deque<size_t> in_flight_;  // slot indices holding upcoming blocks, in order
    std::vector<std::string> copy_log_;
    std::vector<size_t> block_bytes_;
    // The side-path tensors of every block, uploaded once into one allocation: per block, per tensor, its
    // device view (undefined for the block's other tensors); the upload's ticket until compute first waits on it.
    Tensor side_memory_;
    std::vector<std::vector<Tensor>> side_views_;
    uint64_t side_ticket_ = 0;
    size_t bytes_moved_ = 0;
    size_t streamed_bytes_ = 0;
    size_t pinned_bytes_ = 0;
};

// Drops the pages of a memory-mapped tensor from this process (they stay in the page cache, reclaimable):
// after its bytes were copied elsewhere, so the process's resident set shows each weight once. A no-op for
// tensors in owned memory.
void drop_mapped_pages(const Tensor& t);

}  // namespace sr
