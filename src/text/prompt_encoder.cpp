// The pipeline's prompt encoding, step by step as _get_llama_prompt_embeds and _get_clip_prompt_embeds run.
// ref: diffusers v0.32.2 src/diffusers/pipelines/hunyuan_video/pipeline_hunyuan_video.py
#include "text/prompt_encoder.h"

#include <filesystem>

#include "core/log.h"

namespace sr {

const char* const PromptTemplate::kDefaultTemplate =
    "<|start_header_id|>system<|end_header_id|>\n\nDescribe the video by detailing the following aspects: "
    "1. The main content and theme of the video."
    "2. The color, shape, size, texture, quantity, text, and spatial relationships of the objects."
    "3. Actions, events, behaviors temporal relationships, physical movement changes of the objects."
    "4. background environment, light, style and atmosphere."
    "5. camera angles, movements, and transitions used in the video:<|eot_id|>"
    "<|start_header_id|>user<|end_header_id|>\n\n{}<|eot_id|>";

std::string PromptTemplate::fill(const std::string& prompt) const {
    std::string s = text;
    const size_t at = s.find(placeholder);
    SR_THROW_IF(at == std::string::npos, "prompt template has no placeholder '{}'", placeholder);
    return s.replace(at, placeholder.size(), prompt);
}

TokenizedText tokenize_llama_prompt(const BpeTokenizer& tokenizer, const PromptTemplate& tmpl,
                                    const std::string& prompt) {
    return tokenizer.encode_padded(tmpl.fill(prompt), size_t(tmpl.max_sequence_length + tmpl.crop_start));
}

namespace {

template <class T>
std::shared_ptr<const T> borrow(const T& x) {
    return std::shared_ptr<const T>(std::shared_ptr<const T>(), &x);  // aliasing constructor: owns nothing
}

}  // namespace

PromptEncoder::PromptEncoder(const BpeTokenizer& llama_tokenizer, const LlamaTextEncoder& llama,
                             const ClipTokenizer& clip_tokenizer, const ClipTextEncoder& clip, PromptTemplate tmpl)
    : PromptEncoder(borrow(llama_tokenizer), borrow(llama), borrow(clip_tokenizer), borrow(clip), std::move(tmpl)) {}

PromptEncoder::PromptEncoder(std::shared_ptr<const BpeTokenizer> llama_tokenizer,
                             std::shared_ptr<const LlamaTextEncoder> llama,
                             std::shared_ptr<const ClipTokenizer> clip_tokenizer,
                             std::shared_ptr<const ClipTextEncoder> clip, PromptTemplate tmpl)
    : llama_tokenizer_(std::move(llama_tokenizer)),
      llama_(std::move(llama)),
      clip_tokenizer_(std::move(clip_tokenizer)),
      clip_(std::move(clip)),
      template_(std::move(tmpl)) {}

PromptEncoder PromptEncoder::load(const std::string& dir, std::optional<DType> weight_dtype, PromptTemplate tmpl) {
    const std::filesystem::path p = dir;
    std::shared_ptr<const BpeTokenizer> tok;
    std::shared_ptr<const ClipTokenizer> clip_tok;
    std::shared_ptr<const LlamaTextEncoder> llama;
    std::shared_ptr<const ClipTextEncoder> clip;
    SR_WITH_CONTEXT(dir, tok = std::make_shared<const BpeTokenizer>(BpeTokenizer::load((p / "tokenizer").string())));
    SR_WITH_CONTEXT(dir, llama = std::make_shared<const LlamaTextEncoder>(
                             LlamaTextEncoder::load((p / "text_encoder").string(), weight_dtype)));
    SR_WITH_CONTEXT(
        dir, clip_tok = std::make_shared<const ClipTokenizer>(ClipTokenizer::load((p / "tokenizer_2").string())));
    SR_WITH_CONTEXT(dir, clip = std::make_shared<const ClipTextEncoder>(
                             ClipTextEncoder::load((p / "text_encoder_2").string(), weight_dtype)));
    return PromptEncoder(std::move(tok), std::move(llama), std::move(clip_tok), std::move(clip), std::move(tmpl));
}

PromptEmbeds PromptEncoder::encode(Backend& be, const std::vector<std::string>& prompts) const {
    SR_THROW_IF(prompts.empty(), "no prompt to encode");
    const auto& t = template_;
    const int64_t B = int64_t(prompts.size()), L = t.max_sequence_length + t.crop_start, C = t.clip_max_length;
    PromptEmbeds out;

    // Llama: template, pad/truncate to L, hidden_states[-(skip+1)], crop the template's first crop_start tokens.
    Tensor ids = Tensor::empty({B, L}, DType::I64), mask = Tensor::empty({B, L}, DType::I64);
    for (int64_t b = 0; b < B; ++b) {
        check_utf8(prompts[size_t(b)], fmt::format("prompt {}", b));  // offsets in the prompt, not the template
        const TokenizedText tok = tokenize_llama_prompt(*llama_tokenizer_, t, prompts[size_t(b)]);
        if (tok.truncated)
            SR_LOG_WARN("prompt {} is {} Llama tokens with the template; only the first {} are kept ({} prompt tokens)",
                        b, tok.n_tokens, L, t.max_sequence_length);
        out.llama_truncated.push_back(tok.truncated);
        for (int64_t l = 0; l < L; ++l) {
            ids.data<int64_t>()[b * L + l] = tok.ids[size_t(l)];
            mask.data<int64_t>()[b * L + l] = tok.attention_mask[size_t(l)];
        }
    }
    // CLIP: the bare prompt padded to 77, pooler_output.
    Tensor clip_ids = Tensor::empty({B, C}, DType::I64);
    for (int64_t b = 0; b < B; ++b) {
        const TokenizedText tok = clip_tokenizer_->encode_padded(prompts[size_t(b)], size_t(C));
        if (tok.truncated)
            SR_LOG_WARN(
                "prompt {} is {} CLIP tokens; CLIP can only handle sequences up to {} tokens, the rest is "
                "truncated",
                b, tok.n_tokens, C);
        out.clip_truncated.push_back(tok.truncated);
        for (int64_t l = 0; l < C; ++l) clip_ids.data<int64_t>()[b * C + l] = tok.ids[size_t(l)];
    }
    PromptEmbeds embeds = encode_tokens(be, ids, mask, clip_ids);
    embeds.llama_truncated = std::move(out.llama_truncated);
    embeds.clip_truncated = std::move(out.clip_truncated);
    return embeds;
}

PromptEmbeds PromptEncoder::encode_tokens(Backend& be, const Tensor& ids, const Tensor& mask,
                                          const Tensor& clip_ids) const {
    const auto& t = template_;
    const int64_t L = t.max_sequence_length + t.crop_start;
    SR_THROW_IF(ids.rank() != 2 || ids.dim(1) != L || !(mask.shape() == ids.shape()),
                "Llama ids {} / mask {}: expected [B, {}] (crop_start {} + max_sequence_length {})", ids.describe(),
                mask.describe(), L, t.crop_start, t.max_sequence_length);
    SR_THROW_IF(clip_ids.rank() != 2 || clip_ids.dim(0) != ids.dim(0) || clip_ids.dim(1) != t.clip_max_length,
                "CLIP ids {}: expected [{}, {}]", clip_ids.describe(), ids.dim(0), t.clip_max_length);
    PromptEmbeds out;
    const Tensor hidden = llama_->forward(be, ids, mask, -(t.num_hidden_layers_to_skip + 1));  // [B, L, D]
    // The embeddings come back to the host, as the pipeline keeps its conditioning there.
    out.prompt_embeds = to_host(be, hidden.slice(1, t.crop_start, L));                   // [B, 256, D]
    out.prompt_attention_mask = to_host(be, mask.slice(1, t.crop_start, L));             // [B, 256]
    out.pooled_prompt_embeds = to_host(be, clip_->forward(be, clip_ids).pooler_output);  // [B, 768]
    return out;
}

}  // namespace sr
