// Index arithmetic for the CUDA kernels in 32 bits, callable on the host so CI checks it without a GPU
// (tests/test_cuda_host.cpp). A 64-bit division or remainder is a ~70-instruction subroutine on the GPU
// (div.s64), a 32-bit one ~20; a FastDivmod (a divisor's magic multiplier computed once on the host, Granlund
// and Montgomery, "Division by invariant integers using multiplication", 1994; the same form as PyTorch's
// IntDivider) is a multiply-high, an add and a shift. Kernels take it wherever the element count fits in 31
// bits (fits_32) and keep the 64-bit path for larger tensors. Plain C++17: nvcc compiles the .cu files as such.
//
//   const sr::cuda::FastDivmod by_w(uint32_t(W));       // host, once per launch
//   uint32_t q, r;  by_w.divmod(i, q, r);                 // device: i / W and i % W
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define SR_INDEX_FN __host__ __device__ __forceinline__
#else
#define SR_INDEX_FN inline
#endif

namespace sr::cuda {

// Counts (elements, or the largest offset a kernel forms in 32 bits) that take the 32-bit path: FastDivmod is
// exact for dividends and divisors below 2^31.
constexpr int64_t kMaxIndex32 = (int64_t(1) << 31) - 1;
SR_INDEX_FN bool fits_32(int64_t n) {
    return n >= 0 && n <= kMaxIndex32;
}

SR_INDEX_FN uint32_t mul_hi(uint32_t a, uint32_t b) {
#if defined(__CUDA_ARCH__)
    return __umulhi(a, b);
#else
    return uint32_t((uint64_t(a) * uint64_t(b)) >> 32);
#endif
}

struct FastDivmod {
    uint32_t divisor = 1, multiplier = 0, shift = 0;

    FastDivmod() = default;
    // divisor in [1, 2^31).
    SR_INDEX_FN explicit FastDivmod(uint32_t d) : divisor(d) {
        while (shift < 32 && (uint32_t(1) << shift) < d) ++shift;  // shift = ceil(log2 d)
        const uint64_t one = 1;
        multiplier = uint32_t(((one << 32) * ((one << shift) - d)) / d + 1);
    }
    // n / divisor for n < 2^31 (t + n then stays below 2^32).
    SR_INDEX_FN uint32_t div(uint32_t n) const { return (mul_hi(n, multiplier) + n) >> shift; }
    SR_INDEX_FN void divmod(uint32_t n, uint32_t& q, uint32_t& r) const {
        q = div(n);
        r = n - q * divisor;
    }
};

// The coordinates of linear index i in a row-major shape of `rank` dims (dims[rank-1] innermost) and the
// offsets it has in two strided layouts: the strided copy's loop body, shared with the host tests.
template <int kMaxRank>
struct StridedIndex32 {
    int rank = 0;
    FastDivmod dims[kMaxRank];
    int64_t a_stride[kMaxRank] = {}, b_stride[kMaxRank] = {};

    SR_INDEX_FN void offsets(uint32_t i, int64_t& a, int64_t& b) const {
        a = 0;
        b = 0;
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
        for (int d = kMaxRank - 1; d >= 0; --d) {
            if (d >= rank) continue;
            uint32_t q, r;
            dims[d].divmod(i, q, r);
            i = q;
            a += int64_t(r) * a_stride[d];
            b += int64_t(r) * b_stride[d];
        }
    }
};

}  // namespace sr::cuda
