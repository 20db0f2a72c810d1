// Byte-level BPE from tokenizer.json, in the order a call runs: added tokens split out of the raw text,
// the Split regex (each match one piece), byte-level mapping, whole-piece lookup (ignore_merges) or merges
// by rank, then truncation, the post-processor's specials and padding.
#define PCRE2_CODE_UNIT_WIDTH 8
#include "text/bpe_tokenizer.h"

#include <pcre2.h>

#include <algorithm>
#include <filesystem>
#include <limits>
#include <queue>

#include "core/error.h"
#include "core/files.h"
#include "io/json.h"

namespace sr {

namespace fs = std::filesystem;

// ---------------------------------------------------------------------------------------------------------
// Shared helpers: UTF-8 check, GPT-2 byte alphabet, PCRE2 wrapper

void check_utf8(std::string_view s, std::string_view what) {
    size_t i = 0;
    const size_t n = s.size();
    while (i < n) {
        const auto c = uint8_t(s[i]);
        size_t len;
        uint32_t cp;
        if (c < 0x80) {
            ++i;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            len = 2, cp = c & 0x1F;
        } else if ((c & 0xF0) == 0xE0) {
            len = 3, cp = c & 0x0F;
        } else if ((c & 0xF8) == 0xF0) {
            len = 4, cp = c & 0x07;
        } else {
            SR_THROW("{} is not valid UTF-8 at byte {} (0x{:02x})", what, i, c);
        }
        SR_THROW_IF(i + len > n, "{} is not valid UTF-8 at byte {} (truncated sequence)", what, i);
        for (size_t k = 1; k < len; ++k) {
            const auto cc = uint8_t(s[i + k]);
            SR_THROW_IF((cc & 0xC0) != 0x80, "{} is not valid UTF-8 at byte {} (0x{:02x})", what, i + k, cc);
            cp = (cp << 6) | (cc & 0x3F);
        }
        // Overlong forms, surrogates and code points past U+10FFFF are not UTF-8 either.
        const uint32_t min_cp = len == 2 ? 0x80 : len == 3 ? 0x800 : 0x10000;
        SR_THROW_IF(cp < min_cp || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF),
                    "{} is not valid UTF-8 at byte {} (code point U+{:04X} encoded in {} bytes)", what, i, cp, len);
        i += len;
    }
}

namespace {

std::string utf8_of(uint32_t cp) {
    std::string s;
    if (cp < 0x80) {
        s += char(cp);
    } else if (cp < 0x800) {
        s += char(0xC0 | (cp >> 6));
        s += char(0x80 | (cp & 0x3F));
    } else {
        s += char(0xE0 | (cp >> 12));
        s += char(0x80 | ((cp >> 6) & 0x3F));
        s += char(0x80 | (cp & 0x3F));
    }
    return s;
}

}  // namespace

const std::array<std::string, 256>& byte_level_alphabet() {
    // Printable Latin-1 bytes stand for themselves; the other 68 take U+0100.. in byte order.
    static const std::array<std::string, 256> table = [] {
        std::array<std::string, 256> t;
        uint32_t next = 256;
        for (uint32_t b = 0; b < 256; ++b) {
            const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
            t[b] = utf8_of(printable ? b : next++);
        }
        return t;
    }();
    return table;
}

Pcre2Regex::Pcre2Regex(std::string_view pattern, bool caseless, std::string_view source) {
    int err = 0;
    PCRE2_SIZE offset = 0;
    uint32_t options = PCRE2_UTF | PCRE2_UCP;
    if (caseless) options |= PCRE2_CASELESS;
    pcre2_code* code =
        pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), options, &err, &offset, nullptr);
    if (!code) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        SR_THROW("{}: pre-tokenizer regex does not compile at offset {}: {}", source, offset,
                 reinterpret_cast<const char*>(msg));
    }
    pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);  // optional speed-up; the interpreter is used when it fails
    code_ = code;
}

Pcre2Regex::~Pcre2Regex() {
    pcre2_code_free(static_cast<pcre2_code*>(code_));
}

