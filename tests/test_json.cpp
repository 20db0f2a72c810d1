// Guarded JSON: hostile text (deep nesting, malformed input, oversized files) is an sr::InputError naming the
// source, and the typed accessors name the key and the file when a config value has the wrong type.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "io/json.h"
#include "support/fixtures.h"

namespace {

namespace fs = std::filesystem;

using sr::test::Scratch;

using sr::test::write_file;

// Runs fn, which must throw sr::InputError whose message contains every one of `parts`.
template <class Fn>
void expect_input_error(Fn&& fn, const std::vector<std::string>& parts) {
    try {
        fn();
    } catch (const sr::InputError& e) {
        const std::string m = e.what();
        for (const auto& p : parts) EXPECT_NE(m.find(p), std::string::npos) << "message lacks '" << p << "': " << m;
        return;
    } catch (const std::exception& e) {
        ADD_FAILURE() << "expected sr::InputError, got another exception: " << e.what();
        return;
    }
    ADD_FAILURE() << "no error was raised";
}

const char* kConfig = R"({
  "_class_name": "HunyuanVideoTransformer3DModel",
  "num_layers": 20,
  "rope_theta": 256.0,
  "mlp_ratio": 4,
  "guidance_embeds": true,
  "qk_norm": "rms_norm",
  "rope_axes_dim": [16, 56, 56],
  "patch_size": "2",
  "nothing": null,
  "mixed": [1, "two", 3],
  "frac": 2.5
})";

TEST(Json, ParsesAValidConfig) {
    const sr::Json j = sr::parse_json(kConfig, "config.json");
    EXPECT_EQ(sr::json_int(j, "num_layers", "config.json"), 20);
    EXPECT_EQ(sr::json_number(j, "rope_theta", "config.json"), 256.0);
    EXPECT_EQ(sr::json_number(j, "mlp_ratio", "config.json"), 4.0);  // an integer is a number too
    EXPECT_EQ(sr::json_string(j, "qk_norm", "config.json"), "rms_norm");
    EXPECT_EQ(sr::json_int_array(j, "rope_axes_dim", "config.json"), (std::vector<int64_t>{16, 56, 56}));
    EXPECT_TRUE(sr::json_bool_or(j, "guidance_embeds", false, "config.json"));
    EXPECT_EQ(&sr::json_require(j, "qk_norm", "config.json"), &j["qk_norm"]);
}

TEST(Json, OptionalAccessorsFallBackOnMissingOrNull) {
    const sr::Json j = sr::parse_json(kConfig, "config.json");
    EXPECT_EQ(sr::json_int_or(j, "absent", 7, "config.json"), 7);
    EXPECT_EQ(sr::json_int_or(j, "nothing", 7, "config.json"), 7);  // null means "use the default"
    EXPECT_EQ(sr::json_int_or(j, "num_layers", 7, "config.json"), 20);
    EXPECT_EQ(sr::json_number_or(j, "absent", 1.5, "config.json"), 1.5);
    EXPECT_EQ(sr::json_number_or(j, "frac", 1.5, "config.json"), 2.5);
    EXPECT_FALSE(sr::json_bool_or(j, "absent", false, "config.json"));
    EXPECT_EQ(sr::json_string_or(j, "nothing", "fallback", "config.json"), "fallback");
    EXPECT_EQ(sr::json_string_or(j, "qk_norm", "fallback", "config.json"), "rms_norm");
    // On a non-object the optional accessors fall back rather than throw.
    EXPECT_EQ(sr::json_int_or(sr::Json::array(), "x", 3, "config.json"), 3);
}

TEST(Json, AccessorErrorsNameTheKeyAndTheFile) {
    const sr::Json j = sr::parse_json(kConfig, "transformer/config.json");
    const std::string src = "transformer/config.json";
    expect_input_error([&] { sr::json_int(j, "patch_size", src); }, {src, "'patch_size'", "integer", "\"2\""});
    expect_input_error([&] { sr::json_int(j, "frac", src); }, {src, "'frac'", "integer", "2.5"});
    expect_input_error([&] { sr::json_int(j, "num_heads", src); }, {src, "missing key 'num_heads'"});
    expect_input_error([&] { sr::json_number(j, "qk_norm", src); }, {src, "'qk_norm'", "number"});
    expect_input_error([&] { sr::json_string(j, "num_layers", src); }, {src, "'num_layers'", "string"});
    expect_input_error([&] { sr::json_bool_or(j, "qk_norm", false, src); }, {src, "'qk_norm'", "true or false"});
    expect_input_error([&] { sr::json_int_array(j, "num_layers", src); }, {src, "'num_layers'", "array"});
    expect_input_error([&] { sr::json_int_array(j, "mixed", src); }, {src, "'mixed'", "\"two\""});
    // A present but mistyped optional value is an error, not a silent fallback.
    expect_input_error([&] { sr::json_int_or(j, "patch_size", 2, src); }, {src, "'patch_size'"});
    expect_input_error([&] { sr::json_string_or(j, "num_layers", "x", src); }, {src, "'num_layers'"});
    // Asking an array for a key.
    expect_input_error([&] { sr::json_int(j["rope_axes_dim"], "x", src); }, {src, "expected a JSON object"});
}

