// Normalizations: layer norm and RMS norm over the last dimension (one block per row; one warp per row for RMS
// norm's short rows, the QK norm's heads), and group norm over
// [B, C, S] (partial sums per channel chunk, then per group). Statistics accumulate in double as on the CPU
// backend (norms.cpp, vae_ops.cpp): rows are up to 4096 wide and VAE groups hold up to ~10^8 elements, where
// f32 sums would drift from the reference; the outputs are then formed in f32 the same way the CPU does.
#include <cuda_runtime.h>

#include "backends/cuda/kernel_util.cuh"

namespace sr::cuda {

namespace {

constexpr int64_t kGroupChunk = 16384;  // elements of one channel per partial-sum block

unsigned row_blocks(int64_t rows) {
    return unsigned(rows < (int64_t(1) << 20) ? rows : (int64_t(1) << 20));
}

template <class TX, class TY>
__global__ void layer_norm_kernel(const TX* __restrict__ x, TY* __restrict__ y, int64_t rows, int64_t D, const void* w,
                                  KType wt, const void* b, KType bt, float eps) {
    __shared__ double red[32];
    for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
        const TX* xr = x + r * D;
        TY* yr = y + r * D;
        double s = 0;
        for (int64_t i = threadIdx.x; i < D; i += blockDim.x) s += load_act(xr, i);
        const double mean = block_sum(s, red) / double(D);
        double v = 0;
        for (int64_t i = threadIdx.x; i < D; i += blockDim.x) {
            const double c = double(load_act(xr, i)) - mean;
            v += c * c;
        }
        const double var = block_sum(v, red) / double(D);
        const float inv = float(1.0 / sqrt(var + double(eps)));
        const float m = float(mean);
        for (int64_t i = threadIdx.x; i < D; i += blockDim.x) {
            float out = (load_act(xr, i) - m) * inv;
            if (w) out *= load_float(w, wt, i);
            if (b) out += load_float(b, bt, i);
            store_act(yr, i, out);
        }
    }
}

__global__ void rms_norm_kernel(const float* __restrict__ x, float* __restrict__ y, int64_t rows, int64_t D,
                                const void* w, KType wt, float eps) {
    __shared__ double red[32];
    for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
        const float* xr = x + r * D;
        float* yr = y + r * D;
        double ss = 0;
        for (int64_t i = threadIdx.x; i < D; i += blockDim.x) ss += double(xr[i]) * double(xr[i]);
        const float inv = float(1.0 / sqrt(block_sum(ss, red) / double(D) + double(eps)));
        for (int64_t i = threadIdx.x; i < D; i += blockDim.x) {
            const float v = xr[i] * inv;
            yr[i] = w ? v * load_float(w, wt, i) : v;
        }
    }
}

// Rows of up to kWarpRowMaxD (the QK norm's 128-wide heads: B x L x H rows of 128): one warp per row, eight
// rows per block, the sum of squares reduced with shuffles alone (no shared memory, no barrier, no idle
// threads; a 256-thread block per 128-element row left half its threads idle and paid two barriers).
constexpr int64_t kWarpRowMaxD = 512;
constexpr int kRowsPerWarpBlock = kThreads / 32;

__global__ void rms_norm_warp_kernel(const float* __restrict__ x, float* __restrict__ y, int64_t rows, int D,
                                     const void* w, KType wt, float eps) {
    const int lane = threadIdx.x & 31;
    const int64_t first = int64_t(blockIdx.x) * kRowsPerWarpBlock + (threadIdx.x >> 5);
    const int64_t stride = int64_t(gridDim.x) * kRowsPerWarpBlock;
    for (int64_t r = first; r < rows; r += stride) {  // uniform per warp: the shuffles see all 32 lanes
        const float* xr = x + r * D;
        float* yr = y + r * D;
        double ss = 0;
        for (int i = lane; i < D; i += 32) ss += double(xr[i]) * double(xr[i]);
        const float inv = float(1.0 / sqrt(warp_sum(ss) / double(D) + double(eps)));
        for (int i = lane; i < D; i += 32) {
            const float v = xr[i] * inv;
            yr[i] = w ? v * load_float(w, wt, i) : v;
        }
    }
}

// Group norm, pass 1 and 2: partial[(b*C + c) * n_chunks + chunk] = sum over the chunk of (x - centre)^power,
// centre = mean of the channel's group (pass 2) or 0 (pass 1). grid = (n_chunks, B*C).
__global__ void group_partial_kernel(const float* __restrict__ x, int64_t S, int64_t cg, const double* mean, int power,
                                     double* partial) {
    __shared__ double red[32];
    const int64_t bc = blockIdx.y, chunk = blockIdx.x;
    const int64_t begin = chunk * kGroupChunk, end = min(S, begin + kGroupChunk);
    const double centre = mean ? mean[bc / cg] : 0.0;
    const float* xc = x + bc * S;
    double s = 0;
    for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) {
        const double d = double(xc[i]) - centre;
        s += power == 1 ? d : d * d;
    }
    s = block_sum(s, red);
    if (threadIdx.x == 0) partial[bc * gridDim.x + chunk] = s;
}

