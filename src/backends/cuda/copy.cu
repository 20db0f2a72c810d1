// Data movement kernels: dtype conversion, strided copy (views of up to 8 dimensions), the embedding gather,
// replicate padding, nearest upsampling and the patchify im2col. All are memory-bound index arithmetic; the
// conversions are the bit-exact ones of kernel_util.cuh.
#include <cuda_runtime.h>

#include "backends/cuda/index_math.h"
#include "backends/cuda/kernel_util.cuh"

namespace sr::cuda {

namespace {

int type_bytes(KType t) {
    switch (t) {
        case KType::F32:
        case KType::I32:
            return 4;
        case KType::BF16:
        case KType::F16:
            return 2;
        case KType::F8_E4M3:
        case KType::Bool:
            return 1;
        case KType::I64:
            return 8;
    }
    return 0;
}

__device__ __forceinline__ void copy_element(const char* src, char* dst, int bytes) {
    switch (bytes) {
        case 1:
            *dst = *src;
            return;
        case 2:
            *reinterpret_cast<uint16_t*>(dst) = *reinterpret_cast<const uint16_t*>(src);
            return;
        case 4:
            *reinterpret_cast<uint32_t*>(dst) = *reinterpret_cast<const uint32_t*>(src);
            return;
        default:
            *reinterpret_cast<uint64_t*>(dst) = *reinterpret_cast<const uint64_t*>(src);
            return;
    }
}

__global__ void convert_kernel(const void* src, KType st, void* dst, KType dt, int64_t n) {
    for (int64_t i = global_thread(); i < n; i += grid_threads()) store_float(dst, dt, i, load_float(src, st, i));
}

// The layout arrives by value (kernel parameter space), dims coalesced by the caller.
__global__ void strided_copy_kernel(const char* src, KType st, int s_bytes, char* dst, KType dt, int d_bytes,
                                    StridedLayout layout, int64_t n) {
    const bool same = st == dt;
    for (int64_t i = global_thread(); i < n; i += grid_threads()) {
        int64_t rem = i, soff = 0, doff = 0;
#pragma unroll
        for (int d = kMaxRank - 1; d >= 0; --d) {
            if (d >= layout.rank) continue;
            const int64_t idx = rem % layout.shape[d];
            rem /= layout.shape[d];
            soff += idx * layout.src_stride[d];
            doff += idx * layout.dst_stride[d];
        }
        if (same)
            copy_element(src + soff * s_bytes, dst + doff * d_bytes, s_bytes);
        else
            store_float(dst + doff * d_bytes, dt, 0, load_float(src + soff * s_bytes, st, 0));
    }
}

// The same with 32-bit FastDivmod index math, for copies of fewer than 2^31 elements.
__global__ void strided_copy32_kernel(const char* src, KType st, int s_bytes, char* dst, KType dt, int d_bytes,
                                      StridedIndex32<kMaxRank> ix, uint32_t n) {
    const bool same = st == dt;
    for (uint32_t i = uint32_t(global_thread()); i < n; i += uint32_t(grid_threads())) {
        int64_t soff, doff;
        ix.offsets(i, soff, doff);
        if (same)
            copy_element(src + soff * s_bytes, dst + doff * d_bytes, s_bytes);
        else
            store_float(dst + doff * d_bytes, dt, 0, load_float(src + soff * s_bytes, st, 0));
    }
}

__global__ void embedding_kernel(const void* ids, KType id_type, int64_t ids_sb, int64_t ids_sl, const void* table,
                                 KType table_type, float* y, int64_t rows, int64_t L, int64_t D) {
    for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
        const int64_t off = (r / L) * ids_sb + (r % L) * ids_sl;
        const int64_t id = id_type == KType::I64 ? static_cast<const int64_t*>(ids)[off]
                                                 : int64_t(static_cast<const int32_t*>(ids)[off]);
        for (int64_t d = threadIdx.x; d < D; d += blockDim.x) y[r * D + d] = load_float(table, table_type, id * D + d);
    }
}

__global__ void pad3d_replicate_kernel(const float* __restrict__ x, float* __restrict__ y, int64_t F, int64_t H,
                                       int64_t W, int64_t Fo, int64_t Ho, int64_t Wo, int64_t f0, int64_t h0,
                                       int64_t w0, int64_t n) {
    for (int64_t i = global_thread(); i < n; i += grid_threads()) {
        const int64_t w = i % Wo, h = (i / Wo) % Ho, f = (i / (Wo * Ho)) % Fo, bc = i / (Wo * Ho * Fo);
        const int64_t fi = min(max(f - f0, int64_t(0)), F - 1);
        const int64_t hi = min(max(h - h0, int64_t(0)), H - 1);
        const int64_t wi = min(max(w - w0, int64_t(0)), W - 1);
        y[i] = x[((bc * F + fi) * H + hi) * W + wi];
    }
}

// 32-bit variants of the two below: (bc, f, h, w) of an output index by FastDivmod.
struct Grid3d32 {
    FastDivmod Wo, Ho, Fo;
};

__global__ void pad3d_replicate32_kernel(const float* __restrict__ x, float* __restrict__ y, int F, int H, int W,
                                         Grid3d32 g, int f0, int h0, int w0, uint32_t n) {
    for (uint32_t i = uint32_t(global_thread()); i < n; i += uint32_t(grid_threads())) {
        uint32_t rest, w, h, f, bc;
        g.Wo.divmod(i, rest, w);
        g.Ho.divmod(rest, rest, h);
        g.Fo.divmod(rest, bc, f);
        const int fi = min(max(int(f) - f0, 0), F - 1);
        const int hi = min(max(int(h) - h0, 0), H - 1);
        const int wi = min(max(int(w) - w0, 0), W - 1);
        y[i] = x[((int64_t(bc) * F + fi) * H + hi) * W + wi];
    }
}

__global__ void upsample_nearest3d32_kernel(const float* __restrict__ x, float* __restrict__ y, int F, int H, int W,
                                            Grid3d32 g, FastDivmod sf, FastDivmod sh, FastDivmod sw, uint32_t n) {
    for (uint32_t i = uint32_t(global_thread()); i < n; i += uint32_t(grid_threads())) {
        uint32_t rest, w, h, f, bc;
        g.Wo.divmod(i, rest, w);
        g.Ho.divmod(rest, rest, h);
        g.Fo.divmod(rest, bc, f);
        y[i] = x[((int64_t(bc) * F + sf.div(f)) * H + sh.div(h)) * W + sw.div(w)];
    }
}

__global__ void upsample_nearest3d_kernel(const float* __restrict__ x, float* __restrict__ y, int64_t F, int64_t H,
                                          int64_t W, int64_t sf, int64_t sh, int64_t sw, int64_t n) {
    const int64_t Fo = F * sf, Ho = H * sh, Wo = W * sw;
    for (int64_t i = global_thread(); i < n; i += grid_threads()) {
        const int64_t w = i % Wo, h = (i / Wo) % Ho, f = (i / (Wo * Ho)) % Fo, bc = i / (Wo * Ho * Fo);
        y[i] = x[((bc * F + f / sf) * H + h / sh) * W + w / sw];
    }
}

struct PatchifyArgs {
    const float* x;
    int64_t sx[5];
    int64_t C, Hp, Wp, pt, ph, pw, N, P;
};

__global__ void patchify_kernel(PatchifyArgs a, float* __restrict__ cols, int64_t n) {
    for (int64_t i = global_thread(); i < n; i += grid_threads()) {
        const int64_t p = i % a.P, row = i / a.P;
        const int64_t b = row / a.N, tok = row % a.N;
        const int64_t f = tok / (a.Hp * a.Wp), h = (tok / a.Wp) % a.Hp, w = tok % a.Wp;
        // Columns in the weight's (c, t, h, w) order.
        const int64_t kw = p % a.pw, kh = (p / a.pw) % a.ph, kt = (p / (a.pw * a.ph)) % a.pt,
                      c = p / (a.pw * a.ph * a.pt);
        cols[i] = a.x[b * a.sx[0] + c * a.sx[1] + (f * a.pt + kt) * a.sx[2] + (h * a.ph + kh) * a.sx[3] +
                      (w * a.pw + kw) * a.sx[4]];
    }
}

// 32-bit index math for patchify: every divisor of the decomposition below.
struct PatchifyIndex32 {
    FastDivmod P, N, HpWp, Wp, pw, ph, pt;
};

__global__ void patchify32_kernel(PatchifyArgs a, PatchifyIndex32 ix, float* __restrict__ cols, uint32_t n) {
    for (uint32_t i = uint32_t(global_thread()); i < n; i += uint32_t(grid_threads())) {
        uint32_t row, p, b, tok, f, hw, h, w, rest, kw, kh, kt, c;
        ix.P.divmod(i, row, p);
        ix.N.divmod(row, b, tok);
        ix.HpWp.divmod(tok, f, hw);
        ix.Wp.divmod(hw, h, w);
        ix.pw.divmod(p, rest, kw);  // columns in the weight's (c, t, h, w) order
        ix.ph.divmod(rest, rest, kh);
        ix.pt.divmod(rest, c, kt);
        cols[i] = a.x[b * a.sx[0] + c * a.sx[1] + (int64_t(f) * a.pt + kt) * a.sx[2] +
                      (int64_t(h) * a.ph + kh) * a.sx[3] + (int64_t(w) * a.pw + kw) * a.sx[4]];
    }
}

unsigned row_blocks(int64_t rows) {
    return unsigned(rows < (int64_t(1) << 20) ? rows : (int64_t(1) << 20));
}

}  // namespace