std::vector<std::pair<size_t, size_t>> Pcre2Regex::find_all(std::string_view text) const {
    auto* code = static_cast<pcre2_code*>(code_);
    std::unique_ptr<pcre2_match_data, decltype(&pcre2_match_data_free)> md(
        pcre2_match_data_create_from_pattern(code, nullptr), &pcre2_match_data_free);
    std::vector<std::pair<size_t, size_t>> out;
    size_t pos = 0;
    const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
    while (pos < text.size()) {
        // The caller validated the UTF-8, so PCRE2 need not re-check it on every call.
        const int rc = pcre2_match(code, subject, text.size(), pos, PCRE2_NO_UTF_CHECK, md.get(), nullptr);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        SR_ASSERT(rc > 0, "pcre2_match failed with code {}", rc);
        const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md.get());
        size_t b = ov[0], e = ov[1];
        if (e == b) {  // an empty match: step over one code point so the scan always advances
            ++e;
            while (e < text.size() && (uint8_t(text[e]) & 0xC0) == 0x80) ++e;
            pos = e;
            continue;
        }
        out.emplace_back(b, e);
        pos = e;
    }
    return out;
}

// ---------------------------------------------------------------------------------------------------------
// Loading

namespace {

// The token string of a special-token entry in tokenizer_config.json: a string or {"content": ...}.
std::optional<std::string> config_token(const Json& cfg, const char* key) {
    if (!cfg.is_object() || !cfg.contains(key)) return std::nullopt;
    const Json& v = cfg[key];
    if (v.is_string()) return v.get<std::string>();
    if (v.is_object() && v.contains("content") && v["content"].is_string()) return v["content"].get<std::string>();
    return std::nullopt;
}

// GPT-2's pre-tokenizer regex, which ByteLevel applies itself when use_regex is true.
constexpr const char* kGpt2Pattern = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

}  // namespace

BpeTokenizer::BpeTokenizer(BpeTokenizer&&) noexcept = default;
BpeTokenizer& BpeTokenizer::operator=(BpeTokenizer&&) noexcept = default;
BpeTokenizer::~BpeTokenizer() = default;

BpeTokenizer BpeTokenizer::load(const std::string& path) {
    std::error_code ec;
    fs::path file = path;
    if (fs::is_directory(file, ec)) file /= "tokenizer.json";
    SR_THROW_IF(!fs::exists(file, ec), "{}: no tokenizer.json (expected a Hugging Face tokenizer folder)", path);
    const std::string src = file.string();
    // The Llama-3 file is 9 MB; 256 MB bounds a hostile file before it is read.
    const Json j = parse_json(read_text_file(src, 256u << 20), src);
    // The pad token comes from transformers' tokenizer_config.json (tokenizer.json has no padding section
    // for Llama-3), else from tokenizer.json's own padding section.
    const fs::path cfg_path = file.parent_path() / "tokenizer_config.json";
    Json cfg;
    if (fs::exists(cfg_path, ec)) cfg = load_json_file(cfg_path.string());
    return from_json(j, cfg, src, cfg_path.string());
}

