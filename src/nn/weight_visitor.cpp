#include "nn/weight_visitor.h"

#include "core/float8_weight_only.h"

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
    StoredTensor st = binder_.matrix(name + ".weight", {out, in});
    LinearWeight& w = l.weight;
    w.out = out, w.in = in;
    w.data = std::move(st.data);
    if (st.info.block) {
        w.format = WeightFormat::Block;
        w.block = *st.info.block;
    } else if (w.data.dtype() == DType::F8_E4M3) {
        w.format = WeightFormat::F8;
        w.scale = std::move(st.scale);
    }
    // A LoRA is merged before --quant (so the quantized weight holds it); a side path is added after.
    const std::vector<LoraDelta>* deltas = lora_ ? lora_->take(name) : nullptr;
    bool attached = false;
    if (deltas &&
        (lora_->mode == LoraMode::Merge || (lora_->mode == LoraMode::Auto && w.format == WeightFormat::Dense &&
                                            (quant_ == LinearQuant::Float8WeightOnly || !w.data.is_external_view())))) {
        apply_lora(l, name, *deltas, LoraMode::Merge, binder_);
        attached = true;
    }
    if (quant_ == LinearQuant::Float8WeightOnly && w.format == WeightFormat::Dense) {
        Tensor codes = binder_.owned({out, in}, DType::F8_E4M3, name + ".weight (fp8)");
        Tensor scales = binder_.owned({out}, DType::BF16, name + ".weight scale");
        if (!binder_.planning()) {
            const Tensor dense = w.data.contiguous();
            quantize_float8_weight_only(dense.raw_data(), dense.dtype(), out, in, codes.data<uint8_t>(),
                                        scales.data<uint16_t>());
        }
        w.format = WeightFormat::F8;
        w.data = std::move(codes);
        w.scale = std::move(scales);
    }
    if (deltas && !attached) apply_lora(l, name, *deltas, LoraMode::Runtime, binder_);
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
