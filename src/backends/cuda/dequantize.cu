// Dequantization of weight rows for the quantized GEMM path (cuda_gemm.cpp): rows [row0, row0 + rows) of a
// quantized matrix into a dense scratch block (f32 or bf16), which cuBLASLt then multiplies. FP8 codes are
// scaled as core/dequantize.cpp does (the product rounded to the scale's dtype), so the GPU sees the same
// weights as the CPU.
#include <cuda_runtime.h>

#include "backends/cuda/kernel_util.cuh"
#include "core/quant_blocks.h"

namespace sr::cuda {

namespace {

__global__ void dequantize_f8_kernel(const uint8_t* codes, int64_t cols, int64_t n, const void* scale, KType scale_type,
                                     int64_t scale_count, int64_t row0, void* dst, KType dst_type) {
    for (int64_t i = global_thread(); i < n; i += grid_threads()) {
        const int64_t r = row0 + i / cols;
        float v = f8e4m3_to_f32(codes[r * cols + i % cols]);
        if (scale) {
            v *= load_float(scale, scale_type, scale_count == 1 ? 0 : r);
            if (scale_type == KType::BF16) v = bf16_to_f32(f32_to_bf16(v));
            if (scale_type == KType::F16) v = f16_to_f32(f32_to_f16(v));
        }
        store_float(dst, dst_type, i, v);
    }
}

// One thread per value: the value's block, decoded by the same per-element code the CPU tests check
// (core/quant_blocks.h).
template <class Block, int kElems>
__global__ void dequantize_blocks_kernel(const uint8_t* data, int64_t cols, int64_t row_bytes, int64_t n, int64_t row0,
                                         void* dst, KType dst_type) {
    for (int64_t i = global_thread(); i < n; i += grid_threads()) {
        const int64_t r = row0 + i / cols, c = i % cols;
        const auto* block = reinterpret_cast<const Block*>(data + r * row_bytes + (c / kElems) * sizeof(Block));
        store_float(dst, dst_type, i, qblock::dequantize_one(*block, int(c % kElems)));
    }
}

template <class Block, int kElems>
void launch_blocks(const QuantizedRowsArgs& a, int64_t row0, int64_t n, void* dst, KType dst_type,
                   cudaStream_t stream) {
    const int64_t row_bytes = a.cols / kElems * int64_t(sizeof(Block));
    dequantize_blocks_kernel<Block, kElems><<<grid_for(n), kThreads, 0, stream>>>(
        static_cast<const uint8_t*>(a.data), a.cols, row_bytes, n, row0, dst, dst_type);
}

}  // namespace

void dequantize_rows(const QuantizedRowsArgs& a, int64_t row0, int64_t rows, void* dst, KType dst_type,
                     cudaStream_t stream) {
    const int64_t n = rows * a.cols;
    if (n == 0) return;
    // Block types by their sr::QuantType value (core/quant.h): Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q3_K, Q4_K, Q5_K,
    // Q6_K.
    switch (a.block_type) {
        case 0:
            return launch_blocks<qblock::BlockQ8_0, 32>(a, row0, n, dst, dst_type, stream);
        case 1:
            return launch_blocks<qblock::BlockQ4_0, 32>(a, row0, n, dst, dst_type, stream);
        case 2:
            return launch_blocks<qblock::BlockQ4_1, 32>(a, row0, n, dst, dst_type, stream);
        case 3:
            return launch_blocks<qblock::BlockQ5_0, 32>(a, row0, n, dst, dst_type, stream);
        case 4:
            return launch_blocks<qblock::BlockQ5_1, 32>(a, row0, n, dst, dst_type, stream);
        case 5:
            return launch_blocks<qblock::BlockQ3_K, 256>(a, row0, n, dst, dst_type, stream);
        case 6:
            return launch_blocks<qblock::BlockQ4_K, 256>(a, row0, n, dst, dst_type, stream);
        case 7:
            return launch_blocks<qblock::BlockQ5_K, 256>(a, row0, n, dst, dst_type, stream);
        case 8:
            return launch_blocks<qblock::BlockQ6_K, 256>(a, row0, n, dst, dst_type, stream);
        default:
            break;
    }
    dequantize_f8_kernel<<<grid_for(n), kThreads, 0, stream>>>(static_cast<const uint8_t*>(a.data), a.cols, n, a.scale,
                                                               a.scale_type, a.scale_count, row0, dst, dst_type);
}

}  // namespace sr::cuda
