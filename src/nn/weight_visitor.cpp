#include "nn/weight_visitor.h"

namespace sr {

void WeightVisitor::linear(const std::string& name, Linear& l, int64_t, int64_t, bool) {
    l.for_each_tensor([&](std::string_view suffix, Tensor& t, WeightKind kind) {
        tensor(name + std::string(suffix), t, t.defined() ? t.shape() : Shape{}, kind);
    });
}

void BindWeights::tensor(const std::string& name, Tensor& t, const Shape& shape, WeightKind kind) {
    t = kind == WeightKind::SmallF32 ? binder_.small_f32(name, shape) : binder_.tensor(name, shape);
}

void BindWeights::linear(const std::string& name, Linear& l, int64_t in, int64_t out, bool has_bias) {
    l = Linear{};
    l.weight = LinearWeight{WeightFormat::Dense, binder_.tensor(name + ".weight", {out, in}), out, in};
    if (has_bias) l.bias = binder_.small_f32(name + ".bias", {out});
}

void RebindTensors::tensor(const std::string& name, Tensor& t, const Shape&, WeightKind) {
    SR_ASSERT(next_ < tensors_.size(),
              "a block provider returned {} tensors, fewer than the block declares ({} is next)", tensors_.size(),
              name);
    t = tensors_[next_++];
}

void RebindTensors::finish() const {
    SR_ASSERT(next_ == tensors_.size(), "a block provider returned {} tensors for a block that declares {}",
              tensors_.size(), next_);
}

}  // namespace sr
