// Element-wise and row-broadcast kernels: activations, residual add / product, adaLN modulate and gate, the
// timestep sinusoid, and the bias fill of a GEMM with K = 0. All are memory-bound grid-stride loops; the
// activations use the accurate libm functions (tanhf, expf), not the --use_fast_math intrinsics, because the
// op tests hold them to a few ulp of a double reference.
#include <cuda_runtime.h>

#include "backends/cuda/kernel_util.cuh"

namespace sr::cuda {

namespace {

__device__ __forceinline__ float gelu_tanh_f(float x) {
    // torch.nn.GELU(approximate="tanh").
    return 0.5f * x * (1.0f + tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x)));
}
__device__ __forceinline__ float silu_f(float x) {
    return x / (1.0f + expf(-x));  // expf(-x) = inf for x < -88.7 gives -0, as the reference underflows
}
__device__ __forceinline__ float quick_gelu_f(float x) {
    return x / (1.0f + expf(-1.702f * x));  // CLIP's x * sigmoid(1.702 x)
}

// y may be x (in-place activations): no __restrict__ on these pointers. TX, TY: float or uint16_t (bf16).
template <UnaryOp op, class TX, class TY>
__global__ void unary_kernel(const TX* x, TY* y, int64_t n) {
    for (int64_t i = global_thread(); i < n; i += grid_threads()) {
        const float v = load_act(x, i);
        if constexpr (op == UnaryOp::GeluTanh) store_act(y, i, gelu_tanh_f(v));
        if constexpr (op == UnaryOp::Silu) store_act(y, i, silu_f(v));
        if constexpr (op == UnaryOp::QuickGelu) store_act(y, i, quick_gelu_f(v));
    }
}

template <class TX, class TY>
__global__ void add_kernel(TX* x, const TY* y, int64_t n) {
    for (int64_t i = global_thread(); i < n; i += grid_threads()) store_act(x, i, load_act(x, i) + load_act(y, i));
}

__global__ void mul_kernel(float* x, const float* y, int64_t n) {
    for (int64_t i = global_thread(); i < n; i += grid_threads()) x[i] *= y[i];
}

// Row-broadcast ops: one block strides over rows (b, l) and its threads over D, so the batch index costs one
// division per row, not one per element.
template <class TX, class TY>
__global__ void modulate_kernel(const TX* x, const float* shift, int64_t shift_sb, const float* scale, int64_t scale_sb,
                                TY* y, int64_t rows, int64_t L, int64_t D) {
    for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
        const float* sh = shift + (r / L) * shift_sb;
        const float* sc = scale + (r / L) * scale_sb;
        for (int64_t d = threadIdx.x; d < D; d += blockDim.x)
            store_act(y, r * D + d, load_act(x, r * D + d) * (1.0f + sc[d]) + sh[d]);
    }
}

template <class TX, class TY>
__global__ void gated_residual_kernel(TX* x, const TY* y, const float* gate, int64_t gate_sb, int64_t rows, int64_t L,
                                      int64_t D) {
    for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
        const float* g = gate ? gate + (r / L) * gate_sb : nullptr;
        for (int64_t d = threadIdx.x; d < D; d += blockDim.x) {
            const int64_t i = r * D + d;
            store_act(x, i, load_act(x, i) + load_act(y, i) * (g ? g[d] : 1.0f));
        }
    }
}

unsigned row_blocks(int64_t rows) {
    return unsigned(rows < (int64_t(1) << 20) ? rows : (int64_t(1) << 20));
}

// SLEEF's expf_u10, the function torch.exp runs on CPU float32 tensors, step for step (the same as
// backends/cpu/torch_math.h): the timestep frequencies then carry the reference's exact bits, which matter at
// arguments up to 1000 x guidance. fmaf and rintf are correctly rounded on the GPU as on the CPU.
__device__ float torch_expf(float d) {
    const float q = rintf(d * 1.442695040888963407359924681001892137f);
    float s = fmaf(q, -0.693145751953125f, d);
    s = fmaf(q, -1.428606765330187045e-06f, s);
    float u = 0.000198527617612853646278381f;
    u = fmaf(u, s, 0.00139304355252534151077271f);
    u = fmaf(u, s, 0.00833336077630519866943359f);
    u = fmaf(u, s, 0.0416664853692054748535156f);
    u = fmaf(u, s, 0.166666671633720397949219f);
    u = fmaf(u, s, 0.5f);
    const float ss = __fmul_rn(s, s);  // no contraction into the fma below: the reference rounds s*s
    u = 1.0f + fmaf(ss, u, s);
    if (d < -104.0f) return 0.0f;
    if (d > 100.0f) return __uint_as_float(0x7f800000u);
    return ldexpf(u, int(q));
}

