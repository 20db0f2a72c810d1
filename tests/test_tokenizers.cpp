// Golden-file tests of the Llama-3 (byte-level BPE) and CLIP tokenizers, and their bad-input behaviour.
//
// Goldens are discovered by content: any `*golden*.json` array of cases under the fixtures root, next to a
// vocabulary folder (see golden_files) holding either tokenizer.json (byte-level BPE, checked against ids,
// template_ids, padded_ids, attention_mask, truncated) or vocab.json + merges.txt (CLIP, checked against ids,
// padded_ids, attention_mask, truncated). The folder's pipeline.json, when present, gives the template and lengths.
// Token ids are exact: there is no tolerance.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "io/json.h"
#include "support/fixtures.h"
#include "text/bpe_tokenizer.h"
#include "text/clip_tokenizer.h"

namespace fs = std::filesystem;
using namespace sr;

namespace {

enum class Kind { Bpe, Clip };

struct GoldenFile {
    fs::path json, vocab_dir;
    Kind kind;
};

bool is_bpe_dir(const fs::path& d) {
    return fs::exists(d / "tokenizer.json");
}
bool is_clip_dir(const fs::path& d) {
    return fs::exists(d / "vocab.json") && fs::exists(d / "merges.txt");
}

// Golden files: JSON arrays of {"text", "ids", ...} named *golden*.json. The vocabulary is the sibling folder
// named like the file (`llama3_goldens.json` -> `llama3/`); failing that, the one sibling folder of the kind
// the cases imply ("template_ids" only exists for the Llama-3 call).
std::vector<GoldenFile> golden_files(Kind kind) {
    std::vector<GoldenFile> out;
    for (const fs::path& dir : test::find_fixture_dirs([](const fs::path&) { return true; })) {
        for (const auto& entry : fs::directory_iterator(dir)) {
            const std::string name = entry.path().filename().string();
            if (!entry.is_regular_file() || entry.path().extension() != ".json" ||
                name.find("golden") == std::string::npos)
                continue;
            const Json cases = load_json_file(entry.path().string());
            if (!cases.is_array() || cases.empty() || !cases[0].is_object() || !cases[0].contains("text") ||
                !cases[0].contains("ids"))
                continue;
            const std::string stem = entry.path().stem().string();
            const size_t cut = stem.find("_golden");
            fs::path vocab = dir / stem.substr(0, cut == std::string::npos ? stem.size() : cut);
            if (!is_bpe_dir(vocab) && !is_clip_dir(vocab)) {
                const bool wants_bpe = cases[0].contains("template_ids");
                std::vector<fs::path> candidates;
                for (const auto& sub : fs::directory_iterator(dir))
                    if (sub.is_directory() && (wants_bpe ? is_bpe_dir(sub.path()) : is_clip_dir(sub.path())))
                        candidates.push_back(sub.path());
                if (candidates.size() != 1) continue;
                vocab = candidates[0];
            }
            if (kind == Kind::Bpe && is_bpe_dir(vocab)) out.push_back({entry.path(), vocab, kind});
            if (kind == Kind::Clip && !is_bpe_dir(vocab) && is_clip_dir(vocab))
                out.push_back({entry.path(), vocab, kind});
        }
    }
    return out;
}

std::vector<int32_t> ints(const Json& j) {
    std::vector<int32_t> v;
    for (const Json& x : j) v.push_back(x.get<int32_t>());
    return v;
}

// The pipeline call as data (pipeline.json next to the vocabulary), with HunyuanVideo's values as defaults.
struct PipelineCall {
    std::string template_text, placeholder = "{}";
    size_t max_length = 0;
};

PipelineCall pipeline_call(const fs::path& vocab_dir, size_t default_max_length) {
    PipelineCall c;
    c.max_length = default_max_length;
    const fs::path p = vocab_dir / "pipeline.json";
    if (!fs::exists(p)) return c;
    const Json j = load_json_file(p.string());
    c.template_text = json_string_or(j, "prompt_template", "", p.string());
    c.placeholder = json_string_or(j, "prompt_placeholder", "{}", p.string());
    c.max_length = size_t(json_int_or(j, "max_length", int64_t(default_max_length), p.string()));
    return c;
}

std::string fill_template(const PipelineCall& c, const std::string& text) {
    std::string s = c.template_text;
    const size_t at = s.find(c.placeholder);
    return at == std::string::npos ? s : s.replace(at, c.placeholder.size(), text);
}

fs::path write_file(const std::string& test, const std::string& name, const std::string& content) {
    const fs::path dir = test::scratch_dir(test);
    std::ofstream(dir / name, std::ios::binary) << content;
    return dir / name;
}

}  // namespace

