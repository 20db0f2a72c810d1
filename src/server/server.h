// `skyreels serve`: an OpenAI-videos-shaped HTTP API and a web page over loaded Sessions. The models load
// once; one worker runs the queued jobs in order (server/job_queue.h); jobs and videos live in a data
// directory that a restarted server picks up (server/job_store.h). The routes are in http_routes.cpp, the
// checks every request passes first (Host, token, body size, Content-Encoding, CORS) in http_guard.cpp.
//
//   sr::server::VideoServer server(options, {{sr::Task::T2V, &session}}, models);
//   int port = server.bind();     // options.port 0: any free port
//   server.run();                 // until stop()
#pragma once

#include <cstddef>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "pipeline/session.h"
#include "server/job_queue.h"
#include "server/job_request.h"
#include "server/job_store.h"

namespace httplib {
class Server;
}

namespace sr::server {

struct ServerOptions {
    std::string host = "127.0.0.1";
    int port = 8080;
    std::string token;                       // required on a non-loopback host
    std::vector<std::string> allowed_hosts;  // Host header names besides the defaults (security.h)
    std::string cors_origin;                 // "": no CORS headers at all
    std::string data_dir;                    // "": default_data_dir()
    std::string lora_dir;                    // the LoRA files jobs may name (security.h); "": none
    int checkpoint_every = 1;                // a running job's denoising checkpoints (session_runner.h); 0: none
    size_t max_body_bytes = size_t(20) << 20;
    QueueOptions queue;
    int http_threads = 16;      // connections served at once
    int max_event_streams = 8;  // open SSE streams (each holds one of the http threads)
};

class VideoServer {
public:
    // InputError for options that cannot work (a non-loopback host without a token, an unusable data dir).
    VideoServer(ServerOptions options, std::map<Task, Session*> sessions, std::vector<ServedModel> models);
    ~VideoServer();
    VideoServer(const VideoServer&) = delete;
    VideoServer& operator=(const VideoServer&) = delete;

    // Binds options.host:options.port (0: a free port); returns the port. InputError when it cannot.
    int bind();
    void run();  // serves until stop()
    void stop();

    const ServerOptions& options() const { return options_; }
    const std::vector<ServedModel>& models() const { return models_; }
    JobQueue& queue() { return *queue_; }
    JobStore& store() { return *store_; }
    const std::map<Task, Session*>& sessions() const { return sessions_; }
    double uptime_seconds() const;

private:
    ServerOptions options_;
    std::map<Task, Session*> sessions_;
    std::vector<ServedModel> models_;
    std::unique_ptr<JobStore> store_;
    std::unique_ptr<JobQueue> queue_;
    std::unique_ptr<httplib::Server> http_;
    double started_ = 0;
};

}  // namespace sr::server
