// Checks for CUDA runtime and cuBLASLt calls: a failure becomes an sr::VendorError naming the call, the
// library's message and the place (docs/ARCHITECTURE.md, "Errors"). Kernel launches report configuration
// errors through cudaGetLastError() at once; faults during execution surface at the next synchronizing call.
//
//   SR_CUDA_CHECK(cudaMemcpyAsync(dst, src, n, cudaMemcpyHostToDevice, stream));
//   sr::cuda::rms_norm(...);  SR_CUDA_CHECK_LAUNCH();
#pragma once

#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include "core/error.h"

namespace sr {

[[noreturn]] void throw_cuda_error(cudaError_t error, const char* expr, const char* file, int line);
[[noreturn]] void throw_cublas_error(cublasStatus_t status, const char* expr, const char* file, int line);

inline void cuda_check(cudaError_t error, const char* expr, const char* file, int line) {
    if (error != cudaSuccess) throw_cuda_error(error, expr, file, line);
}
inline void cublas_check(cublasStatus_t status, const char* expr, const char* file, int line) {
    if (status != CUBLAS_STATUS_SUCCESS) throw_cublas_error(status, expr, file, line);
}

}  // namespace sr

#define SR_CUDA_CHECK(expr) ::sr::cuda_check((expr), #expr, __FILE__, __LINE__)
#define SR_CUDA_CHECK_LAUNCH() ::sr::cuda_check(cudaGetLastError(), "kernel launch", __FILE__, __LINE__)
#define SR_CUBLAS_CHECK(expr) ::sr::cublas_check((expr), #expr, __FILE__, __LINE__)