// out[g] for each (batch, group) g: the sum of its channels' partials, as a mean (pass 1) or as rstd (pass 2).
__global__ void group_finalize_kernel(const double* partial, int64_t n_chunks, int64_t cg, int64_t n_groups,
                                      double count, bool rstd, float eps, double* out) {
    for (int64_t g = global_thread(); g < n_groups; g += grid_threads()) {
        double s = 0;
        for (int64_t i = 0; i < cg * n_chunks; ++i) s += partial[g * cg * n_chunks + i];
        const double m = count > 0 ? s / count : 0.0;
        out[g] = rstd ? 1.0 / sqrt(m + double(eps)) : m;
    }
}

// y = x * scale + shift per channel, scale = rstd * w and shift = b - mean * scale folded in double and
// rounded to f32 once, as the CPU backend does. grid = (n_chunks, B*C).
__global__ void group_apply_kernel(const float* __restrict__ x, float* __restrict__ y, int64_t C, int64_t S, int64_t cg,
                                   const double* mean, const double* rstd, const void* w, KType wt, const void* b,
                                   KType bt) {
    const int64_t bc = blockIdx.y, c = bc % C, g = bc / cg;
    const double scale = rstd[g] * (w ? double(load_float(w, wt, c)) : 1.0);
    const double shift = (b ? double(load_float(b, bt, c)) : 0.0) - mean[g] * scale;
    const float sf = float(scale), hf = float(shift);
    const int64_t begin = int64_t(blockIdx.x) * kGroupChunk, end = min(S, begin + kGroupChunk);
    for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) y[bc * S + i] = x[bc * S + i] * sf + hf;
}

}  // namespace

void layer_norm(const void* x, KType x_type, void* y, KType y_type, int64_t rows, int64_t D, const void* weight,
                KType weight_type, const void* bias, KType bias_type, float eps, cudaStream_t stream) {
    if (rows <= 0 || D <= 0) return;
    with_act_types(x_type, y_type, [&](auto tx, auto ty) {
        layer_norm_kernel<<<row_blocks(rows), kThreads, 0, stream>>>(static_cast<const decltype(tx)*>(x),
                                                                     static_cast<decltype(ty)*>(y), rows, D, weight,
                                                                     weight_type, bias, bias_type, eps);
    });
}

void rms_norm(const float* x, float* y, int64_t rows, int64_t D, const void* weight, KType weight_type, float eps,
              cudaStream_t stream) {
    if (rows <= 0 || D <= 0) return;
    if (D <= kWarpRowMaxD) {
        const int64_t blocks = (rows + kRowsPerWarpBlock - 1) / kRowsPerWarpBlock;
        rms_norm_warp_kernel<<<row_blocks(blocks), kThreads, 0, stream>>>(x, y, rows, int(D), weight, weight_type, eps);
        return;
    }
    rms_norm_kernel<<<row_blocks(rows), kThreads, 0, stream>>>(x, y, rows, D, weight, weight_type, eps);
}

int64_t group_norm_scratch_doubles(int64_t B, int64_t C, int64_t S) {
    const int64_t n_chunks = S > 0 ? (S + kGroupChunk - 1) / kGroupChunk : 1;
    return B * C * n_chunks + 2 * B * C;  // partials, then mean and rstd (at most one group per channel)
}

void group_norm(const float* x, float* y, int64_t B, int64_t C, int64_t S, int64_t groups, const void* weight,
                KType weight_type, const void* bias, KType bias_type, float eps, double* scratch, cudaStream_t stream) {
    if (B * C * S <= 0) return;
    const int64_t n_chunks = (S + kGroupChunk - 1) / kGroupChunk, cg = C / groups, n_groups = B * groups;
    double* partial = scratch;
    double* mean = scratch + B * C * n_chunks;
    double* rstd = mean + n_groups;
    const dim3 grid(unsigned(n_chunks), unsigned(B * C));
    const double count = double(cg) * double(S);
    // Two passes over x (the mean, then centred squares), as the CPU: a one-pass variance of a group with a
    // large mean loses digits even in double.
    group_partial_kernel<<<grid, kThreads, 0, stream>>>(x, S, cg, nullptr, 1, partial);
    group_finalize_kernel<<<grid_for(n_groups), kThreads, 0, stream>>>(partial, n_chunks, cg, n_groups, count, false,
                                                                       eps, mean);
    group_partial_kernel<<<grid, kThreads, 0, stream>>>(x, S, cg, mean, 2, partial);
    group_finalize_kernel<<<grid_for(n_groups), kThreads, 0, stream>>>(partial, n_chunks, cg, n_groups, count, true,
                                                                       eps, rstd);
    group_apply_kernel<<<grid, kThreads, 0, stream>>>(x, y, C, S, cg, mean, rstd, weight, weight_type, bias, bias_type);
}

}  // namespace sr::cuda
