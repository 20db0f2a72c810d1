// The CUDA backend: every Backend op on one GPU, queued on one compute stream, with activations and scratch
// from a budgeted caching allocator (cuda_allocator.h).
//
//   GEMM        cuBLASLt (cuda_gemm.cpp): f32 x f32, or bf16 x bf16 with f32 accumulation, bias epilogue.
//   attention   f32: a flash-style f32 kernel for any head dim (attention_f32.cu, the parity path). bf16:
//               cuDNN's fused SDPA (cudnn_attention.cpp, the default where it applies and cuDNN >= 9.13 loads)
//               or a bf16 tensor-core kernel for head dim 128 (attention_bf16.cu), the fallback and the path
//               for masked attention; set_attention_precision and set_attention_impl choose (cudnn_plan.h).
//   conv3d      f32: an f32 implicit GEMM (conv3d.cu, the parity path). bf16: cudnnConvolutionForward on the
//               f32 tensors with tensor-op math (cudnn_ops.cpp), the kernel as fallback; everything else is a small
//               kernel per op family (elementwise.cu, norms.cu, rope.cu, copy.cu).
//
// Precision, as on the CPU backend: GemmPrecision::F32 (the default, the parity path) computes every GEMM in
// f32 (bf16/f16 weights widened on the GPU per call); BF16 rounds activations to bf16 for GEMMs with bf16
// weights and runs them on the tensor cores with f32 accumulation. Attention has its own switch because its
// bf16 path differs more from the reference (see attention_bf16.cu for the error budget).
//
// Tensors passed to the ops must live on this backend's device (upload() copies host tensors there). All ops
// are asynchronous: they return once queued; download() and synchronize() wait.
//
//   if (sr::cuda_unavailable_reason().empty()) {
//       sr::CudaBackend& be = sr::cuda_backend();
//       sr::Tensor x = be.upload(host_x), y = sr::new_activation(be, {M, N}, "y");
//       be.linear(x, w, nullptr, y);
//       sr::Tensor result = be.download(y);
//   }
#pragma once

#include <cuda_runtime_api.h>

#include <memory>
#include <string>

#include "backends/backend.h"
#include "backends/cuda/cuda_allocator.h"
#include "backends/cuda/cudnn_plan.h"

namespace sr {

struct CudaBackendOptions {
    int device = 0;
    size_t memory_budget = 0;  // bytes of device memory for activations and weights; 0 = unlimited
};

class CudaBackend final : public Backend {
public:
    explicit CudaBackend(const CudaBackendOptions& options = {});
    ~CudaBackend() override;
    CudaBackend(const CudaBackend&) = delete;
    CudaBackend& operator=(const CudaBackend&) = delete;

    std::string name() const override;
    Device device() const override { return {DeviceType::CUDA, device_}; }
    Allocator& allocator() override { return memory_; }
    CudaCachingAllocator& memory() { return memory_; }
    cudaStream_t stream() const { return stream_; }

    void set_gemm_precision(GemmPrecision p) { gemm_precision_ = p; }
    GemmPrecision gemm_precision() const { return gemm_precision_; }
    // F32: the f32 kernel (any head dim). BF16: the tensor-core kernel where the head dim is 128.
    void set_attention_precision(GemmPrecision p) { attention_precision_ = p; }
    GemmPrecision attention_precision() const { return attention_precision_; }
    // bf16 attention through cuDNN's fused SDPA where it applies (the default, or SKYREELS_CUDA_ATTENTION=cudnn)
    // or always through the custom kernels (SKYREELS_CUDA_ATTENTION=kernel).
    void set_attention_impl(CudaImpl impl) { attention_impl_ = impl; }
    CudaImpl attention_impl() const { return attention_impl_; }
    // conv3d in bf16 precision through cudnnConvolutionForward (the default, SKYREELS_CUDA_CONV=cudnn) or the
    // implicit-GEMM kernel (SKYREELS_CUDA_CONV=kernel); f32 precision always runs the kernel (the parity path).
    void set_conv_impl(CudaImpl impl) { conv_impl_ = impl; }
    CudaImpl conv_impl() const { return conv_impl_; }
    ConvPath conv_path();
    // The path an attention op of this head dim and masks takes with the current settings.
    AttentionPath attention_path(int64_t head_dim, bool dense_mask, bool causal);
    // cuDNN's state in words: its version and plan counts, or why it is not used.
    std::string cudnn_status();
    // SDPA plans built and plans that failed to build (their shapes ran on the kernel).
    std::pair<size_t, size_t> cudnn_plan_counts();

