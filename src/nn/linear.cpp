#include "nn/linear.h"

namespace sr {

const char* weight_format_name(WeightFormat format) {
    switch (format) {
        case WeightFormat::Dense:
            return "dense";
        case WeightFormat::F8:
            return "f8";
        case WeightFormat::Block:
            return "block";
    }
    return "?";
}

void matmul(Backend& be, const Tensor& x, const LinearWeight& w, const Tensor* bias, Tensor& y) {
    switch (w.format) {
        case WeightFormat::Dense:
            be.linear(x, w.data, bias, y);
            return;
        case WeightFormat::F8:
            be.quant_linear(x, w.data, std::nullopt, w.in, w.scale.defined() ? &w.scale : nullptr, bias, y);
            return;
        case WeightFormat::Block:
            be.quant_linear(x, w.data, w.block, w.in, nullptr, bias, y);
            return;
    }
    SR_ASSERT(false, "weight format {} has no matmul", int(w.format));
}

std::string LinearWeight::storage_name() const {
    switch (format) {
        case WeightFormat::Dense:
            return std::string(dtype_name(data.dtype()));
        case WeightFormat::F8:
            return scale.defined() ? "f8_e4m3 (scaled)" : "f8_e4m3";
        case WeightFormat::Block:
            return std::string(quant_info(block).name);
    }
    return "?";
}

size_t Linear::bytes() const {
    size_t n = weight.bytes() + (bias.defined() ? bias.nbytes() : 0);
    for (const LowRankAdapter& a : adapters) n += a.down.nbytes() + a.up.nbytes();
    return n;
}

Tensor Linear::apply(Backend& be, const Tensor& x) const {
    Shape s = x.shape();
    s[s.rank() - 1] = out_features();
    Tensor y = new_activation(be, s, "linear output", x.dtype());
    apply_into(be, x, y);
    return y;
}

void Linear::apply_into(Backend& be, const Tensor& x, Tensor& y) const {
    matmul(be, x, weight, bias.defined() ? &bias : nullptr, y);
    for (const LowRankAdapter& a : adapters) {
        Shape s = x.shape();
        s[s.rank() - 1] = a.rank();
        Tensor h = new_activation(be, s, "low-rank adapter hidden", x.dtype());  // [..., rank]: small
        be.linear(x, a.down, nullptr, h);
        Tensor delta = new_activation(be, y.shape(), "low-rank adapter output", y.dtype());
        be.linear(h, a.up, nullptr, delta);
        be.add(y, delta);
    }
}

}  // namespace sr