__global__ void timestep_embedding_kernel(const void* t, KType t_type, int64_t t_stride, int64_t B, int dim, bool flip,
                                          float shift, float neg_log_max_period, float* y) {
    const int half = dim / 2;
    const int64_t n = B * dim;
    for (int64_t idx = global_thread(); idx < n; idx += grid_threads()) {
        const int64_t b = idx / dim;
        const int j = int(idx % dim);
        float out = 0.0f;  // an odd dim's last column is zero, as in the reference
        if (j < 2 * half) {
            const int i = j < half ? j : j - half;
            const bool first = j < half;  // [cos, sin] when flipped, else [sin, cos]
            // f32 steps as the reference: (-ln(max_period) * i) / (half - shift), then exp, then t * freq.
            const float exponent = __fdiv_rn(__fmul_rn(neg_log_max_period, float(i)), float(half) - shift);
            const float freq = torch_expf(exponent);
            const float arg = __fmul_rn(load_float(t, t_type, b * t_stride), freq);
            // sin/cos in double, rounded once: the CPU backend's values, not a 2-ulp f32 approximation.
            const bool want_cos = first == flip;
            out = float(want_cos ? cos(double(arg)) : sin(double(arg)));
        }
        y[idx] = out;
    }
}

__global__ void fill_rows_kernel(float* y, int64_t N, const float* bias, int64_t n) {
    for (int64_t i = global_thread(); i < n; i += grid_threads()) y[i] = bias ? bias[i % N] : 0.0f;
}

}  // namespace

void unary(UnaryOp op, const void* x, KType x_type, void* y, KType y_type, int64_t n, cudaStream_t stream) {
    if (n <= 0) return;
    with_act_types(x_type, y_type, [&](auto tx, auto ty) {
        using TX = decltype(tx);
        using TY = decltype(ty);
        const auto* xp = static_cast<const TX*>(x);
        auto* yp = static_cast<TY*>(y);
        switch (op) {
            case UnaryOp::GeluTanh:
                unary_kernel<UnaryOp::GeluTanh><<<grid_for(n), kThreads, 0, stream>>>(xp, yp, n);
                break;
            case UnaryOp::Silu:
                unary_kernel<UnaryOp::Silu><<<grid_for(n), kThreads, 0, stream>>>(xp, yp, n);
                break;
            case UnaryOp::QuickGelu:
                unary_kernel<UnaryOp::QuickGelu><<<grid_for(n), kThreads, 0, stream>>>(xp, yp, n);
                break;
        }
    });
}

void add(void* x, KType x_type, const void* y, KType y_type, int64_t n, cudaStream_t stream) {
    if (n <= 0) return;
    with_act_types(x_type, y_type, [&](auto tx, auto ty) {
        add_kernel<<<grid_for(n), kThreads, 0, stream>>>(static_cast<decltype(tx)*>(x),
                                                         static_cast<const decltype(ty)*>(y), n);
    });
}

void mul(float* x, const float* y, int64_t n, cudaStream_t stream) {
    if (n > 0) mul_kernel<<<grid_for(n), kThreads, 0, stream>>>(x, y, n);
}

void modulate(const void* x, KType x_type, const float* shift, int64_t shift_sb, const float* scale, int64_t scale_sb,
              void* y, KType y_type, int64_t B, int64_t L, int64_t D, cudaStream_t stream) {
    if (B * L * D <= 0) return;
    with_act_types(x_type, y_type, [&](auto tx, auto ty) {
        modulate_kernel<<<row_blocks(B * L), kThreads, 0, stream>>>(static_cast<const decltype(tx)*>(x), shift,
                                                                    shift_sb, scale, scale_sb,
                                                                    static_cast<decltype(ty)*>(y), B * L, L, D);
    });
}

void gated_residual(void* x, KType x_type, const void* y, KType y_type, const float* gate, int64_t gate_sb, int64_t B,
                    int64_t L, int64_t D, cudaStream_t stream) {
    if (B * L * D <= 0) return;
    with_act_types(x_type, y_type, [&](auto tx, auto ty) {
        gated_residual_kernel<<<row_blocks(B * L), kThreads, 0, stream>>>(
            static_cast<decltype(tx)*>(x), static_cast<const decltype(ty)*>(y), gate, gate_sb, B * L, L, D);
    });
}

void timestep_embedding(const void* t, KType t_type, int64_t t_stride, int64_t B, int dim, bool flip_sin_to_cos,
                        float downscale_freq_shift, float neg_log_max_period, float* y, cudaStream_t stream) {
    const int64_t n = B * dim;
    if (n > 0)
        timestep_embedding_kernel<<<grid_for(n), kThreads, 0, stream>>>(t, t_type, t_stride, B, dim, flip_sin_to_cos,
                                                                        downscale_freq_shift, neg_log_max_period, y);
}

void fill_rows(float* y, int64_t M, int64_t N, const float* bias, cudaStream_t stream) {
    const int64_t n = M * N;
    if (n > 0) fill_rows_kernel<<<grid_for(n), kThreads, 0, stream>>>(y, N, bias, n);
}

}  // namespace sr::cuda
