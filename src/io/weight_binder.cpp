#include "io/weight_binder.h"

#include "core/parallel.h"

namespace sr {

WeightBinder::WeightBinder(const WeightStore& store, std::optional<DType> storage_dtype, Allocator* planning_space)
    : store_(&store), planning_space_(planning_space), storage_dtype_(storage_dtype) {}

WeightBinder WeightBinder::shapes_only(DType stored, Allocator& planning_space) {
    WeightBinder b;
    b.storage_dtype_ = stored;
    b.planning_space_ = &planning_space;
    return b;
}

WeightBinder WeightBinder::random(uint64_t seed, DType dtype) {
    WeightBinder b;
    b.seed_ = seed;
    b.storage_dtype_ = dtype;
    return b;
}

namespace {

uint64_t splitmix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

}  // namespace

Tensor WeightBinder::make_up(const std::string& name, const Shape& expected, DType dtype) {
    uint64_t h = seed_;
    for (char c : name) h = splitmix64(h ^ uint64_t(uint8_t(c)));
    const bool is_norm_weight = name.find("norm") != std::string::npos && name.size() > 7 &&
                                name.compare(name.size() - 7, 7, ".weight") == 0 && expected.rank() == 1;
    const float offset = is_norm_weight ? 1.0f : 0.0f;
    const float half_width = 0.02f * 1.7320508f;  // uniform(-a, a) has standard deviation a / sqrt(3)
    Tensor f = Tensor::empty(expected, DType::F32, host_allocator(), name);
    float* d = f.data<float>();
    const int64_t n = f.numel();
    parallel_for(
        n,
        [&](int64_t i0, int64_t i1) {
            for (int64_t i = i0; i < i1; ++i) {
                const double u = double(splitmix64(h + uint64_t(i)) >> 11) * 0x1.0p-53;  // [0, 1)
                d[i] = offset + half_width * float(2.0 * u - 1.0);
            }
        },
        1 << 16);
    Tensor t = dtype == DType::F32 ? f : f.to(dtype);
    generated_.emplace_back(name, t);
    return t;
}

Tensor WeightBinder::fetch(const std::string& name, const Shape& expected) {
    const WeightStore& store = *store_;
    SR_THROW_IF(!store.contains(name), "{}: missing tensor '{}' (expected shape {})", store.source(), name,
                expected.str());
    const SafetensorsEntry& e = store.entry(name);
    SR_THROW_IF(!(e.shape == expected), "{}: tensor '{}' has shape {} but the config implies {}", store.source(), name,
                e.shape.str(), expected.str());
    SR_THROW_IF(!dtype_is_float(e.dtype) || e.dtype == DType::F8_E4M3,
                "{}: tensor '{}' has dtype {}; expected F32, BF16 or F16", store.source(), name,
                dtype_safetensors_name(e.dtype));
    parameters_ += expected.numel();
    return store.get(name);
}

Tensor WeightBinder::planned(const Shape& shape, DType dtype, DType stored, const std::string& name) {
    Tensor space = Tensor::empty(shape, dtype, *planning_space_, name);
    if (dtype != stored) return space;  // a real load converts it into owned memory
    // A real load keeps a view of the mapped file: plan it as one (an external view), so memory plans tell
    // page-cache weights from owned ones.
    auto keep = std::make_shared<Tensor>(space);
    return Tensor::wrap(keep->raw_data(), shape, dtype, Device::cpu(), std::shared_ptr<const void>(keep, keep.get()));
}

Tensor WeightBinder::tensor(const std::string& name, const Shape& expected) {
    if (planning_space_) {
        if (!store_) {  // shapes only: stored as storage_dtype_
            parameters_ += expected.numel();
            return planned(expected, *storage_dtype_, *storage_dtype_, name);
        }
        const DType stored = fetch(name, expected).dtype();
        return planned(expected, storage_dtype_.value_or(stored), stored, name);
    }
    if (!store_) {
        parameters_ += expected.numel();
        return make_up(name, expected, storage_dtype_.value_or(DType::F32));
    }
    Tensor t = fetch(name, expected);
    if (storage_dtype_ && t.dtype() != *storage_dtype_) return t.to(*storage_dtype_);
    return t;
}

Tensor WeightBinder::small_f32(const std::string& name, const Shape& expected) {
    if (planning_space_) {
        if (!store_) parameters_ += expected.numel();
        return planned(expected, DType::F32, store_ ? fetch(name, expected).dtype() : *storage_dtype_, name);
    }
    if (!store_) {
        parameters_ += expected.numel();
        return make_up(name, expected, DType::F32);
    }
    Tensor t = fetch(name, expected);
    return t.dtype() == DType::F32 ? t : t.to(DType::F32);
}

}  // namespace sr