BpeTokenizer BpeTokenizer::from_json(const Json& j, const Json& config, const std::string& src,
                                     const std::string& config_source) {
    SR_THROW_IF(!j.is_object(), "{}: not a JSON object", src);

    BpeTokenizer t;
    t.source_ = src;
    const Json& model = json_require(j, "model", src);
    SR_THROW_IF(!model.is_object(), "{}: 'model' is not an object", src);
    const std::string type = json_string_or(model, "type", "BPE", src);
    SR_THROW_IF(type != "BPE", "{}: model type '{}' is not supported (expected BPE)", src, type);
    SR_THROW_IF(json_bool_or(model, "byte_fallback", false, src), "{}: byte_fallback BPE is not supported", src);
    t.ignore_merges_ = json_bool_or(model, "ignore_merges", false, src);

    const Json& vocab = json_require(model, "vocab", src);
    SR_THROW_IF(!vocab.is_object() || vocab.empty(), "{}: model.vocab must be a non-empty object", src);
    int64_t max_id = -1;
    auto add_vocab = [&](const std::string& token, const Json& idj, const char* where) {
        SR_THROW_IF(!idj.is_number_integer(), "{}: {} entry '{}' has a non-integer id", src, where, printable(token));
        const int64_t id = idj.get<int64_t>();
        SR_THROW_IF(id < 0 || id >= (int64_t(1) << 24), "{}: {} entry '{}' has id {} outside [0, 2^24)", src, where,
                    printable(token), id);
        t.vocab_[token] = int32_t(id);
        max_id = std::max(max_id, id);
    };
    for (auto it = vocab.begin(); it != vocab.end(); ++it) add_vocab(it.key(), it.value(), "model.vocab");

    const Json& added = j.contains("added_tokens") ? j["added_tokens"] : Json::array();
    SR_THROW_IF(!added.is_array(), "{}: added_tokens is not an array", src);
    for (const Json& a : added) {
        SR_THROW_IF(!a.is_object(), "{}: an added_tokens entry is not an object", src);
        const std::string content = json_string(a, "content", src);
        SR_THROW_IF(content.empty(), "{}: an added token has empty content", src);
        add_vocab(content, json_require(a, "id", src), "added_tokens");
        t.added_.push_back({content, t.vocab_[content]});
        t.added_first_byte_[uint8_t(content[0])] = true;
    }
    // Longest first, so a token that is a prefix of another never wins where the longer one matches.
    std::stable_sort(t.added_.begin(), t.added_.end(),
                     [](const AddedToken& a, const AddedToken& b) { return a.content.size() > b.content.size(); });

    t.id_to_token_.assign(size_t(max_id + 1), std::string());
    for (const auto& [tok, id] : t.vocab_) t.id_to_token_[size_t(id)] = tok;

    const Json& merges = json_require(model, "merges", src);
    SR_THROW_IF(!merges.is_array(), "{}: model.merges is not an array", src);
    int32_t rank = 0;
    for (const Json& m : merges) {
        std::string left, right;
        if (m.is_string()) {  // "a b" (tokenizers < 0.20 format)
            const std::string s = m.get<std::string>();
            const size_t sp = s.find(' ');
            SR_THROW_IF(sp == std::string::npos, "{}: merge {} ('{}') has no space", src, rank, printable(s));
            left = s.substr(0, sp), right = s.substr(sp + 1);
        } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {  // ["a", "b"]
            left = m[0].get<std::string>(), right = m[1].get<std::string>();
        } else {
            SR_THROW("{}: merge {} is neither \"a b\" nor [\"a\", \"b\"]", src, rank);
        }
        auto l = t.vocab_.find(left), r = t.vocab_.find(right), merged = t.vocab_.find(left + right);
        SR_THROW_IF(l == t.vocab_.end() || r == t.vocab_.end() || merged == t.vocab_.end(),
                    "{}: merge {} ('{} {}') uses a token missing from the vocabulary", src, rank, printable(left),
                    printable(right));
        const uint64_t key = (uint64_t(uint32_t(l->second)) << 32) | uint32_t(r->second);
        t.merges_.emplace(key, std::make_pair(rank, merged->second));  // the first (lowest) rank wins
        ++rank;
    }

    SR_THROW_IF(j.contains("normalizer") && !j["normalizer"].is_null(),
                "{}: a normalizer is not supported (the Llama-3 tokenizer has none)", src);

    // Pre-tokenizer: Split(regex, Isolated) and/or ByteLevel, alone or in a Sequence.
    std::vector<Json> pre;
    if (j.contains("pre_tokenizer") && !j["pre_tokenizer"].is_null()) {
        const Json& p = j["pre_tokenizer"];
        SR_THROW_IF(!p.is_object(), "{}: pre_tokenizer is not an object", src);
        if (json_string_or(p, "type", "", src) == "Sequence") {
            const Json& list = json_require(p, "pretokenizers", src);
            SR_THROW_IF(!list.is_array(), "{}: pre_tokenizer.pretokenizers is not an array", src);
            for (const Json& q : list) pre.push_back(q);
        } else {
            pre.push_back(p);
        }
    }
    bool byte_level = false;
    for (const Json& p : pre) {
        SR_THROW_IF(!p.is_object(), "{}: a pre-tokenizer is not an object", src);
        const std::string ptype = json_string_or(p, "type", "", src);
        if (ptype == "Split") {
            SR_THROW_IF(t.split_, "{}: more than one Split pre-tokenizer is not supported", src);
            const Json& pat = json_require(p, "pattern", src);
            SR_THROW_IF(!pat.is_object() || !pat.contains("Regex") || !pat["Regex"].is_string(),
                        "{}: Split pattern must be {{\"Regex\": ...}}", src);
            const std::string behavior = json_string_or(p, "behavior", "Isolated", src);
            SR_THROW_IF(behavior != "Isolated" || json_bool_or(p, "invert", false, src),
                        "{}: Split behavior '{}' is not supported (only Isolated, not inverted)", src, behavior);
            t.split_ = std::make_unique<Pcre2Regex>(pat["Regex"].get<std::string>(), false, src);
        } else if (ptype == "ByteLevel") {
            byte_level = true;
            SR_THROW_IF(json_bool_or(p, "add_prefix_space", false, src),
                        "{}: ByteLevel add_prefix_space is not supported", src);
            if (json_bool_or(p, "use_regex", true, src)) {
                SR_THROW_IF(t.split_, "{}: ByteLevel use_regex after a Split is not supported", src);
                t.split_ = std::make_unique<Pcre2Regex>(kGpt2Pattern, false, src);
            }
        } else {
            SR_THROW("{}: pre-tokenizer type '{}' is not supported", src, ptype);
        }
    }
    SR_THROW_IF(!byte_level, "{}: expected a ByteLevel pre-tokenizer (byte-level BPE)", src);

    // Post-processor: TemplateProcessing's single template (specials before and after $A), or none.
    if (j.contains("post_processor") && !j["post_processor"].is_null()) {
        const Json& pp = j["post_processor"];
        const std::string ptype = json_string_or(pp, "type", "", src);
        if (ptype == "TemplateProcessing") {
            const Json& single = json_require(pp, "single", src);
            SR_THROW_IF(!single.is_array(), "{}: post_processor.single is not an array", src);
            bool seen_sequence = false;
            for (const Json& piece : single) {
                if (piece.contains("Sequence")) {
                    seen_sequence = true;
                } else if (piece.contains("SpecialToken")) {
                    const std::string name = json_string(piece["SpecialToken"], "id", src);
                    const Json& specials = json_require(pp, "special_tokens", src);
                    SR_THROW_IF(!specials.contains(name), "{}: post_processor names unknown special '{}'", src, name);
                    for (int64_t id : json_int_array(specials[name], "ids", src)) {
                        SR_THROW_IF(id < 0 || id > max_id, "{}: post_processor id {} is not in the vocabulary", src,
                                    id);
                        (seen_sequence ? t.suffix_ids_ : t.prefix_ids_).push_back(int32_t(id));
                    }
                } else {
                    SR_THROW("{}: post_processor.single has an entry that is neither Sequence nor SpecialToken", src);
                }
            }
        } else if (ptype != "ByteLevel") {
            SR_THROW("{}: post_processor type '{}' is not supported", src, ptype);
        }
    }

    if (auto pad = config_token(config, "pad_token")) {
        auto it = t.vocab_.find(*pad);
        SR_THROW_IF(it == t.vocab_.end(), "{}: pad_token '{}' is not in {}", config_source, printable(*pad), src);
        t.pad_id_ = it->second;
    }
    if (!t.pad_id_ && j.contains("padding") && j["padding"].is_object())
        t.pad_id_ = int32_t(json_int(j["padding"], "pad_id", src));
    return t;
}

