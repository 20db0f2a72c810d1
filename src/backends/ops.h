// The op list: one argument struct per op, and one variant of them (OpCall) that every backend receives at
// its single entry point, Backend::run(). This file is the only place an op is declared; everything that
// must know every op (decorators, placement checks, the profiler's FLOP counts, the op-parity harness's
// coverage test) iterates OpCall's alternatives instead of restating the list.
//
// Why a variant of structs rather than an enum plus a union or one virtual per op: the arguments stay typed
// (no casts), a decorator overrides one function, std::visit makes a backend that forgets an op a compile
// error where it wants every op (implements_every_op) and a named run-time error where it may lack some
// (dispatch_op), and the list's length and names are compile-time facts the tests can iterate.
//
// Adding an op: a struct here (arguments in call order, kName, its tensor arguments in tensors(), flops()
// when it does arithmetic worth counting), its name in SR_OPS, a typed call in backend.h, an exec()
// on each backend, and a parity case (SR_OP_PARITY in tests/support/op_harness.h): the coverage test fails
// until there is one.
//
// Argument structs hold references: they live for one call, built by the typed calls in backend.h.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <optional>
#include <string_view>
#include <variant>
#include <vector>

#include "core/quant.h"
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

// A tensor argument of an op, for checks that look at every argument (where it lives): `tensor` is null for
// an absent optional argument. `host_ok`: the op also accepts it in host memory (a copy's ends, token ids).
struct OpTensorArg {
    const char* name;
    const Tensor* tensor;
    bool host_ok = false;
};

// Ops that share an argument list are one template each, told apart by name (each its own type).
template <size_t N>
struct OpName {
    char text[N];
    constexpr OpName(const char (&name)[N]) { std::copy_n(name, N, text); }
};

// Element-wise y = f(x), same shape; y may be x.
template <OpName Name>
struct UnaryOp {
    static constexpr std::string_view kName{Name.text};
    const Tensor& x;
    Tensor& y;
    auto tensors() const { return std::array<OpTensorArg, 2>{{{"x", &x}, {"y", &y}}}; }
};

// In place x = x (op) y, same shape.
template <OpName Name>
struct InPlaceBinaryOp {
    static constexpr std::string_view kName{Name.text};
    Tensor& x;
    const Tensor& y;
    auto tensors() const { return std::array<OpTensorArg, 2>{{{"x", &x}, {"y", &y}}}; }
};

// In place on x [B, L, H, D] (a view; unit innermost stride): rotary embedding of token l by the tables
// cos/sin [L, D].
template <OpName Name>
struct RopeOp {
    static constexpr std::string_view kName{Name.text};
    Tensor& x;
    const Tensor& cos;
    const Tensor& sin;
    auto tensors() const { return std::array<OpTensorArg, 3>{{{"x", &x}, {"cos", &cos}, {"sin", &sin}}}; }
};

// ---- transformer ops ----

// An element-wise function a linear layer applies to its output as it stores it (its GEMM's epilogue).
enum class Activation : uint8_t { None, GeluTanh };

// y[..., N] = act(x[..., K] @ weight[N, K]^T (+ bias[N])). x, y f32 or bf16 (kTakesBf16Activations); x
// contiguous, y rows at one stride (a column slice of a wider buffer: the single-stream block writes its MLP
// hidden layer straight into the fused projection's input); weight f32/bf16/f16. The activation is applied to
// the f32 sum plus bias, before a bf16 y is rounded.
struct LinearOp {
    static constexpr std::string_view kName = "linear";
    const Tensor& x;
    const Tensor& weight;
    const Tensor* bias;
    Tensor& y;
    Activation activation = Activation::None;
    auto tensors() const {
        return std::array<OpTensorArg, 4>{{{"x", &x}, {"weight", &weight}, {"bias", bias}, {"y", &y}}};
    }
    double flops() const { return 2.0 * double(x.numel()) * double(weight.dim(0)); }
};

// y[..., N] = x[..., K] @ W^T (+ bias[N]) with W [N, K] stored quantized (core/dequantize.h): FP8 e4m3
// codes [N, K] times `scale` (one value or one per row, the product rounded to the scale's dtype; no scale:
// 1), or, with `block`, N rows of that block type [N, quant_row_bytes(block, K)] (Bool bytes). A backend
// dequantizes a block of rows at a time into its GEMM's input precision, never the whole matrix.
struct QuantLinearOp {
    static constexpr std::string_view kName = "quant_linear";
    const Tensor& x;
    const Tensor& weight;
    std::optional<QuantType> block;
    int64_t K;
    const Tensor* scale;
    const Tensor* bias;
    Tensor& y;
    auto tensors() const {
        return std::array<OpTensorArg, 5>{
            {{"x", &x}, {"weight", &weight}, {"scale", scale}, {"bias", bias}, {"y", &y}}};
    }
    double flops() const { return 2.0 * double(x.numel()) * double(weight.dim(0)); }
};

