// A linear layer that owns how its weight is stored and multiplied. Models only declare a layer (its
// checkpoint name and [out, in], through a WeightVisitor: nn/weight_visitor.h) and call apply(); they never
// see the weight's storage format, so a new format (FP8 with per-channel scales, GGUF blocks) or a LoRA side
// path is a change here and in the binder, not in any model file.
//
//   sr::Linear proj;                                   // bound at load: v.linear("proj_out", proj, D, N)
//   sr::Tensor y = proj.apply(be, x);                  // y[..., N] = x[..., D] W^T + b (+ adapters)
//
// Formats (WeightFormat):
//   Dense   the checkpoint's float matrix [out, in] (f32/bf16/f16, zero-copy from the mmap or converted at
//           load), multiplied by the backend's linear op.
//   F8      FP8 e4m3 codes [out, in] with an optional scale (one, or one per row: ComfyUI's scaled FP8,
//           torchao's float8_weight_only), the backend's quant_linear op.
//   Block   a GGUF block type's rows [out, row bytes] (core/quant.h), the backend's quant_linear op.
// Quantized weights stay quantized in host memory, in the streaming ring and on the device: quant_linear
// dequantizes a block of rows at a time inside the GEMM path. A format is: an enumerator, the tensors it
// stores (for_each_tensor: they travel with the weight block to the device), and a case in matmul().
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "backends/backend.h"
#include "core/quant.h"
#include "core/tensor.h"

namespace sr {

enum class WeightFormat : uint8_t { Dense, F8, Block };
const char* weight_format_name(WeightFormat format);

// Quantization applied to linear layers at load. Float8WeightOnly: SkyReels' --quant, torchao 0.7.0's
// float8_weight_only (core/float8_weight_only.h): e4m3 codes with one bf16 scale per output row, for the
// dense weights of every linear layer (weights stored quantized already are left as they are).
enum class LinearQuant : uint8_t { None, Float8WeightOnly };

// What a tensor of a layer is, for the binder: a matrix stored as the checkpoint holds it (or in the load's
// storage dtype), a small vector (norm weights, biases) that is kept in f32 whatever the file holds, or a
// low-rank side path's matrix (a runtime LoRA's down and up: small, f32), which stays resident on the device
// for the whole run while the rest of its block may stream (runtime/residency.h).
enum class WeightKind : uint8_t { Matrix, SmallF32, SidePath };

// A weight matrix in its storage format: logically [out, in].
struct LinearWeight {
    WeightFormat format = WeightFormat::Dense;
    Tensor data;   // Dense: [out, in] float; F8: [out, in] codes; Block: [out, quant_row_bytes(block, in)] bytes
    Tensor scale;  // F8: [1] or [out], any float dtype, or undefined (scale 1)
    QuantType block = QuantType::Q8_0;  // Block only
    int64_t out = 0, in = 0;

    size_t bytes() const { return (data.defined() ? data.nbytes() : 0) + (scale.defined() ? scale.nbytes() : 0); }
    // What the storage is called in reports: "bf16", "f8_e4m3", "Q4_K".
    std::string storage_name() const;
    // f(suffix, tensor, kind) for every tensor the format stores, in a fixed order (suffix ".weight", ...).
    template <class F>
    void for_each_tensor(F&& f) {
        f(std::string_view(".weight"), data, WeightKind::Matrix);
        if (scale.defined()) f(std::string_view(".weight_scale"), scale, WeightKind::Matrix);
    }
};

// y[..., out] = x[..., in] w^T (+ bias), x and y f32 contiguous, by w's format.
void matmul(Backend& be, const Tensor& x, const LinearWeight& w, const Tensor* bias, Tensor& y);

// A low-rank side path y += up (down x): down [rank, in], up [out, rank], the adapter's strength and
// alpha / rank already folded into `up` (LoRA, applied at run time where the main weight must stay as it
// is stored: quantized, streamed or mapped).
struct LowRankAdapter {
    Tensor down, up;
    int64_t rank() const { return down.dim(0); }
};

struct Linear {
    LinearWeight weight;
    Tensor bias;  // [out] f32, or undefined
    std::vector<LowRankAdapter> adapters;

    int64_t in_features() const { return weight.in; }
    int64_t out_features() const { return weight.out; }
    size_t bytes() const;
    // y[..., out] = act(x[..., in] weight^T + bias (+ each adapter)), in a new activation on the backend of
    // x's dtype (f32, or bf16 where a model carries bf16 activations: backend.h). A dense weight without
    // adapters applies the activation in its GEMM's epilogue (ops.h, LinearOp); the others after the sum.
    Tensor apply(Backend& be, const Tensor& x, Activation act = Activation::None) const;
    // The same into `y` (preallocated [..., out] f32 or bf16, any view with a contiguous last dim: rows at one
    // stride, such as a column slice of a wider buffer, are written in place, others through a copy; not
    // aliasing x).
    void apply_into(Backend& be, const Tensor& x, Tensor& y, Activation act = Activation::None) const;

    // f(suffix, tensor, kind) for every tensor the layer holds: the weight's, the bias (when the layer has
    // one), each adapter's down and up. Listing, rebinding and streaming go through this.
    template <class F>
    void for_each_tensor(F&& f) {
        weight.for_each_tensor(f);
        if (bias.defined()) f(std::string_view(".bias"), bias, WeightKind::SmallF32);
        for (LowRankAdapter& a : adapters) {
            f(std::string_view(".lora_down"), a.down, WeightKind::SidePath);
            f(std::string_view(".lora_up"), a.up, WeightKind::SidePath);
        }
    }
};

}  // namespace sr
