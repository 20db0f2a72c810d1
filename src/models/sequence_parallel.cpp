#include "models/sequence_parallel.h"

#include "core/error.h"

namespace sr {

namespace {

// [B, rows, heads*hd] -> [B, rows, P, H/P, hd] -> [P, B, rows, H/P, hd]: the chunk for rank p is its heads.
Tensor heads_by_rank(const Tensor& x, int64_t P, int64_t hd) {
    const int64_t per_rank = x.dim(2) / P;
    return x.unflatten(2, P, per_rank).unflatten(3, per_rank / hd, hd).permute({2, 0, 1, 3, 4});
}

}  // namespace

void sequence_parallel_attention(Backend& be, Communicator& comm, const SequenceShard& shard, int64_t heads,
                                 const Tensor& q, const Tensor& k, const Tensor& v, Tensor& out,
                                 const AttentionMask& mask, float scale, const QkNormRope* qk) {
    const int64_t P = comm.size(), r = comm.rank(), B = q.dim(0), D = q.dim(2), hd = D / heads;
    const int64_t n = shard.rows(), N = shard.tokens, L = q.dim(1) - n, Hl = heads / P;
    SR_ASSERT(shard.degree == P && shard.rank == r && heads % P == 0 && L >= 0,
              "sequence parallel attention: {} heads, shard of {} tokens over {} (rank {}), group of {}", heads, N,
              shard.degree, shard.rank, P);
    const std::array<const Tensor*, 3> qkv{&q, &k, &v};

    // 1. This rank's video rows, all heads -> every rank's video rows, this rank's heads. send/recv
    //    [P, 3, B, n, Hl, hd]: chunk p of send holds rank p's heads of q, k and v.
    Tensor send = new_activation(be, {P, 3, B, n, Hl, hd}, "ulysses q, k, v out", q.dtype());
    for (int i = 0; i < 3; ++i) {
        Tensor dst = send.select(1, i);
        be.copy(heads_by_rank(qkv[size_t(i)]->slice(1, 0, n), P, hd), dst);
    }
    Tensor recv = new_activation(be, {P, 3, B, n, Hl, hd}, "ulysses q, k, v in", q.dtype());
    comm.all_to_all(send, recv);
    send = Tensor();

    // 2. The joint sequence of this rank's heads [3, B, Np + L, Hl, hd], in the order [video 0..N, text, padding]:
    //    one rank's key order, with the padding past every valid key.
    const int64_t Np = shard.padded(), S = Np + L;
    Tensor joint = new_activation(be, {3, B, S, Hl, hd}, "ulysses joint q, k, v", q.dtype());
    for (int64_t p = 0; p < P; ++p) {
        const int64_t valid = shard.valid_rows(p), first = p * n;
        const Tensor from = recv.select(0, p);  // [3, B, n, Hl, hd]: rank p's rows
        if (valid > 0) {
            Tensor dst = joint.slice(2, first, first + valid);
            be.copy(from.slice(2, 0, valid), dst);
        }
        if (valid < n) {  // padding rows: after the text, in the order of their (padded) token index
            const int64_t pad0 = L + std::max(first, N);
            Tensor dst = joint.slice(2, pad0, pad0 + (n - valid));
            be.copy(from.slice(2, valid, n), dst);
        }
    }
    recv = Tensor();
    for (int i = 0; i < 3; ++i) {
        // The text rows every rank holds: this rank's heads, sliced locally.
        Tensor dst = joint.select(0, i).slice(1, N, N + L);
        be.copy(heads_by_rank(qkv[size_t(i)]->slice(1, n, n + L), P, hd).select(0, r), dst);
    }

    // 3. Attention over the whole sequence for Hl heads; the norm and RoPE of the video rows 0..N, if asked.
    Tensor o = new_activation(be, {B, S, Hl, hd}, "ulysses attention", q.dtype());
    {
        auto heads_first = [](const Tensor& t) { return t.permute({0, 2, 1, 3}); };  // [B, Hl, S, hd]
        Tensor o_heads = heads_first(o);
        const Tensor jq = heads_first(joint.select(0, 0)), jk = heads_first(joint.select(0, 1)),
                     jv = heads_first(joint.select(0, 2));
        if (qk) {
            QkNormRope whole = *qk;
            whole.n_rope = N;
            be.attention(jq, jk, jv, o_heads, mask, scale, whole);
        } else {
            be.attention(jq, jk, jv, o_heads, mask, scale);
        }
    }
    joint = Tensor();

    // 4. Video rows back to their ranks: send2 [P, B, n, Hl, hd], chunk p = rank p's rows of this rank's heads.
    Tensor send2 = new_activation(be, {P, B, n, Hl, hd}, "ulysses output out", q.dtype());
    for (int64_t p = 0; p < P; ++p) {
        const int64_t valid = shard.valid_rows(p), first = p * n;
        Tensor to = send2.select(0, p);
        if (valid > 0) {
            Tensor dst = to.slice(1, 0, valid);
            be.copy(o.slice(1, first, first + valid), dst);
        }
        if (valid < n) {
            const int64_t pad0 = L + std::max(first, N);
            Tensor dst = to.slice(1, valid, n);
            be.copy(o.slice(1, pad0, pad0 + (n - valid)), dst);
        }
    }
    Tensor recv2 = new_activation(be, {P, B, n, Hl, hd}, "ulysses output in", q.dtype());
    comm.all_to_all(send2, recv2);
    send2 = Tensor();
    {
        Tensor dst = heads_by_rank(out.slice(1, 0, n), P, hd);  // chunk p: rank p's heads of this rank's rows
        be.copy(recv2, dst);
    }
    recv2 = Tensor();

    // 5. The text rows: every rank's heads, gathered.
    Tensor text = contiguous(be, o.slice(1, N, N + L), "ulysses text attention");  // [B, L, Hl, hd]
    o = Tensor();
    Tensor all_text = new_activation(be, {P, B, L, Hl, hd}, "ulysses text attention, every head", q.dtype());
    comm.all_gather(text, all_text);
    Tensor dst = heads_by_rank(out.slice(1, n, n + L), P, hd);
    be.copy(all_text, dst);
}

}  // namespace sr