    // Scratch bounds: GEMM activations rounded to bf16 (or weights widened to f32) a block of rows at a time;
    // bf16 copies of attention's q, k, v a group of heads at a time (at least one head).
    static constexpr size_t kGemmScratchBytes = size_t(64) << 20;
    static constexpr size_t kAttentionScratchBytes = size_t(256) << 20;
    // cuBLASLt's workspace: 32 MiB, what its documentation recommends for Hopper (4 MiB suffices before it).
    static constexpr size_t kCublasWorkspaceBytes = size_t(32) << 20;
    // The largest scratch of any one op (conv3d's weights widened to f32, at most 27 MiB for the VAE, are
    // below it), plus cuBLASLt's workspace (per GEMM call, at most this), plus a little for per-call vectors
    // (biases widened to f32). Attention's scratch is a bound while one head fits in it:
    // 3 x L x 128 x 2 bytes, L <= 349,000 tokens. A constant, so a plan for CUDA needs no GPU (--dry-run).
    static constexpr size_t kWorkspaceBytes =
        (kGemmScratchBytes > kAttentionScratchBytes ? kGemmScratchBytes : kAttentionScratchBytes) +
        kCublasWorkspaceBytes + (size_t(4) << 20);
    size_t workspace_bytes() const override { return kWorkspaceBytes; }
    // Host-to-device copies (upload, copy from a host tensor) go through a pinned bounce ring of this many bytes
    // (allocated at the first such copy), so they never wait for the compute stream: the host memcpys into a
    // free slot and the DMA is queued on the compute stream, ordered by an event per slot.
    static constexpr size_t kBounceSlotBytes = size_t(4) << 20;
    static constexpr int kBounceSlots = 2;
    // A contiguous copy of `host` on this device (returns once the host memory has been read).
    Tensor upload(const Tensor& host);
    // A contiguous host copy of `t` (any strides; waits for the queued work).
    Tensor download(const Tensor& t);
    // Blocks until every op queued so far has finished; rethrows an asynchronous kernel fault as VendorError.
    void synchronize();

    // y[M, N] = x[M, K] w[N, K]^T (+ bias[N]) on raw device memory: x and w of one type (F32 or BF16), y F32 or
    // BF16 with leading dimension ldy, f32 accumulation. The GEMM under linear(); the benchmarks call it
    // directly at the model's shapes.
    void matmul(int64_t M, int64_t N, int64_t K, const void* x, const void* w, DType ab_type, void* y, DType y_type,
                int64_t ldy, const float* bias);

    // The kernels, one per op (ops.h); run() dispatches to them.
    void run(const OpCall& op) override { dispatch_op(*this, op); }
    SR_DECLARE_OP_KERNELS

    // Asserts that `t` lives on this backend's device (an op given a host tensor is a caller bug).
    void check_here(const Tensor& t, const char* what) const;
    // An f32 copy of a small [n] parameter (bias, norm weight) in any float dtype, on this device.
    Tensor f32_vector(const Tensor& t, int64_t n, const char* what);
    // Makes this backend's device current on the calling thread.
    void make_current() const;

    struct Gemm;    // cuBLASLt handle, cached plans and workspace (cuda_gemm.cpp)
    struct Bounce;  // the pinned bounce ring for host-to-device copies (cuda_backend.cpp)
    struct Cudnn;   // cuDNN handle and SDPA plans (cudnn_attention.cpp)

private:
    // matmul() that returns false instead of throwing when cuBLASLt has no algorithm for the shape.
    bool try_matmul(int64_t M, int64_t N, int64_t K, const void* x, const void* w, DType ab_type, void* y, DType y_type,
                    int64_t ldy, const float* bias);
    // linear() in f32 arithmetic: f32 x, weights of any float dtype widened a block of rows at a time.
    void linear_f32(const float* x, int64_t M, const Tensor& weight, const float* bias, float* y);
    void rope(Tensor& x, const Tensor& cos, const Tensor& sin, bool interleaved, const char* op);
    // `bytes` from host memory to device memory, queued on the compute stream through the bounce ring.
    void upload_bytes(void* dst, const void* src, size_t bytes);
    // cuDNN: whether a handle exists (made at the first call; false without cuDNN >= 9.13), and one SDPA call on
    // bf16 buffers laid out as sdpa_shapes(key) says; false when no plan can be built for the key (the caller
    // falls back to the kernel).
    bool cudnn_usable();
    bool cudnn_sdpa(const SdpaPlanKey& key, const void* q, const void* k, const void* v, void* o, float scale);
    // y = conv(x, w) + bias on f32 NCDHW tensors laid out as `dims` says; false when cuDNN cannot run the shape.
    bool cudnn_conv3d(const CudnnConvDims& dims, const float* x, const float* w, const float* bias, float* y);
    struct CudnnDeleter {
        void operator()(Cudnn* c) const;
    };
    static std::unique_ptr<Cudnn, CudnnDeleter> make_cudnn();

    int device_;
    cudaStream_t stream_;
    CudaCachingAllocator memory_;  // after stream_: records its free events there
    std::unique_ptr<Gemm> gemm_;   // cuBLASLt handle and plans (their workspaces are per-call scratch)
    std::unique_ptr<Bounce> bounce_;
    std::unique_ptr<Cudnn, CudnnDeleter> cudnn_;  // before the stream is destroyed: its handle is bound to it
    GemmPrecision gemm_precision_ = GemmPrecision::F32;
    GemmPrecision attention_precision_ = GemmPrecision::F32;
    CudaImpl attention_impl_ = CudaImpl::Cudnn;
    CudaImpl conv_impl_ = CudaImpl::Cudnn;
};

// Why this process cannot use a CUDA device ("" when it can): the runtime's own error (no driver, a driver
// older than the runtime, no device) or a device older than the architectures this build targets.
std::string cuda_unavailable_reason();

// The process-wide backend on device 0, created at first use and never destroyed (so no destructor runs after
// the CUDA runtime's own teardown at exit). Throws VendorError when cuda_unavailable_reason() is not empty.
CudaBackend& cuda_backend();

}  // namespace sr
