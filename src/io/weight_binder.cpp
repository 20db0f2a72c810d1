#include "io/weight_binder.h"

#include <algorithm>

#include "core/files.h"
#include "core/log.h"
#include "core/parallel.h"

namespace sr {

WeightBinder::WeightBinder(const TensorSource& store, std::optional<DType> storage_dtype, Allocator* planning_space)
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

TensorInfo WeightBinder::check(const std::string& name, const Shape& expected) {
    const TensorSource& store = *store_;
    SR_THROW_IF(!store.contains(name), "{}: missing tensor '{}' (expected shape {})", store.source(), name,
                expected.str());
    const TensorInfo info = store.info(name);
    SR_THROW_IF(!(info.shape == expected), "{}: tensor '{}' has shape {} but the config implies {}", store.source(),
                name, info.shape.str(), expected.str());
    SR_THROW_IF(!info.block && !dtype_is_float(info.dtype),
                "{}: tensor '{}' has dtype {}; expected F32, BF16, F16, F8_E4M3 or a GGUF block type", store.source(),
                name, dtype_safetensors_name(info.dtype));
    parameters_ += expected.numel();
    return info;
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
        const TensorInfo info = check(name, expected);
        const bool as_stored = !info.block && info.dtype != DType::F8_E4M3 && !info.scaled;
        const DType stored = as_stored ? info.dtype : DType::F32;
        return planned(expected, storage_dtype_.value_or(stored), as_stored ? stored : DType::Bool, name);
    }
    if (!store_) {
        parameters_ += expected.numel();
        return make_up(name, expected, storage_dtype_.value_or(DType::F32));
    }
    check(name, expected);
    const StoredTensor st = store_->stored(name);
    if (st.info.block || st.info.dtype == DType::F8_E4M3) {
        const Tensor f = dequantize_to_f32(st);
        return storage_dtype_ && *storage_dtype_ != DType::F32 ? f.to(*storage_dtype_) : f;
    }
    if (storage_dtype_ && st.data.dtype() != *storage_dtype_) return st.data.to(*storage_dtype_);
    return st.data;
}

Tensor WeightBinder::small_f32(const std::string& name, const Shape& expected) {
    if (planning_space_) {
        if (!store_) parameters_ += expected.numel();
        const DType stored = store_ ? check(name, expected).dtype : *storage_dtype_;
        return planned(expected, DType::F32, stored, name);
    }
    if (!store_) {
        parameters_ += expected.numel();
        return make_up(name, expected, DType::F32);
    }
    check(name, expected);
    const StoredTensor st = store_->stored(name);
    if (st.data.dtype() == DType::F32 && !st.info.block && !st.info.scaled) return st.data;
    return dequantize_to_f32(st);
}

Tensor WeightBinder::owned(const Shape& shape, DType dtype, const std::string& name) {
    return Tensor::empty(shape, dtype, planning_space_ ? *planning_space_ : host_allocator(), name);
}

StoredTensor WeightBinder::matrix(const std::string& name, const Shape& expected) {
    auto quantized = [](const TensorInfo& i) { return i.block || i.dtype == DType::F8_E4M3; };
    if (!store_ || !store_->contains(name) || !quantized(store_->info(name))) {
        const Tensor t = tensor(name, expected);  // checks (a missing tensor is named there), counts, converts
        return {{expected, t.dtype(), std::nullopt, false}, t, Tensor()};
    }
    const TensorInfo info = check(name, expected);
    if (!planning_space_) return store_->stored(name);
    // A plan holds a quantized matrix's stored bytes, as a view of the file.
    const int64_t cols = expected[expected.rank() - 1], rows = expected.numel() / std::max<int64_t>(cols, 1);
    StoredTensor st{info, Tensor(), Tensor()};
    st.data = info.block ? planned({rows, int64_t(quant_row_bytes(*info.block, cols))}, DType::Bool, DType::Bool, name)
                         : planned(expected, DType::F8_E4M3, DType::F8_E4M3, name);
    if (info.scaled) st.scale = planned({rows}, DType::F32, DType::F32, name + " scale");
    return st;
}

std::string unused_tensors_message(const std::vector<std::string>& names, std::string_view source,
                                   std::string_view model) {
    std::string list;
    for (size_t i = 0; i < std::min(names.size(), kShownUnusedTensors); ++i)
        list += fmt::format("{}'{}'", i ? ", " : "", printable(names[i]));
    if (names.size() > kShownUnusedTensors) list += fmt::format(" and {} more", names.size() - kShownUnusedTensors);
    return fmt::format("{}: {} unexpected tensor{} not used by {}: {}", source, names.size(),
                       names.size() == 1 ? " is" : "s are", model, list);
}

void warn_unused_tensors(const std::vector<std::string>& names, std::string_view source, std::string_view model) {
    if (!names.empty()) SR_LOG_WARN("{}", unused_tensors_message(names, source, model));
}

}  // namespace sr
