// Where a model's weights come from, whatever the file: a named set of stored tensors. A safetensors
// checkpoint (io/safetensors.h), a GGUF file (io/gguf.h) and a layout adapter that presents another
// naming (models/hunyuan_video_checkpoint.h: the original HunyuanVideo names under diffusers' names) all
// implement it, and WeightBinder binds from any of them.
//
// A stored tensor keeps its storage: a float tensor (F32, BF16, F16) as mapped; FP8 e4m3 codes with an
// optional scale (ComfyUI's scaled FP8: `weight * scale`, the product rounded to the scale's dtype); or a
// block-quantized matrix (GGUF types, core/quant.h) as its raw rows. Nothing is dequantized here.
//
//   const sr::WeightStore store = sr::WeightStore::open("model.safetensors");
//   const sr::TensorSource& source = store;
//   sr::StoredTensor w = source.stored("transformer_blocks.0.attn.to_q.weight");   // marks it used
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/quant.h"
#include "core/tensor.h"

namespace sr {

// What a stored tensor is, without reading its data.
struct TensorInfo {
    Shape shape;                     // logical shape, outermost first
    DType dtype = DType::F32;        // F32, BF16, F16, F8_E4M3; for block types the container (Bool bytes)
    std::optional<QuantType> block;  // block-quantized (GGUF)
    bool scaled = false;             // FP8 with a scale tensor
    // The dtype a float view of it has, or would have once dequantized: what the binder reports in errors.
    std::string type_name() const;
};

struct StoredTensor {
    TensorInfo info;
    // Float and FP8 tensors: [shape]. Block types: the rows' bytes, [rows, row_bytes] Bool, where rows is the
    // product of every dimension but the innermost.
    Tensor data;
    Tensor scale;  // scaled FP8: [1] or one per row ([rows]), any float dtype; otherwise undefined
};

// Bytes the tensor occupies in its storage (a block type's rows, FP8 codes without their scale).
size_t stored_bytes(const TensorInfo& info);

// `t` as f32 on the host: float types converted, FP8 times its scale, block types dequantized.
Tensor dequantize_to_f32(const StoredTensor& t);

class TensorSource {
public:
    virtual ~TensorSource() = default;
    // The file or folder, for error messages.
    virtual const std::string& source() const = 0;
    virtual bool contains(std::string_view name) const = 0;
    // InputError naming the tensor and the source when absent.
    virtual TensorInfo info(std::string_view name) const = 0;
    // The tensor in its storage (and marks it used).
    virtual StoredTensor stored(std::string_view name) const = 0;
    virtual std::vector<std::string> names() const = 0;
    // Names never fetched: extra tensors the model did not expect.
    virtual std::vector<std::string> unused_names() const = 0;
    // A string the file carries beside its tensors (safetensors' __metadata__, a GGUF string key), if any.
    virtual std::optional<std::string> metadata(std::string_view key) const {
        (void)key;
        return std::nullopt;
    }
};

}  // namespace sr
