#include "io/tensor_source.h"

#include <algorithm>

#include "core/dequantize.h"
#include "core/parallel.h"

namespace sr {

std::string TensorInfo::type_name() const {
    if (block) return std::string(quant_info(*block).name);
    std::string name(dtype_safetensors_name(dtype));
    return scaled ? name + " (scaled)" : name;
}

size_t stored_bytes(const TensorInfo& info) {
    const int64_t cols = info.shape.rank() ? info.shape[info.shape.rank() - 1] : 1;
    if (info.block) return size_t(info.shape.numel() / std::max<int64_t>(cols, 1)) * quant_row_bytes(*info.block, cols);
    return size_t(info.shape.numel()) * dtype_size(info.dtype);
}

Tensor dequantize_to_f32(const StoredTensor& t) {
    const TensorInfo& info = t.info;
    Tensor out = Tensor::empty(info.shape, DType::F32, host_allocator(), "dequantized weight");
    const int64_t cols = info.shape.rank() ? info.shape[info.shape.rank() - 1] : 1;
    const int64_t rows = cols ? out.numel() / cols : 0;
    if (!info.block && info.dtype != DType::F8_E4M3) {
        out.copy_from(t.data);
        return out;
    }
    const Tensor scale = t.scale.defined() ? t.scale.contiguous() : Tensor();
    const Tensor data = t.data.contiguous();
    const QuantizedRows m{data.raw_data(),
                          info.block,
                          rows,
                          cols,
                          scale.defined() ? scale.raw_data() : nullptr,
                          scale.defined() ? scale.dtype() : DType::F32,
                          scale.defined() ? scale.numel() : 0};
    float* dst = out.data<float>();
    parallel_for(rows, [&](int64_t r0, int64_t r1) { dequantize_rows(m, r0, r1 - r0, dst + r0 * cols); });
    return out;
}

}  // namespace sr
