// POST /v1/videos: the request's fields (from JSON or multipart form data) checked one by one into a JobSpec.
// Every bad value is an ApiError 400 naming its field: OpenAI's `prompt`, `model`, `seconds`, `size`,
// `input_reference`, and our extensions `negative_prompt`, `seed`, `num_inference_steps`, `guidance_scale`,
// `embedded_guidance_scale`, `num_frames`, `fps`, `loras` (a list of "NAME[:STRENGTH]" strings or
// {"file": NAME, "strength": S} objects: files in the server's --lora-dir) and `lora_ignore_unmatched`.
// Unknown fields are refused (a misspelt "steps" would otherwise be silently ignored).
//
//   sr::server::ParsedRequest r = sr::server::parse_video_request(fields, image_bytes, served_models);
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "server/image_header.h"
#include "server/job.h"

namespace sr::server {

// The server's own limits on one job (the pipeline's are far larger): a request over them would hold the one
// worker for hours or exhaust memory.
constexpr int64_t kMaxRequestSide = 1920, kMaxRequestFrames = 257;
constexpr int kMaxRequestSteps = 200, kMaxRequestFps = 120;
constexpr size_t kMaxPromptBytes = 20000;
constexpr size_t kMaxRequestLoras = 16;
constexpr double kMaxLoraStrength = 100;

// A model this server runs, and the settings a request starts from.
struct ServedModel {
    std::string id;
    Task task = Task::T2V;
    GenerationParams defaults;
};

struct ParsedRequest {
    JobSpec spec;       // image_file still empty: the server names the file when it saves it
    std::string image;  // I2V: the uploaded image's bytes (checked: PNG or JPEG, sides <= kMaxUploadSide)
    ImageHeader image_header;
};

// `fields`: a JSON object (multipart form fields arrive as strings, and numbers are accepted as numeric
// strings everywhere); `image`: the multipart `input_reference` file ("" when none); `lora_dir`: the folder a
// job's `loras` name files in ("": the server takes none, and `loras` is refused).
ParsedRequest parse_video_request(const nlohmann::json& fields, const std::string& image,
                                  const std::vector<ServedModel>& models, const std::string& lora_dir = {});

}  // namespace sr::server
