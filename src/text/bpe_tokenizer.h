// Byte-level BPE tokenizer loaded from a Hugging Face `tokenizer.json` (the Llama-3 tokenizer of the
// HunyuanVideo text encoder), with the pipeline's call: special tokens recognised in the text, the
// post-processor's <|begin_of_text|>, right truncation and right padding to max_length with the pad token of
// tokenizer_config.json, and the attention mask.
// ref: huggingface/tokenizers 0.20 (BPE with ignore_merges, Split + ByteLevel pre-tokenizers,
//      TemplateProcessing), as loaded by transformers v4.46.3 LlamaTokenizerFast.
//
//   auto tok = sr::BpeTokenizer::load("HunyuanVideo/tokenizer");         // folder or tokenizer.json
//   std::vector<int32_t> ids = tok.encode("a cat");                      // [128000, 64, 8415]
//   sr::TokenizedText t = tok.encode_padded(prompt, 351);                // ids, mask, truncated
//
// Text must be valid UTF-8: anything else is an InputError naming the byte offset (Python strings cannot
// hold invalid UTF-8, so the reference has no behaviour to reproduce there).
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace sr {

// The result of a padded, truncated call.
struct TokenizedText {
    std::vector<int32_t> ids;             // max_length ids (content + specials, then padding)
    std::vector<int32_t> attention_mask;  // 1 = token, 0 = padding
    bool truncated = false;               // content was cut to fit max_length
    size_t n_tokens = 0;                  // tokens (with specials) before truncation and padding
};

// A compiled PCRE2 regex in UTF + UCP mode (\p{L}, \s, ... are Unicode classes, as in Python's `regex`).
class Pcre2Regex {
public:
    Pcre2Regex(std::string_view pattern, bool caseless, std::string_view source);
    ~Pcre2Regex();
    Pcre2Regex(const Pcre2Regex&) = delete;
    Pcre2Regex& operator=(const Pcre2Regex&) = delete;
    // Every non-overlapping match, left to right, as [begin, end) byte ranges of valid UTF-8 `text`.
    std::vector<std::pair<size_t, size_t>> find_all(std::string_view text) const;

private:
    void* code_ = nullptr;  // pcre2_code_8*
};

// Throws InputError "<what> is not valid UTF-8 at byte N" unless `text` is well-formed UTF-8.
void check_utf8(std::string_view text, std::string_view what);
// GPT-2's byte-level alphabet: byte b -> the UTF-8 text of the printable code point standing for it.
const std::array<std::string, 256>& byte_level_alphabet();

class BpeTokenizer {
public:
    // `path`: a tokenizer.json, or a folder holding tokenizer.json (and optionally tokenizer_config.json,
    // which names the pad token). Throws InputError naming the file and the field at fault.
    static BpeTokenizer load(const std::string& path);
    // The same from parsed JSON: `tokenizer` is tokenizer.json, `config` tokenizer_config.json (null when
    // there is none); the sources name them in errors.
    static BpeTokenizer from_json(const nlohmann::json& tokenizer, const nlohmann::json& config,
                                  const std::string& source, const std::string& config_source);
    BpeTokenizer(BpeTokenizer&&) noexcept;
    BpeTokenizer& operator=(BpeTokenizer&&) noexcept;
    ~BpeTokenizer();

    // tokenizer(text).input_ids: added tokens split out, pre-tokenized, BPE, post-processor specials.
    std::vector<int32_t> encode(std::string_view text, bool add_special_tokens = true) const;
    // tokenizer(text, max_length, padding="max_length", truncation=True): right truncation of the content
    // (the specials are kept), right padding with the pad token. Throws when there is no pad token.
    TokenizedText encode_padded(std::string_view text, size_t max_length) const;

    std::optional<int32_t> token_to_id(std::string_view token) const;
    std::string id_to_token(int32_t id) const;  // "" when unknown
    std::optional<int32_t> pad_id() const { return pad_id_; }
    size_t vocab_size() const { return id_to_token_.size(); }
    const std::string& source() const { return source_; }

private:
    BpeTokenizer() = default;
    void bpe(std::string_view piece, std::vector<int32_t>& out) const;
    void encode_plain(std::string_view text, std::vector<int32_t>& out) const;

    struct AddedToken {
        std::string content;
        int32_t id;
    };
    std::string source_;
    std::unordered_map<std::string, int32_t> vocab_;
    std::vector<std::string> id_to_token_;
    std::unordered_map<uint64_t, std::pair<int32_t, int32_t>> merges_;  // (left id, right id) -> (rank, merged)
    std::vector<AddedToken> added_;                                     // longest first
    std::array<bool, 256> added_first_byte_{};                          // bytes an added token starts with
    std::unique_ptr<Pcre2Regex> split_;                                 // null: no Split pre-tokenizer
    bool ignore_merges_ = false;
    std::vector<int32_t> prefix_ids_, suffix_ids_;  // post-processor specials around the sequence
    std::optional<int32_t> pad_id_;
};

}  // namespace sr