// ---------------------------------------------------------------------------------------------------------
// Encoding

std::optional<int32_t> BpeTokenizer::token_to_id(std::string_view token) const {
    auto it = vocab_.find(std::string(token));
    if (it == vocab_.end()) return std::nullopt;
    return it->second;
}

std::string BpeTokenizer::id_to_token(int32_t id) const {
    return id >= 0 && size_t(id) < id_to_token_.size() ? id_to_token_[size_t(id)] : std::string();
}

// One pre-tokenized piece (raw bytes) -> ids.
void BpeTokenizer::bpe(std::string_view piece, std::vector<int32_t>& out) const {
    const auto& alphabet = byte_level_alphabet();
    std::string mapped;
    for (char c : piece) mapped += alphabet[uint8_t(c)];
    if (ignore_merges_) {  // a piece that is itself a vocabulary entry is that one token
        auto it = vocab_.find(mapped);
        if (it != vocab_.end()) {
            out.push_back(it->second);
            return;
        }
    }
    std::vector<int32_t> sym;
    sym.reserve(piece.size());
    for (char c : piece) {
        auto it = vocab_.find(alphabet[uint8_t(c)]);
        SR_THROW_IF(it == vocab_.end(), "{}: byte 0x{:02x} has no token (not a byte-level vocabulary)", source_,
                    uint8_t(c));
        sym.push_back(it->second);
    }
    // Repeatedly merge the adjacent pair of lowest rank (leftmost among equals), with a heap of candidate pairs
    // over a linked list of symbols: O(n log n), so a 100 KB run of one character class (one piece) costs
    // milliseconds, not the minute a rescan after every merge took. A popped candidate whose two symbols are
    // no longer the ids it was pushed with is stale and skipped; the heap's (rank, position) order is the
    // leftmost-lowest-rank choice of the plain rescan, since positions keep their left-to-right order.
    const size_t n = sym.size();
    if (n > 1) {
        constexpr uint32_t kEnd = std::numeric_limits<uint32_t>::max();
        std::vector<uint32_t> next(n), prev(n);
        for (size_t i = 0; i < n; ++i)
            next[i] = i + 1 < n ? uint32_t(i + 1) : kEnd, prev[i] = i ? uint32_t(i - 1) : kEnd;
        struct Candidate {
            int32_t rank;
            uint32_t pos;
            int32_t left, right, merged;
            bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
        };
        std::priority_queue<Candidate, std::vector<Candidate>, std::greater<Candidate>> heap;
        auto consider = [&](uint32_t pos) {
            if (pos == kEnd || next[pos] == kEnd) return;
            const int32_t l = sym[pos], r = sym[next[pos]];
            auto it = merges_.find((uint64_t(uint32_t(l)) << 32) | uint32_t(r));
            if (it != merges_.end()) heap.push({it->second.first, pos, l, r, it->second.second});
        };
        for (size_t i = 0; i + 1 < n; ++i) consider(uint32_t(i));
        while (!heap.empty()) {
            const Candidate c = heap.top();
            heap.pop();
            const uint32_t r = next[c.pos];
            if (r == kEnd || sym[c.pos] != c.left || sym[r] != c.right) continue;  // stale
            sym[c.pos] = c.merged;
            sym[r] = -1;  // removed
            next[c.pos] = next[r];
            if (next[r] != kEnd) prev[next[r]] = c.pos;
            consider(prev[c.pos]);
            consider(c.pos);
        }
        size_t kept = 0;
        for (uint32_t i = 0; i != kEnd; i = next[i]) sym[kept++] = sym[i];  // position 0 is never removed
        sym.resize(kept);
    }
    out.insert(out.end(), sym.begin(), sym.end());
}