// Optional work on q and k that an attention op runs first, so that a backend can fuse it into its own pass over
// q and k (the CUDA backend normalizes, rotates and rounds each head row to bf16 in one kernel). q and k are then
// the raw projections. Every head row (D values) is RMS-normalized (eps, as RmsNormOp) with a weight [D]; tokens
// [0, n_rope) take q_weight[0] / k_weight[0] and are then rotated by the tables cos/sin [n_rope, D] (as
// RopeInterleavedOp), tokens [n_rope, L) take q_weight[1] / k_weight[1] and are not rotated: HunyuanVideo's video
// tokens (norm_q, RoPE) and text tokens (norm_added_q in the dual-stream blocks, norm_q in the single-stream
// ones). The result is exactly rms_norm per segment, then rope_interleaved on the first n_rope tokens.
struct QkNormRope {
    std::array<const Tensor*, 2> q_weight{};
    std::array<const Tensor*, 2> k_weight{};
    const Tensor* cos = nullptr;
    const Tensor* sin = nullptr;
    int64_t n_rope = 0;
    float eps = 1e-6f;
};

// Scaled dot-product attention per (batch, head): out = softmax(q k^T * scale, masked) v.
// q [B,H,Lq,D], k and v [B,H,Lk,D], out [B,H,Lq,D]: f32 or bf16 views (kTakesBf16Activations; the QK norm,
// RoPE and softmax are f32 either way) with any strides but a unit innermost stride,
// so [B,L,H,D] buffers are passed as permute({0,2,1,3}) views. Memory is O(tile x Lk), never Lq x Lk. A
// query row with no valid key yields zeros.
struct AttentionOp {
    static constexpr std::string_view kName = "attention";
    const Tensor& q;
    const Tensor& k;
    const Tensor& v;
    Tensor& out;
    const AttentionMask& mask;
    float scale;
    const QkNormRope* qk = nullptr;  // null: q and k are used as given
    auto tensors() const {
        return std::array<OpTensorArg, 11>{{{"q", &q},
                                            {"k", &k},
                                            {"v", &v},
                                            {"out", &out},
                                            {"dense mask", &mask.dense},
                                            {"q norm weight", qk ? qk->q_weight[0] : nullptr},
                                            {"q norm weight (text)", qk ? qk->q_weight[1] : nullptr},
                                            {"k norm weight", qk ? qk->k_weight[0] : nullptr},
                                            {"k norm weight (text)", qk ? qk->k_weight[1] : nullptr},
                                            {"rope cos", qk ? qk->cos : nullptr},
                                            {"rope sin", qk ? qk->sin : nullptr}}};
    }
    // Counted over all keys, as the cost model does (masked keys are skipped: an upper bound).
    double flops() const {
        return 4.0 * double(q.dim(0) * q.dim(1)) * double(q.dim(2)) * double(k.dim(2)) * double(q.dim(3));
    }
};

// Normalization over the last dimension; weight/bias [D] optional (nullptr = no affine).
struct LayerNormOp {
    static constexpr std::string_view kName = "layer_norm";
    const Tensor& x;
    const Tensor* weight;
    const Tensor* bias;
    float eps;
    Tensor& y;
    auto tensors() const {
        return std::array<OpTensorArg, 4>{{{"x", &x}, {"weight", weight}, {"bias", bias}, {"y", &y}}};
    }
};

// y = x * rsqrt(mean(x^2) + eps) * weight, statistics in f32.
struct RmsNormOp {
    static constexpr std::string_view kName = "rms_norm";
    const Tensor& x;
    const Tensor* weight;
    float eps;
    Tensor& y;
    auto tensors() const { return std::array<OpTensorArg, 3>{{{"x", &x}, {"weight", weight}, {"y", &y}}}; }
};

// In place on x [B, L, H, D] (a view; unit innermost stride): rotates interleaved pairs (x[2i], x[2i+1]) of
// token l by the tables cos/sin [L, D] (each frequency repeated twice), as diffusers'
// apply_rotary_emb(use_real=True, unbind_dim=-1): x*cos + (-x[2i+1], x[2i])*sin.
using RopeInterleavedOp = RopeOp<"rope_interleaved">;

