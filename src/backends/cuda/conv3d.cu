// 3-D convolution as an implicit GEMM in f32: out[o, p] = sum_k w[o, k] * col[k, p] with k = (c, a, i, j) over
// the kernel window and p = (b, fo, ho, wo) over output positions; the im2col matrix is never stored, each
// block gathers its [16 x 64] slice of it straight from x (zero outside the padded input). This is the
// classic shared-memory SGEMM tiling (64 x 64 output tile, 16-deep k slices, 4 x 4 outputs per thread, the
// next slice prefetched into registers while the current one is multiplied); see "Implicit GEMM
// convolution" in NVIDIA's CUTLASS documentation for the formulation (no CUTLASS code is used here).
//
// Why not cuDNN: its C backend API needs a dozen descriptors per shape whose failure modes show only at run
// time, and this had to be written without a GPU to run on; an implicit GEMM is a few lines whose
// correctness can be read. It is f32 throughout (the VAE parity path), at roughly SGEMM speed; a bf16
// tensor-core variant or cuDNN is the next step if the VAE dominates a profiled run.
#include <cuda_runtime.h>

#include "backends/cuda/index_math.h"
#include "backends/cuda/kernel_util.cuh"

namespace sr::cuda {

namespace {

constexpr int kBM = 64, kBN = 64, kBK = 16, kConvThreads = 256;

// The divisions of the k-loop's gather in 32 bits (k = (c, a, i, j) over C x kt x kh x kw: K is at most a few
// thousand), and of output positions when there are fewer than 2^31 of them (out32).
struct Conv3dIndex {
    FastDivmod window, khw, kw, s_out;
    bool out32;
};

__global__ void __launch_bounds__(kConvThreads)
    conv3d_kernel(const float* __restrict__ x, const float* __restrict__ w, const float* __restrict__ bias,
                  float* __restrict__ y, Conv3dShape s, Conv3dIndex ix) {
    __shared__ __align__(16) float As[kBK][kBM];  // weights, k-major
    __shared__ __align__(16) float Bs[kBK][kBN];  // gathered input columns

    const int tid = threadIdx.x;
    const int tx = tid % 16, ty = tid / 16;  // this thread's 4 x 4 outputs: m = ty*4.., n = tx*4..
    const int64_t m0 = int64_t(blockIdx.y) * kBM, n0 = int64_t(blockIdx.x) * kBN;
    const int K = int(s.C * s.kt * s.kh * s.kw);  // the host checks that it fits
    const int64_t S_out = s.Fo * s.Ho * s.Wo, N = s.B * S_out;

    // The output position whose column this thread gathers (fixed for the whole k loop).
    const int gather_n = tid % kBN, gather_k = tid / kBN;  // k rows gather_k + 4e, e < 4
    const int64_t p = n0 + gather_n;
    const bool p_valid = p < N;
    int64_t fi0 = 0, hi0 = 0, wi0 = 0;
    const float* xb = x;
    if (p_valid) {
        const int64_t b = p / S_out, r = p % S_out;
        const int64_t fo = r / (s.Ho * s.Wo), ho = (r / s.Wo) % s.Ho, wo = r % s.Wo;
        fi0 = fo * s.st - s.pt;
        hi0 = ho * s.sh - s.ph;
        wi0 = wo * s.sw - s.pw;
        xb = x + b * s.C * s.F * s.H * s.W;
    }
    // The weight elements this thread loads: m = tid % 64, k rows tid / 64 + 4e.
    const int load_m = tid % kBM, load_k = tid / kBM;

    float a_reg[4], b_reg[4];
    auto load_slice = [&](int k0) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
            const int k = k0 + load_k + 4 * e;
            const int64_t m = m0 + load_m;
            a_reg[e] = (k < K && m < s.O) ? w[m * K + k] : 0.0f;
        }
#pragma unroll
        for (int e = 0; e < 4; ++e) {
            const int k = k0 + gather_k + 4 * e;
            float v = 0.0f;
            if (p_valid && k < K) {
                // k = ((c * kt + a) * kh + i) * kw + j: three 32-bit divmods instead of 64-bit division.
                uint32_t c, r, a, rhw, i, j;
                ix.window.divmod(uint32_t(k), c, r);
                ix.khw.divmod(r, a, rhw);
                ix.kw.divmod(rhw, i, j);
                const int64_t fi = fi0 + a, hi = hi0 + i, wi = wi0 + j;
                if (fi >= 0 && fi < s.F && hi >= 0 && hi < s.H && wi >= 0 && wi < s.W)
                    v = xb[((int64_t(c) * s.F + fi) * s.H + hi) * s.W + wi];
            }
            b_reg[e] = v;
        }
    };
    auto store_slice = [&]() {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
            As[load_k + 4 * e][load_m] = a_reg[e];
            Bs[gather_k + 4 * e][gather_n] = b_reg[e];
        }
    };

    float acc[4][4] = {};
    load_slice(0);
    store_slice();
    __syncthreads();
    for (int k0 = 0; k0 < K; k0 += kBK) {
        const bool more = k0 + kBK < K;
        if (more) load_slice(k0 + kBK);  // global loads in flight during the multiply below
#pragma unroll
        for (int kk = 0; kk < kBK; ++kk) {
            const float4 a = *reinterpret_cast<const float4*>(&As[kk][ty * 4]);
            const float4 b = *reinterpret_cast<const float4*>(&Bs[kk][tx * 4]);
            const float av[4] = {a.x, a.y, a.z, a.w}, bv[4] = {b.x, b.y, b.z, b.w};
#pragma unroll
            for (int i = 0; i < 4; ++i)
#pragma unroll
                for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
        }
        __syncthreads();  // everyone is done reading this slice
        if (more) {
            store_slice();
            __syncthreads();
        }
    }

#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const int64_t m = m0 + ty * 4 + i;
        if (m >= s.O) continue;
        const float bv = bias ? bias[m] : 0.0f;
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            const int64_t n = n0 + tx * 4 + j;
            if (n >= N) continue;
            int64_t b, r;
            if (ix.out32) {
                uint32_t b32, r32;
                ix.s_out.divmod(uint32_t(n), b32, r32);
                b = b32;
                r = r32;
            } else {
                b = n / S_out;
                r = n % S_out;
            }
            y[(b * s.O + m) * S_out + r] = acc[i][j] + bv;
        }
    }
}

}  // namespace

void conv3d(const float* x, const float* w, const float* bias, float* y, const Conv3dShape& s, cudaStream_t stream) {
    const int64_t N = s.B * s.Fo * s.Ho * s.Wo;
    if (N <= 0 || s.O <= 0) return;
    const int64_t S_out = s.Fo * s.Ho * s.Wo;
    Conv3dIndex ix{FastDivmod(uint32_t(s.kt * s.kh * s.kw)), FastDivmod(uint32_t(s.kh * s.kw)),
                   FastDivmod(uint32_t(s.kw)), FastDivmod(uint32_t(fits_32(S_out) ? S_out : 1)), fits_32(N + kBN)};
    const dim3 grid(unsigned((N + kBN - 1) / kBN), unsigned((s.O + kBM - 1) / kBM));
    conv3d_kernel<<<grid, kConvThreads, 0, stream>>>(x, w, bias, y, s, ix);
}

}  // namespace sr::cuda
