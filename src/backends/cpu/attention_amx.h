// The CPU attention's bf16 fast path on Intel AMX tiles (Sapphire Rapids and later): flash attention whose
// two products run as tile dot products (TDPBF16PS) on q, k and v rounded to bf16 once and on the softmax
// weights P rounded per tile, with the scores, the online softmax and the accumulator in f32: the same
// rounding as the oneDNN-per-tile path in attention.cpp, without its per-tile primitive calls and operand
// reorders. Built when the compiler targets AMX (SKYREELS_NATIVE on such a machine); used when the kernel
// grants the process AMX state at run time.
//
//   if (!attention_bf16_amx(q, k, v, out, mask.kv_len, scale)) { ...the general path... }
#pragma once

#include <cstdint>
#include <vector>

#include "backends/ops.h"
#include "core/tensor.h"

namespace sr {

// Whether attention_bf16_amx can run here at all: built for AMX, and the OS granted this process the tile
// state (Linux asks each process to request it once).
bool amx_attention_available();

// out[B,H,Lq,D] = softmax(q k^T * scale) v over keys [0, kv_len[b]) (all keys when kv_len is empty), with
// q, k, v, out f32 or bf16 views as AttentionOp takes them (bf16 operands are taken as they are, a bf16 out
// is rounded once from the f32 result); `qk` (optional, checked by the caller): q and k RMS-normalized and
// rotated first (in f32, widened from bf16), as AttentionOp's prologue, while they are rounded. Returns false, touching
// nothing, when AMX is not available or the head size is not a multiple of 32 (one tile row of bf16); the caller then
// runs the general path. A row with no valid key yields zeros.
bool attention_bf16_amx(const Tensor& q, const Tensor& k, const Tensor& v, Tensor& out,
                        const std::vector<int64_t>& kv_len, float scale, const QkNormRope* qk = nullptr);

}  // namespace sr