void convert(const void* src, KType src_type, void* dst, KType dst_type, int64_t n, cudaStream_t stream) {
    if (n <= 0) return;
    if (src_type == dst_type) {
        cudaMemcpyAsync(dst, src, size_t(n) * size_t(type_bytes(src_type)), cudaMemcpyDeviceToDevice, stream);
        return;
    }
    convert_kernel<<<grid_for(n), kThreads, 0, stream>>>(src, src_type, dst, dst_type, n);
}

void strided_copy(const void* src, KType src_type, void* dst, KType dst_type, const StridedLayout& layout,
                  cudaStream_t stream) {
    int64_t n = 1;
    for (int d = 0; d < layout.rank; ++d) n *= layout.shape[d];
    if (n <= 0) return;
    if (fits_32(n)) {
        StridedIndex32<kMaxRank> ix;
        ix.rank = layout.rank;
        for (int d = 0; d < layout.rank; ++d) {
            ix.dims[d] = FastDivmod(uint32_t(layout.shape[d]));
            ix.a_stride[d] = layout.src_stride[d];
            ix.b_stride[d] = layout.dst_stride[d];
        }
        strided_copy32_kernel<<<grid_for(n), kThreads, 0, stream>>>(static_cast<const char*>(src), src_type,
                                                                    type_bytes(src_type), static_cast<char*>(dst),
                                                                    dst_type, type_bytes(dst_type), ix, uint32_t(n));
        return;
    }
    strided_copy_kernel<<<grid_for(n), kThreads, 0, stream>>>(static_cast<const char*>(src), src_type,
                                                              type_bytes(src_type), static_cast<char*>(dst), dst_type,
                                                              type_bytes(dst_type), layout, n);
}

