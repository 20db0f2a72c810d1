// The CPU backend: GEMMs through oneDNN's matmul primitive (cached per shape), a tiled flash-style
// attention whose tiles are oneDNN GEMMs, and vectorizable loops for everything else, all on the process
// thread pool (core/parallel.h).
//
// GEMM precision for bf16-stored weights is a choice, not a given: on the machines this project was
// measured on, oneDNN's bf16 GEMM ran at ~2x the f32 rate on a Zen 5 and at ~0.5x on an AVX-512-BF16 Xeon.
// GemmPrecision::F32 (the default, and the one parity tests use) widens bf16 weights to f32 per call in a
// scratch buffer and keeps activations in f32; BF16 rounds activations to bf16 and multiplies in bf16 with
// f32 accumulation, the attention's tile GEMMs included (q, k, v and the softmax weights rounded; the
// softmax in f32). Where the processor has AMX, oneDNN runs the bf16 GEMMs on it.
//
//   sr::CpuBackend& be = sr::cpu_backend();
//   be.set_gemm_precision(sr::GemmPrecision::BF16);
#pragma once

#include "backends/backend.h"

namespace sr {

class CpuBackend final : public Backend {
public:
    // `activations`: where new_activation() allocates (default: the process host allocator). The simulated
    // device passes its budgeted arena, so activations count against the device budget like on a GPU.
    explicit CpuBackend(Allocator* activations = nullptr);
    ~CpuBackend() override;
    std::string name() const override { return "cpu"; }
    // The device its activations live on: the host, or the simulated device whose arena it computes in.
    Device device() const override { return activations_ ? activations_->device() : Device::cpu(); }
    Allocator& allocator() override { return activations_ ? *activations_ : host_allocator(); }

    void set_gemm_precision(GemmPrecision p) { gemm_precision_ = p; }
    GemmPrecision gemm_precision() const { return gemm_precision_; }
    // Under BF16 precision the attention runs on our flash kernel (attention_flash_bf16.h: AMX tiles or AVX-512
    // BF16 dot products) where the processor has one; off: on oneDNN tile GEMMs everywhere, so benchmarks and
    // tests can set the two side by side.
    void set_flash_attention(bool on) { flash_attention_ = on; }

    // The kernels, one per op (ops.h); run() dispatches to them.
    void run(const OpCall& op) override {
        if (!run_bf16(op)) dispatch_op(*this, op);
    }
    SR_DECLARE_OP_KERNELS

private:
    // An op with bf16 activations (ops.h, kTakesBf16Activations) run on f32 copies of them, its outputs
    // rounded back (bf16_activations.cpp); false when the op has none.
    bool run_bf16(const OpCall& op);
    // The bf16 flash attention (attention_flash_bf16.h) when it applies: BF16 precision, no dense or causal
    // mask, flash_attention_ on, and the processor and build have an engine for it. False: nothing ran.
    bool flash_attention(const AttentionOp& op);

    Allocator* activations_ = nullptr;
    GemmPrecision gemm_precision_ = GemmPrecision::F32;
    bool flash_attention_ = true;
};

// The process-wide CPU backend.
CpuBackend& cpu_backend();

// Row-major GEMM on host memory through oneDNN: C[M,N] = A[M,K] * op(B) (+ C when accumulate), with
// op(B) = B[N,K]^T when b_transposed, else B[K,N]. A and B share one dtype (F32 or BF16); C is f32.
// Leading dimensions are in elements. Thread-safe; runs single-threaded inside a parallel_for.
void gemm(int64_t M, int64_t N, int64_t K, const void* A, int64_t lda, const void* B, int64_t ldb, bool b_transposed,
          DType ab_dtype, float* C, int64_t ldc, bool accumulate);

// A linear layer's GEMM in one pass over C: C[M,N] = act(A[M,K] * B[N,K]^T + bias[N]), the bias (f32, or
// nullptr for none) added to the f32 sum and the activation applied to it, then stored as c_dtype (F32, or
// BF16 rounded to nearest even once). A and B as in gemm(). A row of C does not depend on M, bit for bit
// (sequence-parallel ranks run a linear on a shard of the tokens; tests/test_cpu_linear.cpp checks it).
void gemm_linear(int64_t M, int64_t N, int64_t K, const void* A, int64_t lda, const void* B, int64_t ldb,
                 DType ab_dtype, const float* bias, void* C, int64_t ldc, DType c_dtype,
                 Activation activation = Activation::None);

}  // namespace sr