using GeluTanhOp = UnaryOp<"gelu_tanh">;  // tanh-approximated GELU
using SiluOp = UnaryOp<"silu">;

// adaLN: y[b,l,:] = x[b,l,:] * (1 + scale[b,:]) + shift[b,:]. x, y [B,L,D]; shift, scale [B,D] views.
struct ModulateOp {
    static constexpr std::string_view kName = "modulate";
    const Tensor& x;
    const Tensor& shift;
    const Tensor& scale;
    Tensor& y;
    auto tensors() const {
        return std::array<OpTensorArg, 4>{{{"x", &x}, {"shift", &shift}, {"scale", &scale}, {"y", &y}}};
    }
};

// In place: x[b,l,:] += y[b,l,:] * gate[b,:]. x, y [B,L,D]; gate [B,D] view (or undefined: gate = 1).
struct GatedResidualOp {
    static constexpr std::string_view kName = "gated_residual";
    Tensor& x;
    const Tensor& y;
    const Tensor& gate;
    auto tensors() const { return std::array<OpTensorArg, 3>{{{"x", &x}, {"y", &y}, {"gate", &gate}}}; }
};

// In place: x += y (same shape).
using AddOp = InPlaceBinaryOp<"add">;

// 3-D convolution whose stride equals its kernel (patchify): x [B,C,F,H,W], weight [D,C,pt,ph,pw] (any float
// dtype), bias [D] -> y [B, N, D], tokens in (f,h,w) row-major order.
struct PatchEmbed3dOp {
    static constexpr std::string_view kName = "patch_embed_3d";
    const Tensor& x;
    const Tensor& weight;
    const Tensor* bias;
    Tensor& y;
    auto tensors() const {
        return std::array<OpTensorArg, 4>{{{"x", &x}, {"weight", &weight}, {"bias", bias}, {"y", &y}}};
    }
    double flops() const { return 2.0 * double(y.numel()) * double(weight.numel() / weight.dim(0)); }
};

// Sinusoidal embedding of t [B] -> y [B, dim]: freq_i = exp(-ln(max_period) * i / (dim/2 - shift)), i < dim/2;
// [cos, sin] when flip_sin_to_cos, else [sin, cos] (diffusers get_timestep_embedding).
struct TimestepEmbeddingOp {
    static constexpr std::string_view kName = "timestep_embedding";
    const Tensor& t;
    int dim;
    bool flip_sin_to_cos;
    float downscale_freq_shift;
    float max_period;
    Tensor& y;
    auto tensors() const { return std::array<OpTensorArg, 2>{{{"t", &t}, {"y", &y}}}; }
};

// dst = src for equal shapes and any strides; float dtypes are converted. Concat, slice and permute are views
// plus this copy. Like cudaMemcpy, a copy may cross between the host and the device (to_device, to_host).
struct CopyOp {
    static constexpr std::string_view kName = "copy";
    const Tensor& src;
    Tensor& dst;
    auto tensors() const { return std::array<OpTensorArg, 2>{{{"src", &src, true}, {"dst", &dst, true}}}; }
};

// ---- VAE ops ----

// 3-D convolution: x [B,C,F,H,W] f32, weight [O,C,kt,kh,kw] (f32/bf16/f16), bias [O] or nullptr, stride and
// symmetric zero padding per axis (t, h, w) -> y [B,O,F',H',W'] f32. The causal VAE's replicate padding is
// done by the model with pad3d_replicate first.
struct Conv3dOp {
    static constexpr std::string_view kName = "conv3d";
    const Tensor& x;
    const Tensor& weight;
    const Tensor* bias;
    std::array<int64_t, 3> stride;
    std::array<int64_t, 3> padding;
    Tensor& y;
    auto tensors() const {
        return std::array<OpTensorArg, 4>{{{"x", &x}, {"weight", &weight}, {"bias", bias}, {"y", &y}}};
    }
    // 2 x outputs x (C kt kh kw) per output element.
    double flops() const {
        return 2.0 * double(y.numel()) * double(weight.numel() / std::max<int64_t>(weight.dim(0), 1));
    }
};

// Edge padding of x [B,C,F,H,W]: pads = {t_before, t_after, h_before, h_after, w_before, w_after}.
struct Pad3dReplicateOp {
    static constexpr std::string_view kName = "pad3d_replicate";
    const Tensor& x;
    std::array<int64_t, 6> pads;
    Tensor& y;
    auto tensors() const { return std::array<OpTensorArg, 2>{{{"x", &x}, {"y", &y}}}; }
};