TEST(Tokenizers, GoldenFilesExist) {
    // A golden test that finds nothing to compare must fail, not pass vacuously.
    EXPECT_FALSE(golden_files(Kind::Bpe).empty())
        << "no *_goldens.json next to a tokenizer.json folder under " << test::fixtures_root();
    EXPECT_FALSE(golden_files(Kind::Clip).empty())
        << "no *_goldens.json next to a vocab.json + merges.txt folder under " << test::fixtures_root();
}

TEST(Tokenizers, BpeGoldens) {
    for (const GoldenFile& g : golden_files(Kind::Bpe)) {
        SCOPED_TRACE(g.json.string());
        const BpeTokenizer tok = BpeTokenizer::load(g.vocab_dir.string());
        const PipelineCall call = pipeline_call(g.vocab_dir, 351);
        const Json cases = load_json_file(g.json.string());
        ASSERT_TRUE(cases.is_array() && !cases.empty());
        int checked = 0;
        for (const Json& c : cases) {
            const std::string id = c.value("id", "?"), text = c.at("text").get<std::string>();
            SCOPED_TRACE("case " + id);
            EXPECT_EQ(tok.encode(text), ints(c.at("ids")));
            if (call.template_text.empty()) continue;
            const std::string filled = fill_template(call, text);
            if (c.contains("template_ids")) {
                EXPECT_EQ(tok.encode(filled), ints(c["template_ids"]));
            }
            if (c.contains("padded_ids")) {
                const TokenizedText t = tok.encode_padded(filled, call.max_length);
                EXPECT_EQ(t.ids, ints(c["padded_ids"]));
                EXPECT_EQ(t.attention_mask, ints(c.at("attention_mask")));
                EXPECT_EQ(t.truncated, c.at("truncated").get<bool>());
            }
            ++checked;
        }
        EXPECT_EQ(checked, int(cases.size()));
    }
}

TEST(Tokenizers, ClipGoldens) {
    for (const GoldenFile& g : golden_files(Kind::Clip)) {
        SCOPED_TRACE(g.json.string());
        const ClipTokenizer tok = ClipTokenizer::load(g.vocab_dir.string());
        const PipelineCall call = pipeline_call(g.vocab_dir, 77);
        const Json cases = load_json_file(g.json.string());
        ASSERT_TRUE(cases.is_array() && !cases.empty());
        for (const Json& c : cases) {
            const std::string id = c.value("id", "?"), text = c.at("text").get<std::string>();
            SCOPED_TRACE("case " + id);
            EXPECT_EQ(tok.encode(text), ints(c.at("ids")));
            const TokenizedText t = tok.encode_padded(text, call.max_length);
            EXPECT_EQ(t.ids, ints(c.at("padded_ids")));
            EXPECT_EQ(t.attention_mask, ints(c.at("attention_mask")));
            EXPECT_EQ(t.truncated, c.at("truncated").get<bool>());
        }
    }
}

// ---- behaviour on bad and degenerate input ----

class TokenizerInput : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        for (const GoldenFile& g : golden_files(Kind::Bpe)) bpe_dir_ = g.vocab_dir;
        for (const GoldenFile& g : golden_files(Kind::Clip)) clip_dir_ = g.vocab_dir;
    }
    static fs::path bpe_dir_, clip_dir_;
};
fs::path TokenizerInput::bpe_dir_, TokenizerInput::clip_dir_;

TEST_F(TokenizerInput, InvalidUtf8IsAnInputErrorNamingTheByte) {
    // Defined behaviour: a prompt that is not UTF-8 is rejected (never silently replaced), naming the offset.
    ASSERT_FALSE(bpe_dir_.empty() || clip_dir_.empty());
    const BpeTokenizer bpe = BpeTokenizer::load(bpe_dir_.string());
    const ClipTokenizer clip = ClipTokenizer::load(clip_dir_.string());
    for (const std::string& bad : {std::string("a cat\xff"), std::string("caf\xc3"), std::string("\xc0\xaf"),
                                   std::string("\xed\xa0\x80"), std::string("ok \x80 no")}) {
        try {
            bpe.encode(bad);
            ADD_FAILURE() << "BPE accepted invalid UTF-8";
        } catch (const InputError& e) {
            EXPECT_NE(std::string(e.what()).find("not valid UTF-8 at byte"), std::string::npos) << e.what();
        }
        EXPECT_THROW(clip.encode(bad), InputError);
        EXPECT_THROW(bpe.encode_padded(bad, 351), InputError);
        EXPECT_THROW(clip.encode_padded(bad, 77), InputError);
    }
}

