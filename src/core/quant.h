// Block-quantized weights: GGUF's block types, byte for byte as ggml lays them out, and what it takes to
// read and write them (dequantize a run of blocks to f32; quantize a row as ggml's reference quantizers do).
// The per-block arithmetic is in core/quant_blocks.h, a C++17 header the CUDA kernels include too, so the
// CPU tests check the same code a GPU runs.
//
// A quantized matrix [N, K] is N rows of quant_row_bytes(type, K) bytes (K a multiple of the block size),
// each row `K / block_elems` blocks: GGUF stores tensors innermost dimension first, so a GGUF tensor with
// ne = {K, N} is exactly this.
//
//   const sr::QuantInfo& q = sr::quant_info(sr::QuantType::Q4_K);        // 256 elements in 144 bytes
//   std::vector<float> row(K);
//   sr::dequantize_blocks(sr::QuantType::Q4_K, data + r * sr::quant_row_bytes(type, K), row.data(), K / 256);
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace sr {

enum class QuantType : uint8_t { Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q3_K, Q4_K, Q5_K, Q6_K };
inline constexpr int kQuantTypeCount = 9;

struct QuantInfo {
    std::string_view name;  // "Q4_K", as ggml and GGUF tools spell it
    int64_t block_elems;    // values per block: 32, or 256 for the K types
    size_t block_bytes;     // bytes per block
    uint32_t ggml_type;     // ggml_type / GGUF tensor type id
};

const QuantInfo& quant_info(QuantType type);
// The type with this GGUF tensor type id, or nullopt (F32, F16, BF16 and unknown ids are not block types).
std::optional<QuantType> quant_type_from_ggml(uint32_t ggml_type);
// "Q8_0", "q4_k", ...: case-insensitive; nullopt otherwise.
std::optional<QuantType> quant_type_from_name(std::string_view name);

// Bytes of one row of `cols` values; cols must be a positive multiple of the block size (asserted: callers
// check user data first with quant_row_fits).
size_t quant_row_bytes(QuantType type, int64_t cols);
bool quant_row_fits(QuantType type, int64_t cols);

// `n_blocks` consecutive blocks at `src` -> n_blocks * block_elems floats at `dst`, exactly as ggml's
// dequantize_row_<type> computes them (the tests compare bits with the gguf Python package's results).
void dequantize_blocks(QuantType type, const void* src, float* dst, int64_t n_blocks);

// One row of `cols` floats -> quant_row_bytes(type, cols) bytes, as ggml's quantize_row_<type>_ref (the
// reference quantizers, without an importance matrix) computes them.
void quantize_row(QuantType type, const float* src, void* dst, int64_t cols);

}  // namespace sr
