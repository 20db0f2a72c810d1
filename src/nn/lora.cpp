#include "nn/lora.h"

#include <cstring>

#include "core/dtype.h"
#include "core/error.h"
#include "core/parallel.h"

namespace sr {

const char* lora_mode_name(LoraMode mode) {
    switch (mode) {
        case LoraMode::Auto:
            return "auto";
        case LoraMode::Merge:
            return "merge";
        case LoraMode::Runtime:
            return "runtime";
    }
    return "?";
}

LoraMode parse_lora_mode(const std::string& text) {
    if (text == "auto") return LoraMode::Auto;
    if (text == "merge") return LoraMode::Merge;
    if (text == "runtime") return LoraMode::Runtime;
    SR_THROW("--lora-mode '{}': expected auto, merge or runtime", text);
}

const std::vector<LoraDelta>* LoraSet::take(const std::string& module) const {
    auto it = by_module_.find(module);
    if (it == by_module_.end()) return nullptr;
    applied_.insert(module);
    return &it->second;
}

const std::vector<LoraDelta>* LoraSet::find(const std::string& module) const {
    auto it = by_module_.find(module);
    return it == by_module_.end() ? nullptr : &it->second;
}

void LoraSet::append(const LoraSet& other) {
    for (const auto& [name, deltas] : other.by_module_)
        for (const LoraDelta& d : deltas) by_module_[name].push_back(d);
}

LoraSet LoraSet::on_backend(Backend& backend) const {
    LoraSet out;
    out.mode = mode;
    for (const auto& [name, deltas] : by_module_)
        for (const LoraDelta& d : deltas)
            out.add(name, {to_device(backend, d.down, name + ".lora_down"), to_device(backend, d.up, name + ".lora_up"),
                           d.origin});
    return out;
}

std::vector<std::string> LoraSet::unapplied() const {
    std::vector<std::string> out;
    for (const auto& [name, deltas] : by_module_)
        if (!applied_.count(name)) out.push_back(name);
    return out;
}

size_t LoraSet::bytes() const {
    size_t n = 0;
    for (const auto& [name, deltas] : by_module_)
        for (const LoraDelta& d : deltas) n += d.down.nbytes() + d.up.nbytes();
    return n;
}

void add_low_rank(float* w, int64_t out, int64_t in, const Tensor& up, const Tensor& down) {
    const int64_t r = down.dim(0);
    SR_ASSERT(up.dim(0) == out && up.dim(1) == r && down.dim(1) == in, "low-rank shapes {} x {} onto [{}, {}]",
              up.describe(), down.describe(), out, in);
    const float* u = up.data<float>();
    const float* d = down.data<float>();
    parallel_for(out, [&](int64_t o0, int64_t o1) {
        for (int64_t o = o0; o < o1; ++o) {
            float* row = w + o * in;
            for (int64_t k = 0; k < r; ++k) {
                const float uk = u[o * r + k];
                const float* dk = d + k * in;
                for (int64_t i = 0; i < in; ++i) row[i] += uk * dk[i];
            }
        }
    });
}

void apply_lora(Linear& l, const std::string& name, const std::vector<LoraDelta>& deltas, LoraMode mode,
                WeightBinder& binder) {
    LinearWeight& w = l.weight;
    for (const LoraDelta& d : deltas)
        SR_ASSERT(d.down.dim(1) == w.in && d.up.dim(0) == w.out, "{}: adapter from {} is [{}, {}] onto [{}, {}]", name,
                  d.origin, d.up.dim(0), d.down.dim(1), w.out, w.in);
    if (mode == LoraMode::Auto)
        mode = w.format == WeightFormat::Dense && !w.data.is_external_view() ? LoraMode::Merge : LoraMode::Runtime;
    if (mode == LoraMode::Runtime) {
        for (const LoraDelta& d : deltas) {
            if (binder.planning()) {
                l.adapters.push_back({binder.owned(d.down.shape(), DType::F32, name + ".lora_down"),
                                      binder.owned(d.up.shape(), DType::F32, name + ".lora_up")});
            } else {
                l.adapters.push_back({d.down, d.up});
            }
        }
        return;
    }
    SR_THROW_IF(w.format != WeightFormat::Dense,
                "{}: --lora-mode merge needs a dense weight, but it is stored as {} (use --lora-mode runtime, or "
                "auto)",
                name, w.storage_name());
    const DType dtype = w.data.dtype();
    SR_THROW_IF(dtype != DType::F32 && dtype != DType::BF16 && dtype != DType::F16,
                "{}: cannot merge a LoRA into a {} weight", name, dtype_name(dtype));
    Tensor merged = binder.owned({w.out, w.in}, dtype, name + ".weight (LoRA merged)");
    if (!binder.planning()) {
        Tensor f = w.data.to(DType::F32).contiguous();
        if (f.raw_data() == w.data.raw_data()) f = f.clone();  // never write into the mapped file's view
        for (const LoraDelta& d : deltas) add_low_rank(f.data<float>(), w.out, w.in, d.up, d.down);
        if (dtype == DType::F32) {
            merged = f;
        } else {
            Tensor back = f.to(dtype);
            std::memcpy(merged.raw_data(), back.raw_data(), back.nbytes());
        }
    }
    w.data = merged;
}

}  // namespace sr
