// bf16 flash attention (see attention_flash_bf16.h). Why a kernel of our own: the oneDNN-per-tile path spends
// about as long in primitive calls and in reordering each K and V tile into the tile layout (again for every
// query tile) as in the products themselves. Here q, k and v are rounded and laid out once per call (the QK
// prologue fused in), and a work item (one batch row, head and 64 or 128 query rows) walks the keys in
// 256-key blocks: scores, a two-pass online softmax, then P V into its f32 accumulator. The products run on
// an engine (AMX tiles or AVX-512 BF16 dot products); packing, softmax and accumulation are shared.
//
// Layouts (bf16 bits; a "pair" is two bf16 in one dword, the even index in the low half: the VNNI order
// TDPBF16PS reads its B operand in, and the order VDPBF16PS multiplies pairs in). Every B tile (16 pair rows x
// 16 dwords) is stored contiguously, 1 KiB:
//   q   [BH][Lq_pad][D]                                 rows as they are: the A operand of S = Q K^T
//   kt  [BH][key group of 16][D/32][16 pair rows][16]   K transposed, pairs along D: the B operand of S
//   vp  [BH][key chunk of 32][D/16][16 pair rows][16]   V with pairs along the keys: the B operand of P V
// Lq_pad and Lk_pad round up to 32; padded rows and keys past kv_len[b] are zeros (never read as data).
//
// AMX tile registers: 0-3 accumulate a 32 x 32 f32 block as 2 x 2 tiles of 16 x 16; 4-5 hold the two 16-row
// A tiles (16 x 32 bf16), 6-7 the two 16-column B tiles. AVX-512 BF16: a pair of q (or of P) is broadcast to
// every lane and multiplied with one B-tile row (16 keys', or 16 columns', pairs), 16 zmm accumulators a pass.
//
// Each row's result depends only on its own q row, the keys and the fixed key blocking, never on how many
// rows or heads a call has: sequence- and head-parallel runs stay bit-identical to one process.
//
// Measured (build/bench/bench_attention --kernel all, docs/BENCHMARKS.md): medium, 1 x 4 heads x 4352 x 128,
// AMX 0.088 s against 0.117 s on the oneDNN bf16 tiles (S and P V at ~70% of the tile unit's rate, the softmax
// about as much as each product); AVX-512 BF16 on a Zen 4 0.112-0.121 s against 0.132-0.142 s.
// GCC 12's AVX-512 intrinsics (_mm512_undefined_ps inside _mm512_max_ps and friends) raise false
// -Wmaybe-uninitialized warnings where they are inlined (GCC bug 105593); nothing of ours is uninitialized.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include "backends/cpu/attention_flash_bf16.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <limits>

#include "backends/cpu/f32_rows.h"
#include "backends/cpu/head_rows.h"
#include "backends/cpu/row_kernels.h"
#include "backends/cpu/vec_math.h"
#include "core/dtype.h"
#include "core/error.h"
#include "core/parallel.h"

#if defined(__AVX512BF16__) && defined(__AVX512F__) && defined(__linux__)
#define SR_BF16_FLASH 1
#include <immintrin.h>
#if defined(__AMX_TILE__) && defined(__AMX_BF16__)
#define SR_AMX_ATTENTION 1
#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>
#else
#define SR_AMX_ATTENTION 0
#endif
#else
#define SR_BF16_FLASH 0
#define SR_AMX_ATTENTION 0
#endif

