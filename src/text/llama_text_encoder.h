// The Llama-3 text encoder of HunyuanVideo (transformers LlamaModel: RMSNorm, grouped-query attention with
// rotate-half RoPE, SwiGLU MLP), returning any requested hidden state with the padding mask honoured.
// Weights stay memory-mapped in the checkpoint's dtype (bf16 for the real 8B model); the GEMM precision is
// the backend's (CpuBackend::set_gemm_precision: F32 widens bf16 weights per call, BF16 multiplies in bf16).
// ref: transformers v4.46.3 src/transformers/models/llama/modeling_llama.py (LlamaModel, eager attention)
//
//   auto enc = sr::LlamaTextEncoder::load("HunyuanVideo/text_encoder");
//   sr::Tensor h = enc.forward(sr::cpu_backend(), ids, mask, -3);   // hidden_states[-3]: [B, L, hidden]
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "backends/backend.h"
#include "io/json.h"
#include "nn/linear.h"
#include "nn/weight_blocks.h"
#include "nn/weight_visitor.h"

namespace sr {

// config.json of a LlamaModel, upstream field names.
struct LlamaConfig {
    int64_t vocab_size = 128320;
    int64_t hidden_size = 4096;
    int64_t intermediate_size = 14336;
    int64_t num_hidden_layers = 32;
    int64_t num_attention_heads = 32;
    int64_t num_key_value_heads = 8;
    int64_t head_dim = 128;  // hidden_size / num_attention_heads unless the config says otherwise
    double rope_theta = 500000.0;
    double rms_norm_eps = 1e-5;
    int64_t max_position_embeddings = 8192;
    std::string hidden_act = "silu";
    bool attention_bias = false;
    bool mlp_bias = false;

    static LlamaConfig from_json(const Json& j, std::string_view source);
    void validate(std::string_view source) const;  // InputError on an unsupported or inconsistent value
};

using TextIntermediateHook = std::function<void(std::string_view name, const Tensor& value)>;

class LlamaTextEncoder {
public:
    // `path`: a folder with config.json and safetensors (a diffusers text_encoder/ folder, names with or
    // without the "model." prefix of LlamaForCausalLM). `weight_dtype`: convert weights at load (nullopt: keep
    // the file's, zero-copy).
    // `planning_space`: bind every weight to this address space and read none (memory planning).
    // `quant`: quantize the layers' linear weights at load (LinearQuant::Float8WeightOnly: SkyReels' --quant,
    // which quantizes the text encoder too; embed_tokens and the norms stay as they are).
    static LlamaTextEncoder load(const std::string& path, std::optional<DType> weight_dtype = std::nullopt,
                                 Allocator* planning_space = nullptr, LinearQuant quant = LinearQuant::None);
    // Binds `<prefix>embed_tokens.weight`, `<prefix>layers.N....`, `<prefix>norm.weight` from `binder`.
    LlamaTextEncoder(const LlamaConfig& config, WeightBinder& binder, const std::string& prefix = "",
                     LinearQuant quant = LinearQuant::None);

    const LlamaConfig& config() const { return config_; }
    int64_t parameter_count() const { return parameter_count_; }

    // hidden_states[index] of LlamaModel(ids, attention_mask, output_hidden_states=True): index in
    // [-(n+1), n] for n layers (Python indexing); hidden_states[n] is the final-norm output, the others are
    // raw layer outputs (0 = embeddings). Only the layers needed are run. ids [B, L] I32/I64;
    // attention_mask [B, L] (any numeric dtype, 1 = token) or undefined (all tokens). Every hidden state
    // computed is passed to `hook` as "hidden_states.i" (and the last as "last_hidden_state"), on the host.
    // The ids and mask may be on the host or the device; the result is in the backend's memory.
    // With a provider, each block's weights come from it (acquired just before the block runs, released
    // right after; see blocks_used); without one, from the checkpoint as loaded.
    Tensor forward(Backend& backend, const Tensor& ids, const Tensor& attention_mask, int hidden_state_index,
                   const TextIntermediateHook& hook = {}, BlockWeightProvider* weights = nullptr) const;

    // Weight blocks in execution order: 0 "llama.embeddings" (embed_tokens), 1..n "llama.layers.{i}"
    // (decoder layer i, as block i + 1), n + 1 "llama.final_norm"; each with its tensors in the order the
    // model declares them.
    size_t weight_block_count() const { return layers_.size() + 2; }
    WeightBlock weight_block(size_t block) const;
    std::vector<WeightBlock> weight_blocks() const;
    std::vector<Tensor> weight_block_tensors(size_t block) const { return weight_block(block).tensors; }
    // The blocks a forward with this hidden_state_index acquires, in increasing order: for hidden_states[k]
    // (k = the index in [0, n]) the embeddings and the first k layers, i.e. {0, 1, ..., k}, plus the final
    // norm (n + 1) when k = n. With n = 32: -3 (the pipeline's) -> {0..30}; -1 -> all 34; 0 -> {0}. A runtime
    // streaming through a provider sees only these (and must not expect the others). InputError for an
    // index out of range, as forward.
    std::vector<size_t> blocks_used(int hidden_state_index) const;

    // FLOPs of one forward through `n_layers` layers for `n_tokens` tokens (GEMMs and attention scores).
    static double flops(const LlamaConfig& c, int64_t n_tokens, int64_t n_layers);

private:
    struct Layer {
        Tensor input_layernorm, post_attention_layernorm;  // [hidden] f32
        Linear q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj;
    };
    void layer_forward(Backend& be, const Layer& layer, Tensor& h, const Tensor& cos, const Tensor& sin,
                       const AttentionMask& mask) const;
    // hidden_state_index as k in [0, n]; InputError when out of range.
    int64_t resolve_index(int hidden_state_index) const;
    struct Embeddings {  // block 0
        Tensor table;    // [vocab, hidden], stays in the file's dtype
    };
    struct FinalNorm {  // the last block
        Tensor weight;  // [hidden] f32
    };
    // Every weight of weight block `block`, declared once (nn/weight_visitor.h).
    void declare(WeightVisitor& v, Embeddings& e, size_t block) const;
    void declare(WeightVisitor& v, Layer& l, size_t block) const;
    void declare(WeightVisitor& v, FinalNorm& n, size_t block) const;
    // f(block struct, block name) for weight block i: the one list of blocks.
    template <class Self, class F>
    static void with_block(Self& self, size_t i, F&& f);
    // Block `index`'s struct viewing `tensors` (a provider's acquire()) instead of the loaded weights.
    template <class Part>
    Part rebind(const Part& part, const std::vector<Tensor>& tensors, size_t index) const;

    LlamaConfig config_;
    std::string prefix_;  // "model." for LlamaForCausalLM checkpoints, else ""
    int64_t parameter_count_ = 0;
    Embeddings embed_tokens_;
    std::vector<Layer> layers_;
    FinalNorm norm_;
};

// Reads a [B, L] attention mask of any numeric dtype into 0/1 values (row-major).
std::vector<int32_t> read_mask(const Tensor& mask);

}  // namespace sr
