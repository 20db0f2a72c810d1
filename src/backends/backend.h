// The compute backend interface: every op the models need, behind one narrow class. The CPU backend is
// always built (tests and CI run on it); a CUDA backend implements the same interface. Models call only
// these ops and never see where tensors live.
//
// Conventions: activations are f32 and contiguous unless an op says it takes views. Weights may be stored
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

#include "core/tensor.h"

namespace sr {

struct AttentionMask {
    // Per batch row b: keys [0, kv_len[b]) are valid (right padding). Empty: every key is valid.
    std::vector<int64_t> kv_len;
    // Optional dense mask [B, Lq, Lk] (Bool or F32, nonzero = attend), applied together with kv_len.
    Tensor dense;
    // Causal: query i sees keys j <= i + (Lk - Lq) (the last query sees every key), with the masks above.
    bool causal = false;
};

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

    // y[..., N] = x[..., K] @ weight[N, K]^T (+ bias[N]). x, y f32 contiguous; weight f32/bf16/f16.
    virtual void linear(const Tensor& x, const Tensor& weight, const Tensor* bias, Tensor& y) = 0;

    // Scaled dot-product attention per (batch, head): out = softmax(q k^T * scale, masked) v.
    // q [B,H,Lq,D], k and v [B,H,Lk,D], out [B,H,Lq,D]: f32 views with any strides but a unit innermost
    // stride, so [B,L,H,D] buffers are passed as permute({0,2,1,3}) views. Memory is O(tile x Lk), never
    // Lq x Lk. A query row with no valid key yields zeros.
    virtual void attention(const Tensor& q, const Tensor& k, const Tensor& v, Tensor& out, const AttentionMask& mask,
                           float scale) = 0;

    // Normalization over the last dimension; weight/bias [D] optional (nullptr = no affine).
    virtual void layer_norm(const Tensor& x, const Tensor* weight, const Tensor* bias, float eps, Tensor& y) = 0;
    // y = x * rsqrt(mean(x^2) + eps) * weight, statistics in f32.
    virtual void rms_norm(const Tensor& x, const Tensor* weight, float eps, Tensor& y) = 0;

    // In place on x [B, L, H, D] (a view; unit innermost stride): rotates interleaved pairs (x[2i], x[2i+1])
    // of token l by the tables cos/sin [L, D] (each frequency repeated twice), as diffusers'
    // apply_rotary_emb(use_real=True, unbind_dim=-1): x*cos + (-x[2i+1], x[2i])*sin.
    virtual void rope_interleaved(Tensor& x, const Tensor& cos, const Tensor& sin) = 0;

    virtual void gelu_tanh(const Tensor& x, Tensor& y) = 0;
    virtual void silu(const Tensor& x, Tensor& y) = 0;

    // adaLN: y[b,l,:] = x[b,l,:] * (1 + scale[b,:]) + shift[b,:]. x, y [B,L,D]; shift, scale [B,D] views.
    virtual void modulate(const Tensor& x, const Tensor& shift, const Tensor& scale, Tensor& y) = 0;
    // In place: x[b,l,:] += y[b,l,:] * gate[b,:]. x, y [B,L,D]; gate [B,D] view (or undefined: gate = 1).
    virtual void gated_residual(Tensor& x, const Tensor& y, const Tensor& gate) = 0;
    // In place: x += y (same shape).
    virtual void add(Tensor& x, const Tensor& y) = 0;

    // 3-D convolution whose stride equals its kernel (patchify): x [B,C,F,H,W], weight [D,C,pt,ph,pw]
    // (any float dtype), bias [D] -> y [B, N, D], tokens in (f,h,w) row-major order.
    virtual void patch_embed_3d(const Tensor& x, const Tensor& weight, const Tensor* bias, Tensor& y) = 0;

    // Sinusoidal embedding of t [B] -> y [B, dim]: freq_i = exp(-ln(max_period) * i / (dim/2 - shift)),
    // i < dim/2; [cos, sin] when flip_sin_to_cos, else [sin, cos] (diffusers get_timestep_embedding).
    virtual void timestep_embedding(const Tensor& t, int dim, bool flip_sin_to_cos, float downscale_freq_shift,
                                    float max_period, Tensor& y) = 0;

    // dst = src for equal shapes and any strides; float dtypes are converted. Concat, slice and permute
    // are views plus this copy.
    virtual void copy(const Tensor& src, Tensor& dst) = 0;

    // ---- VAE ops ----
    // 3-D convolution: x [B,C,F,H,W] f32, weight [O,C,kt,kh,kw] (f32/bf16/f16), bias [O] or nullptr,
    // stride and symmetric zero padding per axis (t, h, w) -> y [B,O,F',H',W'] f32. The causal VAE's
    // replicate padding is done by the model with pad3d_replicate first.
    virtual void conv3d(const Tensor& x, const Tensor& weight, const Tensor* bias, std::array<int64_t, 3> stride,
                        std::array<int64_t, 3> padding, Tensor& y) = 0;
    // Edge padding of x [B,C,F,H,W]: pads = {t_before, t_after, h_before, h_after, w_before, w_after}.
    virtual void pad3d_replicate(const Tensor& x, std::array<int64_t, 6> pads, Tensor& y) = 0;
    // GroupNorm of x [B, C, ...]: C/groups channels per group, statistics over the group's channels and all
    // positions (f64 accumulation); weight/bias [C] optional.
    virtual void group_norm(const Tensor& x, int64_t groups, const Tensor* weight, const Tensor* bias, float eps,
                            Tensor& y) = 0;
    // Nearest-neighbour upsampling of x [B,C,F,H,W] by integer factors (t, h, w).
    virtual void upsample_nearest3d(const Tensor& x, std::array<int64_t, 3> scale, Tensor& y) = 0;

    // ---- text encoder ops ----
    // Row gather: ids [B, L] (I32 or I64) from table [V, D] (f32/bf16/f16) -> y [B, L, D] f32. An id
    // outside [0, V) is an InputError naming it.
    virtual void embedding(const Tensor& ids, const Tensor& table, Tensor& y) = 0;
    // In place on x [B, L, H, D] (a view, unit innermost stride): Llama's rotate_half RoPE, pairs
    // (x[i], x[i + D/2]) rotated by cos/sin [L, D] (transformers' apply_rotary_pos_emb).
    virtual void rope_half(Tensor& x, const Tensor& cos, const Tensor& sin) = 0;
    // CLIP's quick GELU: x * sigmoid(1.702 x). y may be x.
    virtual void quick_gelu(const Tensor& x, Tensor& y) = 0;
    // In place: x *= y (same shape), e.g. SwiGLU's silu(gate) * up.
    virtual void mul(Tensor& x, const Tensor& y) = 0;
};

// Copies `parts` one after another along `dim` of `out` (their sizes along dim must sum to out's).
void concat(Backend& backend, const std::vector<Tensor>& parts, int dim, Tensor& out);

// An uninitialized f32 activation in the backend's memory; `what` names it in out-of-memory errors.
Tensor new_activation(Backend& backend, const Shape& shape, std::string_view what);

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
