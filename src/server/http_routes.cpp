#include "server/http_routes.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <charconv>
#include <filesystem>
#include <memory>

#include "core/build_info.h"
#include "core/error.h"
#include "core/files.h"
#include "core/memory_stats.h"
#include "server/api_error.h"
#include "server/http_guard.h"
#include "server/security.h"
#include "server/web_page.h"

namespace sr::server {

using nlohmann::json;

namespace {

void send_json(httplib::Response& res, const json& body, int status = 200) {
    res.status = status;
    res.set_content(body.dump(-1, ' ', false, json::error_handler_t::replace), "application/json");
}

// POST /v1/videos: the fields from a JSON body or from multipart form data (input_reference: a file).
ParsedRequest parse_body(const httplib::Request& req, const std::vector<ServedModel>& models,
                         const std::string& lora_dir) {
    json fields = json::object();
    std::string image;
    const std::string type = req.get_header_value("Content-Type");
    if (req.is_multipart_form_data()) {
        for (const auto& [name, item] : req.files) {
            if (name == "input_reference") {
                if (item.content.empty())
                    throw ApiError::bad_request("input_reference", "input_reference: the file is empty",
                                                "invalid_image");
                image = item.content;
            } else if (!fields.contains(name)) {
                fields[name] = item.content;
            }
        }
    } else if (type.rfind("application/json", 0) == 0) {
        try {
            fields = json::parse(req.body);
        } catch (const json::exception& e) {  // a syntax error, or a number out of range (1e400)
            throw ApiError::bad_request("", fmt::format("the body is not valid JSON: {}", e.what()), "invalid_json");
        }
    } else {
        throw ApiError(415, "invalid_request_error", "unsupported_media_type", "",
                       "send application/json or multipart/form-data");
    }
    return parse_video_request(fields, image, models, lora_dir);
}

size_t list_limit(const httplib::Request& req) {
    if (!req.has_param("limit")) return 20;
    const std::string v = req.get_param_value("limit");
    size_t n = 0;
    const auto [end, err] = std::from_chars(v.data(), v.data() + v.size(), n);
    if (err != std::errc() || end != v.data() + v.size() || n < 1 || n > 100)
        throw ApiError::bad_request("limit", "limit: must be an integer in 1..100");
    return n;
}

// A finished video's file, served from an open descriptor (a DELETE meanwhile unlinks the name, not the data);
// the library answers Range requests from the length.
void send_file(httplib::Response& res, const std::string& path, const std::string& mime, const std::string& name) {
    auto file = std::make_shared<FileHandle>(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    struct stat st {};
    if (!*file || ::fstat(file->get(), &st) != 0 || !S_ISREG(st.st_mode))
        throw ApiError::not_found("the file of this video is gone from the data directory");
    res.set_header("Accept-Ranges", "bytes");
    res.set_header("Content-Disposition", fmt::format("inline; filename=\"{}\"", name));
    res.set_content_provider(size_t(st.st_size), mime, [file](size_t offset, size_t length, httplib::DataSink& sink) {
        char buf[1 << 16];
        const ssize_t n = ::pread(file->get(), buf, std::min(length, sizeof buf), off_t(offset));
        if (n <= 0) return false;
        return sink.write(buf, size_t(n));
    });
}

// GET /v1/videos/{id}/events: "progress" events while the job changes, then "done" with the video object.
// Each open stream holds one http thread: their number is bounded.
void send_events(httplib::Response& res, JobQueue& queue, const std::string& id, std::atomic<int>& open_streams,
                 int max_streams) {
    const Job first = queue.get(id);  // 404 before the stream starts
    if (open_streams.fetch_add(1) >= max_streams) {
        open_streams.fetch_sub(1);
        throw ApiError(429, "rate_limit_error", "too_many_streams", "",
                       "too many event streams are open: poll GET /v1/videos/{id} instead");
    }
    struct State {
        uint64_t version = 0;
        bool started = false, ended = false;
        std::string last;
    };
    auto state = std::make_shared<State>();
    res.set_header("Cache-Control", "no-cache");
    res.set_header("X-Accel-Buffering", "no");
    res.set_chunked_content_provider(
        "text/event-stream",
        [&queue, id, state](size_t, httplib::DataSink& sink) {
            try {
                if (state->ended) {
                    sink.done();
                    return true;
                }
                std::optional<Job> job;
                if (!state->started) {
                    state->started = true;
                    state->version = queue.version();
                    job = queue.wait(id, state->version, std::chrono::milliseconds(0)).second;
                } else {
                    auto [v, j] = queue.wait(id, state->version, std::chrono::seconds(10));
                    if (v == state->version && j) {  // quiet for 10 s: a comment keeps proxies from closing
                        return sink.write(": keep-alive\n\n", 14);
                    }
                    state->version = v;
                    job = std::move(j);
                }
                std::string out;
                if (!job) {
                    out = "event: deleted\ndata: {\"id\":\"" + id + "\"}\n\n";
                    state->ended = true;
                } else {
                    const std::string event = job->to_event().dump(-1, ' ', false, json::error_handler_t::replace);
                    if (event != state->last) out += "event: progress\ndata: " + event + "\n\n";
                    state->last = event;
                    if (job->finished()) {
                        out +=
                            "event: done\ndata: " + job->to_api().dump(-1, ' ', false, json::error_handler_t::replace) +
                            "\n\n";
                        state->ended = true;
                    }
                }
                return out.empty() || sink.write(out.data(), out.size());
            } catch (...) {
                return false;  // nothing may escape into the library's stream writer
            }
        },
        [&open_streams](bool) { open_streams.fetch_sub(1); });
}

json health(VideoServer& server) {
    const QueueStats q = server.queue().stats();
    const HostMemory m = read_host_memory();
    json h;
    h["status"] = "ok";
    h["engine"] = fmt::format("skyreels.cpp {}", build::kVersion);
    h["uptime_seconds"] = server.uptime_seconds();
    h["queue"] = {{"queued", q.queued}, {"in_progress", q.in_progress}, {"max_queued", q.max_queued}};
    h["jobs"] = q.jobs;
    h["memory"] = {{"rss_bytes", m.rss}, {"peak_rss_bytes", m.peak_rss}};
    json models = json::array();
    for (const ServedModel& sm : server.models()) models.push_back(sm.id);
    h["models"] = models;
    json devices = json::array();
    for (const auto& [task, session] : server.sessions()) devices.push_back(session->device_name());
    h["device"] = devices.empty() ? json(nullptr) : devices.front();
    return h;
}

json models_list(const VideoServer& server) {
    json data = json::array();
    for (const ServedModel& m : server.models()) {
        const GenerationParams& d = m.defaults;
        data.push_back({{"id", m.id},
                        {"object", "model"},
                        {"created", 0},
                        {"owned_by", "skyreels.cpp"},
                        {"task", m.task == Task::I2V ? "i2v" : "t2v"},
                        {"defaults",
                         {{"size", fmt::format("{}x{}", d.width, d.height)},
                          {"num_frames", d.num_frames},
                          {"num_inference_steps", d.num_inference_steps},
                          {"guidance_scale", d.guidance_scale},
                          {"embedded_guidance_scale", d.embedded_guidance_scale},
                          {"fps", 24}}}});
    }
    return {{"object", "list"}, {"data", data}};
}

// GET /v1/loras: the adapter files a job may name in `loras` (--lora-dir's .safetensors files, by the names
// a request uses). 404 when the server takes no per-job adapters.
json lora_list(const std::string& lora_dir) {
    if (lora_dir.empty())
        throw ApiError::not_found(
            "this server takes no per-job LoRA adapters (start it with --lora-dir DIR to serve the files in DIR)");
    constexpr size_t kMaxListed = 1000;
    FolderListing files;
    try {
        files = list_files_in_folder(lora_dir, ".safetensors", kMaxListed);
    } catch (const InputError&) {  // the folder went away after the start: the operator's to fix, not the client's
        throw ApiError(500, "server_error", "lora_dir_unreadable", "", "the server's --lora-dir cannot be read");
    }
    json data = json::array();
    for (const std::string& name : files.names) data.push_back({{"id", name}, {"object", "lora"}});
    return {{"object", "list"}, {"data", data}, {"has_more", files.truncated}};
}

}  // namespace

void install_routes(httplib::Server& http, VideoServer& server) {
    JobQueue& queue = server.queue();
    static std::atomic<int> open_streams{0};
    const int max_streams = server.options().max_event_streams;

    http.Get("/", [](const httplib::Request&, httplib::Response& res) {
        res.set_header("Content-Security-Policy",
                       "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                       "img-src 'self' blob: data:; media-src 'self' blob:; connect-src 'self'; "
                       "form-action 'none'; frame-ancestors 'none'; base-uri 'none'");
        res.set_header("X-Frame-Options", "DENY");
        res.set_content(std::string(reinterpret_cast<const char*>(kWebPage), kWebPageSize), "text/html; charset=utf-8");
    });
    http.Get("/v1/health",
             [&server](const httplib::Request&, httplib::Response& res) { send_json(res, health(server)); });
    http.Get("/v1/models",
             [&server](const httplib::Request&, httplib::Response& res) { send_json(res, models_list(server)); });

    http.Get("/v1/loras", [&server](const httplib::Request&, httplib::Response& res) {
        send_json(res, lora_list(server.options().lora_dir));
    });

    http.Post("/v1/videos", [&server, &queue](const httplib::Request& req, httplib::Response& res) {
        ParsedRequest parsed = parse_body(req, server.models(), server.options().lora_dir);
        send_json(res, queue.submit(std::move(parsed)).to_api());
    });
    http.Get("/v1/videos", [&queue](const httplib::Request& req, httplib::Response& res) {
        const std::string order = req.has_param("order") ? req.get_param_value("order") : "desc";
        if (order != "asc" && order != "desc") throw ApiError::bad_request("order", "order: must be asc or desc");
        const JobList list =
            queue.list(req.has_param("after") ? req.get_param_value("after") : "", list_limit(req), order == "asc");
        json data = json::array();
        for (const Job& j : list.jobs) data.push_back(j.to_api());
        send_json(res, {{"object", "list"},
                        {"data", data},
                        {"has_more", list.has_more},
                        {"first_id", list.jobs.empty() ? json(nullptr) : json(list.jobs.front().id)},
                        {"last_id", list.jobs.empty() ? json(nullptr) : json(list.jobs.back().id)}});
    });
    http.Get(R"(/v1/videos/([^/]+))", [&queue](const httplib::Request& req, httplib::Response& res) {
        send_json(res, queue.get(req.matches[1]).to_api());
    });
    http.Delete(R"(/v1/videos/([^/]+))", [&queue](const httplib::Request& req, httplib::Response& res) {
        const std::string id = req.matches[1];
        queue.remove(id);
        send_json(res, {{"id", id}, {"object", "video.deleted"}, {"deleted", true}});
    });
    http.Post(R"(/v1/videos/([^/]+)/cancel)", [&queue](const httplib::Request& req, httplib::Response& res) {
        send_json(res, queue.cancel(req.matches[1]).to_api());
    });
    http.Get(R"(/v1/videos/([^/]+)/content)", [&server, &queue](const httplib::Request& req, httplib::Response& res) {
        const Job job = queue.get(req.matches[1]);
        if (job.status != JobStatus::Completed)
            throw ApiError(409, "invalid_request_error", "video_not_ready", "video_id",
                           fmt::format("the video is not ready (status {})", status_name(job.status)));
        const std::string variant = req.has_param("variant") ? req.get_param_value("variant") : "video";
        if (variant == "video")
            send_file(res, server.store().video_path(job.id), "video/mp4", job.id + ".mp4");
        else if (variant == "thumbnail")
            send_file(res, server.store().thumbnail_path(job.id), "image/png", job.id + ".png");
        else
            throw ApiError::bad_request("variant", "variant: must be video or thumbnail");
    });
    // The latest preview of the video while it forms (a PNG contact sheet of its latent frames, replaced after
    // every denoising step; the last one stays with the finished job): 404 until the first.
    http.Get(R"(/v1/videos/([^/]+)/preview)", [&server, &queue](const httplib::Request& req, httplib::Response& res) {
        const Job job = queue.get(req.matches[1]);
        const std::string path = server.store().preview_path(job.id);
        std::error_code ec;
        if (!std::filesystem::exists(path, ec))
            throw ApiError::not_found(
                fmt::format("no preview yet (status {}): the first comes after the first denoising step",
                            status_name(job.status)),
                "video_id");
        res.set_header("Cache-Control", "no-store");  // replaced at every step
        send_file(res, path, "image/png", job.id + ".preview.png");
    });
    http.Get(R"(/v1/videos/([^/]+)/events)",
             [&queue, max_streams](const httplib::Request& req, httplib::Response& res) {
                 send_events(res, queue, req.matches[1], open_streams, max_streams);
             });
}

}  // namespace sr::server
