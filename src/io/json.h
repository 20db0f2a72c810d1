// JSON input (config.json, safetensors headers, index files), parsed with nlohmann::json but guarded:
// the text is treated as hostile, so nesting depth is checked before the recursive parser sees it, and every
// error names the source and the offending key.
//
//   auto j = sr::load_json_file(dir + "/config.json");
//   int64_t heads = sr::json_int(j, "num_attention_heads", path);          // required
//   double theta = sr::json_number_or(j, "rope_theta", 256.0, path);        // optional
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <string_view>
#include <vector>

namespace sr {

using Json = nlohmann::json;

// Deepest nesting accepted. Real configs and headers nest 3-4 levels.
constexpr int kMaxJsonDepth = 64;

Json parse_json(std::string_view text, std::string_view source);
Json load_json_file(const std::string& path);

// Typed, checked accessors. `source` names the file in errors.
const Json& json_require(const Json& j, std::string_view key, std::string_view source);
int64_t json_int(const Json& j, std::string_view key, std::string_view source);
int64_t json_int_or(const Json& j, std::string_view key, int64_t fallback, std::string_view source);
double json_number(const Json& j, std::string_view key, std::string_view source);
double json_number_or(const Json& j, std::string_view key, double fallback, std::string_view source);
bool json_bool_or(const Json& j, std::string_view key, bool fallback, std::string_view source);
std::string json_string(const Json& j, std::string_view key, std::string_view source);
std::string json_string_or(const Json& j, std::string_view key, std::string fallback, std::string_view source);
std::vector<int64_t> json_int_array(const Json& j, std::string_view key, std::string_view source);

// The file's text (at most max_bytes): InputError naming the file when it is missing, not a regular file (a
// FIFO is refused without blocking), unreadable or larger.
std::string read_text_file(const std::string& path, size_t max_bytes);

}  // namespace sr