namespace sr {

#if SR_BF16_FLASH

namespace {

constexpr int64_t kRows = 32;             // query rows per tile pass (two 16-row A tiles)
constexpr int64_t kChunk = 32;            // keys per S tile pair, and the depth of one P V tile product
constexpr int64_t kKeyBlock = 256;        // keys per online-softmax step (32 KiB of P, held in L1 for P V)
constexpr int64_t kTileDwords = 16 * 16;  // one B tile: 16 pair rows of 16 dwords, stored contiguously
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

int64_t round_up(int64_t n, int64_t m) {
    return (n + m - 1) / m * m;
}

#if SR_AMX_ATTENTION
// Linux hands a process the AMX tile state only when asked (arch_prctl ARCH_REQ_XCOMP_PERM); the CPU must
// also report AMX-BF16 (CPUID.7.0:EDX[22]) and AMX-TILE (EDX[24]).
bool request_amx() {
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
    if (!(d & (1u << 22)) || !(d & (1u << 24))) return false;
    constexpr long kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
    return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
}

// This thread's tiles configured as the header comment says, released on scope exit (oneDNN configures
// its own before each use).
class Tiles {
public:
    Tiles() {
        struct alignas(64) {
            uint8_t palette = 1, start_row = 0, reserved[14] = {};
            uint16_t bytes_per_row[16] = {};
            uint8_t rows[16] = {};
        } config;
        for (int t = 0; t < 8; ++t) config.bytes_per_row[t] = 64, config.rows[t] = 16;
        _tile_loadconfig(&config);
    }
    ~Tiles() { _tile_release(); }
    Tiles(const Tiles&) = delete;
    Tiles& operator=(const Tiles&) = delete;
};

#endif  // SR_AMX_ATTENTION

uint32_t pair(uint16_t even, uint16_t odd) {
    return uint32_t(even) | uint32_t(odd) << 16;
}

struct Packed {
    int64_t B, H, Lq_pad, Lk_pad, D;
    Tensor q, kt, vp;  // host scratch (the host allocator counts it): bf16 rows, and k and v as pairs (I32)
    uint16_t* q_data() { return static_cast<uint16_t*>(q.raw_data()); }
    uint32_t* kt_data() { return static_cast<uint32_t*>(kt.raw_data()); }
    uint32_t* vp_data() { return static_cast<uint32_t*>(vp.raw_data()); }
};

// A q or k row as the attention multiplies it: normalized and rotated first when the op has a QK prologue
// (by the very row functions of the rms_norm and rope ops, so the bits equal running those ops first), then
// rounded to bf16.
class RowRounder {
public:
    RowRounder(const QkNormRope* qk, const std::array<const Tensor*, 2>& weight, int64_t D) : qk_(qk), D_(D) {
        if (!qk) return;
        for (size_t s = 0; s < 2; ++s) weight_[s] = F32Vector(weight[s], D, "attention qk norm weight");
    }
    // Row `l` (its token index) of x (f32 or bf16) into dst; `scratch` holds D floats.
    void operator()(const void* x, DType dtype, int64_t l, uint16_t* dst, float* scratch) const {
        if (!qk_) {
            convert_elements(x, dtype, dst, DType::BF16, size_t(D_));  // a copy when x is bf16
            return;
        }
        const float* xf = static_cast<const float*>(x);
        if (dtype != DType::F32) {
            convert_elements(x, dtype, scratch, DType::F32, size_t(D_));
            xf = scratch;
        }
        const bool rotated = l < qk_->n_rope;
        rms_norm_row(xf, weight_[rotated ? 0 : 1].get(), D_, qk_->eps, scratch);
        if (rotated)
            rope_interleaved_row(scratch, qk_->cos->data<float>() + l * D_, qk_->sin->data<float>() + l * D_, D_);
        convert_elements(scratch, DType::F32, dst, DType::BF16, size_t(D_));
    }

private:
    const QkNormRope* qk_;
    int64_t D_;
    std::array<F32Vector, 2> weight_;
};

Packed pack(const Tensor& q, const Tensor& k, const Tensor& v, const std::vector<int64_t>& kv_len,
            const QkNormRope* qk) {
    const int64_t B = q.dim(0), H = q.dim(1), Lq = q.dim(2), Lk = k.dim(2), D = q.dim(3);
    Packed p{B, H, round_up(Lq, kRows), round_up(Lk, kChunk), D, {}, {}, {}};
    p.q = Tensor::empty({B * H * p.Lq_pad * D}, DType::BF16, host_allocator(), "flash attention q");
    p.kt = Tensor::empty({B * H * (D / 2) * p.Lk_pad}, DType::I32, host_allocator(), "flash attention k tiles");
    p.vp = Tensor::empty({B * H * (p.Lk_pad / 2) * D}, DType::I32, host_allocator(), "flash attention v tiles");
    const HeadRows qv = HeadRows::of(q), kv = HeadRows::of(k), vv = HeadRows::of(v);
    const RowRounder q_row(qk, qk ? qk->q_weight : std::array<const Tensor*, 2>{}, D),
        k_row(qk, qk ? qk->k_weight : std::array<const Tensor*, 2>{}, D);
    auto valid_keys = [&](int64_t b) { return kv_len.empty() ? Lk : std::clamp<int64_t>(kv_len[size_t(b)], 0, Lk); };
    // Work items are blocks of 32 rows (or keys) of one batch row, every head of a row done together: the
    // row's RoPE tables (shared by the heads) are read once, not once per head (at 4,352 tokens and D = 128
    // they are 4.4 MB, read 2 x H times per call before).
    const int64_t q_blocks = p.Lq_pad / kRows, k_chunks = p.Lk_pad / kChunk;
    parallel_for(B * q_blocks, [&](int64_t u0, int64_t u1) {
        std::vector<float> scratch(static_cast<size_t>(D));
        for (int64_t u = u0; u < u1; ++u) {
            const int64_t b = u / q_blocks, i0 = (u % q_blocks) * kRows;
            for (int64_t i = i0; i < i0 + kRows; ++i)
                for (int64_t h = 0; h < H; ++h) {
                    uint16_t* dst = p.q_data() + ((b * H + h) * p.Lq_pad + i) * D;
                    if (i < Lq)
                        q_row(qv.row(b, h, i), qv.dtype, i, dst, scratch.data());
                    else
                        std::fill(dst, dst + D, uint16_t(0));
                }
        }
    });
    parallel_for(B * k_chunks, [&](int64_t u0, int64_t u1) {
        std::vector<uint16_t> row0(static_cast<size_t>(D)), row1(static_cast<size_t>(D));
        std::vector<float> scratch(static_cast<size_t>(D));
        for (int64_t u = u0; u < u1; ++u) {
            const int64_t b = u / k_chunks, j0 = (u % k_chunks) * kChunk, valid = valid_keys(b);
            for (int64_t j = j0; j < j0 + kChunk; ++j)
                for (int64_t h = 0; h < H; ++h) {
                    if (j < valid)
                        k_row(kv.row(b, h, j), kv.dtype, j, row0.data(), scratch.data());
                    else
                        std::fill(row0.begin(), row0.end(), uint16_t(0));
                    // key j is column j % 16 of the tiles of key group j / 16
                    uint32_t* group =
                        p.kt_data() + (b * H + h) * (D / 2) * p.Lk_pad + (j / 16) * (D / 32) * kTileDwords + j % 16;
                    for (int64_t r = 0; r < D / 2; ++r)
                        group[(r / 16) * kTileDwords + (r % 16) * 16] =
                            pair(row0[size_t(2 * r)], row0[size_t(2 * r + 1)]);
                }
            for (int64_t j = j0; j < j0 + kChunk; j += 2)
                for (int64_t h = 0; h < H; ++h) {
                    for (int64_t t = 0; t < 2; ++t) {
                        std::vector<uint16_t>& row = t == 0 ? row0 : row1;
                        if (j + t < valid)
                            convert_elements(vv.row(b, h, j + t), vv.dtype, row.data(), DType::BF16, size_t(D));
                        else
                            std::fill(row.begin(), row.end(), uint16_t(0));
                    }
                    // keys j, j + 1 are pair row (j % 32) / 2 of the tiles of key chunk j / 32
                    uint32_t* chunk = p.vp_data() + (b * H + h) * (p.Lk_pad / 2) * D +
                                      (j / 32) * (D / 16) * kTileDwords + ((j % 32) / 2) * 16;
                    for (int64_t d = 0; d < D; ++d)
                        chunk[(d / 16) * kTileDwords + d % 16] = pair(row0[size_t(d)], row1[size_t(d)]);
                }
        }
    });
    return p;
}

#if SR_AMX_ATTENTION
// The 32 x 32 f32 block in tiles 0-3 (row blocks 0 and 1 by column blocks 0 and 1), from or to row-major
// memory with `ld` floats per row.
void load_block(const float* c, int64_t ld) {
    _tile_loadd(0, c, ld * 4);
    _tile_loadd(1, c + 16, ld * 4);
    _tile_loadd(2, c + 16 * ld, ld * 4);
    _tile_loadd(3, c + 16 * ld + 16, ld * 4);
}
void store_block(float* c, int64_t ld) {
    _tile_stored(0, c, ld * 4);
    _tile_stored(1, c + 16, ld * 4);
    _tile_stored(2, c + 16 * ld, ld * 4);
    _tile_stored(3, c + 16 * ld + 16, ld * 4);
}

// Tiles 0-3 += (two 16-row A tiles: a and a + 16 rows, `lda` bf16 per row) x (two contiguous B tiles b0, b1).
void dot_block(const uint16_t* a, int64_t lda, const uint32_t* b0, const uint32_t* b1) {
    _tile_loadd(4, a, lda * 2);
    _tile_loadd(5, a + 16 * lda, lda * 2);
    _tile_loadd(6, b0, 64);
    _tile_loadd(7, b1, 64);
    _tile_dpbf16ps(0, 4, 6);
    _tile_dpbf16ps(1, 4, 7);
    _tile_dpbf16ps(2, 5, 6);
    _tile_dpbf16ps(3, 5, 7);
}

// scores[rows][kKeyBlock] (f32, unscaled) = q rows [rows][D] . keys [chunks * 32] starting at key group kt.
// Key chunks outermost: a chunk's k tiles (8 KiB at D = 128) stay in L1 for every row pass.
void scores_tiles(const uint16_t* q, int64_t rows, int64_t D, const uint32_t* kt, int64_t chunks, float* scores) {
    const int64_t group = (D / 32) * kTileDwords;  // one key group (16 keys) of kt
    for (int64_t c = 0; c < chunks; ++c)
        for (int64_t r0 = 0; r0 < rows; r0 += kRows) {
            _tile_zero(0);
            _tile_zero(1);
            _tile_zero(2);
            _tile_zero(3);
            const uint32_t* kb = kt + 2 * c * group;
            for (int64_t d = 0; d < D; d += 32, kb += kTileDwords) dot_block(q + r0 * D + d, D, kb, kb + group);
            store_block(scores + r0 * kKeyBlock + c * kChunk, kKeyBlock);
        }
}

// acc[rows][D] += P[rows][chunks * 32] (bf16) . the v tiles of `chunks` key chunks starting at vp. Column
// blocks outermost: their v tiles (8 KiB) and P stay in L1 for every row pass.
void pv_tiles(const uint16_t* P, int64_t rows, const uint32_t* vp, int64_t D, int64_t chunks, float* acc) {
    const int64_t chunk = (D / 16) * kTileDwords;  // one key chunk (32 keys) of vp
    for (int64_t d = 0; d < D; d += 32)
        for (int64_t r0 = 0; r0 < rows; r0 += kRows) {
            load_block(acc + r0 * D + d, D);
            const uint32_t* vb = vp + (d / 16) * kTileDwords;
            for (int64_t c = 0; c < chunks; ++c, vb += chunk)
                dot_block(P + r0 * kKeyBlock + c * kChunk, kKeyBlock, vb, vb + kTileDwords);
            store_block(acc + r0 * D + d, D);
        }
}

#endif  // SR_AMX_ATTENTION

// The same two products on AVX-512 BF16 dot products (VDPBF16PS: 16 f32 lanes, each += a pair . a pair),
// for processors without AMX, on the same packed layouts. A pair of q (or P) is broadcast to every lane and
// multiplied with 16 keys' (or 16 columns') pairs of one B-tile row.

// Two bf16 (a pair) of q or P read as one dword for the broadcast: a 32-bit type that may alias the uint16_t
// storage they were written as.
using PairWord = uint32_t __attribute__((may_alias));

// 4 query rows x NG key groups of 16 keys: scores[i][g * 16 + lane] over D / 2 pairs.
template <int NG>
void scores_dp_block(const PairWord* qr, int64_t D, const uint32_t* kg, int64_t group, float* dst) {
    __m512 acc[4][NG];
    for (auto& row : acc)
        for (auto& a : row) a = _mm512_setzero_ps();
    for (int64_t p = 0; p < D / 2; ++p) {
        __m512bh b[NG];
        for (int g = 0; g < NG; ++g) b[g] = (__m512bh)_mm512_loadu_si512(kg + g * group + p * 16);
        for (int i = 0; i < 4; ++i) {
            const __m512bh a = (__m512bh)_mm512_set1_epi32(int(qr[i * (D / 2) + p]));
            for (int g = 0; g < NG; ++g) acc[i][g] = _mm512_dpbf16_ps(acc[i][g], a, b[g]);
        }
    }
    for (int i = 0; i < 4; ++i)
        for (int g = 0; g < NG; ++g) _mm512_storeu_ps(dst + i * kKeyBlock + g * 16, acc[i][g]);
}

// scores as scores_tiles: 4 query rows x 64 keys (four key groups) in 16 accumulators per pass.
void scores_dp(const uint16_t* q, int64_t rows, int64_t D, const uint32_t* kt, int64_t chunks, float* scores) {
    const int64_t group = (D / 32) * kTileDwords;  // a key group's pair r is its 16 dwords at r * 16
    const auto* q32 = reinterpret_cast<const PairWord*>(q);
    const int64_t groups = 2 * chunks;
    for (int64_t g0 = 0; g0 < groups; g0 += 4) {
        const int64_t ng = std::min<int64_t>(4, groups - g0);
        for (int64_t r0 = 0; r0 < rows; r0 += 4) {
            const PairWord* qr = q32 + r0 * (D / 2);
            const uint32_t* kg = kt + g0 * group;
            float* dst = scores + r0 * kKeyBlock + g0 * 16;
            if (ng == 4)
                scores_dp_block<4>(qr, D, kg, group, dst);
            else
                scores_dp_block<2>(qr, D, kg, group, dst);
        }
    }
}

// acc as pv_tiles, for 4 rows x NB column blocks of 16 (NB x 4 accumulators) per pass.
template <int NB>
void pv_dp_columns(const PairWord* P32, int64_t r0, const uint32_t* vp, int64_t D, int64_t d0, int64_t chunks,
                   float* acc) {
    const int64_t chunk = (D / 16) * kTileDwords;  // one key chunk (32 keys) of vp
    __m512 c[4][NB];
    for (int i = 0; i < 4; ++i)
        for (int j = 0; j < NB; ++j) c[i][j] = _mm512_loadu_ps(acc + (r0 + i) * D + d0 + 16 * j);
    const uint32_t* vb = vp + (d0 / 16) * kTileDwords;
    for (int64_t ch = 0; ch < chunks; ++ch, vb += chunk)
        for (int64_t pr = 0; pr < 16; ++pr) {
            __m512bh b[NB];
            for (int j = 0; j < NB; ++j) b[j] = (__m512bh)_mm512_loadu_si512(vb + j * kTileDwords + pr * 16);
            for (int i = 0; i < 4; ++i) {
                const __m512bh a = (__m512bh)_mm512_set1_epi32(int(P32[(r0 + i) * (kKeyBlock / 2) + ch * 16 + pr]));
                for (int j = 0; j < NB; ++j) c[i][j] = _mm512_dpbf16_ps(c[i][j], a, b[j]);
            }
        }
    for (int i = 0; i < 4; ++i)
        for (int j = 0; j < NB; ++j) _mm512_storeu_ps(acc + (r0 + i) * D + d0 + 16 * j, c[i][j]);
}

void pv_dp(const uint16_t* P, int64_t rows, const uint32_t* vp, int64_t D, int64_t chunks, float* acc) {
    const auto* P32 = reinterpret_cast<const PairWord*>(P);
    for (int64_t d0 = 0; d0 < D; d0 += 64)
        for (int64_t r0 = 0; r0 < rows; r0 += 4)
            if (D - d0 >= 64)
                pv_dp_columns<4>(P32, r0, vp, D, d0, chunks, acc);
            else  // D is a multiple of 32
                pv_dp_columns<2>(P32, r0, vp, D, d0, chunks, acc);
}

// 2^t for finite t: t = n + f with n an integer and |f| <= 1/2, 2^f by a degree-4 polynomial fitted for
// relative error on [-1/2, 1/2] (below 3e-6 in f32: 1/700 of the rounding to bf16 that P gets next, and two
// multiply-adds fewer than a Taylor polynomial as exact as vec::exp), scaled by 2^n exactly (VSCALEFPS, which
// gives 0 for n far below the f32 range: no clamp needed; what lands among the denormals rounds to a bf16 0).
__m512 exp2(__m512 t) {
    const __m512 n = _mm512_roundscale_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m512 f = _mm512_sub_ps(t, n);
    __m512 p = _mm512_set1_ps(9.5701013e-3f);
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(5.5917859e-2f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(2.4024744e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(6.9312179e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(9.9999928e-1f));
    return _mm512_scalef_ps(p, n);
}

// A mask of the first min(count, 16) lanes (none for count <= 0).
__mmask16 lanes(int64_t count) {
    return count >= 16 ? __mmask16(0xffff) : count <= 0 ? __mmask16(0) : __mmask16((1u << count) - 1);
}

// Per-thread state of the online softmax for one work item's rows.
struct RowState {
    std::vector<float> acc, max, sum;
    RowState(int64_t rows, int64_t D) : acc(size_t(rows * D)), max(size_t(rows)), sum(size_t(rows)) {}
    void reset() {
        std::fill(acc.begin(), acc.end(), 0.0f);
        std::fill(max.begin(), max.end(), kNegInf);
        std::fill(sum.begin(), sum.end(), 0.0f);
    }
};

// Online softmax over the first n scores of `rows` rows: P = exp(s * scale - max), computed as
// 2^(s * scale * log2(e) - max * log2(e)), rounded to bf16 and zero-padded to `width` keys, in two passes
// (the maximum; then exp, sum and rounding); each row's accumulator rescaled when its maximum grows, as in
// attention.cpp. The last partial vector of a row runs masked.
void softmax_rows(const float* scores, uint16_t* P, int64_t rows, int64_t n, int64_t width, float scale, RowState& st,
                  int64_t D) {
    constexpr float kLog2e = 1.44269504088896341f;
    SR_ASSERT(width == round_up(n, 32), "flash softmax: {} keys padded to {}", n, width);  // the exp pass stores 32
    const __m512 vscale2 = _mm512_set1_ps(scale * kLog2e);
    const bool positive_scale = scale >= 0.0f;
    for (int64_t i = 0; i < rows; ++i) {
        const float* s = scores + i * kKeyBlock;
        uint16_t* p = P + i * kKeyBlock;
        float& row_max = st.max[size_t(i)];
        float& row_sum = st.sum[size_t(i)];
        // The largest raw score (the smallest when scale < 0), scaled once after the pass.
        __m512 m = _mm512_set1_ps(s[0]);
        for (int64_t j = 0; j < n; j += 16) {
            const __mmask16 k = lanes(n - j);
            const __m512 x = _mm512_maskz_loadu_ps(k, s + j);
            m = positive_scale ? _mm512_mask_max_ps(m, k, m, x) : _mm512_mask_min_ps(m, k, m, x);
        }
        const float mx =
            std::max(row_max, (positive_scale ? _mm512_reduce_max_ps(m) : _mm512_reduce_min_ps(m)) * scale);
        if (mx == kNegInf) {
            std::fill(p, p + width, uint16_t(0));
            continue;
        }
        // 32 scores a pass, rounded to bf16 together; width is n rounded up to 32, so a pass's 32 P values
        // are all stored, zeros past n.
        const __m512 offset = _mm512_set1_ps(-mx * kLog2e);
        __m512 acc = _mm512_setzero_ps();
        for (int64_t j = 0; j < n; j += 32) {
            __m512 e0 = exp2(_mm512_fmadd_ps(_mm512_loadu_ps(s + j), vscale2, offset));
            __m512 e1 = exp2(_mm512_fmadd_ps(_mm512_loadu_ps(s + j + 16), vscale2, offset));
            if (n - j < 32) {
                e0 = _mm512_maskz_mov_ps(lanes(n - j), e0);
                e1 = _mm512_maskz_mov_ps(lanes(n - j - 16), e1);
            }
            acc = _mm512_add_ps(_mm512_add_ps(acc, e0), e1);
            _mm512_storeu_si512(p + j, reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(e1, e0)));
        }
        const float sum = _mm512_reduce_add_ps(acc);
        if (row_max != kNegInf) {
            const float correction = vec::exp(row_max - mx);
            vec::scale(st.acc.data() + i * D, D, correction);
            row_sum = row_sum * correction + sum;
        } else {
            row_sum = sum;
        }
        row_max = mx;
    }
}

// The two engines: each a per-thread object (AMX: the thread's tiles configured while it lives) with the two
// products over the packed operands.
#if SR_AMX_ATTENTION
struct AmxEngine {
    static constexpr int64_t kQueryBlock = 64;  // query rows per work item (16 KiB of q at D = 128, held in L1)
    Tiles tiles;
    static void scores(const uint16_t* q, int64_t rows, int64_t D, const uint32_t* kt, int64_t chunks, float* s) {
        scores_tiles(q, rows, D, kt, chunks, s);
    }
    static void pv(const uint16_t* P, int64_t rows, const uint32_t* vp, int64_t D, int64_t chunks, float* acc) {
        pv_tiles(P, rows, vp, D, chunks, acc);
    }
};
#endif
struct DotProductEngine {
    // Query rows per work item: twice AMX's, so each pass over the keys' packed k and v (2.2 MB a head at 4352
    // keys, streamed from L3) serves twice the rows: 3% faster at medium and 6% at real_1k on a Zen 4
    // (bench_attention, two runs); the scores block (128 KiB) lives in L2.
    static constexpr int64_t kQueryBlock = 128;
    static void scores(const uint16_t* q, int64_t rows, int64_t D, const uint32_t* kt, int64_t chunks, float* s) {
        scores_dp(q, rows, D, kt, chunks, s);
    }
    static void pv(const uint16_t* P, int64_t rows, const uint32_t* vp, int64_t D, int64_t chunks, float* acc) {
        pv_dp(P, rows, vp, D, chunks, acc);
    }
};

// The flash loop over the packed operands on `Engine`'s products.
template <class Engine>
void run_flash(Packed& p, int64_t Lq, int64_t Lk, Tensor& out, const std::vector<int64_t>& kv_len, float scale) {
    const int64_t B = p.B, H = p.H, D = p.D;
    constexpr int64_t kQueryBlock = Engine::kQueryBlock;
    const int64_t n_qblocks = (p.Lq_pad + kQueryBlock - 1) / kQueryBlock;
    char* od = static_cast<char*>(out.raw_data());
    const size_t out_esize = dtype_size(out.dtype());
    parallel_for(B * H * n_qblocks, [&](int64_t w0, int64_t w1) {
        Engine engine;
        RowState st(kQueryBlock, D);
        std::vector<float> scores(size_t(kQueryBlock * kKeyBlock));
        std::vector<uint16_t> P(size_t(kQueryBlock * kKeyBlock));
        for (int64_t w = w0; w < w1; ++w) {
            const int64_t bh = w / n_qblocks, b = bh / H, h = bh % H;
            const int64_t i0 = (w % n_qblocks) * kQueryBlock, rows = std::min(kQueryBlock, p.Lq_pad - i0);
            const int64_t valid = kv_len.empty() ? Lk : std::clamp<int64_t>(kv_len[size_t(b)], 0, Lk);
            const uint16_t* qd = p.q_data() + (bh * p.Lq_pad + i0) * D;
            const uint32_t* kt = p.kt_data() + bh * (D / 2) * p.Lk_pad;
            const uint32_t* vp = p.vp_data() + bh * (p.Lk_pad / 2) * D;
            st.reset();
            for (int64_t j0 = 0; j0 < valid; j0 += kKeyBlock) {
                const int64_t n = std::min(kKeyBlock, valid - j0), chunks = (n + kChunk - 1) / kChunk;
                engine.scores(qd, rows, D, kt + (j0 / 16) * (D / 32) * kTileDwords, chunks, scores.data());
                softmax_rows(scores.data(), P.data(), rows, n, chunks * kChunk, scale, st, D);
                engine.pv(P.data(), rows, vp + (j0 / 32) * (D / 16) * kTileDwords, D, chunks, st.acc.data());
            }
            for (int64_t r = 0; r < rows && i0 + r < Lq; ++r) {
                float* a = st.acc.data() + r * D;
                vec::scale(a, D, st.sum[size_t(r)] > 0.0f ? 1.0f / st.sum[size_t(r)] : 0.0f);
                char* o = od + size_t(b * out.stride(0) + h * out.stride(1) + (i0 + r) * out.stride(2)) * out_esize;
                convert_elements(a, DType::F32, o, out.dtype(), size_t(D));  // rounded once when bf16
            }
        }
    });
}

}  // namespace

const char* flash_attention_engine() {
    static const char* const engine = [] {
#if SR_AMX_ATTENTION
        if (request_amx()) return "amx";
#endif
        return __builtin_cpu_supports("avx512bf16") ? "avx512_bf16" : static_cast<const char*>(nullptr);
    }();
    return engine;
}

bool attention_bf16_flash(const Tensor& q, const Tensor& k, const Tensor& v, Tensor& out,
                          const std::vector<int64_t>& kv_len, float scale, const QkNormRope* qk) {
    const char* engine = flash_attention_engine();
    if (q.dim(3) % 32 != 0 || !engine) return false;
    Packed p = pack(q, k, v, kv_len, qk);
#if SR_AMX_ATTENTION
    if (std::strcmp(engine, "amx") == 0) {
        run_flash<AmxEngine>(p, q.dim(2), k.dim(2), out, kv_len, scale);
        return true;
    }
#endif
    run_flash<DotProductEngine>(p, q.dim(2), k.dim(2), out, kv_len, scale);
    return true;
}

#else  // not built for AVX-512 BF16

const char* flash_attention_engine() {
    return nullptr;
}

bool attention_bf16_flash(const Tensor&, const Tensor&, const Tensor&, Tensor&, const std::vector<int64_t>&, float,
                          const QkNormRope*) {
    return false;
}

#endif

}  // namespace sr