void BpeTokenizer::encode_plain(std::string_view text, std::vector<int32_t>& out) const {
    if (text.empty()) return;
    if (!split_) return bpe(text, out);
    for (auto [b, e] : split_->find_all(text)) bpe(text.substr(b, e - b), out);
}

std::vector<int32_t> BpeTokenizer::encode(std::string_view text, bool add_special_tokens) const {
    check_utf8(text, "prompt");
    std::vector<int32_t> out;
    if (add_special_tokens) out = prefix_ids_;
    // Added tokens are cut out of the raw text first, leftmost match, longest at a position.
    size_t start = 0, i = 0;
    while (i < text.size()) {
        const AddedToken* hit = nullptr;
        if (!added_first_byte_[uint8_t(text[i])]) {
            ++i;
            continue;
        }
        for (const AddedToken& a : added_)
            if (text.compare(i, a.content.size(), a.content) == 0) {
                hit = &a;
                break;
            }
        if (!hit) {
            ++i;
            continue;
        }
        encode_plain(text.substr(start, i - start), out);
        out.push_back(hit->id);
        i += hit->content.size();
        start = i;
    }
    encode_plain(text.substr(start), out);
    if (add_special_tokens) out.insert(out.end(), suffix_ids_.begin(), suffix_ids_.end());
    return out;
}

TokenizedText BpeTokenizer::encode_padded(std::string_view text, size_t max_length) const {
    SR_THROW_IF(!pad_id_, "{}: no pad token (tokenizer_config.json pad_token), cannot pad to {}", source_, max_length);
    const size_t n_special = prefix_ids_.size() + suffix_ids_.size();
    SR_THROW_IF(max_length < n_special, "max_length {} is shorter than the {} special tokens", max_length, n_special);
    std::vector<int32_t> content = encode(text, false);
    TokenizedText r;
    r.n_tokens = content.size() + n_special;
    // Right truncation of the content only: the specials are always kept (transformers reserves room for them).
    if (content.size() > max_length - n_special) {
        content.resize(max_length - n_special);
        r.truncated = true;
    }
    r.ids = prefix_ids_;
    r.ids.insert(r.ids.end(), content.begin(), content.end());
    r.ids.insert(r.ids.end(), suffix_ids_.begin(), suffix_ids_.end());
    r.attention_mask.assign(r.ids.size(), 1);
    r.ids.resize(max_length, *pad_id_);
    r.attention_mask.resize(max_length, 0);
    return r;
}

}  // namespace sr
