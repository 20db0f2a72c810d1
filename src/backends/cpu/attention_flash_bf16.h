// The CPU attention's bf16 fast path: flash attention whose two products run on q, k and v rounded to bf16
// once and on the softmax weights P rounded per block, with the scores, the online softmax and the accumulator
// in f32: the same rounding as the oneDNN-per-tile path in attention.cpp, without its per-tile primitive calls
// and operand reorders. The products run on one of two engines over the same packed operands:
//   amx          Intel AMX tiles (TDPBF16PS; Sapphire Rapids and later), where the build targets AMX and the
//                kernel grants the process the tile state at run time;
//   avx512_bf16  AVX-512 BF16 dot products (VDPBF16PS; AMD Zen 4 and later, Intel Cooper Lake), elsewhere
//                where the build targets AVX-512 BF16.
//
//   if (!attention_bf16_flash(q, k, v, out, mask.kv_len, scale)) { ...the general path... }
#pragma once

#include <cstdint>
#include <vector>

#include "backends/ops.h"
#include "core/tensor.h"

namespace sr {

// The engine attention_bf16_flash runs its products on here: "amx", "avx512_bf16", or nullptr when neither the
// build nor the processor has one (the caller then runs the general path).
const char* flash_attention_engine();
inline bool flash_attention_available() {
    return flash_attention_engine() != nullptr;
}

// out[B,H,Lq,D] = softmax(q k^T * scale) v over keys [0, kv_len[b]) (all keys when kv_len is empty), with
// q, k, v, out f32 or bf16 views as AttentionOp takes them (bf16 operands are taken as they are, a bf16 out
// is rounded once from the f32 result); `qk` (optional, checked by the caller): q and k RMS-normalized and
// rotated first (in f32, widened from bf16), as AttentionOp's prologue, while they are rounded. Returns false,
// touching nothing, when no engine is available or the head size is not a multiple of 32 (one tile row of
// bf16); the caller then runs the general path. A row with no valid key yields zeros.
bool attention_bf16_flash(const Tensor& q, const Tensor& k, const Tensor& v, Tensor& out,
                          const std::vector<int64_t>& kv_len, float scale, const QkNormRope* qk = nullptr);

}  // namespace sr
