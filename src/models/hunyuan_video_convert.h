// `skyreels convert`: any transformer checkpoint the engine loads (models/hunyuan_video_checkpoint.h) written
// as a GGUF file (Q8_0, Q6_K, Q5_K, Q4_K, Q4_0, ... or BF16) or as ComfyUI's scaled FP8 safetensors, both in
// the original HunyuanVideo names that ComfyUI, ComfyUI-GGUF and this engine read. No SkyReels-V1 T2V GGUF is
// published anywhere; this makes one.
//
// Which tensor gets which type follows city96's ComfyUI-GGUF tools/convert.py: only the 2-D weights of the
// double and single blocks are quantized; the embedders, the token refiner and the final layer stay BF16;
// 1-D tensors, tensors of at most 1024 values and the 5-D patch embedding stay F32. A block weight whose rows
// are not a whole number of the type's blocks falls back to Q8_0 (32-value blocks) or BF16. With
// `qkv_one_higher` (the "_M" variants) the fused q,k,v weights take the next better type.
//
// The file is written to "<out>.tmp" and renamed when complete, so a crashed or interrupted conversion never
// leaves a file posing as a finished one.
//
//   sr::ConvertOptions o{.output = "skyreels_t2v_Q4_K.gguf", .format = sr::ConvertFormat::Gguf,
//                        .block_type = sr::QuantType::Q4_K};
//   sr::ConvertReport r = sr::convert_transformer("SkyReels-V1-Hunyuan-T2V", o, progress);
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "core/quant.h"
#include "io/tensor_source.h"
#include "models/hunyuan_video_config.h"

namespace sr {

enum class ConvertFormat { Gguf, ScaledFp8 };

struct ConvertOptions {
    std::string output;
    ConvertFormat format = ConvertFormat::Gguf;
    std::optional<QuantType> block_type;  // GGUF: the block weights' type; nullopt: BF16
    bool qkv_one_higher = false;          // GGUF: the fused q,k,v weights one type better
};

struct ConvertReport {
    int tensors = 0;
    size_t bytes_in = 0, bytes_out = 0;  // stored bytes read, tensor bytes written
    std::map<std::string, int> by_type;  // tensors written per storage type ("Q4_K", "BF16", ...)
};

// The storage one tensor of the original layout gets in a conversion: a block type, or a dtype (F32, BF16,
// or F8_E4M3 for scaled FP8).
struct ConvertedType {
    std::optional<QuantType> block;
    DType dtype = DType::F32;
    std::string name() const;
};
ConvertedType converted_type(const std::string& original_name, const Shape& shape, const ConvertOptions& options);

// What a load of the conversion of a transformer with `config` would bind, without the file: every tensor
// under diffusers' names with the shape and storage the converted file would give it, and no data (for
// memory plans: a planning WeightBinder reads only info()). A bf16 checkpoint is ConvertFormat::Gguf without
// a block type.
std::unique_ptr<TensorSource> planned_conversion(const HunyuanVideoConfig& config, const ConvertOptions& options);

// Progress: (tensors done, tensors in all).
using ConvertProgress = std::function<void(int done, int total)>;

// Throws InputError naming the file or tensor at fault (nothing is left at `output` then).
ConvertReport convert_transformer(const std::string& model, const ConvertOptions& options,
                                  const ConvertProgress& progress = {});

}  // namespace sr
