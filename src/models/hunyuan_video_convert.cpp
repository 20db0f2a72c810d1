// ref: city96 ComfyUI-GGUF tools/convert.py (which tensors are quantized, kept BF16 or F32), ComfyUI
//      comfy/ops.py (scaled FP8: weight * scale_weight)
#include "models/hunyuan_video_convert.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>

#include "core/parallel.h"
#include "core/virtual_allocator.h"
#include "io/gguf.h"
#include "io/safetensors.h"
#include "models/hunyuan_video_checkpoint.h"
#include "models/hunyuan_video_transformer.h"

namespace sr {

namespace fs = std::filesystem;

namespace {

bool starts_with(std::string_view s, std::string_view p) {
    return s.substr(0, p.size()) == p;
}

// The next better type, for the "_M" variants' q,k,v weights.
QuantType one_higher(QuantType t) {
    switch (t) {
        case QuantType::Q3_K:
            return QuantType::Q4_K;
        case QuantType::Q4_0:
            return QuantType::Q4_1;
        case QuantType::Q4_1:
            return QuantType::Q5_0;
        case QuantType::Q5_0:
            return QuantType::Q5_1;
        case QuantType::Q4_K:
            return QuantType::Q5_K;
        case QuantType::Q5_K:
            return QuantType::Q6_K;
        default:
            return QuantType::Q8_0;
    }
}

// The recipe's tensor as f32: its parts dequantized and stacked by rows, halves swapped when it says so.
Tensor gather(const TensorSource& src, const OriginalTensorRecipe& r) {
    std::vector<Tensor> parts;
    int64_t rows = 0;
    for (const std::string& p : r.parts) {
        parts.push_back(dequantize_to_f32(src.stored(p)));
        rows += parts.back().dim(0);
    }
    Shape shape = parts[0].shape();
    shape[0] = rows;
    for (const Tensor& p : parts) {
        Shape s = p.shape();
        s[0] = rows;
        SR_THROW_IF(!(s == shape), "{}: the parts of '{}' differ in shape ({} vs {})", src.source(), r.name,
                    p.describe(), parts[0].describe());
    }
    Tensor out = Tensor::empty(shape, DType::F32, host_allocator(), r.name);
    int64_t at = 0;
    for (const Tensor& p : parts) {
        Tensor dst = out.slice(0, at, at + p.dim(0));
        dst.copy_from(p);
        at += p.dim(0);
    }
    if (r.swap_halves) {
        SR_THROW_IF(rows % 2 != 0, "{}: '{}' has an odd number of rows to swap", src.source(), r.name);
        const Tensor copy = out.clone();
        Tensor lo = out.slice(0, 0, rows / 2), hi = out.slice(0, rows / 2, rows);
        lo.copy_from(copy.slice(0, rows / 2, rows));
        hi.copy_from(copy.slice(0, 0, rows / 2));
    }
    return out;
}

GgufTensor quantized(const Tensor& values, QuantType type) {
    const int64_t cols = values.dim(-1), rows = values.numel() / cols;
    const size_t row_bytes = quant_row_bytes(type, cols);
    GgufTensor out{Tensor::empty({rows, int64_t(row_bytes)}, DType::Bool), type, values.shape()};
    auto* dst = static_cast<uint8_t*>(out.data.raw_data());
    const float* src = values.data<float>();
    parallel_for(rows, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) quantize_row(type, src + r * cols, dst + size_t(r) * row_bytes, cols);
    });
    return out;
}

}  // namespace

std::string ConvertedType::name() const {
    if (block) return std::string(quant_info(*block).name);
    return dtype == DType::F8_E4M3 ? "F8_E4M3 (scaled)" : std::string(dtype_safetensors_name(dtype));
}

ConvertedType converted_type(const std::string& name, const Shape& shape, const ConvertOptions& o) {
    // city96's rules: 1-D, tiny, and the 5-D patch embedding F32; the blocks' 2-D weights quantized; the rest
    // BF16.
    if (shape.rank() != 2 || shape.numel() <= 1024) return {std::nullopt, DType::F32};
    const bool block_weight =
        (starts_with(name, "double_blocks.") || starts_with(name, "single_blocks.")) && name.ends_with(".weight");
    if (!block_weight) return {std::nullopt, DType::BF16};
    if (o.format == ConvertFormat::ScaledFp8) return {std::nullopt, DType::F8_E4M3};
    std::optional<QuantType> q = o.block_type;
    if (q && o.qkv_one_higher &&
        (name.find("attn_qkv") != std::string::npos || name.find("linear1") != std::string::npos))
        q = one_higher(*q);
    if (q && !quant_row_fits(*q, shape[1]))
        q = quant_row_fits(QuantType::Q8_0, shape[1]) ? std::optional(QuantType::Q8_0) : std::nullopt;
    return {q, DType::BF16};
}

namespace {

// The converted file's tensors under diffusers' names, shapes and storage only.
class PlannedConversion final : public TensorSource {
public:
    explicit PlannedConversion(std::map<std::string, TensorInfo, std::less<>> infos) : infos_(std::move(infos)) {}
    const std::string& source() const override { return source_; }
    bool contains(std::string_view name) const override { return infos_.find(name) != infos_.end(); }
    TensorInfo info(std::string_view name) const override {
        const auto it = infos_.find(name);
        SR_THROW_IF(it == infos_.end(), "{}: missing tensor '{}'", source_, name);
        return it->second;
    }
    StoredTensor stored(std::string_view name) const override {
        throw Error(fmt::format("{}: '{}' has no data (a plan binds shapes only)", source_, name));
    }
    std::vector<std::string> names() const override {
        std::vector<std::string> out;
        for (const auto& [k, v] : infos_) out.push_back(k);
        return out;
    }
    std::vector<std::string> unused_names() const override { return {}; }

private:
    std::map<std::string, TensorInfo, std::less<>> infos_;
    std::string source_ = "planned conversion";
};

}  // namespace

