// Row access into a [B, H, L, D] attention operand view (f32 or bf16, any strides but a unit innermost one),
// shared by the attention kernels (attention.cpp, attention_flash_bf16.cpp).
//
//   const sr::HeadRows q = sr::HeadRows::of(q_view);   const void* row = q.row(b, h, l);
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/tensor.h"

namespace sr {

struct HeadRows {
    const char* data;
    int64_t sb, sh, sl;  // element strides of b, h, l
    size_t esize;
    DType dtype;
    const void* row(int64_t b, int64_t h, int64_t l) const { return data + size_t(b * sb + h * sh + l * sl) * esize; }
    static HeadRows of(const Tensor& t) {
        return {static_cast<const char*>(t.raw_data()),
                t.stride(0),
                t.stride(1),
                t.stride(2),
                dtype_size(t.dtype()),
                t.dtype()};
    }
};

}  // namespace sr
