// The CUDA backend's cuBLASLt state (internal to backends/cuda): one handle, a plan per GEMM shape (operation
// and layout descriptors plus the algorithm the heuristic chose), and one workspace.
#pragma once

#include <cublasLt.h>

#include <map>
#include <mutex>
#include <tuple>

#include "backends/cuda/cuda_backend.h"

namespace sr {

struct CudaBackend::Gemm {
    // M, N, K, ldy, A/B type, D type, bias, and the alignment (bytes, up to 256) of the x, w and y pointers:
    // cuBLASLt's heuristic assumes 256-byte alignment unless told otherwise, and views (a row block of a
    // weight, a column block of y) are often less aligned.
    using Key = std::tuple<int64_t, int64_t, int64_t, int64_t, int, int, bool, int, int, int>;
    struct Plan {
        cublasLtMatmulDesc_t op = nullptr;
        cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
        cublasLtMatmulAlgo_t algo{};
    };

    explicit Gemm(CudaBackend& backend);
    ~Gemm();
    // The plan for `key`, or nullptr when cuBLASLt has no algorithm for it (remembered); throws on errors.
    Plan* plan(const Key& key);

    CudaBackend& backend;
    cublasLtHandle_t handle = nullptr;
    std::mutex mutex;
    std::map<Key, Plan> plans;
    std::map<Key, bool> unsupported;
    Tensor workspace;  // kWorkspaceBytes from the backend's memory, allocated at the first GEMM
    static constexpr size_t kWorkspaceBytes = CudaBackend::kCublasWorkspaceBytes;
};

}  // namespace sr