// GroupNorm of x [B, C, ...]: C/groups channels per group, statistics over the group's channels and all
// positions (f64 accumulation); weight/bias [C] optional.
struct GroupNormOp {
    static constexpr std::string_view kName = "group_norm";
    const Tensor& x;
    int64_t groups;
    const Tensor* weight;
    const Tensor* bias;
    float eps;
    Tensor& y;
    auto tensors() const {
        return std::array<OpTensorArg, 4>{{{"x", &x}, {"weight", weight}, {"bias", bias}, {"y", &y}}};
    }
};

// Nearest-neighbour upsampling of x [B,C,F,H,W] by integer factors (t, h, w).
struct UpsampleNearest3dOp {
    static constexpr std::string_view kName = "upsample_nearest3d";
    const Tensor& x;
    std::array<int64_t, 3> scale;
    Tensor& y;
    auto tensors() const { return std::array<OpTensorArg, 2>{{{"x", &x}, {"y", &y}}}; }
};

// ---- text encoder ops ----

// Row gather: ids [B, L] (I32 or I64) from table [V, D] (f32/bf16/f16) -> y [B, L, D] f32. An id outside
// [0, V) is an InputError naming it. The ids may be on the host (a backend checks them there first).
struct EmbeddingOp {
    static constexpr std::string_view kName = "embedding";
    const Tensor& ids;
    const Tensor& table;
    Tensor& y;
    auto tensors() const { return std::array<OpTensorArg, 3>{{{"ids", &ids, true}, {"table", &table}, {"y", &y}}}; }
};

// In place on x [B, L, H, D] (a view, unit innermost stride): Llama's rotate_half RoPE, pairs (x[i], x[i + D/2])
// rotated by cos/sin [L, D] (transformers' apply_rotary_pos_emb).
using RopeHalfOp = RopeOp<"rope_half">;

// CLIP's quick GELU: x * sigmoid(1.702 x). y may be x.
using QuickGeluOp = UnaryOp<"quick_gelu">;

// In place: x *= y (same shape), e.g. SwiGLU's silu(gate) * up.
using MulOp = InPlaceBinaryOp<"mul">;

// ---------------------------------------------------------------------------------------------------------
// The list.

// Every op, once. SR_OPS(FIRST, NEXT) applies FIRST to the first op and NEXT to each other one, so the
// same list yields OpCall's alternatives (comma-separated) and the kernel declarations of a backend that has
// them all (SR_DECLARE_OP_KERNELS).
// clang-format off
#define SR_OPS(FIRST, NEXT)                                                                                      \
    FIRST(LinearOp) NEXT(QuantLinearOp) NEXT(AttentionOp) NEXT(LayerNormOp) NEXT(RmsNormOp)                     \
    NEXT(RopeInterleavedOp) NEXT(GeluTanhOp) NEXT(SiluOp) NEXT(ModulateOp) NEXT(GatedResidualOp) NEXT(AddOp)      \
    NEXT(PatchEmbed3dOp) NEXT(TimestepEmbeddingOp) NEXT(CopyOp) NEXT(Conv3dOp) NEXT(Pad3dReplicateOp)             \
    NEXT(GroupNormOp) NEXT(UpsampleNearest3dOp) NEXT(EmbeddingOp) NEXT(RopeHalfOp) NEXT(QuickGeluOp) NEXT(MulOp)
// clang-format on
#define SR_OP_ALTERNATIVE_FIRST(Op) Op
#define SR_OP_ALTERNATIVE_NEXT(Op) , Op
#define SR_OP_KERNEL_DECLARATION(Op) void exec(const Op& op);

using OpCall = std::variant<SR_OPS(SR_OP_ALTERNATIVE_FIRST, SR_OP_ALTERNATIVE_NEXT)>;

// In a backend class that implements every op: one `void exec(const XOp& op);` per op.
#define SR_DECLARE_OP_KERNELS SR_OPS(SR_OP_KERNEL_DECLARATION, SR_OP_KERNEL_DECLARATION)

inline constexpr size_t kOpCount = std::variant_size_v<OpCall>;