std::unique_ptr<TensorSource> planned_conversion(const HunyuanVideoConfig& config, const ConvertOptions& o) {
    // The diffusers names and shapes, from the model's own declaration bound to address space.
    VirtualAllocator space("conversion shapes");
    WeightBinder binder = WeightBinder::shapes_only(DType::BF16, space);
    const HunyuanVideoTransformer model(config, binder);
    std::map<std::string, Shape> shapes;
    for (size_t b = 0; b < model.weight_block_count(); ++b) {
        const WeightBlock block = model.weight_block(b);
        for (size_t i = 0; i < block.tensors.size(); ++i) shapes[block.tensor_names[i]] = block.tensors[i].shape();
    }
    std::map<std::string, TensorInfo, std::less<>> infos;
    for (const OriginalTensorRecipe& r : original_hunyuan_recipes(config)) {
        Shape shape = shapes.at(r.parts[0]);
        for (size_t i = 1; i < r.parts.size(); ++i) shape[0] += shapes.at(r.parts[i])[0];
        const ConvertedType t = converted_type(r.name, shape, o);
        for (const std::string& p : r.parts)
            infos[p] = {shapes.at(p), t.block ? DType::Bool : t.dtype, t.block, t.dtype == DType::F8_E4M3};
    }
    return std::make_unique<PlannedConversion>(std::move(infos));
}

ConvertReport convert_transformer(const std::string& model, const ConvertOptions& o, const ConvertProgress& progress) {
    SR_THROW_IF(o.output.empty(), "convert: no output file given");
    std::error_code ec;
    SR_THROW_IF(fs::is_directory(o.output, ec), "{}: is a folder, not a file name", o.output);
    SR_THROW_IF(o.format == ConvertFormat::ScaledFp8 && o.block_type, "convert: a block type is for GGUF output");
    const TransformerCheckpoint ckpt = open_transformer_checkpoint(model);
    const TensorSource& src = *ckpt.source;
    const std::vector<OriginalTensorRecipe> recipes = original_hunyuan_recipes(ckpt.config);
    for (const OriginalTensorRecipe& r : recipes)
        for (const std::string& p : r.parts)
            SR_THROW_IF(!src.contains(p), "{}: missing tensor '{}' (for '{}')", src.source(), p, r.name);

    ConvertReport report;
    std::vector<std::pair<std::string, GgufTensor>> gguf;
    std::vector<std::pair<std::string, Tensor>> safetensors;
    const int total = int(recipes.size());
    if (progress) progress(0, total);
    for (const OriginalTensorRecipe& r : recipes) {
        for (const std::string& p : r.parts) report.bytes_in += stored_bytes(src.info(p));
        const Tensor values = gather(src, r);
        const ConvertedType t = converted_type(r.name, values.shape(), o);
        const std::string type = t.name();
        if (o.format == ConvertFormat::Gguf) {
            GgufTensor g =
                t.block ? quantized(values, *t.block) : GgufTensor{values.to(t.dtype), std::nullopt, values.shape()};
            report.bytes_out += g.data.nbytes();
            gguf.emplace_back(r.name, std::move(g));
        } else if (t.dtype == DType::F8_E4M3) {
            // ComfyUI's scaled FP8: one f32 scale per tensor, amax / 448 (e4m3's largest value), codes rounded
            // to nearest even; a forward uses code * scale.
            float amax = 0;
            for (int64_t i = 0; i < values.numel(); ++i) amax = std::max(amax, std::fabs(values.data<float>()[i]));
            const float scale = amax > 0 ? amax / 448.0f : 1.0f;
            Tensor scaled = values.clone();
            for (int64_t i = 0; i < scaled.numel(); ++i) scaled.data<float>()[i] /= scale;
            const std::string base = r.name.substr(0, r.name.size() - 7);  // without ".weight"
            safetensors.emplace_back(r.name, scaled.to(DType::F8_E4M3));
            safetensors.emplace_back(base + ".scale_weight", Tensor::from_vector({scale}, {1}));
            report.bytes_out += size_t(values.numel()) + 4;
        } else {
            safetensors.emplace_back(r.name, values.to(t.dtype));
            report.bytes_out += safetensors.back().second.nbytes();
        }
        ++report.by_type[type];
        ++report.tensors;
        if (progress) progress(report.tensors, total);
    }
    if (o.format == ConvertFormat::Gguf) {
        GgufMetadata meta;
        meta.emplace_back("general.architecture", GgufValue::string("hyvid"));
        meta.emplace_back("general.quantization_version", GgufValue::scalar<uint32_t>(2));
        meta.emplace_back("general.name", GgufValue::string(fs::path(o.output).stem().string()));
        meta.emplace_back("skyreels.converted_from", GgufValue::string(src.source()));
        meta.emplace_back(kTransformerConfigKey, GgufValue::string(ckpt.config.to_json().dump()));
        write_gguf(o.output, meta, gguf);
    } else {
        safetensors.emplace_back("scaled_fp8", Tensor::empty({0}, DType::F8_E4M3));  // ComfyUI's format marker
        write_safetensors(o.output, safetensors,
                          {{"format", "pt"},
                           {"skyreels.converted_from", src.source()},
                           {kTransformerConfigKey, ckpt.config.to_json().dump()}});
    }
    return report;
}

}  // namespace sr
