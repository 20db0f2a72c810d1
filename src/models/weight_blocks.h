// How a model describes its weights to the runtime: an ordered list of blocks (name, bytes, tensors) in
// execution order, and a provider that hands each block's tensors to forward() wherever they live (host
// memory as loaded, a device buffer that a residency manager streamed them into, ...). Models never see
// where their weights are; they only rebind their views to what acquire() returns.
#pragma once

#include <string>
#include <vector>

#include "core/error.h"
#include "core/tensor.h"

namespace sr {

// A contiguous group of weights that the runtime may place or stream as one unit.
struct WeightBlock {
    std::string name;
    size_t bytes = 0;
};

// Blocks are acquired in execution order (cyclically across calls) and released when their compute is done;
// the tensors are the block's weights in the order the model's weight_block_tensors() lists them.
class BlockWeightProvider {
public:
    virtual ~BlockWeightProvider() = default;
    virtual const std::vector<Tensor>& acquire(size_t block) = 0;
    virtual void release(size_t block) = 0;
};

// ---------------------------------------------------------------------------------------------------------
// Helpers for models implementing the interface. A model lists each block struct's tensors with its own
// `visit(block, f)`, which calls f on every Tensor member in one fixed order, absent (undefined) ones
// included, so that listing and rebinding agree:
//
//   auto visit = [](auto& layer, auto&& f) { f(layer.norm), f(layer.proj.weight), f(layer.proj.bias); };
//   std::vector<Tensor> ts = block_tensors(layer, visit);          // weight_block_tensors(i)
//   BlockLease lease(weights, i);                                  // acquire(i) ... release(i) at scope end
//   const Layer l = lease ? rebind_block(layer, lease.tensors(), visit) : layer;

// The block's tensors in visit order; undefined ones stay in the list, undefined.
template <class Block, class Visit>
std::vector<Tensor> block_tensors(const Block& block, Visit&& visit) {
    std::vector<Tensor> out;
    visit(block, [&](const Tensor& t) { out.push_back(t); });
    return out;
}

// A copy of `block` viewing `tensors` (what a provider's acquire() returned, in visit order) instead of its
// own weights; members that are not tensors (strides, flags) are kept.
template <class Block, class Visit>
Block rebind_block(const Block& block, const std::vector<Tensor>& tensors, Visit&& visit) {
    Block out = block;
    size_t i = 0;
    visit(out, [&](Tensor& t) {
        SR_ASSERT(i < tensors.size(), "block provider returned {} tensors", tensors.size());
        t = tensors[i++];
    });
    SR_ASSERT(i == tensors.size(), "block provider returned {} tensors for {}", tensors.size(), i);
    return out;
}

// Bytes of the defined tensors of a list (a WeightBlock's size).
inline size_t defined_tensor_bytes(const std::vector<Tensor>& tensors) {
    size_t bytes = 0;
    for (const Tensor& t : tensors)
        if (t.defined()) bytes += t.nbytes();
    return bytes;
}

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
