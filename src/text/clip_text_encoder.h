// The CLIP ViT-L/14 text tower of HunyuanVideo (transformers CLIPTextModel): token + learned position
// embeddings, pre-LayerNorm causal transformer with quick-GELU MLPs, final LayerNorm, and the pooled output
// at the end-of-text position. The pipeline uses only pooler_output.
// ref: transformers v4.46.3 src/transformers/models/clip/modeling_clip.py (CLIPTextTransformer)
//
//   auto clip = sr::ClipTextEncoder::load("HunyuanVideo/text_encoder_2");
//   sr::ClipTextOutput out = clip.forward(sr::cpu_backend(), ids);   // ids [B, 77]
//   out.pooler_output;                                                // [B, hidden]
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "backends/backend.h"
#include "io/json.h"
#include "io/weight_binder.h"
#include "text/llama_text_encoder.h"

namespace sr {

// config.json of a CLIPTextModel (model_type clip_text_model), upstream field names.
struct ClipTextConfig {
    int64_t vocab_size = 49408;
    int64_t hidden_size = 768;
    int64_t intermediate_size = 3072;
    int64_t num_hidden_layers = 12;
    int64_t num_attention_heads = 12;
    int64_t max_position_embeddings = 77;
    std::string hidden_act = "quick_gelu";
    double layer_norm_eps = 1e-5;
    int64_t eos_token_id = 2;  // 2 selects transformers' legacy pooling rule (argmax of the ids)

    static ClipTextConfig from_json(const Json& j, std::string_view source);
    void validate(std::string_view source) const;
};

struct ClipTextOutput {
    Tensor last_hidden_state;               // [B, L, hidden]
    Tensor pooler_output;                   // [B, hidden]
    std::vector<int64_t> pooled_positions;  // the position pooled in each row
};

class ClipTextEncoder {
public:
    // `path`: a folder with config.json and safetensors (names "text_model.*"). Throws InputError.
    static ClipTextEncoder load(const std::string& path, std::optional<DType> weight_dtype = std::nullopt);
    ClipTextEncoder(const ClipTextConfig& config, WeightBinder& binder);

    const ClipTextConfig& config() const { return config_; }

    // CLIPTextModel(input_ids [B, L] I32/I64, L <= max_position_embeddings), no attention mask (as the
    // pipeline calls it; the causal mask alone). Hidden states go to `hook` as "hidden_states.i" (0 =
    // embeddings, i = layer i-1's output before the final norm), then "last_hidden_state", "pooler_output".
    ClipTextOutput forward(Backend& backend, const Tensor& ids, const TextIntermediateHook& hook = {}) const;

private:
    struct Layer {
        Tensor layer_norm1_weight, layer_norm1_bias, layer_norm2_weight, layer_norm2_bias;
        Linear q_proj, k_proj, v_proj, out_proj, fc1, fc2;
    };

    ClipTextConfig config_;
    Tensor token_embedding_;     // [vocab, hidden]
    Tensor position_embedding_;  // [max_positions, hidden]
    std::vector<Layer> layers_;
    Tensor final_norm_weight_, final_norm_bias_;
};

}  // namespace sr
