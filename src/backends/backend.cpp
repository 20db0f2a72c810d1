#include "backends/backend.h"

namespace sr {

void throw_missing_op(std::string_view backend, std::string_view op) {
    throw Error(fmt::format("the {} backend has no op '{}'", backend, op));
}

void concat(Backend& backend, const std::vector<Tensor>& parts, int dim, Tensor& out) {
    int64_t at = 0;
    for (const Tensor& p : parts) {
        Tensor dst = out.slice(dim, at, at + p.dim(dim));
        backend.copy(p, dst);
        at += p.dim(dim);
    }
    SR_ASSERT(at == out.dim(dim), "concat sizes sum to {} but out has {}", at, out.dim(dim));
}

Tensor new_activation(Backend& backend, const Shape& shape, std::string_view what, DType dtype) {
    SR_ASSERT(dtype == DType::F32 || dtype == DType::BF16, "activation {} in {}: activations are f32 or bf16", what,
              dtype_name(dtype));
    return Tensor::empty(shape, dtype, backend.allocator(), what);
}

Tensor to_device(Backend& backend, const Tensor& t, std::string_view what) {
    SR_ASSERT(t.defined(), "to_device of an undefined tensor ({})", what);
    if (t.device() == backend.device()) return t;
    SR_ASSERT(t.device().type == DeviceType::CPU, "{} {} is on {}, not on the host or {}", what, t.describe(),
              t.device().name(), backend.device().name());
    Tensor out = Tensor::empty(t.shape(), t.dtype(), backend.allocator(), what);
    backend.copy(t.contiguous(), out);  // packed on the host: one plain transfer
    return out;
}

Tensor to_host(Backend& backend, const Tensor& t) {
    SR_ASSERT(t.defined(), "to_host of an undefined tensor");
    if (t.device().type == DeviceType::CPU) return t.contiguous();
    const Tensor packed = contiguous(backend, t, "download");  // gathered on the device: one plain transfer
    Tensor out = Tensor::empty(t.shape(), t.dtype(), host_allocator(), "download");
    backend.copy(packed, out);
    return out;
}

Tensor to_host_f32(Backend& backend, const Tensor& t) {
    const Tensor host = to_host(backend, t);
    return host.dtype() == DType::F32 ? host : host.to(DType::F32);
}

Tensor contiguous(Backend& backend, const Tensor& t, std::string_view what) {
    if (t.is_contiguous()) return t;
    Tensor out = Tensor::empty(t.shape(), t.dtype(), backend.allocator(), what);
    backend.copy(t, out);
    return out;
}

}  // namespace sr
