// The CUDA backend's cuBLASLt state (internal to backends/cuda): one handle and a plan per GEMM key (operation
// and layout descriptors, the algorithm the heuristic chose and the workspace it needs). The workspace is
// per-call scratch from the backend's budgeted caching allocator (a cache hit after the first call), so nothing
// stays allocated between ops.
#pragma once

#include <cublasLt.h>

#include <map>
#include <mutex>

#include "backends/cuda/cuda_backend.h"
#include "backends/cuda/gemm_plan.h"

namespace sr {

struct CudaBackend::Gemm {
    // Shape, types, bias, and the alignment of every pointer (gemm_plan.h): cuBLASLt's heuristic assumes
    // 256-byte alignment unless told otherwise, and views (a row block of a weight, a column block of y, a slice
    // of a bias) are often less aligned.
    using Key = GemmPlanKey;
    struct Plan {
        cublasLtMatmulDesc_t op = nullptr;
        cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
        cublasLtMatmulAlgo_t algo{};
        size_t workspace = 0;  // bytes the algorithm needs (at most kWorkspaceBytes)
    };

    explicit Gemm(CudaBackend& backend);
    ~Gemm();
    // The plan for `key`, or nullptr when cuBLASLt has no algorithm for it or its heuristic fails in any way
    // (remembered with the status, so the caller falls back). `bias`: the bias pointer of this call, set on the
    // operation before the heuristic runs (its alignment is in the key). Throws only when a descriptor cannot
    // be created.
    Plan* plan(const Key& key, const float* bias);

    CudaBackend& backend;
    cublasLtHandle_t handle = nullptr;
    std::mutex mutex;
    std::map<Key, Plan> plans;
    std::map<Key, int> unsupported;  // the heuristic's cublasStatus_t (SUCCESS: it returned no algorithm)
    static constexpr size_t kWorkspaceBytes = CudaBackend::kCublasWorkspaceBytes;
};

}  // namespace sr
