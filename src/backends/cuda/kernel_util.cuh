// Device helpers shared by the CUDA kernels: launch geometry, element loads in any float type, and scalar
// conversions that reproduce sr::convert_elements (core/dtype.cpp) bit for bit, so that a copy on the GPU
// gives exactly the CPU's bytes (the op tests compare copies with zero tolerance).
#pragma once

#include <cuda_runtime.h>

#include <atomic>
#include <cstdint>

#include "backends/cuda/kernels.h"

namespace sr::cuda {

constexpr int kThreads = 256;

// Blocks for a grid-stride loop over n items: enough to fill any current GPU, never more than needed.
inline unsigned grid_for(int64_t n, int threads = kThreads) {
    const int64_t blocks = (n + threads - 1) / threads;
    const int64_t cap = int64_t(1) << 20;
    return unsigned(blocks < 1 ? 1 : (blocks > cap ? cap : blocks));
}

__device__ __forceinline__ int64_t global_thread() {
    return int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ int64_t grid_threads() {
    return int64_t(gridDim.x) * blockDim.x;
}

// Opts `Kernel` in to `bytes` of dynamic shared memory on the current device: a kernel must do so above the
// default 48 KB. The attribute persists, so it is set once per device (devices 0-63; others every time) and a
// failure is returned, never dropped: the caller checks it before launching.
template <auto Kernel>
cudaError_t opt_in_shared_memory(int bytes) {
    static std::atomic<uint64_t> done{0};
    int device = 0;
    if (const cudaError_t e = cudaGetDevice(&device); e != cudaSuccess) return e;
    const uint64_t bit = device < 64 ? uint64_t(1) << device : 0;
    if (bit && (done.load(std::memory_order_acquire) & bit)) return cudaSuccess;
    const cudaError_t e = cudaFuncSetAttribute(Kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes);
    if (e == cudaSuccess && bit) done.fetch_or(bit, std::memory_order_release);
    return e;
}

// ---- scalar conversions (see core/dtype.cpp for the reference versions) ----

__device__ __forceinline__ float bf16_to_f32(uint16_t b) {
    return __uint_as_float(uint32_t(b) << 16);
}

// Round to nearest even; NaN stays NaN (quiet bit set).
__device__ __forceinline__ uint16_t f32_to_bf16(float f) {
    uint32_t u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1u);
    return uint16_t(u >> 16);
}

__device__ __forceinline__ float f16_to_f32(uint16_t h) {
    const uint32_t sign = uint32_t(h & 0x8000u) << 16;
    const uint32_t exp = (h >> 10) & 0x1f;
    const uint32_t mant = h & 0x3ffu;
    if (exp == 0) {
        const float v = ldexpf(float(mant), -24);  // exact: mant * 2^-24 is an f32 normal
        return sign ? -v : v;
    }
    if (exp == 31) return __uint_as_float(sign | 0x7f800000u | (mant << 13));
    return __uint_as_float(sign | ((exp + 112) << 23) | (mant << 13));
}

__device__ __forceinline__ uint16_t f32_to_f16(float f) {
    const uint32_t u = __float_as_uint(f);
    const uint16_t sign = uint16_t((u >> 16) & 0x8000u);
    const float a = fabsf(f);
    if (isnan(f)) return uint16_t(sign | 0x7e00u);
    if (a >= 65520.0f) return uint16_t(sign | 0x7c00u);
    // Subnormal range: quantum 2^-24; rintf rounds half to even like std::nearbyint in the default mode.
    if (a < 6.103515625e-05f) return uint16_t(sign | uint16_t(rintf(a * 16777216.0f)));
    uint32_t v = u & 0x7fffffffu;
    v += 0x0fffu + ((v >> 13) & 1u);
    return uint16_t(sign | (((v >> 23) - 112) << 10) | ((v >> 13) & 0x3ffu));
}

__device__ __forceinline__ float f8e4m3_to_f32(uint8_t v) {
    const bool neg = v & 0x80;
    const int exp = (v >> 3) & 0xf;
    const int mant = v & 0x7;
    if (exp == 0xf && mant == 0x7) return __uint_as_float(0x7fc00000u);
    const float r = exp == 0 ? ldexpf(float(mant), -9) : ldexpf(1.0f + float(mant) / 8.0f, exp - 7);
    return neg ? -r : r;
}

// OCP E4M3 "fn": saturating, 0x7f is NaN. The same steps as f32_to_f8e4m3 in core/dtype.cpp (frexp, a
// power-of-two quantum, round half to even), all exact in f32 except the one rounding.
__device__ __forceinline__ uint8_t f32_to_f8e4m3(float f) {
    if (isnan(f)) return 0x7f;
    const uint8_t sign = signbit(f) ? 0x80 : 0;
    const float a = fabsf(f);
    if (a >= 448.0f) return uint8_t(sign | 0x7e);
    int e;
    frexpf(a, &e);
    int exp = e - 1;
    if (exp < -6) exp = -6;
    const float quantum = ldexpf(1.0f, exp - 3);
    const float q = rintf(a / quantum) * quantum;
    if (q >= 448.0f) return uint8_t(sign | 0x7e);
    if (q == 0.0f) return sign;
    int qe;
    const float qm = frexpf(q, &qe);
    const int biased = qe - 1 + 7;
    if (biased <= 0) return uint8_t(sign | uint8_t(q / ldexpf(1.0f, -9)));
    const int mant = int((qm * 2.0f - 1.0f) * 8.0f + 0.5f);
    return uint8_t(sign | (biased << 3) | mant);
}

// Element i of a float array of type t, widened to f32 (exact for every type).
__device__ __forceinline__ float load_float(const void* p, KType t, int64_t i) {
    switch (t) {
        case KType::F32:
            return static_cast<const float*>(p)[i];
        case KType::BF16:
            return bf16_to_f32(static_cast<const uint16_t*>(p)[i]);
        case KType::F16:
            return f16_to_f32(static_cast<const uint16_t*>(p)[i]);
        case KType::F8_E4M3:
            return f8e4m3_to_f32(static_cast<const uint8_t*>(p)[i]);
        default:
            return 0.0f;
    }
}

// Activations by storage type (kernels templated on it): float as is, uint16_t holding bf16 bits widened on
// load and rounded to nearest even on store.
__device__ __forceinline__ float load_act(const float* p, int64_t i) {
    return p[i];
}
__device__ __forceinline__ float load_act(const uint16_t* p, int64_t i) {
    return bf16_to_f32(p[i]);
}
__device__ __forceinline__ void store_act(float* p, int64_t i, float v) {
    p[i] = v;
}
__device__ __forceinline__ void store_act(uint16_t* p, int64_t i, float v) {
    p[i] = f32_to_bf16(v);
}

// f(T{}) with T the storage type of an activation of type t (F32: float, BF16: uint16_t); host side, to pick a
// kernel instantiation.
template <class F>
void with_act_type(KType t, F&& f) {
    if (t == KType::BF16)
        f(uint16_t{});
    else
        f(float{});
}
template <class F>
void with_act_types(KType a, KType b, F&& f) {
    with_act_type(a, [&](auto ta) { with_act_type(b, [&](auto tb) { f(ta, tb); }); });
}

__device__ __forceinline__ void store_float(void* p, KType t, int64_t i, float v) {
    switch (t) {
        case KType::F32:
            static_cast<float*>(p)[i] = v;
            return;
        case KType::BF16:
            static_cast<uint16_t*>(p)[i] = f32_to_bf16(v);
            return;
        case KType::F16:
            static_cast<uint16_t*>(p)[i] = f32_to_f16(v);
            return;
        case KType::F8_E4M3:
            static_cast<uint8_t*>(p)[i] = f32_to_f8e4m3(v);
            return;
        default:
            return;
    }
}

// ---- reductions ----

template <class T>
__device__ __forceinline__ T warp_sum(T v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the result. `shared` holds
// 32 values; the trailing barrier lets the caller reuse it at once.
template <class T>
__device__ T block_sum(T v, T* shared) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;
    v = warp_sum(v);
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    T total = lane < n_warps ? shared[lane] : T(0);
    total = warp_sum(total);
    __syncthreads();
    return total;
}

}  // namespace sr::cuda
