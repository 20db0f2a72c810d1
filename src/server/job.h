// A video job as the server keeps it: what was asked (JobSpec), where it stands (status, progress, times,
// error), and its two JSON forms: the API's video object (OpenAI's fields plus our extensions) and the record
// saved in the data directory, from which a restarted server rebuilds it.
//
//   sr::server::Job job = sr::server::Job::create(spec, now);     // id "video_<32 hex>", status queued
//   nlohmann::json api = job.to_api();                             // {"id", "object": "video", "status", ...}
//   sr::server::Job again = sr::server::Job::from_record(job.to_record());
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "pipeline/pipeline.h"

namespace sr::server {

// What the client asked for, checked (job_request.h).
struct JobSpec {
    std::string model;  // the served model's id
    Task task = Task::T2V;
    std::string prompt, negative_prompt;
    int64_t width = 0, height = 0, frames = 0;
    int steps = 0, fps = 24;
    double guidance = 6.0, embedded_guidance = 1.0;
    uint64_t seed = 0;
    std::string cache = "none";  // step caching, as --cache spells it ("teacache:0.15"; "none": off)
    std::string image_file;      // I2V: the uploaded image's file name in the data directory's inputs/ ("" none)
    // This job's LoRA adapters, in order: each file's name inside the server's --lora-dir (resolved again, with
    // the same rules, when the job runs) and its strength.
    std::vector<LoraFile> loras;
    bool lora_ignore_unmatched = false;
};

enum class JobStatus { Queued, InProgress, Completed, Failed };
const char* status_name(JobStatus s);  // "queued", "in_progress", "completed", "failed"

struct Job {
    std::string id;
    JobSpec spec;
    JobStatus status = JobStatus::Queued;
    int progress = 0;  // 0..100
    int64_t created_at = 0;
    int64_t sequence = 0;  // submission order (created_at has one-second steps): the list's and the queue's order
    std::optional<int64_t> completed_at, expires_at;  // unix seconds
    std::string error_code, error_message;            // failed: why ("cancelled" when cancelled)
    // Live figures of a running job (not saved): the stage, its units, ETA, memory.
    std::string stage;
    int step = 0, total = 0;
    double eta_seconds = -1;
    bool on_device = false;
    size_t device_in_use = 0, device_peak = 0, host_rss = 0;
    int preview_step = 0;  // the denoising step of the latest preview (JobStore::preview_path); 0: none yet
    bool cancel_requested = false;
    bool deleted = false;  // deleted while running: its files go when the worker lets go of it
    bool finished() const { return status == JobStatus::Completed || status == JobStatus::Failed; }

    static Job create(const JobSpec& spec, int64_t now);
    // The API's video object.
    nlohmann::json to_api() const;
    // The live progress event (SSE): id, status, progress, stage, step, total, ETA, memory.
    nlohmann::json to_event() const;
    // The saved record, and back (InputError naming the field of a damaged record).
    nlohmann::json to_record() const;
    static Job from_record(const nlohmann::json& record);
};

// "video_" + 32 lower-case hex digits from the system's random source.
std::string new_job_id();
// An id of that exact shape: the only ids ever looked up (never used as a path before this check).
bool is_job_id(const std::string& id);
// The clip's length as OpenAI writes it, a string: "4" for 97 frames at 24 fps ((frames - 1) / fps, 2 decimals
// at most).
std::string seconds_text(int64_t frames, int fps);

}  // namespace sr::server
