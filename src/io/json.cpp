#include "io/json.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "core/files.h"

namespace sr {

namespace {

// nlohmann's parser recurses once per nesting level; a hostile "[[[[..." would overflow the stack.
void check_depth(std::string_view text, std::string_view source) {
    int depth = 0;
    bool in_string = false, escaped = false;
    for (char c : text) {
        if (in_string) {
            if (escaped)
                escaped = false;
            else if (c == '\\')
                escaped = true;
            else if (c == '"')
                in_string = false;
            continue;
        }
        if (c == '"')
            in_string = true;
        else if (c == '[' || c == '{') {
            SR_THROW_IF(++depth > kMaxJsonDepth, "{}: JSON nested deeper than {} levels", source, kMaxJsonDepth);
        } else if (c == ']' || c == '}')
            --depth;
    }
}

}  // namespace

Json parse_json(std::string_view text, std::string_view source) {
    check_depth(text, source);
    try {
        return Json::parse(text.begin(), text.end());
    } catch (const Json::exception& e) {
        SR_THROW("{}: malformed JSON: {}", source, e.what());
    }
}

std::string read_text_file(const std::string& path, size_t max_bytes) {
    return read_regular_file(path, max_bytes);  // no FIFO or device, errors named, the size checked first
}

Json load_json_file(const std::string& path) {
    return parse_json(read_text_file(path, 64u << 20), path);
}

const Json& json_require(const Json& j, std::string_view key, std::string_view source) {
    SR_THROW_IF(!j.is_object(), "{}: expected a JSON object", source);
    auto it = j.find(std::string(key));
    SR_THROW_IF(it == j.end(), "{}: missing key '{}'", source, key);
    return *it;
}

int64_t json_int(const Json& j, std::string_view key, std::string_view source) {
    const Json& v = json_require(j, key, source);
    SR_THROW_IF(!v.is_number_integer(), "{}: '{}' must be an integer, got {}", source, key, v.dump());
    SR_THROW_IF(v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(INT64_MAX), "{}: '{}' = {} is out of range",
                source, key, v.dump());
    return v.get<int64_t>();
}

int64_t json_int_or(const Json& j, std::string_view key, int64_t fallback, std::string_view source) {
    if (!j.is_object() || !j.contains(std::string(key)) || j.at(std::string(key)).is_null()) return fallback;
    return json_int(j, key, source);
}

double json_number(const Json& j, std::string_view key, std::string_view source) {
    const Json& v = json_require(j, key, source);
    SR_THROW_IF(!v.is_number(), "{}: '{}' must be a number, got {}", source, key, v.dump());
    const double d = v.get<double>();
    SR_THROW_IF(!std::isfinite(d), "{}: '{}' must be a finite number, got {}", source, key, v.dump());
    return d;
}

double json_number_or(const Json& j, std::string_view key, double fallback, std::string_view source) {
    if (!j.is_object() || !j.contains(std::string(key)) || j.at(std::string(key)).is_null()) return fallback;
    return json_number(j, key, source);
}

bool json_bool_or(const Json& j, std::string_view key, bool fallback, std::string_view source) {
    if (!j.is_object() || !j.contains(std::string(key)) || j.at(std::string(key)).is_null()) return fallback;
    const Json& v = j.at(std::string(key));
    SR_THROW_IF(!v.is_boolean(), "{}: '{}' must be true or false, got {}", source, key, v.dump());
    return v.get<bool>();
}

std::string json_string(const Json& j, std::string_view key, std::string_view source) {
    const Json& v = json_require(j, key, source);
    SR_THROW_IF(!v.is_string(), "{}: '{}' must be a string, got {}", source, key, v.dump());
    return v.get<std::string>();
}

std::string json_string_or(const Json& j, std::string_view key, std::string fallback, std::string_view source) {
    if (!j.is_object() || !j.contains(std::string(key)) || j.at(std::string(key)).is_null()) return fallback;
    return json_string(j, key, source);
}

std::vector<int64_t> json_int_array(const Json& j, std::string_view key, std::string_view source) {
    const Json& v = json_require(j, key, source);
    SR_THROW_IF(!v.is_array(), "{}: '{}' must be an array of integers, got {}", source, key, v.dump());
    std::vector<int64_t> out;
    for (const Json& e : v) {
        SR_THROW_IF(!e.is_number_integer(), "{}: '{}' must hold integers, got {}", source, key, e.dump());
        SR_THROW_IF(e.is_number_unsigned() && e.get<uint64_t>() > uint64_t(INT64_MAX),
                    "{}: '{}' holds {}, out of range", source, key, e.dump());
        out.push_back(e.get<int64_t>());
    }
    return out;
}

}  // namespace sr
