// How a model describes its weights to the runtime: an ordered list of blocks (WeightBlock: a name and the
// block's tensors, in the model's declaration order), and a provider that hands each block's tensors to
// forward() wherever they live (host memory as loaded, a device buffer that a residency manager streamed
// them into, ...). Models never see where their weights are; they rebind their views to what acquire()
// returns (nn/weight_visitor.h: rebind_block).
//
// A forward pass states its block order first (begin_pass): the blocks it will acquire, in order, each
// acquire followed by its release before the next acquire. A pass may skip blocks or acquire one more than
// once; a provider that streams weights prefetches along that order.
//
// A pass whose later blocks depend on what its first ones compute (step caching: blocks 0 and 1 decide
// whether the others run) states its first part with begin_open_pass(first): the provider
// prefetches nothing past it, so blocks the decision leaves out are never moved. After the last release of
// that part, continue_pass(rest) states the rest of the pass; the pass as a whole (first + rest) is what the
// next pass is expected to repeat.
//
//   if (weights) weights->begin_pass(order);                       // e.g. {0, 1, 2, ..., n - 1}
//   for (size_t b : order) {
//       const BlockLease lease(weights, b);                        // acquire(b) ... release(b) at scope end
//       const Layer l = lease ? rebind(layers_[b], lease.tensors()) : layers_[b];
//       ...
//   }
#pragma once

#include <string>
#include <vector>

#include "core/error.h"
#include "core/tensor.h"

namespace sr {

// A group of weights that the runtime places or streams as one unit.
struct WeightBlock {
    std::string name;
    std::vector<Tensor> tensors;  // host tensors (memory-mapped or owned), any dtype; undefined ones pass through
    std::vector<std::string> tensor_names;  // the checkpoint name of each tensor (empty when not known)
    // Per tensor: a side path's (WeightKind::SidePath), which a provider keeps resident for the whole run
    // instead of moving it with the block (empty: none is).
    std::vector<bool> side_path;
    bool is_side_path(size_t i) const { return i < side_path.size() && side_path[i]; }
    // Bytes of the defined tensors.
    size_t bytes() const {
        size_t n = 0;
        for (const Tensor& t : tensors)
            if (t.defined()) n += t.nbytes();
        return n;
    }
};

// Every block of `model` (anything with weight_block_count() and weight_block(i)), in execution order.
template <class Model>
std::vector<WeightBlock> all_weight_blocks(const Model& model) {
    std::vector<WeightBlock> out;
    for (size_t i = 0; i < model.weight_block_count(); ++i) out.push_back(model.weight_block(i));
    return out;
}

class BlockWeightProvider {
public:
    virtual ~BlockWeightProvider() = default;
    // The blocks the coming pass acquires, in order. A provider that never hears of a pass assumes every
    // block it holds, in index order, pass after pass.
    virtual void begin_pass(const std::vector<size_t>& order) { (void)order; }
    // Only the first part of the pass; continue_pass() states the rest.
    virtual void begin_open_pass(const std::vector<size_t>& first) { begin_pass(first); }
    virtual void continue_pass(const std::vector<size_t>& rest) { (void)rest; }
    // Block `block`'s tensors (in the order the model declares them), valid until release(block).
    virtual const std::vector<Tensor>& acquire(size_t block) = 0;
    virtual void release(size_t block) = 0;
};

// Holds block `block` of `provider` for a scope: acquired on construction, released on destruction (also
// when an exception unwinds, e.g. from a frame sink). Without a provider it holds nothing and is false, and
// the model uses the weights it loaded.
class BlockLease {
public:
    BlockLease(BlockWeightProvider* provider, size_t block) : provider_(provider), block_(block) {
        if (provider_) tensors_ = &provider_->acquire(block_);
    }
    ~BlockLease() {
        if (provider_) provider_->release(block_);
    }
    BlockLease(const BlockLease&) = delete;
    BlockLease& operator=(const BlockLease&) = delete;

    explicit operator bool() const { return provider_ != nullptr; }
    const std::vector<Tensor>& tensors() const {
        SR_ASSERT(tensors_, "block {} has no provider", block_);
        return *tensors_;
    }

private:
    BlockWeightProvider* provider_;
    size_t block_;
    const std::vector<Tensor>* tensors_ = nullptr;
};

}  // namespace sr
