// The CLIP ViT-L/14 tokenizer (HunyuanVideo `tokenizer_2`) from vocab.json + merges.txt, reproducing the
// slow CLIPTokenizer without ftfy: BERT BasicTokenizer cleanup (control characters deleted, whitespace to
// spaces, CJK ideographs split, NFC, Unicode lower-casing), the CLIP split regex, byte-level BPE with a
// "</w>" end-of-word marker, <|startoftext|> ... <|endoftext|>, padding to 77 with <|endoftext|>.
// ref: transformers v4.46.3 src/transformers/models/clip/tokenization_clip.py (fix_text is None path)
//
//   auto tok = sr::ClipTokenizer::load("HunyuanVideo/tokenizer_2");
//   sr::TokenizedText t = tok.encode_padded("a cat", 77);   // [49406, 320, 2368, 49407, 49407, ...]
//
// Text must be valid UTF-8 (InputError otherwise, naming the byte offset).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "text/bpe_tokenizer.h"

namespace sr {

class ClipTokenizer {
public:
    // `dir`: a folder with vocab.json and merges.txt. Throws InputError naming the file at fault.
    static ClipTokenizer load(const std::string& dir);
    // The same from vocab.json (parsed) and merges.txt (text); the paths name them in errors.
    static ClipTokenizer from_json(const nlohmann::json& vocab, std::string_view merges, const std::string& vocab_path,
                                   const std::string& merges_path);
    ClipTokenizer(ClipTokenizer&&) noexcept;
    ClipTokenizer& operator=(ClipTokenizer&&) noexcept;
    ~ClipTokenizer();

    // tokenizer_2(text).input_ids: bos + tokens + eos, not truncated.
    std::vector<int32_t> encode(std::string_view text) const;
    // tokenizer_2(text, padding="max_length", max_length, truncation=True): bos, at most max_length - 2
    // tokens, eos, then eos as padding.
    TokenizedText encode_padded(std::string_view text, size_t max_length = 77) const;

    // The reference's text cleanup (BasicTokenizer), exposed for tests: words joined by single spaces.
    static std::string clean_text(std::string_view text);

    int32_t bos_id() const { return bos_id_; }
    int32_t eos_id() const { return eos_id_; }
    int32_t pad_id() const { return eos_id_; }
    // One more than the largest id: the size an embedding table needs.
    int64_t vocab_size() const { return max_id_ + 1; }

private:
    ClipTokenizer() = default;
    void bpe(std::string_view piece, std::vector<int32_t>& out) const;
    void encode_segment(std::string_view text, std::vector<int32_t>& out) const;

    std::string source_;
    std::unordered_map<std::string, int32_t> vocab_;
    std::unordered_map<std::string, int32_t> merge_rank_;  // "left right" -> rank
    std::unique_ptr<Pcre2Regex> split_;
    int32_t bos_id_ = 0, eos_id_ = 0, max_id_ = -1;
};

}  // namespace sr
