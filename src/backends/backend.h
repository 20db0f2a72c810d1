// The compute backend interface: every op the models need, behind one narrow class with one entry point
// (run, over the op list in ops.h). The CPU backend is always built (tests and CI run on it); the CUDA
// backend implements the same interface; decorators (profiling, the simulated device, the memory planner)
// wrap one. Models call only the typed ops below and never see where tensors live.
//
// Conventions: activations are f32 and contiguous unless an op says it takes views. The ops the transformer's
// blocks run (ops.h says which: "bf16 activations") also take bf16 activations, f32 and bf16 mixed: they read
// either, compute in f32 and round once, to the destination's dtype, when they store. Weights may be stored
// as f32, bf16 or f16 (the checkpoint's dtype, memory-mapped); ops that take weights accept all three.
// Outputs are preallocated by the caller (so the caller owns memory planning) and must not alias inputs,
// except for the element-wise ops (gelu_tanh, silu, modulate), whose output may be their input.
//
//   sr::Backend& be = sr::cpu_backend();
//   be.linear(x, w, &b, y);                       // y[M,N] = x[M,K] w[N,K]^T + b
//   be.attention(q, k, v, out, mask, 1/sqrt(d));  // q,k,v,out: [B,H,L,D] views
#pragma once

#include <array>
#include <memory>
#include <string>
#include <vector>

#include "backends/ops.h"
#include "core/tensor.h"

namespace sr {

// Arithmetic precision of GEMMs whose weights are stored in bf16 (see cpu_backend.h for the CPU choice).
enum class GemmPrecision { F32, BF16 };

class Backend {
public:
    virtual ~Backend() = default;
    virtual std::string name() const = 0;
    virtual Device device() const = 0;
    // Where activations and workspace for this backend's ops are allocated (budgeted, peak-tracked).
    virtual Allocator& allocator() = 0;
    // A bound on the memory one op allocates from allocator() for itself, beyond the tensors it is given
    // (scratch, library workspace). The memory plan reserves it on top of the activations. 0 on the CPU
    // backend, which allocates its scratch elsewhere.
    virtual size_t workspace_bytes() const { return 0; }

    // The one entry point: runs one op (backends/ops.h has the list and each op's contract). Backends
    // implement it with dispatch_op(); decorators (profiling, the simulated device's placement checks, the
    // planner's no-op) override it alone.
    virtual void run(const OpCall& op) = 0;

