#include "server/job_request.h"

#include <fmt/format.h>

#include <charconv>
#include <cmath>
#include <random>
#include <set>

#include "core/error.h"
#include "server/api_error.h"
#include "server/security.h"
#include "text/bpe_tokenizer.h"

namespace sr::server {

using nlohmann::json;

namespace {

const std::set<std::string> kFields = {"prompt",
                                       "model",
                                       "seconds",
                                       "size",
                                       "input_reference",
                                       "negative_prompt",
                                       "seed",
                                       "num_inference_steps",
                                       "guidance_scale",
                                       "embedded_guidance_scale",
                                       "num_frames",
                                       "fps",
                                       "cache",
                                       "loras",
                                       "lora_ignore_unmatched"};

std::string text_field(const json& v, const std::string& name) {
    if (!v.is_string()) throw ApiError::bad_request(name, fmt::format("{}: must be a string", name), "invalid_type");
    const std::string s = v.get<std::string>();
    try {
        check_utf8(s, name);
    } catch (const InputError& e) {
        throw ApiError::bad_request(name, e.what(), "invalid_type");
    }
    return s;
}

// A number given as a JSON number or as a string of one (form fields are strings; OpenAI sends `seconds` as
// one).
double number_field(const json& v, const std::string& name) {
    if (v.is_number()) return v.get<double>();
    if (v.is_string()) {
        const std::string s = v.get<std::string>();
        double d = 0;
        const auto [end, err] = std::from_chars(s.data(), s.data() + s.size(), d);
        if (err == std::errc() && end == s.data() + s.size() && !s.empty()) return d;
    }
    throw ApiError::bad_request(name, fmt::format("{}: must be a number", name), "invalid_type");
}

int64_t integer_field(const json& v, const std::string& name, int64_t lo, int64_t hi) {
    int64_t x = 0;
    bool ok = false;
    if (v.is_number_integer()) {
        ok = !(v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(INT64_MAX));
        if (ok) x = v.get<int64_t>();
    } else if (v.is_string()) {
        const std::string s = v.get<std::string>();
        const auto [end, err] = std::from_chars(s.data(), s.data() + s.size(), x);
        ok = err == std::errc() && end == s.data() + s.size() && !s.empty();
    }
    if (!ok) throw ApiError::bad_request(name, fmt::format("{}: must be an integer", name), "invalid_type");
    if (x < lo || x > hi) throw ApiError::bad_request(name, fmt::format("{} {}: must be in {}..{}", name, x, lo, hi));
    return x;
}

double scale_field(const json& v, const std::string& name) {
    const double x = number_field(v, name);
    if (!std::isfinite(x) || x < 0 || x > 100)
        throw ApiError::bad_request(name, fmt::format("{} {}: must be a finite number in 0..100", name, x));
    return x;
}

// "WxH", each side a multiple of 16 in 16..kMaxRequestSide.
void parse_size(const std::string& s, int64_t& width, int64_t& height) {
    const size_t x = s.find('x');
    int64_t w = 0, h = 0;
    bool ok = x != std::string::npos && x > 0 && x + 1 < s.size();
    if (ok) {
        const auto a = std::from_chars(s.data(), s.data() + x, w);
        const auto b = std::from_chars(s.data() + x + 1, s.data() + s.size(), h);
        ok = a.ec == std::errc() && a.ptr == s.data() + x && b.ec == std::errc() && b.ptr == s.data() + s.size();
    }
    if (!ok)
        throw ApiError::bad_request("size",
                                    fmt::format("size '{}': expected WIDTHxHEIGHT, e.g. 960x544", s.substr(0, 40)));
    for (auto [side, what] : {std::pair{w, "width"}, std::pair{h, "height"}})
        if (side < 16 || side > kMaxRequestSide || side % 16 != 0)
            throw ApiError::bad_request(
                "size", fmt::format("size {}: the {} must be a multiple of 16 in 16..{}", s, what, kMaxRequestSide));
    width = w;
    height = h;
}

// `loras`: a JSON list (a form field: the list as JSON text) of "NAME[:STRENGTH]" or {"file", "strength"},
// each file checked against the folder's rules now (a bad one is a 400 naming its entry).
std::vector<LoraFile> parse_loras(const json& value, const std::string& lora_dir) {
    json list = value;
    if (value.is_string()) {
        try {
            list = json::parse(value.get<std::string>());
        } catch (const json::exception&) {
            throw ApiError::bad_request("loras", "loras: must be a JSON list", "invalid_type");
        }
    }
    if (!list.is_array()) throw ApiError::bad_request("loras", "loras: must be a list", "invalid_type");
    if (lora_dir.empty() && !list.empty())
        throw ApiError::bad_request("loras",
                                    "loras: this server takes no per-job LoRA adapters (start it with "
                                    "--lora-dir DIR to serve the adapter files in DIR)");
    if (list.size() > kMaxRequestLoras)
        throw ApiError::bad_request("loras", fmt::format("loras: at most {} adapters per job", kMaxRequestLoras));
    std::vector<LoraFile> out;
    for (size_t i = 0; i < list.size(); ++i) {
        const json& e = list[i];
        const std::string at = fmt::format("loras[{}]", i);
        LoraFile f;
        if (e.is_string()) {
            const std::string text = text_field(e, at);
            try {
                f = parse_lora_argument(text);
            } catch (const InputError& err) {
                throw ApiError::bad_request(at, fmt::format("{}: {}", at, err.what()));
            }
        } else if (e.is_object()) {
            for (const auto& [key, v] : e.items())
                if (key != "file" && key != "strength")
                    throw ApiError::bad_request(at + "." + key,
                                                fmt::format("{}: unknown field '{}'", at, key.substr(0, 100)),
                                                "unknown_parameter");
            if (!e.contains("file"))
                throw ApiError::bad_request(at + ".file", at + ".file: required", "missing_required_parameter");
            f.path = text_field(e["file"], at + ".file");
            if (e.contains("strength")) {
                const double st = number_field(e["strength"], at + ".strength");
                f.strength = float(st);
                if (!std::isfinite(st) || std::abs(st) > kMaxLoraStrength)
                    throw ApiError::bad_request(
                        at + ".strength", fmt::format("{}.strength {}: must be a finite number in -{}..{}", at, st,
                                                      kMaxLoraStrength, kMaxLoraStrength));
            }
        } else {
            throw ApiError::bad_request(
                at, fmt::format("{}: must be \"NAME[:STRENGTH]\" or {{\"file\", \"strength\"}}", at), "invalid_type");
        }
        if (!std::isfinite(f.strength) || std::abs(f.strength) > kMaxLoraStrength)
            throw ApiError::bad_request(at, fmt::format("{}: strength {} must be a finite number in -{}..{}", at,
                                                        f.strength, kMaxLoraStrength, kMaxLoraStrength));
        try {
            (void)file_in_folder(lora_dir, f.path);
        } catch (const InputError& err) {
            throw ApiError::bad_request(at, fmt::format("{}: {}", at, err.what()), "invalid_lora");
        }
        out.push_back(f);
    }
    return out;
}

const ServedModel& choose_model(const json& fields, bool has_image, const std::vector<ServedModel>& models) {
    if (fields.contains("model")) {
        const std::string id = text_field(fields["model"], "model");
        for (const ServedModel& m : models)
            if (m.id == id) return m;
        std::string ids;
        for (const ServedModel& m : models) ids += (ids.empty() ? "" : ", ") + m.id;
        throw ApiError::bad_request("model", fmt::format("model '{}': this server runs {}", id.substr(0, 100), ids),
                                    "model_not_found");
    }
    const Task want = has_image ? Task::I2V : Task::T2V;
    for (const ServedModel& m : models)
        if (m.task == want) return m;
    if (has_image)
        throw ApiError::bad_request("input_reference",
                                    "input_reference: this server's model is text-to-video; send no image");
    return models.front();  // an I2V-only server: its model, with the demo's image or an error below
}

}  // namespace

ParsedRequest parse_video_request(const json& fields, const std::string& image, const std::vector<ServedModel>& models,
                                  const std::string& lora_dir) {
    if (!fields.is_object())
        throw ApiError::bad_request("", "the request body must be a JSON object (or multipart form data)",
                                    "invalid_json");
    for (const auto& [key, value] : fields.items())
        if (!kFields.count(key))
            throw ApiError::bad_request(key, fmt::format("unknown field '{}'", key.substr(0, 100)),
                                        "unknown_parameter");
    if (fields.contains("input_reference"))
        throw ApiError::bad_request("input_reference",
                                    "input_reference: send the image as a file in multipart/form-data", "invalid_type");
    ParsedRequest out;
    JobSpec& s = out.spec;
    const bool has_image = !image.empty();
    const ServedModel& model = choose_model(fields, has_image, models);
    s.model = model.id;
    s.task = model.task;
    const GenerationParams& d = model.defaults;

    if (!fields.contains("prompt"))
        throw ApiError::bad_request("prompt", "prompt: required", "missing_required_parameter");
    s.prompt = text_field(fields["prompt"], "prompt");
    if (s.prompt.empty() || s.prompt.size() > kMaxPromptBytes)
        throw ApiError::bad_request("prompt", fmt::format("prompt: must have 1..{} bytes", kMaxPromptBytes));
    s.negative_prompt = kSkyReelsNegativePrompt;
    if (fields.contains("negative_prompt")) {
        s.negative_prompt = text_field(fields["negative_prompt"], "negative_prompt");
        if (s.negative_prompt.size() > kMaxPromptBytes)
            throw ApiError::bad_request("negative_prompt",
                                        fmt::format("negative_prompt: at most {} bytes", kMaxPromptBytes));
    }
    s.width = d.width;
    s.height = d.height;
    if (fields.contains("size")) parse_size(text_field(fields["size"], "size"), s.width, s.height);
    s.fps = fields.contains("fps") ? int(integer_field(fields["fps"], "fps", 1, kMaxRequestFps)) : 24;
    s.frames = d.num_frames;
    if (fields.contains("num_frames")) {
        s.frames = integer_field(fields["num_frames"], "num_frames", 1, kMaxRequestFrames);
        if (s.frames % 4 != 1)
            throw ApiError::bad_request("num_frames",
                                        fmt::format("num_frames {}: must be 4k+1 (1, 5, 9, ..., 97, ...)", s.frames));
    } else if (fields.contains("seconds")) {
        const double sec = number_field(fields["seconds"], "seconds");
        const double max_seconds = double(kMaxRequestFrames - 1) / s.fps;
        if (!std::isfinite(sec) || sec <= 0 || sec > max_seconds)
            throw ApiError::bad_request(
                "seconds",
                fmt::format("seconds {}: must be more than 0 and at most {:.2f} at {} fps", sec, max_seconds, s.fps));
        // The nearest 4k+1 frame count (the VAE's temporal compression), at least 1.
        s.frames = std::max<int64_t>(1, std::llround(sec * s.fps / 4.0) * 4 + 1);
    }
    s.steps = d.num_inference_steps;
    if (fields.contains("num_inference_steps"))
        s.steps = int(integer_field(fields["num_inference_steps"], "num_inference_steps", 1, kMaxRequestSteps));
    s.guidance =
        fields.contains("guidance_scale") ? scale_field(fields["guidance_scale"], "guidance_scale") : d.guidance_scale;
    s.embedded_guidance = fields.contains("embedded_guidance_scale")
                              ? scale_field(fields["embedded_guidance_scale"], "embedded_guidance_scale")
                              : d.embedded_guidance_scale;
    if (fields.contains("cache")) {
        try {  // "teacache:0.15", "fbcache:0.1" or "none", as --cache
            s.cache = parse_step_cache(text_field(fields["cache"], "cache"), "cache").str();
        } catch (const InputError& e) {
            throw ApiError::bad_request("cache", e.what());
        }
    }
    int64_t seed = -1;
    if (fields.contains("seed")) seed = integer_field(fields["seed"], "seed", -1, INT64_MAX);
    // -1 (or none): a random seed in SkyReels' range, recorded in the job so the video can be made again.
    s.seed = seed == -1 ? uint64_t(std::random_device{}() % 4294967294u) : uint64_t(seed);

    if (fields.contains("loras")) s.loras = parse_loras(fields["loras"], lora_dir);
    if (fields.contains("lora_ignore_unmatched")) {
        const json& v = fields["lora_ignore_unmatched"];
        const bool text = v.is_string() && (v == "true" || v == "false");
        if (!v.is_boolean() && !text)
            throw ApiError::bad_request("lora_ignore_unmatched", "lora_ignore_unmatched: must be true or false",
                                        "invalid_type");
        s.lora_ignore_unmatched = v.is_boolean() ? v.get<bool>() : v == "true";
    }

    if (has_image) {
        if (s.task != Task::I2V)
            throw ApiError::bad_request(
                "input_reference", fmt::format("input_reference: model {} is text-to-video; send no image", s.model));
        out.image_header = read_image_header(image);
        out.image = image;
    }
    return out;
}

}  // namespace sr::server
