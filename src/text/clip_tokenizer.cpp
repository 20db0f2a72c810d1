// CLIP tokenization in the order the slow reference runs it: special tokens split out of the raw text, each
// remaining segment cleaned (BasicTokenizer: control characters, whitespace, CJK, NFC, lower-casing), split
// by the CLIP regex, byte-level mapped with "</w>" on the last symbol, merged by rank.
#include "text/clip_tokenizer.h"

#include <unicode/uchar.h>
#include <unicode/unorm2.h>
#include <unicode/ustring.h>
#include <unicode/utf8.h>

#include <algorithm>
#include <filesystem>
#include <limits>

#include "core/error.h"
#include "core/files.h"
#include "io/json.h"

namespace sr {

namespace fs = std::filesystem;

namespace {

constexpr const char* kBos = "<|startoftext|>";
constexpr const char* kEos = "<|endoftext|>";
// CLIPTokenizer keeps merges.txt lines 1 .. 49152 - 256 - 2 (line 0 is the "#version" header).
constexpr size_t kMaxMerges = 49152 - 256 - 2;
constexpr const char* kSplitPattern =
    R"(<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+)";

void append_utf8(std::string& s, UChar32 cp) {
    char buf[4];
    int32_t n = 0;
    UBool err = false;
    U8_APPEND(buf, n, 4, cp, err);
    (void)err;  // cp is a valid scalar value decoded from valid UTF-8
    s.append(buf, size_t(n));
}

std::u16string to_utf16(std::string_view s) {
    UErrorCode st = U_ZERO_ERROR;
    int32_t n = 0;
    u_strFromUTF8(nullptr, 0, &n, s.data(), int32_t(s.size()), &st);
    std::u16string out(size_t(n), u'\0');
    st = U_ZERO_ERROR;
    u_strFromUTF8(reinterpret_cast<UChar*>(out.data()), n, nullptr, s.data(), int32_t(s.size()), &st);
    SR_ASSERT(U_SUCCESS(st), "u_strFromUTF8: {}", u_errorName(st));
    return out;
}

std::string to_utf8(const std::u16string& s) {
    UErrorCode st = U_ZERO_ERROR;
    int32_t n = 0;
    u_strToUTF8(nullptr, 0, &n, reinterpret_cast<const UChar*>(s.data()), int32_t(s.size()), &st);
    std::string out(size_t(n), '\0');
    st = U_ZERO_ERROR;
    u_strToUTF8(out.data(), n, nullptr, reinterpret_cast<const UChar*>(s.data()), int32_t(s.size()), &st);
    SR_ASSERT(U_SUCCESS(st), "u_strToUTF8: {}", u_errorName(st));
    return out;
}

bool is_cjk_ideograph(UChar32 c) {
    return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x20000 && c <= 0x2A6DF) ||
           (c >= 0x2A700 && c <= 0x2B73F) || (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B820 && c <= 0x2CEAF) ||
           (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

// BasicTokenizer's _is_control: general category C* except tab, newline, carriage return.
bool is_control(UChar32 c) {
    if (c == '\t' || c == '\n' || c == '\r') return false;
    switch (u_charType(c)) {
        case U_CONTROL_CHAR:
        case U_FORMAT_CHAR:
        case U_SURROGATE:
        case U_PRIVATE_USE_CHAR:
        case U_UNASSIGNED:
            return true;
        default:
            return false;
    }
}

bool is_bert_whitespace(UChar32 c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || u_charType(c) == U_SPACE_SEPARATOR;
}

std::u16string lower(const std::u16string& word) {
    UErrorCode st = U_ZERO_ERROR;
    // Full case mapping in the root locale: what Python's str.lower() does (final sigma, U+0130 -> i + dot).
    const int32_t n =
        u_strToLower(nullptr, 0, reinterpret_cast<const UChar*>(word.data()), int32_t(word.size()), "", &st);
    std::u16string out(size_t(n), u'\0');
    st = U_ZERO_ERROR;
    u_strToLower(reinterpret_cast<UChar*>(out.data()), n, reinterpret_cast<const UChar*>(word.data()),
                 int32_t(word.size()), "", &st);
    SR_ASSERT(U_SUCCESS(st), "u_strToLower: {}", u_errorName(st));
    return out;
}

}  // namespace

std::string ClipTokenizer::clean_text(std::string_view text) {
    // 1-3: delete controls, whitespace -> ' ', spaces around CJK ideographs (valid UTF-8 is a precondition).
    std::string s;
    s.reserve(text.size());
    int32_t i = 0;
    const auto* p = reinterpret_cast<const uint8_t*>(text.data());
    while (i < int32_t(text.size())) {
        UChar32 c;
        U8_NEXT(p, i, int32_t(text.size()), c);
        if (c == 0 || c == 0xFFFD || is_control(c)) continue;
        if (is_bert_whitespace(c)) {
            s += ' ';
        } else if (is_cjk_ideograph(c)) {
            s += ' ';
            append_utf8(s, c);
            s += ' ';
        } else {
            append_utf8(s, c);
        }
    }
    // 4: NFC.
    UErrorCode st = U_ZERO_ERROR;
    const UNormalizer2* nfc = unorm2_getNFCInstance(&st);
    SR_ASSERT(U_SUCCESS(st), "unorm2_getNFCInstance: {}", u_errorName(st));
    const std::u16string u = to_utf16(s);
    st = U_ZERO_ERROR;
    const int32_t n =
        unorm2_normalize(nfc, reinterpret_cast<const UChar*>(u.data()), int32_t(u.size()), nullptr, 0, &st);
    std::u16string normalized(size_t(n), u'\0');
    st = U_ZERO_ERROR;
    unorm2_normalize(nfc, reinterpret_cast<const UChar*>(u.data()), int32_t(u.size()),
                     reinterpret_cast<UChar*>(normalized.data()), n, &st);
    SR_ASSERT(U_SUCCESS(st), "unorm2_normalize: {}", u_errorName(st));
    // 5: split on whitespace (Python str.split()), lower-case each word, join with single spaces.
    std::u16string out, word;
    auto flush = [&] {
        if (word.empty()) return;
        if (!out.empty()) out += u' ';
        out += lower(word);
        word.clear();
    };
    for (size_t k = 0; k < normalized.size();) {
        UChar32 c;
        U16_NEXT(normalized.data(), k, normalized.size(), c);
        if (u_isUWhiteSpace(c)) {
            flush();
        } else {
            UChar buf[2];
            int32_t len = 0;
            UBool err = false;
            U16_APPEND(buf, len, 2, c, err);
            (void)err;
            word.append(reinterpret_cast<const char16_t*>(buf), size_t(len));
        }
    }
    flush();
    return to_utf8(out);
}

ClipTokenizer::ClipTokenizer(ClipTokenizer&&) noexcept = default;
ClipTokenizer& ClipTokenizer::operator=(ClipTokenizer&&) noexcept = default;
ClipTokenizer::~ClipTokenizer() = default;

ClipTokenizer ClipTokenizer::load(const std::string& dir) {
    std::error_code ec;
    SR_THROW_IF(!fs::is_directory(dir, ec), "{}: not a folder (expected a CLIP tokenizer folder)", dir);
    const std::string vocab_path = (fs::path(dir) / "vocab.json").string();
    const std::string merges_path = (fs::path(dir) / "merges.txt").string();
    SR_THROW_IF(!fs::exists(vocab_path, ec), "{}: missing vocabulary file vocab.json", dir);
    SR_THROW_IF(!fs::exists(merges_path, ec), "{}: missing merges file merges.txt", dir);
    const Json vocab = parse_json(read_text_file(vocab_path, 64u << 20), vocab_path);
    const std::string merges = read_text_file(merges_path, 64u << 20);
    ClipTokenizer t = from_json(vocab, merges, vocab_path, merges_path);
    t.source_ = dir;
    return t;
}

ClipTokenizer ClipTokenizer::from_json(const Json& vocab, std::string_view merges, const std::string& vocab_path,
                                       const std::string& merges_path) {
    ClipTokenizer t;
    t.source_ = vocab_path;
    SR_THROW_IF(!vocab.is_object() || vocab.empty(), "{}: expected a non-empty object of token -> id", vocab_path);
    for (auto it = vocab.begin(); it != vocab.end(); ++it) {
        SR_THROW_IF(!it.value().is_number_integer(), "{}: token '{}' has a non-integer id", vocab_path,
                    printable(it.key()));
        const int64_t id = it.value().get<int64_t>();
        SR_THROW_IF(id < 0 || id >= (int64_t(1) << 24), "{}: token '{}' has id {} outside [0, 2^24)", vocab_path,
                    printable(it.key()), id);
        t.vocab_[it.key()] = int32_t(id);
        t.max_id_ = std::max(t.max_id_, int32_t(id));
    }
    auto special = [&](const char* name) {
        auto it = t.vocab_.find(name);
        SR_THROW_IF(it == t.vocab_.end(), "{}: no '{}' token", vocab_path, name);
        return it->second;
    };
    t.bos_id_ = special(kBos);
    t.eos_id_ = special(kEos);

    size_t pos = merges.find('\n');  // line 0 is the "#version" header, skipped as the reference does
    int32_t rank = 0;
    while (pos != std::string::npos && pos < merges.size() && size_t(rank) < kMaxMerges) {
        const size_t begin = pos + 1;
        size_t end = merges.find('\n', begin);
        if (end == std::string::npos) end = merges.size();
        std::string line(merges.substr(begin, end - begin));
        if (!line.empty() && line.back() == '\r') line.pop_back();
        pos = end == merges.size() ? std::string::npos : end;
        if (line.empty()) continue;  // the reference strip()s the file; a blank line inside is tolerated
        SR_THROW_IF(line.find(' ') == std::string::npos, "{}: merge line {} ('{}') is not 'left right'", merges_path,
                    rank + 2, printable(line));
        t.merge_rank_.emplace(line, rank++);
    }
    SR_THROW_IF(rank == 0, "{}: no merges", merges_path);
    t.split_ = std::make_unique<Pcre2Regex>(kSplitPattern, true, merges_path);
    return t;
}

void ClipTokenizer::bpe(std::string_view piece, std::vector<int32_t>& out) const {
    if (piece == kBos) return out.push_back(bos_id_);
    if (piece == kEos) return out.push_back(eos_id_);
    // Symbols are the byte-level characters of the piece; the last one carries the end-of-word marker.
    const auto& alphabet = byte_level_alphabet();
    std::vector<std::string> word;
    for (char c : piece) word.push_back(alphabet[uint8_t(c)]);
    word.back() += "</w>";
    std::string key;
    while (word.size() > 1) {
        int32_t best_rank = std::numeric_limits<int32_t>::max();
        size_t best = 0;
        for (size_t i = 0; i + 1 < word.size(); ++i) {
            key.assign(word[i]).append(" ").append(word[i + 1]);
            auto it = merge_rank_.find(key);
            if (it != merge_rank_.end() && it->second < best_rank) best_rank = it->second, best = i;
        }
        if (best_rank == std::numeric_limits<int32_t>::max()) break;
        // Merge every occurrence of the best pair, left to right, without overlaps (as the reference does).
        const std::string first = word[best], second = word[best + 1];
        std::vector<std::string> merged;
        for (size_t i = 0; i < word.size();) {
            if (i + 1 < word.size() && word[i] == first && word[i + 1] == second) {
                merged.push_back(first + second);
                i += 2;
            } else {
                merged.push_back(word[i++]);
            }
        }
        word = std::move(merged);
    }
    for (const std::string& sym : word) {
        auto it = vocab_.find(sym);
        out.push_back(it == vocab_.end() ? eos_id_ : it->second);  // unk_token is <|endoftext|>
    }
}

void ClipTokenizer::encode_segment(std::string_view text, std::vector<int32_t>& out) const {
    if (text.empty()) return;
    const std::string cleaned = clean_text(text);
    for (auto [b, e] : split_->find_all(cleaned)) bpe(std::string_view(cleaned).substr(b, e - b), out);
}

std::vector<int32_t> ClipTokenizer::encode(std::string_view text) const {
    check_utf8(text, "prompt");
    std::vector<int32_t> out{bos_id_};
    // Exact, case-sensitive <|startoftext|> / <|endoftext|> in the raw text are the special ids.
    size_t start = 0;
    for (size_t i = 0; i < text.size();) {
        const bool is_bos = text.compare(i, 15, kBos) == 0, is_eos = text.compare(i, 13, kEos) == 0;
        if (!is_bos && !is_eos) {
            ++i;
            continue;
        }
        encode_segment(text.substr(start, i - start), out);
        out.push_back(is_bos ? bos_id_ : eos_id_);
        i += is_bos ? 15 : 13;
        start = i;
    }
    encode_segment(text.substr(start), out);
    out.push_back(eos_id_);
    return out;
}

TokenizedText ClipTokenizer::encode_padded(std::string_view text, size_t max_length) const {
    SR_THROW_IF(max_length < 2, "max_length {} leaves no room for <|startoftext|> and <|endoftext|>", max_length);
    std::vector<int32_t> ids = encode(text);
    TokenizedText r;
    r.n_tokens = ids.size();
    if (ids.size() > max_length) {  // keep bos + the first max_length - 2 tokens, then eos
        ids.resize(max_length - 1);
        ids.push_back(eos_id_);
        r.truncated = true;
    }
    r.attention_mask.assign(ids.size(), 1);
    ids.resize(max_length, eos_id_);
    r.attention_mask.resize(max_length, 0);
    r.ids = std::move(ids);
    return r;
}

}  // namespace sr
