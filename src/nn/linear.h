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
// A format is: an enumerator, the tensors it stores (for_each_tensor: they travel with the weight block to
// the device), and a case in matmul().
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "backends/backend.h"
#include "core/tensor.h"

namespace sr {

enum class WeightFormat : uint8_t { Dense };
const char* weight_format_name(WeightFormat format);

// What a tensor of a layer is, for the binder: a matrix stored as the checkpoint holds it (or in the load's
// storage dtype), or a small vector (norm weights, biases) that is kept in f32 whatever the file holds.
enum class WeightKind : uint8_t { Matrix, SmallF32 };

// A weight matrix in its storage format: logically [out, in].
struct LinearWeight {
    WeightFormat format = WeightFormat::Dense;
    Tensor data;  // Dense: [out, in]
    int64_t out = 0, in = 0;

    size_t bytes() const { return data.defined() ? data.nbytes() : 0; }
    // f(suffix, tensor, kind) for every tensor the format stores, in a fixed order (suffix ".weight", ...).
    template <class F>
    void for_each_tensor(F&& f) {
        f(std::string_view(".weight"), data, WeightKind::Matrix);
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
    // y[..., out] = x[..., in] weight^T + bias (+ each adapter), in a new activation on the backend.
    Tensor apply(Backend& be, const Tensor& x) const;
    // The same into `y` (preallocated [..., out] f32 contiguous, not aliasing x).
    void apply_into(Backend& be, const Tensor& x, Tensor& y) const;

    // f(suffix, tensor, kind) for every tensor the layer holds: the weight's, the bias (when the layer has
    // one), each adapter's down and up. Listing, rebinding and streaming go through this.
    template <class F>
    void for_each_tensor(F&& f) {
        weight.for_each_tensor(f);
        if (bias.defined()) f(std::string_view(".bias"), bias, WeightKind::SmallF32);
        for (LowRankAdapter& a : adapters) {
            f(std::string_view(".lora_down"), a.down, WeightKind::Matrix);
            f(std::string_view(".lora_up"), a.up, WeightKind::Matrix);
        }
    }
};

}  // namespace sr
