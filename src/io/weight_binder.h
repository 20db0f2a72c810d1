// Binds checkpoint tensors to a model's typed members, once, at load: by checkpoint name, with the expected
// shape, from any TensorSource (a safetensors checkpoint, a GGUF file, a layout adapter). A missing or
// misshapen tensor is an InputError naming it; tensors the model never asked for are reported by unused().
// Bound tensors stay zero-copy views of the memory-mapped file unless a storage dtype is requested (e.g. f32
// weights stored as bf16 for the bf16 GEMM path). Matrices that a linear layer multiplies (matrix()) stay in
// their storage, quantized ones included; every other tensor is dequantized at load.
//
//   sr::WeightBinder bind(store);
//   layer.weight = bind.tensor("proj_out.weight", {out, in});
//   warn_unused_tensors(bind.unused(), bind.source(), "the VAE");   // one summarised warning
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "io/tensor_source.h"

namespace sr {

class WeightBinder {
public:
    // `storage_dtype`: convert floating-point weights to this dtype at load (nullopt: keep the file's).
    // `planning_space` (memory planning, e.g. --dry-run): every tensor is checked against `store` (name,
    // shape, dtype) like a real load, but bound to untouched address space from it (core/virtual_allocator.h)
    // in the dtype a real load would give it. No weight is read.
    explicit WeightBinder(const TensorSource& store, std::optional<DType> storage_dtype = std::nullopt,
                          Allocator* planning_space = nullptr);
    // No checkpoint: every requested tensor is made up, seeded by (seed, name), uniform with standard
    // deviation 0.02 (norm weights: 1 + that), in `dtype`. For benchmarks, tests and the demo model; the
    // made-up tensors can be saved as a checkpoint with generated().
    static WeightBinder random(uint64_t seed, DType dtype);
    // No checkpoint and no values: every requested tensor is bound to `planning_space` as a load of a
    // checkpoint storing it in `stored` would bind it (a view of the file, or owned f32 for norms and
    // biases). Plans a model from its configuration alone, e.g. the released models' memory without their
    // files (bench/bench_memory_plan.cpp).
    static WeightBinder shapes_only(DType stored, Allocator& planning_space);
    const std::vector<std::pair<std::string, Tensor>>& generated() const { return generated_; }

    // A float tensor (embedding tables, convolution kernels): as stored, or in the storage dtype; FP8 and
    // block-quantized ones are dequantized (to the storage dtype, or f32).
    Tensor tensor(const std::string& name, const Shape& expected);
    // Norm and bias vectors are tiny and read every call: keep them f32 whatever the file holds.
    Tensor small_f32(const std::string& name, const Shape& expected);
    // A linear layer's matrix [out, in] in its storage: float (as tensor() binds it), FP8 codes with their
    // scale, or block-quantized rows. A planning binder binds its bytes to the planning space.
    StoredTensor matrix(const std::string& name, const Shape& expected);
    // An uninitialized host tensor for a weight made at load (e.g. quantized from a bound one); a planning
    // binder gives untouched address space instead. planning() tells which: only a real load may fill it.
    Tensor owned(const Shape& shape, DType dtype, const std::string& name);
    bool planning() const { return planning_space_ != nullptr; }

    int64_t parameter_count() const { return parameters_; }
    std::vector<std::string> unused() const { return store_ ? store_->unused_names() : std::vector<std::string>{}; }
    std::string source() const { return store_ ? store_->source() : "random weights"; }

private:
    WeightBinder() = default;
    // Checks name, shape and type against the source; counts the parameters.
    TensorInfo check(const std::string& name, const Shape& expected);
    Tensor make_up(const std::string& name, const Shape& expected, DType dtype);
    Tensor planned(const Shape& shape, DType dtype, DType stored, const std::string& name);
    const TensorSource* store_ = nullptr;  // null: random weights
    Allocator* planning_space_ = nullptr;  // set: a planning binder (with a store, or shapes only)
    std::optional<DType> storage_dtype_;
    uint64_t seed_ = 0;
    int64_t parameters_ = 0;
    std::vector<std::pair<std::string, Tensor>> generated_;
};

// One warning for the tensors a model did not use: "<source>: N tensor(s) not used by <model>: 'a', 'b', ...
// and K more" (the first kShownUnusedTensors names, control characters escaped), not one line per tensor:
// a hostile file with a million extra names must not flood the terminal. The text is what
// unused_tensors_message returns; nothing is logged when `names` is empty.
inline constexpr size_t kShownUnusedTensors = 5;
std::string unused_tensors_message(const std::vector<std::string>& names, std::string_view source,
                                   std::string_view model);
void warn_unused_tensors(const std::vector<std::string>& names, std::string_view source, std::string_view model);

}  // namespace sr
