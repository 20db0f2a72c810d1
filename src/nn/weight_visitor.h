// How a model declares its weights, once. Each model has one `declare(WeightVisitor&, Block&, prefix)` per
// block type that names every tensor of the block with its checkpoint name and expected shape, in a fixed
// order. Every use of the weights walks that one declaration with a different visitor:
//   BindWeights     binding at load (from a checkpoint, made-up weights, or address space for a plan)
//   CollectTensors  listing a block's tensors (the residency manager streams them)
//   RebindTensors   viewing other memory (what a provider's acquire() returned) instead of the loaded weights
//   ListWeightNames the names and shapes (coverage tests: every checkpoint tensor in exactly one block)
// so binding and listing cannot disagree.
//
//   void declare(sr::WeightVisitor& v, Layer& l, const std::string& p) const {
//       v.linear(p + ".proj", l.proj, D, N);                        // "<p>.proj.weight" [N, D], "<p>.proj.bias" [N]
//       v.tensor(p + ".norm.weight", l.norm, {D}, sr::WeightKind::SmallF32);
//   }
#pragma once

#include <algorithm>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "io/weight_binder.h"
#include "nn/linear.h"
#include "nn/lora.h"
#include "nn/weight_blocks.h"

namespace sr {

class WeightVisitor {
public:
    virtual ~WeightVisitor() = default;
    // One tensor: its checkpoint name, the member it lives in, its expected shape and kind.
    virtual void tensor(const std::string& name, Tensor& t, const Shape& shape, WeightKind kind) = 0;
    // A linear layer: "<name>.weight" [out, in] and, with has_bias, "<name>.bias" [out]. This default visits
    // the tensors the layer holds (Linear::for_each_tensor) through tensor(); the binder overrides it to
    // choose the weight's storage format.
    virtual void linear(const std::string& name, Linear& l, int64_t in, int64_t out, bool has_bias = true);
    // tensor() of a small f32 vector (norm weights, biases).
    void small_f32(const std::string& name, Tensor& t, const Shape& shape) {
        tensor(name, t, shape, WeightKind::SmallF32);
    }
};

// Binds every declared tensor from `binder` (io/weight_binder.h): matrices as the binder stores them, small
// vectors in f32, linear layers in their storage format (or quantized at load, as asked).
class BindWeights final : public WeightVisitor {
public:
    // `quant`: quantize dense linear weights at load (LinearQuant::Float8WeightOnly: SkyReels' --quant).
    // `lora`: adapters to merge into or attach to the layers bound (nn/lora.h), by the layer's name.
    explicit BindWeights(WeightBinder& binder, LinearQuant quant = LinearQuant::None, const LoraSet* lora = nullptr)
        : binder_(binder), quant_(quant), lora_(lora) {}
    void tensor(const std::string& name, Tensor& t, const Shape& shape, WeightKind kind) override;
    void linear(const std::string& name, Linear& l, int64_t in, int64_t out, bool has_bias = true) override;

private:
    WeightBinder& binder_;
    LinearQuant quant_;
    const LoraSet* lora_;
};

// The linear layers a declaration names, with their [out, in] (what a LoRA reader maps adapters onto).
class ListLinears final : public WeightVisitor {
public:
    void tensor(const std::string&, Tensor&, const Shape&, WeightKind) override {}
    void linear(const std::string& name, Linear&, int64_t in, int64_t out, bool) override { shapes[name] = {out, in}; }
    std::map<std::string, std::pair<int64_t, int64_t>> shapes;
};

// Adds `set`'s deltas as runtime side paths (y += up (down x)) of the layers a declaration names, after the
// adapters a layer loaded with: a job's adapters on the copy of a block that one forward uses, so the loaded
// model never holds them. The deltas must already be in the memory of the backend that runs the block.
class AttachAdapters final : public WeightVisitor {
public:
    explicit AttachAdapters(const LoraSet& set) : set_(set) {}
    void tensor(const std::string&, Tensor&, const Shape&, WeightKind) override {}
    void linear(const std::string& name, Linear& l, int64_t, int64_t, bool) override {
        if (const std::vector<LoraDelta>* deltas = set_.find(name))
            for (const LoraDelta& d : *deltas) l.adapters.push_back({d.down, d.up});
    }

private:
    const LoraSet& set_;
};

// Appends the declared tensors and their names, in declaration order (undefined ones too: a member the
// declaration names but the model left empty).
class CollectTensors final : public WeightVisitor {
public:
    void tensor(const std::string& name, Tensor& t, const Shape&, WeightKind kind) override {
        tensors.push_back(t);
        names.push_back(name);
        side_path.push_back(kind == WeightKind::SidePath);
    }
    std::vector<Tensor> tensors;
    std::vector<std::string> names;
    std::vector<bool> side_path;
};

// Replaces each declared tensor by the next of `tensors` (a list CollectTensors made of the same block, or
// views of it in other memory); finish() checks that all were used.
class RebindTensors final : public WeightVisitor {
public:
    explicit RebindTensors(const std::vector<Tensor>& tensors) : tensors_(tensors) {}
    void tensor(const std::string& name, Tensor& t, const Shape& shape, WeightKind kind) override;
    void finish() const;

private:
    const std::vector<Tensor>& tensors_;
    size_t next_ = 0;
};

// The declared names with their expected shapes, in order.
class ListWeightNames final : public WeightVisitor {
public:
    void tensor(const std::string& name, Tensor&, const Shape& shape, WeightKind) override {
        names.emplace_back(name, shape);
    }
    std::vector<std::pair<std::string, Shape>> names;
};

// `block` (a model's block struct) viewing `tensors` instead of its own weights, through the model's
// declaration of it: declare(visitor, block_copy). Members that are not tensors are kept.
template <class Block, class Declare>
Block rebind_block(const Block& block, const std::vector<Tensor>& tensors, Declare&& declare) {
    Block out = block;
    RebindTensors rebind(tensors);
    declare(rebind, out);
    rebind.finish();
    return out;
}

// Weight block `name`: the tensors of `block` (and their names) in declaration order.
template <class Block, class Declare>
WeightBlock declared_block(std::string name, const Block& block, Declare&& declare) {
    Block copy = block;  // tensors are handles: the copy views the same memory
    CollectTensors collect;
    declare(collect, copy);
    const bool any_side =
        std::find(collect.side_path.begin(), collect.side_path.end(), true) != collect.side_path.end();
    return {std::move(name), std::move(collect.tensors), std::move(collect.names),
            any_side ? std::move(collect.side_path) : std::vector<bool>{}};
}

}  // namespace sr