TEST(Json, MalformedTextNamesTheSource) {
    for (const char* text : {"", "{", "{\"a\":}", "[1,2", "{\"a\":1} trailing", "{'a':1}", "nul", "\"unterminated",
                             "{\"a\":1,}", "1e400", "\"\xff\""}) {
        SCOPED_TRACE(text);
        expect_input_error([&] { sr::parse_json(text, "my/config.json"); }, {"my/config.json", "malformed JSON"});
    }
}

TEST(Json, NestingLimitIsExact) {
    const auto nested = [](int depth) { return std::string(size_t(depth), '[') + std::string(size_t(depth), ']'); };
    EXPECT_NO_THROW(sr::parse_json(nested(sr::kMaxJsonDepth), "ok"));
    expect_input_error([&] { sr::parse_json(nested(sr::kMaxJsonDepth + 1), "deep.json"); },
                       {"deep.json", "nested deeper than 64"});
}

TEST(Json, DeepNestingIsAnErrorNotAStackOverflow) {
    // 100k levels would overflow the stack of a recursive parser or printer; it must be refused up front.
    expect_input_error([&] { sr::parse_json(std::string(100000, '['), "arrays.json"); }, {"arrays.json", "nested"});
    std::string objects;
    for (int i = 0; i < 100000; ++i) objects += "{\"k\":";
    expect_input_error([&] { sr::parse_json(objects, "objects.json"); }, {"objects.json", "nested"});
    // Balanced but deep is refused too, however valid.
    expect_input_error([&] { sr::parse_json(std::string(100000, '[') + std::string(100000, ']'), "balanced.json"); },
                       {"balanced.json", "nested"});
}

TEST(Json, BracketsInsideStringsDoNotCountAsNesting) {
    const std::string inside = "[\"" + std::string(1000, '[') + "\"]";
    const sr::Json j = sr::parse_json(inside, "s");
    EXPECT_EQ(j[0].get<std::string>().size(), 1000u);
    // An escaped quote does not end the string: the brackets after it are still text.
    const std::string escaped = "[\"\\\"" + std::string(1000, '{') + "\"]";
    EXPECT_EQ(sr::parse_json(escaped, "s")[0].get<std::string>().size(), 1001u);
    // An escaped backslash does end before the quote, so the brackets after the string do count.
    const std::string real = "[\"\\\\\"," + std::string(100, '[') + std::string(100, ']') + "]";
    expect_input_error([&] { sr::parse_json(real, "s"); }, {"nested"});
}

TEST(JsonFile, LoadNamesTheFileOnEveryError) {
    Scratch s("json_files");
    const std::string cfg = s / "config.json";
    write_file(cfg, kConfig);
    EXPECT_EQ(sr::json_int(sr::load_json_file(cfg), "num_layers", cfg), 20);

    write_file(cfg, "{\"num_layers\": 20,");
    expect_input_error([&] { sr::load_json_file(cfg); }, {cfg, "malformed JSON"});
    write_file(cfg, std::string(100000, '{'));
    expect_input_error([&] { sr::load_json_file(cfg); }, {cfg, "nested"});
    expect_input_error([&] { sr::load_json_file(s / "absent.json"); }, {s / "absent.json", "cannot open"});
    // A folder where a file is expected.
    fs::create_directory(s.dir / "dir.json");
    expect_input_error([&] { sr::load_json_file(s / "dir.json"); }, {s / "dir.json"});
}

TEST(JsonFile, ReadTextFileEnforcesItsLimit) {
    Scratch s("json_read_limit");
    const std::string path = s / "blob.bin";
    const std::string bytes = std::string("a\0b\xff", 4) + std::string(1000, 'x');
    write_file(path, bytes);
    EXPECT_EQ(sr::read_text_file(path, 2000), bytes);  // binary-safe, exact
    EXPECT_EQ(sr::read_text_file(path, bytes.size()), bytes);
    expect_input_error([&] { sr::read_text_file(path, bytes.size() - 1); }, {path, "1004 bytes", "1003"});
    write_file(path, "");
    EXPECT_EQ(sr::read_text_file(path, 0), "");
}

}  // namespace
