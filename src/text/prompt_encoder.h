// HunyuanVideo prompt encoding, as the diffusers pipeline does it: the prompt put into the Llama template,
// tokenized to 256 + crop_start (95) tokens, hidden_states[-(2+1)] of the Llama encoder, the first
// crop_start positions of embeddings and mask cropped; and CLIP's pooled embedding of the bare prompt
// padded to 77. The negative prompt goes through the same call. A prompt that does not fit is truncated
// with a warning, as the pipeline does for CLIP (and, here, for Llama too).
// ref: diffusers v0.32.2 src/diffusers/pipelines/hunyuan_video/pipeline_hunyuan_video.py
//      (DEFAULT_PROMPT_TEMPLATE, _get_llama_prompt_embeds, _get_clip_prompt_embeds)
//
//   sr::PromptEncoder enc(llama_tok, llama, clip_tok, clip);
//   sr::PromptEmbeds e = enc.encode(sr::cpu_backend(), {"a cat walks on the grass"});
//   e.prompt_embeds;          // [B, 256, 4096]
//   e.prompt_attention_mask;  // [B, 256] I64
//   e.pooled_prompt_embeds;   // [B, 768]
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "backends/backend.h"
#include "text/bpe_tokenizer.h"
#include "text/clip_text_encoder.h"
#include "text/clip_tokenizer.h"
#include "text/llama_text_encoder.h"

namespace sr {

// diffusers' DEFAULT_PROMPT_TEMPLATE and the call's constants.
struct PromptTemplate {
    std::string text = kDefaultTemplate;
    std::string placeholder = "{}";
    int64_t crop_start = 95;            // template tokens before the prompt (BOS included)
    int64_t max_sequence_length = 256;  // prompt tokens kept after the crop
    int num_hidden_layers_to_skip = 2;  // hidden_states[-(skip + 1)]
    int64_t clip_max_length = 77;

    static const char* const kDefaultTemplate;
    // The template with `prompt` in place of the placeholder (a literal substitution, like str.format).
    std::string fill(const std::string& prompt) const;
};

struct PromptEmbeds {
    Tensor prompt_embeds;          // [B, max_sequence_length, llama hidden] f32
    Tensor prompt_attention_mask;  // [B, max_sequence_length] I64
    Tensor pooled_prompt_embeds;   // [B, clip hidden] f32
    std::vector<bool> llama_truncated, clip_truncated;
};

// The Llama-side tokenization of the pipeline: template, max_length = max_sequence_length + crop_start.
TokenizedText tokenize_llama_prompt(const BpeTokenizer& tokenizer, const PromptTemplate& tmpl,
                                    const std::string& prompt);

class PromptEncoder {
public:
    // The tokenizers and encoders are borrowed and must outlive this object.
    PromptEncoder(const BpeTokenizer& llama_tokenizer, const LlamaTextEncoder& llama,
                  const ClipTokenizer& clip_tokenizer, const ClipTextEncoder& clip, PromptTemplate tmpl = {});
    // Owns its parts, loaded from a diffusers pipeline folder: tokenizer/, text_encoder/, tokenizer_2/,
    // text_encoder_2/. `weight_dtype`: convert the encoders' weights at load (nullopt: zero-copy mmap).
    static PromptEncoder load(const std::string& pipeline_dir, std::optional<DType> weight_dtype = std::nullopt,
                              PromptTemplate tmpl = {});

    // One row per prompt (the positive or the negative prompts of a batch).
    PromptEmbeds encode(Backend& backend, const std::vector<std::string>& prompts) const;
    // The same from token ids: llama_ids / llama_mask [B, crop_start + max_sequence_length] (the template
    // applied), clip_ids [B, clip_max_length]; the truncation flags are left empty.
    PromptEmbeds encode_tokens(Backend& backend, const Tensor& llama_ids, const Tensor& llama_mask,
                               const Tensor& clip_ids) const;

private:
    PromptEncoder(std::shared_ptr<const BpeTokenizer> llama_tokenizer, std::shared_ptr<const LlamaTextEncoder> llama,
                  std::shared_ptr<const ClipTokenizer> clip_tokenizer, std::shared_ptr<const ClipTextEncoder> clip,
                  PromptTemplate tmpl);

    // Borrowed parts are held by non-owning pointers, loaded ones are owned.
    std::shared_ptr<const BpeTokenizer> llama_tokenizer_;
    std::shared_ptr<const LlamaTextEncoder> llama_;
    std::shared_ptr<const ClipTokenizer> clip_tokenizer_;
    std::shared_ptr<const ClipTextEncoder> clip_;
    PromptTemplate template_;
};

}  // namespace sr
