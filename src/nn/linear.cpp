#include "nn/linear.h"

namespace sr {

const char* weight_format_name(WeightFormat format) {
    switch (format) {
        case WeightFormat::Dense:
            return "dense";
    }
    return "?";
}

void matmul(Backend& be, const Tensor& x, const LinearWeight& w, const Tensor* bias, Tensor& y) {
    switch (w.format) {
        case WeightFormat::Dense:
            be.linear(x, w.data, bias, y);
            return;
    }
    SR_ASSERT(false, "weight format {} has no matmul", int(w.format));
}

size_t Linear::bytes() const {
    size_t n = weight.bytes() + (bias.defined() ? bias.nbytes() : 0);
    for (const LowRankAdapter& a : adapters) n += a.down.nbytes() + a.up.nbytes();
    return n;
}

Tensor Linear::apply(Backend& be, const Tensor& x) const {
    Shape s = x.shape();
    s[s.rank() - 1] = out_features();
    Tensor y = new_activation(be, s, "linear output");
    apply_into(be, x, y);
    return y;
}

void Linear::apply_into(Backend& be, const Tensor& x, Tensor& y) const {
    matmul(be, x, weight, bias.defined() ? &bias : nullptr, y);
    for (const LowRankAdapter& a : adapters) {
        Shape s = x.shape();
        s[s.rank() - 1] = a.rank();
        Tensor h = new_activation(be, s, "low-rank adapter hidden");  // [..., rank]: small
        be.linear(x, a.down, nullptr, h);
        Tensor delta = new_activation(be, y.shape(), "low-rank adapter output");
        be.linear(h, a.up, nullptr, delta);
        be.add(y, delta);
    }
}

}  // namespace sr
