// Ulysses sequence parallelism for the joint [video, text] attention (DeepSpeed-Ulysses, as ParaAttention
// runs it for SkyReels), over the FLATTENED video token list: rank r of a group of P owns the contiguous rows
// [r*n, (r+1)*n) of the N video tokens, n = ceil(N / P), the last ranks' tails padded. Every rank holds all L
// text tokens. Splitting the flattened list works for any latent shape (51,000 tokens at 544x960x97), where
// splitting the latent's height or width (34 and 60 patches) cannot use 8 GPUs.
//
// One attention: q, k, v of this rank's rows and heads [B, n + L, H*hd] go through one all-to-all to [the whole
// sequence, H/P heads]; the text rows' heads are sliced locally (no text moves). Each rank attends over
// [video 0..N, text, padding] with the padding past kv_len (masked keys, identical to one rank's arithmetic),
// then the video rows go back with a second all-to-all and the text rows' heads are gathered.
//
//   const SequenceShard shard{.tokens = N, .degree = comm.size(), .rank = comm.rank()};
//   sequence_parallel_attention(be, comm, shard, heads, q, k, v, out, mask, scale, &qk);
#pragma once

#include <algorithm>
#include <cstdint>

#include "backends/backend.h"
#include "backends/communicator.h"

namespace sr {

struct SequenceShard {
    int64_t tokens = 0;  // N: video tokens of the whole sequence
    int64_t degree = 1;  // P: ranks in the group
    int64_t rank = 0;

    int64_t rows() const { return (tokens + degree - 1) / degree; }  // n: rows per rank, padding included
    int64_t padded() const { return rows() * degree; }
    int64_t begin() const { return rank * rows(); }  // this rank's first row
    // Rows of rank p that are real tokens (the rest are padding).
    int64_t valid_rows(int64_t p) const { return std::clamp<int64_t>(tokens - p * rows(), 0, rows()); }
    int64_t valid_rows() const { return valid_rows(rank); }
};

// q, k, v: [B, n + L, heads*hd] (any row stride, unit innermost), this rank's n video rows then the L text
// rows; out: [B, n + L, heads*hd] contiguous, filled likewise. `mask` and `qk` describe the WHOLE joint sequence
// [N video, L text] as one rank would see it (kv_len = N + valid text tokens; qk's tables hold the N video
// rows and its n_rope is ignored: N is used). heads must divide by the group's size.
void sequence_parallel_attention(Backend& be, Communicator& comm, const SequenceShard& shard, int64_t heads,
                                 const Tensor& q, const Tensor& k, const Tensor& v, Tensor& out,
                                 const AttentionMask& mask, float scale, const QkNormRope* qk);

}  // namespace sr
