// `skyreels serve`: the HTTP API and web page (src/server) as a command. It takes the model and device flags
// of `generate` (session_flags.h), loads the models once, and serves until it is stopped (Ctrl-C or SIGTERM,
// which remove the video being written; the job stays queued in the data directory and resumes after its last
// denoising checkpoint at the next start).
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>

#include "core/build_info.h"
#include "core/error.h"
#include "core/log.h"
#include "core/parallel.h"
#include "server/server.h"
#include "tools/skyreels/commands.h"
#include "tools/skyreels/session_flags.h"

namespace fs = std::filesystem;

namespace sr::cli {

namespace {

struct ServeOptions : SessionFlags {
    server::ServerOptions server;                    // the flags that are its fields bind to them directly
    std::string max_body = "20M", keep = "7d,1000";  // parsed into server's
    int queue_size = 16;
    bool quiet = false;
};

// --keep "7d", "12h", "1000" (jobs), or both: "7d,1000". "0" for a part means no limit of that kind.
void parse_keep(const std::string& text, server::QueueOptions& q) {
    q.keep_seconds = -1;
    q.keep_count = 0;
    size_t start = 0;
    while (start <= text.size()) {
        const size_t comma = text.find(',', start);
        const std::string part = text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
        int64_t n = 0;
        const auto [end, err] = std::from_chars(part.data(), part.data() + part.size(), n);
        const std::string unit(end, part.data() + part.size());
        SR_THROW_IF(err != std::errc() || n < 0 || (unit != "" && unit != "d" && unit != "h"),
                    "--keep {}: expected days (7d), hours (12h), a number of jobs (1000), or both (7d,1000)", text);
        if (unit.empty())
            q.keep_count = size_t(n);
        else if (n > 0)
            q.keep_seconds = n * (unit == "d" ? 86400 : 3600);
        if (comma == std::string::npos) break;
        start = comma + 1;
    }
}

// The name clients use for the model: the folder's (or Hugging Face name's) last part.
std::string model_id(const std::string& given) {
    std::string s = given;
    while (s.size() > 1 && s.back() == '/') s.pop_back();
    const std::string name = fs::path(s).filename().string();
    return name.empty() ? "skyreels" : name;
}

int run_serve(ServeOptions& o) {
    const std::string device = choose_device(o, false, o.quiet);
    std::vector<std::string> problems = session_flag_problems(o, device);
    server::ServerOptions& so = o.server;
    if (so.token.empty())
        if (const char* env = std::getenv("SKYREELS_SERVER_TOKEN")) so.token = env;
    if (!problems.empty()) throw_problems(problems);
    if (o.threads > 0) set_n_threads(o.threads);
    if (!so.lora_dir.empty()) {
        std::error_code ec;
        SR_THROW_IF(!fs::is_directory(so.lora_dir, ec), "--lora-dir {}: not a folder", so.lora_dir);
    }
    so.max_body_bytes = parse_bytes(o.max_body, "--max-body");
    SR_THROW_IF(o.queue_size < 1 || o.queue_size > 100000, "--queue-size {}: must be in 1..100000", o.queue_size);
    so.queue.max_queued = size_t(o.queue_size);
    SR_THROW_IF(so.checkpoint_every < 0, "--checkpoint-every {}: must be >= 0 (0: never)", so.checkpoint_every);
    parse_keep(o.keep, so.queue);

    const std::string given_model = o.model;
    resolve_models(o);
    // A demo server runs both demo models (each tiny), so the page's text and image modes both work; a real
    // model serves its own task.
    std::vector<std::unique_ptr<Session>> sessions;
    std::map<Task, Session*> by_task;
    std::vector<server::ServedModel> models;
    for (Task task : o.demo ? std::vector<Task>{Task::T2V, Task::I2V} : std::vector<Task>{Task::T2V}) {
        sessions.push_back(std::make_unique<Session>(session_options(o, device, task, false)));
        Session& s = *sessions.back();
        const Task served = s.task();
        by_task[served] = &s;
        models.push_back(
            {.id = o.demo ? (served == Task::I2V ? "skyreels-demo-i2v" : "skyreels-demo-t2v") : model_id(given_model),
             .task = served,
             .defaults = s.default_params(served)});
    }
    server::VideoServer server(so, by_task, models);
    const int port = server.bind();
    const server::QueueStats q = server.queue().stats();
    std::printf("skyreels serve: listening on http://%s:%d/ (models: %s; data: %s; %zu jobs, %zu queued)\n",
                so.host.find(':') != std::string::npos ? ("[" + so.host + "]").c_str() : so.host.c_str(), port,
                models.size() == 2 ? "skyreels-demo-t2v, skyreels-demo-i2v" : models[0].id.c_str(),
                server.options().data_dir.c_str(), q.jobs, q.queued);
    std::fflush(stdout);
    server.run();
    return 0;
}

}  // namespace

Command add_serve_command(CLI::App& app) {
    auto o = std::make_shared<ServeOptions>();
    CLI::App* cmd = app.add_subcommand(
        "serve", "Serve an OpenAI-videos-shaped HTTP API and a web page, with the models loaded once");
    add_model_flags(cmd, *o);
    cmd->add_option("--host", o->server.host,
                    "Address to listen on; anything but loopback requires --token (or SKYREELS_SERVER_TOKEN)")
        ->capture_default_str();
    cmd->add_option("--port", o->server.port, "Port (0: any free port, printed)")->capture_default_str();
    cmd->add_option("--token", o->server.token,
                    "Bearer token clients must send (Authorization: Bearer <token>); default: "
                    "$SKYREELS_SERVER_TOKEN");
    cmd->add_option("--allowed-host", o->server.allowed_hosts,
                    "A host name the server may be reached by (Host header), besides localhost and the bind "
                    "address; repeatable; * for any")
        ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
    cmd->add_option("--cors-origin", o->server.cors_origin, "Allow cross-origin requests from this one origin");
    cmd->add_option("--data-dir", o->server.data_dir,
                    "Where jobs and videos are kept across restarts (default: ~/.cache/skyreels/server)");
    cmd->add_option("--lora-dir", o->server.lora_dir,
                    "A folder of LoRA adapter files that jobs may name in their `loras` (per job, on top of --lora; "
                    "default: jobs take none)");
    cmd->add_option("--checkpoint-every", o->server.checkpoint_every,
                    "Save a running job's denoising state every K steps, so that a job cut short by a crash, kill "
                    "or restart resumes there (0: never; it then runs again from the start)")
        ->capture_default_str();
    cmd->add_option("--max-body", o->max_body, "Largest request body (an image upload)")->capture_default_str();
    cmd->add_option("--queue-size", o->queue_size, "Jobs that may wait; more are refused with 429")
        ->capture_default_str();
    cmd->add_option("--keep", o->keep,
                    "How long finished jobs and their videos are kept: days (7d), hours (12h), a count (1000) or "
                    "both")
        ->capture_default_str();
    cmd->add_option("--http-threads", o->server.http_threads, "Connections served at once")->capture_default_str();
    cmd->add_flag("--quiet,-q", o->quiet, "No notice about running on the CPU");
    add_device_flags(cmd, *o);
    return [o] { return run_serve(*o); };
}

}  // namespace sr::cli