// The ops that also take bf16 activations: the ones the transformer's blocks run on their residual streams
// and big temporaries (models/hunyuan_video_transformer.cpp says which tensors those are). Their activation
// arguments (not weights, biases or norm parameters, which take any float dtype already, nor a mask) may be
// f32 or bf16, mixed: a backend reads either, computes in f32 (statistics, softmax and the adaLN vectors'
// arithmetic included) and rounds once, to the destination's dtype, when it stores. Per op: linear and
// quant_linear x, y; attention q, k, v, out; layer_norm x, y; modulate x, y (shift and scale stay f32);
// gated_residual x, y (the gate stays f32); add x, y; gelu_tanh x, y; copy (any float dtypes already).
// The op-parity harness runs a bf16 case of each (tests/test_ops_bf16.cpp), and its coverage test reads
// this list.
template <class Op>
inline constexpr bool kTakesBf16Activations = false;
template <>
inline constexpr bool kTakesBf16Activations<LinearOp> = true;
template <>
inline constexpr bool kTakesBf16Activations<QuantLinearOp> = true;
template <>
inline constexpr bool kTakesBf16Activations<AttentionOp> = true;
template <>
inline constexpr bool kTakesBf16Activations<LayerNormOp> = true;
template <>
inline constexpr bool kTakesBf16Activations<ModulateOp> = true;
template <>
inline constexpr bool kTakesBf16Activations<GatedResidualOp> = true;
template <>
inline constexpr bool kTakesBf16Activations<AddOp> = true;
template <>
inline constexpr bool kTakesBf16Activations<GeluTanhOp> = true;
template <>
inline constexpr bool kTakesBf16Activations<CopyOp> = true;

namespace detail {
template <size_t... I>
constexpr std::array<bool, sizeof...(I)> bf16_ops(std::index_sequence<I...>) {
    return {kTakesBf16Activations<std::variant_alternative_t<I, OpCall>>...};
}
}  // namespace detail
// kTakesBf16Activations by op id.
inline constexpr std::array<bool, kOpCount> kOpTakesBf16 = detail::bf16_ops(std::make_index_sequence<kOpCount>{});

// The position of Op in OpCall (its op id).
template <class Op, size_t I = 0>
constexpr size_t op_index() {
    static_assert(I < kOpCount, "not an op of OpCall");
    if constexpr (std::is_same_v<std::variant_alternative_t<I, OpCall>, Op>)
        return I;
    else
        return op_index<Op, I + 1>();
}

namespace detail {
template <size_t... I>
constexpr std::array<std::string_view, kOpCount> op_names(std::index_sequence<I...>) {
    return {std::variant_alternative_t<I, OpCall>::kName...};
}
}  // namespace detail

// Every op's name, by op id.
inline constexpr std::array<std::string_view, kOpCount> kOpNames =
    detail::op_names(std::make_index_sequence<kOpCount>{});

inline std::string_view op_name(const OpCall& call) {
    return kOpNames[call.index()];
}

// FLOPs of the call (0 for ops whose cost is memory traffic).
inline double op_flops(const OpCall& call) {
    return std::visit(
        [](const auto& op) -> double {
            if constexpr (requires { op.flops(); })
                return op.flops();
            else
                return 0.0;
        },
        call);
}

// Calls f(const OpTensorArg&) for every tensor argument of the call, absent optional ones included (null).
template <class F>
void for_each_tensor_arg(const OpCall& call, F&& f) {
    std::visit(
        [&](const auto& op) {
            for (const OpTensorArg& a : op.tensors()) f(a);
        },
        call);
}

// ---------------------------------------------------------------------------------------------------------
// Dispatch: how a backend implements run(). A backend implements each op it has as a public
//   void exec(const LinearOp& op);
// and forwards run(call) to dispatch_op(*this, call): an op without an exec() throws an Error naming the op
// and the backend. A backend that must have every op states it with
//   static_assert(implements_every_op<CpuBackend>());

[[noreturn]] void throw_missing_op(std::string_view backend, std::string_view op);

template <class Impl, class Op>
concept ExecutesOp = requires(Impl& impl, const Op& op) {
    impl.exec(op);
};

template <class Impl>
void dispatch_op(Impl& impl, const OpCall& call) {
    std::visit(
        [&](const auto& op) {
            if constexpr (ExecutesOp<Impl, std::decay_t<decltype(op)>>)
                impl.exec(op);
            else
                throw_missing_op(impl.name(), op.kName);
        },
        call);
}

namespace detail {
template <class Impl, size_t... I>
constexpr bool executes_all(std::index_sequence<I...>) {
    return (ExecutesOp<Impl, std::variant_alternative_t<I, OpCall>> && ...);
}
}  // namespace detail

template <class Impl>
constexpr bool implements_every_op() {
    return detail::executes_all<Impl>(std::make_index_sequence<kOpCount>{});
}

}  // namespace sr