    // Typed calls, one per op, for the models: each builds its op's arguments and calls run(). The
    // contracts are in ops.h, next to each op's arguments.
    void linear(const Tensor& x, const Tensor& weight, const Tensor* bias, Tensor& y,
                Activation activation = Activation::None) {
        run(LinearOp{x, weight, bias, y, activation});
    }
    void quant_linear(const Tensor& x, const Tensor& weight, std::optional<QuantType> block, int64_t K,
                      const Tensor* scale, const Tensor* bias, Tensor& y) {
        run(QuantLinearOp{x, weight, block, K, scale, bias, y});
    }
    void attention(const Tensor& q, const Tensor& k, const Tensor& v, Tensor& out, const AttentionMask& mask,
                   float scale) {
        run(AttentionOp{q, k, v, out, mask, scale});
    }
    // The same on raw q and k projections, normalized and rotated first as `qk` says (ops.h, QkNormRope).
    void attention(const Tensor& q, const Tensor& k, const Tensor& v, Tensor& out, const AttentionMask& mask,
                   float scale, const QkNormRope& qk) {
        run(AttentionOp{q, k, v, out, mask, scale, &qk});
    }
    void layer_norm(const Tensor& x, const Tensor* weight, const Tensor* bias, float eps, Tensor& y) {
        run(LayerNormOp{x, weight, bias, eps, y});
    }
    void rms_norm(const Tensor& x, const Tensor* weight, float eps, Tensor& y) { run(RmsNormOp{x, weight, eps, y}); }
    void rope_interleaved(Tensor& x, const Tensor& cos, const Tensor& sin) { run(RopeInterleavedOp{x, cos, sin}); }
    void gelu_tanh(const Tensor& x, Tensor& y) { run(GeluTanhOp{x, y}); }
    void silu(const Tensor& x, Tensor& y) { run(SiluOp{x, y}); }
    void modulate(const Tensor& x, const Tensor& shift, const Tensor& scale, Tensor& y) {
        run(ModulateOp{x, shift, scale, y});
    }
    void gated_residual(Tensor& x, const Tensor& y, const Tensor& gate) { run(GatedResidualOp{x, y, gate}); }
    void add(Tensor& x, const Tensor& y) { run(AddOp{x, y}); }
    void patch_embed_3d(const Tensor& x, const Tensor& weight, const Tensor* bias, Tensor& y) {
        run(PatchEmbed3dOp{x, weight, bias, y});
    }
    void timestep_embedding(const Tensor& t, int dim, bool flip_sin_to_cos, float downscale_freq_shift,
                            float max_period, Tensor& y) {
        run(TimestepEmbeddingOp{t, dim, flip_sin_to_cos, downscale_freq_shift, max_period, y});
    }
    void copy(const Tensor& src, Tensor& dst) { run(CopyOp{src, dst}); }
    void conv3d(const Tensor& x, const Tensor& weight, const Tensor* bias, std::array<int64_t, 3> stride,
                std::array<int64_t, 3> padding, Tensor& y) {
        run(Conv3dOp{x, weight, bias, stride, padding, y});
    }
    void pad3d_replicate(const Tensor& x, std::array<int64_t, 6> pads, Tensor& y) { run(Pad3dReplicateOp{x, pads, y}); }
    void group_norm(const Tensor& x, int64_t groups, const Tensor* weight, const Tensor* bias, float eps, Tensor& y) {
        run(GroupNormOp{x, groups, weight, bias, eps, y});
    }
    void upsample_nearest3d(const Tensor& x, std::array<int64_t, 3> scale, Tensor& y) {
        run(UpsampleNearest3dOp{x, scale, y});
    }
    void embedding(const Tensor& ids, const Tensor& table, Tensor& y) { run(EmbeddingOp{ids, table, y}); }
    void rope_half(Tensor& x, const Tensor& cos, const Tensor& sin) { run(RopeHalfOp{x, cos, sin}); }
    void quick_gelu(const Tensor& x, Tensor& y) { run(QuickGeluOp{x, y}); }
    void mul(Tensor& x, const Tensor& y) { run(MulOp{x, y}); }
};

// Copies `parts` one after another along `dim` of `out` (their sizes along dim must sum to out's).
void concat(Backend& backend, const std::vector<Tensor>& parts, int dim, Tensor& out);

// An uninitialized activation in the backend's memory (f32, or bf16 where the caller carries bf16
// activations); `what` names it in out-of-memory errors.
Tensor new_activation(Backend& backend, const Shape& shape, std::string_view what, DType dtype = DType::F32);

// The host/device boundary. Ops take tensors in the backend's memory; models upload their inputs (and the
// tables and masks they build on the host) with to_device(), and whatever host code reads (hooks, the
// pipeline's guidance and scheduler arithmetic, the VAE's tile blending) comes back with to_host(), always
// contiguous. Each returns `t` itself when it is already there (and, for to_host, contiguous), so on the CPU
// backend both cost nothing. `what` names the copy in out-of-memory errors.
Tensor to_device(Backend& backend, const Tensor& t, std::string_view what);
Tensor to_host(Backend& backend, const Tensor& t);
// to_host() as f32 (other float dtypes converted on the host): the form host code and inputs are read in.
Tensor to_host_f32(Backend& backend, const Tensor& t);
// `t` as a contiguous tensor in the backend's memory: itself when already contiguous, else a copy made by
// the backend (Tensor::contiguous() is a host copy).
Tensor contiguous(Backend& backend, const Tensor& t, std::string_view what);

}  // namespace sr
