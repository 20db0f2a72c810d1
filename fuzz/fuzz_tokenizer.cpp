// Fuzz target: prompt text into both tokenizers (the Llama-3 byte-level BPE and CLIP), with the pipeline's
// padded calls. Prompts come from users, so any bytes must either tokenize or be refused with an
// sr::InputError (invalid UTF-8); an accepted prompt must give ids inside the vocabulary, exactly
// max_length of them, and a mask of 1s then 0s. The tokenizers load from the fixtures' vocabulary folders
// ($SKYREELS_FIXTURES, else the path configured at build time).
#include <cstdlib>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/error.h"
#include "fuzz_target.h"
#include "text/bpe_tokenizer.h"
#include "text/clip_tokenizer.h"

namespace {

std::string tokenizers_dir() {
    if (const char* env = std::getenv("SKYREELS_FIXTURES"); env && *env) return std::string(env) + "/tokenizers";
    return SKYREELS_TOKENIZER_FIXTURES;
}

const sr::BpeTokenizer& llama() {
    static const sr::BpeTokenizer t = sr::BpeTokenizer::load(tokenizers_dir() + "/llama3");
    return t;
}

const sr::ClipTokenizer& clip() {
    static const sr::ClipTokenizer t = sr::ClipTokenizer::load(tokenizers_dir() + "/clip");
    return t;
}

[[noreturn]] void broken(const std::string& what) {
    throw std::logic_error("broken tokenizer invariant: " + what);
}

void check(const sr::TokenizedText& t, size_t max_length, size_t vocab, const char* which) {
    if (t.ids.size() != max_length || t.attention_mask.size() != max_length)
        broken(std::string(which) + ": padded length differs from max_length");
    bool padding = false;
    for (size_t i = 0; i < max_length; ++i) {
        if (t.ids[i] < 0 || size_t(t.ids[i]) >= vocab) broken(std::string(which) + ": id outside the vocabulary");
        if (t.attention_mask[i] == 0)
            padding = true;
        else if (padding)
            broken(std::string(which) + ": a token after padding");
    }
}

std::optional<uint64_t> run_one(const uint8_t* data, size_t size) {
    const std::string text(reinterpret_cast<const char*>(data), size);
    sr::TokenizedText a, b;
    try {
        a = llama().encode_padded(text, 351);  // 256 + the template's 95
        b = clip().encode_padded(text, 77);
    } catch (const sr::InputError&) {
        return std::nullopt;
    }
    check(a, 351, llama().vocab_size() + 256, "llama");  // added tokens may sit past the base vocabulary
    check(b, 77, 1u << 20, "clip");
    // Signature: how full each sequence is and whether it was cut.
    uint64_t sig = sr::fuzz::mix(sr::fuzz::kMixStart, std::min<size_t>(a.n_tokens, 400) / 8);
    sig = sr::fuzz::mix(sig, std::min<size_t>(b.n_tokens, 100) / 4);
    return sr::fuzz::mix(sig, uint64_t(a.truncated) * 2 + uint64_t(b.truncated));
}

std::vector<std::string> seeds() {
    return {"FPS-24, A woman walks along a beach at sunset, waves rolling in.",
            "",
            "   ",
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nDescribe the video.<|eot_id|>",
            "Ünïcödé, 中文字符, emoji 🎬🎥, and numbers 12345.6789",
            "a\tb\nc\r\nd  e",
            std::string(3000, 'x') + " truncated"};
}

std::vector<std::string> dictionary() {
    return {"<|begin_of_text|>",
            "<|eot_id|>",
            "<|start_header_id|>",
            "<|end_header_id|>",
            "'s",
            "'ll",
            " ",
            "\xc3\xa9",
            "\xe4\xb8\xad",
            "\xf0\x9f\x8e\xac",
            "\xff",
            "\xc3",
            "\xed\xa0\x80",
            "FPS-24, "};
}

}  // namespace

SR_FUZZ_TARGET("fuzz_tokenizer", false)