void embedding(const void* ids, KType id_type, int64_t ids_sb, int64_t ids_sl, const void* table, KType table_type,
               float* y, int64_t B, int64_t L, int64_t D, cudaStream_t stream) {
    if (B * L * D <= 0) return;
    embedding_kernel<<<row_blocks(B * L), kThreads, 0, stream>>>(ids, id_type, ids_sb, ids_sl, table, table_type, y,
                                                                 B * L, L, D);
}

void pad3d_replicate(const float* x, float* y, int64_t BC, int64_t F, int64_t H, int64_t W, const int64_t pads[6],
                     cudaStream_t stream) {
    const int64_t Fo = F + pads[0] + pads[1], Ho = H + pads[2] + pads[3], Wo = W + pads[4] + pads[5];
    const int64_t n = BC * Fo * Ho * Wo;
    if (n <= 0) return;
    if (fits_32(n) && fits_32(BC * F * H * W)) {
        const Grid3d32 g{FastDivmod(uint32_t(Wo)), FastDivmod(uint32_t(Ho)), FastDivmod(uint32_t(Fo))};
        pad3d_replicate32_kernel<<<grid_for(n), kThreads, 0, stream>>>(x, y, int(F), int(H), int(W), g, int(pads[0]),
                                                                       int(pads[2]), int(pads[4]), uint32_t(n));
        return;
    }
    pad3d_replicate_kernel<<<grid_for(n), kThreads, 0, stream>>>(x, y, F, H, W, Fo, Ho, Wo, pads[0], pads[2], pads[4],
                                                                 n);
}

void upsample_nearest3d(const float* x, float* y, int64_t BC, int64_t F, int64_t H, int64_t W, int64_t sf, int64_t sh,
                        int64_t sw, cudaStream_t stream) {
    const int64_t n = BC * F * sf * H * sh * W * sw;
    if (n <= 0) return;
    if (fits_32(n)) {
        const Grid3d32 g{FastDivmod(uint32_t(W * sw)), FastDivmod(uint32_t(H * sh)), FastDivmod(uint32_t(F * sf))};
        upsample_nearest3d32_kernel<<<grid_for(n), kThreads, 0, stream>>>(
            x, y, int(F), int(H), int(W), g, FastDivmod(uint32_t(sf)), FastDivmod(uint32_t(sh)),
            FastDivmod(uint32_t(sw)), uint32_t(n));
        return;
    }
    upsample_nearest3d_kernel<<<grid_for(n), kThreads, 0, stream>>>(x, y, F, H, W, sf, sh, sw, n);
}

void patchify(const float* x, const int64_t x_stride[5], int64_t B, int64_t C, int64_t F, int64_t H, int64_t W,
              int64_t pt, int64_t ph, int64_t pw, float* cols, cudaStream_t stream) {
    PatchifyArgs a{};
    a.x = x;
    for (int i = 0; i < 5; ++i) a.sx[i] = x_stride[i];
    a.C = C;
    a.Hp = H / ph;
    a.Wp = W / pw;
    a.pt = pt;
    a.ph = ph;
    a.pw = pw;
    a.N = (F / pt) * a.Hp * a.Wp;
    a.P = C * pt * ph * pw;
    const int64_t n = B * a.N * a.P;
    if (n <= 0) return;
    if (fits_32(n)) {
        const PatchifyIndex32 ix{FastDivmod(uint32_t(a.P)),         FastDivmod(uint32_t(a.N)),
                                 FastDivmod(uint32_t(a.Hp * a.Wp)), FastDivmod(uint32_t(a.Wp)),
                                 FastDivmod(uint32_t(pw)),          FastDivmod(uint32_t(ph)),
                                 FastDivmod(uint32_t(pt))};
        patchify32_kernel<<<grid_for(n), kThreads, 0, stream>>>(a, ix, cols, uint32_t(n));
        return;
    }
    patchify_kernel<<<grid_for(n), kThreads, 0, stream>>>(a, cols, n);
}

}  // namespace sr::cuda
