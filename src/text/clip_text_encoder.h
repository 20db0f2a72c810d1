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
#include "nn/linear.h"
#include "nn/weight_blocks.h"
#include "nn/weight_visitor.h"
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
    // `planning_space`: bind every weight to this address space and read none (memory planning).
    static ClipTextEncoder load(const std::string& path, std::optional<DType> weight_dtype = std::nullopt,
                                Allocator* planning_space = nullptr);
    ClipTextEncoder(const ClipTextConfig& config, WeightBinder& binder);

    const ClipTextConfig& config() const { return config_; }
    int64_t parameter_count() const { return parameter_count_; }

    // CLIPTextModel(input_ids [B, L] I32/I64, L <= max_position_embeddings), no attention mask (as the
    // pipeline calls it; the causal mask alone). Hidden states go to `hook` as "hidden_states.i" (0 =
    // embeddings, i = layer i-1's output before the final norm), then "last_hidden_state", "pooler_output"
    // (host tensors). The outputs are in the backend's memory.
    // With a provider, each block's weights come from it (acquired just before the block runs, released
    // right after); without one, from the checkpoint as loaded.
    ClipTextOutput forward(Backend& backend, const Tensor& ids, const TextIntermediateHook& hook = {},
                           BlockWeightProvider* weights = nullptr) const;

    // Weight blocks in execution order: 0 "clip.embeddings" (token and position tables), 1..n
    // "clip.layers.{i}" (encoder layer i, as block i + 1), n + 1 "clip.final_layer_norm".
    // Each with its tensors in the order the model declares them.
    size_t weight_block_count() const { return layers_.size() + 2; }
    WeightBlock weight_block(size_t block) const;
    std::vector<WeightBlock> weight_blocks() const;
    std::vector<Tensor> weight_block_tensors(size_t block) const { return weight_block(block).tensors; }
    // The blocks a forward acquires, in order: all of them (every layer runs; the pooled output needs the
    // final norm).
    std::vector<size_t> blocks_used() const;

private:
    struct Embeddings {             // block 0
        Tensor token_embedding;     // [vocab, hidden]
        Tensor position_embedding;  // [max_positions, hidden]
    };
    struct Layer {
        Tensor layer_norm1_weight, layer_norm1_bias, layer_norm2_weight, layer_norm2_bias;
        Linear q_proj, k_proj, v_proj, out_proj, fc1, fc2;
    };
    struct FinalNorm {  // the last block
        Tensor weight, bias;
    };
    // Every weight of weight block `block`, declared once (nn/weight_visitor.h).
    void declare(WeightVisitor& v, Embeddings& e, size_t block) const;
    void declare(WeightVisitor& v, Layer& l, size_t block) const;
    void declare(WeightVisitor& v, FinalNorm& n, size_t block) const;
    // f(block struct, block name) for weight block i: the one list of blocks.
    template <class Self, class F>
    static void with_block(Self& self, size_t i, F&& f);
    // Block `index`'s struct viewing `tensors` (a provider's acquire()) instead of the loaded weights.
    template <class Block>
    Block rebind(const Block& block, const std::vector<Tensor>& tensors, size_t index) const;

    ClipTextConfig config_;
    int64_t parameter_count_ = 0;
    Embeddings embeddings_;
    std::vector<Layer> layers_;
    FinalNorm final_norm_;
};

}  // namespace sr
