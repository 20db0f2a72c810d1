#include "server/job.h"

#include <fmt/format.h>

#include <random>

#include "core/error.h"

namespace sr::server {

using nlohmann::json;

const char* status_name(JobStatus s) {
    switch (s) {
        case JobStatus::Queued:
            return "queued";
        case JobStatus::InProgress:
            return "in_progress";
        case JobStatus::Completed:
            return "completed";
        case JobStatus::Failed:
            return "failed";
    }
    return "failed";
}

namespace {

JobStatus parse_status(const std::string& s) {
    for (JobStatus st : {JobStatus::Queued, JobStatus::InProgress, JobStatus::Completed, JobStatus::Failed})
        if (s == status_name(st)) return st;
    SR_THROW("status {}: not a job status", s);
}

json optional_time(const std::optional<int64_t>& t) {
    return t ? json(*t) : json(nullptr);
}

}  // namespace

std::string new_job_id() {
    std::random_device rd;  // the kernel's random source: ids are not guessable from one another
    std::string id = "video_";
    for (int i = 0; i < 4; ++i) id += fmt::format("{:08x}", uint32_t(rd()));
    return id;
}

bool is_job_id(const std::string& id) {
    if (id.size() != 6 + 32 || id.compare(0, 6, "video_") != 0) return false;
    for (size_t i = 6; i < id.size(); ++i)
        if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f'))) return false;
    return true;
}

std::string seconds_text(int64_t frames, int fps) {
    std::string s = fmt::format("{:.2f}", double(frames - 1) / double(fps));
    while (s.back() == '0') s.pop_back();
    if (s.back() == '.') s.pop_back();
    return s;
}

Job Job::create(const JobSpec& spec, int64_t now) {
    Job j;
    j.id = new_job_id();
    j.spec = spec;
    j.created_at = now;
    return j;
}

json Job::to_api() const {
    json v;
    v["id"] = id;
    v["object"] = "video";
    v["model"] = spec.model;
    v["status"] = status_name(status);
    v["progress"] = progress;
    v["created_at"] = created_at;
    v["completed_at"] = optional_time(completed_at);
    v["expires_at"] = optional_time(expires_at);
    v["prompt"] = spec.prompt;
    v["seconds"] = seconds_text(spec.frames, spec.fps);
    v["size"] = fmt::format("{}x{}", spec.width, spec.height);
    v["error"] = status == JobStatus::Failed ? json{{"code", error_code}, {"message", error_message}} : json(nullptr);
    // Extensions: everything needed to make the same video again.
    v["task"] = spec.task == Task::I2V ? "i2v" : "t2v";
    v["negative_prompt"] = spec.negative_prompt;
    v["seed"] = spec.seed;
    v["num_inference_steps"] = spec.steps;
    v["guidance_scale"] = spec.guidance;
    v["embedded_guidance_scale"] = spec.embedded_guidance;
    v["num_frames"] = spec.frames;
    v["fps"] = spec.fps;
    v["cache"] = spec.cache;
    v["has_input_reference"] = !spec.image_file.empty();
    if (!spec.loras.empty()) {
        json loras = json::array();
        for (const LoraFile& f : spec.loras) loras.push_back({{"file", f.path}, {"strength", f.strength}});
        v["loras"] = loras;
        v["lora_ignore_unmatched"] = spec.lora_ignore_unmatched;
    }
    if (status == JobStatus::InProgress) {
        v["cancel_requested"] = cancel_requested;
        v["preview_step"] = preview_step ? json(preview_step) : json(nullptr);  // GET .../preview has it
    }
    return v;
}

json Job::to_event() const {
    json e;
    e["id"] = id;
    e["status"] = status_name(status);
    e["progress"] = progress;
    e["stage"] = stage;
    e["step"] = step;
    e["total"] = total;
    e["eta_seconds"] = eta_seconds < 0 ? json(nullptr) : json(eta_seconds);
    e["device_memory_bytes"] = on_device ? json(device_in_use) : json(nullptr);
    e["device_peak_bytes"] = on_device ? json(device_peak) : json(nullptr);
    e["host_rss_bytes"] = host_rss;
    e["preview_step"] = preview_step ? json(preview_step) : json(nullptr);
    if (status == JobStatus::Failed) e["error"] = {{"code", error_code}, {"message", error_message}};
    return e;
}

json Job::to_record() const {
    json r;
    r["id"] = id;
    r["status"] = status_name(status);
    r["created_at"] = created_at;
    r["sequence"] = sequence;
    r["completed_at"] = optional_time(completed_at);
    r["expires_at"] = optional_time(expires_at);
    r["error_code"] = error_code;
    r["error_message"] = error_message;
    r["model"] = spec.model;
    r["task"] = spec.task == Task::I2V ? "i2v" : "t2v";
    r["prompt"] = spec.prompt;
    r["negative_prompt"] = spec.negative_prompt;
    r["width"] = spec.width;
    r["height"] = spec.height;
    r["frames"] = spec.frames;
    r["steps"] = spec.steps;
    r["fps"] = spec.fps;
    r["guidance"] = spec.guidance;
    r["embedded_guidance"] = spec.embedded_guidance;
    r["seed"] = spec.seed;
    r["cache"] = spec.cache;
    r["image_file"] = spec.image_file;
    json loras = json::array();
    for (const LoraFile& f : spec.loras) loras.push_back({{"file", f.path}, {"strength", f.strength}});
    r["loras"] = loras;
    r["lora_ignore_unmatched"] = spec.lora_ignore_unmatched;
    return r;
}

Job Job::from_record(const json& r) {
    try {
        Job j;
        j.id = r.at("id").get<std::string>();
        SR_THROW_IF(!is_job_id(j.id), "id {}: not a job id", j.id);
        j.status = parse_status(r.at("status").get<std::string>());
        j.created_at = r.at("created_at").get<int64_t>();
        j.sequence = r.at("sequence").get<int64_t>();
        if (!r.at("completed_at").is_null()) j.completed_at = r.at("completed_at").get<int64_t>();
        if (!r.at("expires_at").is_null()) j.expires_at = r.at("expires_at").get<int64_t>();
        j.error_code = r.at("error_code").get<std::string>();
        j.error_message = r.at("error_message").get<std::string>();
        JobSpec& s = j.spec;
        s.model = r.at("model").get<std::string>();
        s.task = r.at("task").get<std::string>() == "i2v" ? Task::I2V : Task::T2V;
        s.prompt = r.at("prompt").get<std::string>();
        s.negative_prompt = r.at("negative_prompt").get<std::string>();
        s.width = r.at("width").get<int64_t>();
        s.height = r.at("height").get<int64_t>();
        s.frames = r.at("frames").get<int64_t>();
        s.steps = r.at("steps").get<int>();
        s.fps = r.at("fps").get<int>();
        s.guidance = r.at("guidance").get<double>();
        s.embedded_guidance = r.at("embedded_guidance").get<double>();
        s.seed = r.at("seed").get<uint64_t>();
        s.cache = r.value("cache", std::string("none"));  // records from before step caching have none
        s.cache = parse_step_cache(s.cache, "cache").str();
        s.image_file = r.at("image_file").get<std::string>();
        if (r.contains("loras"))  // records from before per-job adapters have none
            for (const json& f : r.at("loras"))
                s.loras.push_back({f.at("file").get<std::string>(), f.at("strength").get<float>()});
        s.lora_ignore_unmatched = r.value("lora_ignore_unmatched", false);
        SR_THROW_IF(s.fps < 1, "fps {}: must be positive", s.fps);
        // Only the names the server gives: a record edited to point elsewhere is refused, not followed.
        SR_THROW_IF(!s.image_file.empty() && s.image_file != j.id + ".png" && s.image_file != j.id + ".jpg",
                    "image_file {}: not this job's input", s.image_file);
        if (j.status == JobStatus::Completed) j.progress = 100;
        return j;
    } catch (const json::exception& e) {
        SR_THROW("a damaged job record: {}", e.what());
    }
}

}  // namespace sr::server