TEST_F(TokenizerInput, EmptyPromptGivesOnlySpecials) {
    ASSERT_FALSE(bpe_dir_.empty() || clip_dir_.empty());
    const BpeTokenizer bpe = BpeTokenizer::load(bpe_dir_.string());
    const ClipTokenizer clip = ClipTokenizer::load(clip_dir_.string());
    EXPECT_EQ(bpe.encode(""), std::vector<int32_t>{128000});
    EXPECT_EQ(bpe.encode("", false), std::vector<int32_t>{});
    EXPECT_EQ(clip.encode(""), (std::vector<int32_t>{49406, 49407}));
    const TokenizedText t = clip.encode_padded("", 77);
    EXPECT_EQ(t.attention_mask[1], 1);
    EXPECT_EQ(t.attention_mask[2], 0);
    EXPECT_FALSE(t.truncated);
}

TEST_F(TokenizerInput, MissingVocabularyFiles) {
    const fs::path empty = test::scratch_dir("tok_missing");
    try {
        BpeTokenizer::load(empty.string());
        ADD_FAILURE() << "loaded a folder without tokenizer.json";
    } catch (const InputError& e) {
        EXPECT_NE(std::string(e.what()).find("tokenizer.json"), std::string::npos) << e.what();
    }
    try {
        ClipTokenizer::load(empty.string());
        ADD_FAILURE() << "loaded a folder without vocab.json";
    } catch (const InputError& e) {
        EXPECT_NE(std::string(e.what()).find("vocab.json"), std::string::npos) << e.what();
    }
    EXPECT_THROW(ClipTokenizer::load((empty / "nope").string()), InputError);
    write_file("tok_missing", "vocab.json", R"({"a": 0})");
    EXPECT_THROW(ClipTokenizer::load(empty.string()), InputError);  // merges.txt still missing
}

TEST_F(TokenizerInput, MalformedTokenizerJson) {
    const std::string base_model = R"("model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]})";
    const std::string byte_level = R"("pre_tokenizer": {"type": "ByteLevel", "use_regex": true})";
    const std::vector<std::pair<std::string, std::string>> bad = {
        {"truncated JSON", R"({"model": {"type": "BPE", "vocab": {"a": )"},
        {"not an object", "[1, 2, 3]"},
        {"no model", "{" + byte_level + "}"},
        {"unknown model type",
         R"({"model": {"type": "WordPiece", "vocab": {"a": 0}, "merges": []}, )" + byte_level + "}"},
        {"merge of unknown tokens",
         R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a zz"]}, )" + byte_level + "}"},
        {"merge without a space",
         R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["ab"]}, )" + byte_level + "}"},
        {"string id", R"({"model": {"type": "BPE", "vocab": {"a": "0"}, "merges": []}, )" + byte_level + "}"},
        {"negative id", R"({"model": {"type": "BPE", "vocab": {"a": -4}, "merges": []}, )" + byte_level + "}"},
        {"bad regex",
         "{" + base_model +
             R"(, "pre_tokenizer": {"type": "Sequence", "pretokenizers": [{"type": "Split", "pattern": )"
             R"({"Regex": "(unclosed"}, "behavior": "Isolated"}, {"type": "ByteLevel", "use_regex": false}]}})"},
        {"no byte level", "{" + base_model + "}"},
        {"deep nesting", std::string(100, '[') + std::string(100, ']')},
    };
    for (const auto& [what, text] : bad) {
        const fs::path p = write_file("tok_malformed", "tokenizer.json", text);
        try {
            BpeTokenizer::load(p.string());
            ADD_FAILURE() << what << ": accepted";
        } catch (const InputError& e) {
            EXPECT_NE(std::string(e.what()).find("tokenizer.json"), std::string::npos) << what << ": " << e.what();
        }
    }
    // A minimal well-formed file loads and merges.
    const fs::path ok = write_file("tok_malformed", "tokenizer.json", "{" + base_model + ", " + byte_level + "}");
    EXPECT_EQ(BpeTokenizer::load(ok.string()).encode("ab"), std::vector<int32_t>{2});
}

TEST(Tokenizers, ClipCleanupFollowsBasicTokenizer) {
    // Controls and Cf are deleted, not spaced; whitespace collapses; CJK ideographs split; lower-casing.
    EXPECT_EQ(ClipTokenizer::clean_text("  A\tB\u200bC\u00a0\u4e2d\u6587 \xc4\xb0 "), "a bc \u4e2d \u6587 i\u0307");
    EXPECT_EQ(ClipTokenizer::clean_text(""), "");
}
