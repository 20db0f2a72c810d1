#include "nn/linear.h"

#include "backends/op_checks.h"

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

Tensor Linear::apply(Backend& be, const Tensor& x, Activation act) const {
    Shape s = x.shape();
    s[s.rank() - 1] = out_features();
    Tensor y = new_activation(be, s, "linear output", x.dtype());
    apply_into(be, x, y, act);
    return y;
}

void Linear::apply_into(Backend& be, const Tensor& x, Tensor& y, Activation act) const {
    const Tensor* b = bias.defined() ? &bias : nullptr;
    if (weight.format == WeightFormat::Dense && adapters.empty() && uniform_row_stride(y) >= out_features()) {
        be.linear(x, weight.data, b, y, act);  // one pass: the activation in the GEMM's epilogue
        return;
    }
    // The quantized formats' op, the adapters' deltas and the element-wise ops take contiguous tensors (and the
    // linear op rows at one stride): the sum goes to contiguous rows first when y's are not, and the activation
    // follows it.
    const bool strided = !y.is_contiguous();
    Tensor out = strided ? new_activation(be, y.shape(), "linear output (contiguous)", y.dtype()) : y;
    matmul(be, x, weight, b, out);
    for (const LowRankAdapter& a : adapters) {
        Shape s = x.shape();
        s[s.rank() - 1] = a.rank();
        Tensor h = new_activation(be, s, "low-rank adapter hidden", x.dtype());  // [..., rank]: small
        be.linear(x, a.down, nullptr, h);
        Tensor delta = new_activation(be, out.shape(), "low-rank adapter output", out.dtype());
        be.linear(h, a.up, nullptr, delta);
        be.add(out, delta);
    }
    if (act == Activation::GeluTanh) be.gelu_tanh(out, out);
    if (strided) be.copy(out, y);
}

}  // namespace sr
