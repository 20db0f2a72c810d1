// ref: city96 ComfyUI-GGUF tools/convert.py (which tensors are quantized, kept BF16 or F32), ComfyUI
//      comfy/ops.py (scaled FP8: weight * scale_weight)
#include "models/hunyuan_video_convert.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>

#include "core/parallel.h"
#include "io/gguf.h"
#include "io/safetensors.h"
#include "models/hunyuan_video_checkpoint.h"

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

enum class Kind { F32, BF16, Block };

// city96's rules: what a tensor of this name and shape is written as.
Kind kind_of(const std::string& name, const Shape& shape) {
    if (shape.rank() != 2 || shape.numel() <= 1024) return Kind::F32;  // 1-D, tiny, and the 5-D patch embedding
    const bool block_weight =
        (starts_with(name, "double_blocks.") || starts_with(name, "single_blocks.")) && name.ends_with(".weight");
    return block_weight ? Kind::Block : Kind::BF16;
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
        const Kind kind = kind_of(r.name, values.shape());
        std::string type;
        if (o.format == ConvertFormat::Gguf) {
            GgufTensor t;
            std::optional<QuantType> q = kind == Kind::Block ? o.block_type : std::nullopt;
            if (q && o.qkv_one_higher &&
                (r.name.find("attn_qkv") != std::string::npos || r.name.find("linear1") != std::string::npos))
                q = one_higher(*q);
            if (q && !quant_row_fits(*q, values.dim(-1)))
                q = quant_row_fits(QuantType::Q8_0, values.dim(-1)) ? std::optional(QuantType::Q8_0) : std::nullopt;
            if (q) {
                t = quantized(values, *q);
                type = std::string(quant_info(*q).name);
            } else {
                const DType dt = kind == Kind::F32 ? DType::F32 : DType::BF16;
                t = {values.to(dt), std::nullopt, values.shape()};
                type = std::string(dtype_safetensors_name(dt));
            }
            report.bytes_out += t.data.nbytes();
            gguf.emplace_back(r.name, std::move(t));
        } else if (kind == Kind::Block) {
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
            type = "F8_E4M3 (scaled)";
        } else {
            const DType dt = kind == Kind::F32 ? DType::F32 : DType::BF16;
            safetensors.emplace_back(r.name, values.to(dt));
            report.bytes_out += safetensors.back().second.nbytes();
            type = std::string(dtype_safetensors_name(dt));
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
