// LoRA adapter files for HunyuanVideo / SkyReels-V1 transformers, read by content and mapped onto the
// transformer's linear layers (diffusers' names). Three naming conventions:
//   diffusers / PEFT   "transformer.<diffusers module>.lora_A.weight" / ".lora_B.weight" (also without the
//                      "transformer." prefix, or PEFT's "base_model.model."), alpha from a "<module>.alpha"
//                      tensor or the file's metadata ("lora_alpha", or JSON "lora_adapter_metadata");
//   kohya / musubi     "lora_unet_<original name, '.' as '_'>.lora_down.weight" / ".lora_up.weight" / ".alpha",
//                      targeting the original fused layers (img_attn_qkv, linear1, ...);
//   ComfyUI            "diffusion_model.<original name>.lora_A.weight" / ".lora_B.weight" (or lora_down/up).
// Scale = strength x alpha / rank (alpha = rank when absent). An adapter on a fused original layer becomes one
// adapter per diffusers layer it holds: the same down matrix, the up matrix's rows of that layer (exact); on
// final_layer.adaLN_modulation.1 the up matrix's halves are swapped as the weight's are.
//
//   std::vector<sr::LoraFile> files = {sr::parse_lora_argument("style.safetensors:0.8")};
//   sr::LoraSet set = sr::read_hunyuan_video_loras(files, config, linears, /*ignore_unmatched=*/false);
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "models/hunyuan_video_config.h"
#include "nn/lora.h"

namespace sr {

struct LoraFile {
    std::string path;
    float strength = 1.0f;
};

// What a load applies: the files in order, how, and whether keys that match no layer are only a warning.
struct LoraOptions {
    std::vector<LoraFile> files;
    LoraMode mode = LoraMode::Auto;
    bool ignore_unmatched = false;
};

// "FILE[:STRENGTH]" (the strength after the last ':' when it parses as a finite number; 1 otherwise).
LoraFile parse_lora_argument(const std::string& text);

// The naming convention a LoRA file's keys follow: "diffusers", "kohya", "comfyui"; InputError listing a few
// keys when none fits.
std::string detect_lora_convention(const std::vector<std::string>& keys, const std::string& source);

// Reads every file onto `linears` (the transformer's linear layers: name -> [out, in], nn/weight_visitor.h's
// ListLinears). InputError naming the file and key for a hostile file (a missing half, ranks or shapes that do
// not fit, non-finite values, an unreadable alpha) and, unless `ignore_unmatched` (then a warning with the
// count), for keys that match no layer (listed).
LoraSet read_hunyuan_video_loras(const LoraOptions& options, const HunyuanVideoConfig& config,
                                 const std::map<std::string, std::pair<int64_t, int64_t>>& linears);

}  // namespace sr
