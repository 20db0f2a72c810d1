// The tiling rules of the bf16 attention kernel (attention_bf16.cu), callable on the host so that CI checks them
// without a GPU (tests/test_cuda_host.cpp): the shared-memory swizzle, which keys a query row may see, how many
// key tiles a block visits, and which tiles need no mask at all. Plain C++17: nvcc compiles the .cu files as such.
//
// A block owns kAttnBlockRows query rows of one head (kAttnWarps warps of kAttnWarpRows rows: two m16 MMA tiles
// each, FlashAttention-2's split) and walks kAttnKeyTile-key tiles. Rows of 128 bf16 (256 bytes) are stored in
// 16-byte chunks permuted by chunk ^ (row % 8): the eight row addresses of one ldmatrix 8x8 read (eight rows,
// one chunk column) then fall in eight different chunks, i.e. different bank groups.
//
//   const int64_t end = sr::cuda::attn_row_key_end(row, kv_end, causal, offset);   // keys [0, end) visible
//   if (sr::cuda::attn_tile_is_interior(j0, min_end, rows_valid, dense)) { /* no mask */ }
#pragma once

#include <cstdint>

#include "backends/cuda/index_math.h"  // SR_INDEX_FN

namespace sr::cuda {

constexpr int kAttnHeadDim = 128;
constexpr int kAttnWarps = 4;
constexpr int kAttnWarpRows = 32;                           // two m16 tiles per warp
constexpr int kAttnBlockRows = kAttnWarps * kAttnWarpRows;  // 128 query rows per block
// Keys per tile: 32. With 64 the scores (64 floats per thread) and the output accumulator (128) left too few
// of the 255 registers for the fragments, and ptxas spilled; 32 also halves the K/V buffers (64 KB of shared
// memory per block with Q: two blocks per SM on sm_80, three on sm_90).
constexpr int kAttnKeyTile = 32;

// Element (row, col) of a swizzled [rows, 128] bf16 tile: 32-bit arithmetic (a tile has at most 128 rows).
SR_INDEX_FN int attn_swizzle(int row, int col) {
    return row * kAttnHeadDim + (((col >> 3) ^ (row & 7)) << 3) + (col & 7);
}

// Keys [0, end) that query row `row` may see: the valid prefix [0, kv_end), cut at row + 1 + offset when causal.
SR_INDEX_FN int64_t attn_row_key_end(int64_t row, int64_t kv_end, bool causal, int64_t causal_offset) {
    if (!causal) return kv_end;
    const int64_t end = row + 1 + causal_offset;
    return end < 0 ? 0 : (end < kv_end ? end : kv_end);
}

// The valid key prefix clamped to [0, lk].
SR_INDEX_FN int64_t attn_kv_end(int64_t kv_len, int64_t lk) {
    return kv_len < 0 ? 0 : (kv_len < lk ? kv_len : lk);
}

// Key tiles a block visits: those below its last row's key end (the largest of its rows').
SR_INDEX_FN int attn_tile_count(int64_t block_key_end) {
    return int((block_key_end + kAttnKeyTile - 1) / kAttnKeyTile);
}

// Whether the tile of keys [j0, j0 + kAttnKeyTile) is visible in full to every one of a thread's rows: no dense
// mask, each row's key end at or past the tile's end (min_row_end is the smallest of the rows' ends) and every row
// inside the query range. Such a tile skips the per-element mask; the others (the last valid keys, a causal
// diagonal, the last query rows, any tile under a dense mask) take it.
SR_INDEX_FN bool attn_tile_is_interior(int64_t j0, int64_t min_row_end, bool rows_valid, bool dense) {
    return !dense && rows_valid && j0 + kAttnKeyTile <= min_row_end;
}

// Query row of fragment row rr (0..3) of lane group g in warp w of the block starting at i0: m16 tile rr / 2,
// then the mma accumulator's rows g and g + 8.
SR_INDEX_FN int64_t attn_fragment_row(int64_t i0, int warp, int g, int rr) {
    return i0 + warp * kAttnWarpRows + (rr >> 1) * 16 + g + 8 * (rr & 1);
}

}  // namespace sr::cuda
