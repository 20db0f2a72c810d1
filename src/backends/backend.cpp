#include "backends/backend.h"

namespace sr {

void concat(Backend& backend, const std::vector<Tensor>& parts, int dim, Tensor& out) {
    int64_t at = 0;
    for (const Tensor& p : parts) {
        Tensor dst = out.slice(dim, at, at + p.dim(dim));
        backend.copy(p, dst);
        at += p.dim(dim);
    }
    SR_ASSERT(at == out.dim(dim), "concat sizes sum to {} but out has {}", at, out.dim(dim));
}

Tensor new_activation(Backend& backend, const Shape& shape, std::string_view what) {
    return Tensor::empty(shape, DType::F32, backend.allocator(), what);
}

}  // namespace sr
