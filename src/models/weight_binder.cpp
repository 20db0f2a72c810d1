#include "models/weight_binder.h"

namespace sr {

WeightBinder::WeightBinder(const WeightStore& store, std::optional<DType> storage_dtype)
    : store_(store), storage_dtype_(storage_dtype) {}

Tensor WeightBinder::fetch(const std::string& name, const Shape& expected) {
    SR_THROW_IF(!store_.contains(name), "{}: missing tensor '{}' (expected shape {})", store_.source(), name,
                expected.str());
    const SafetensorsEntry& e = store_.entry(name);
    SR_THROW_IF(!(e.shape == expected), "{}: tensor '{}' has shape {} but the config implies {}", store_.source(), name,
                e.shape.str(), expected.str());
    SR_THROW_IF(!dtype_is_float(e.dtype) || e.dtype == DType::F8_E4M3,
                "{}: tensor '{}' has dtype {}; expected F32, BF16 or F16", store_.source(), name,
                dtype_safetensors_name(e.dtype));
    parameters_ += expected.numel();
    return store_.get(name);
}

Tensor WeightBinder::tensor(const std::string& name, const Shape& expected) {
    Tensor t = fetch(name, expected);
    if (storage_dtype_ && t.dtype() != *storage_dtype_) return t.to(*storage_dtype_);
    return t;
}

Tensor WeightBinder::small_f32(const std::string& name, const Shape& expected) {
    Tensor t = fetch(name, expected);
    return t.dtype() == DType::F32 ? t : t.to(DType::F32);
}

Linear bind_linear(WeightBinder& binder, const std::string& prefix, int64_t in, int64_t out, bool has_bias) {
    Linear l;
    l.weight = binder.tensor(prefix + ".weight", {out, in});
    if (has_bias) l.bias = binder.small_f32(prefix + ".bias", {out});
    return l;
}

}  // namespace sr
