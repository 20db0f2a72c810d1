#include "server/server.h"

#include <httplib.h>

#include <chrono>

#include "core/error.h"
#include "server/http_guard.h"
#include "server/http_routes.h"
#include "server/security.h"
#include "server/session_runner.h"

namespace sr::server {

namespace {

double now_seconds() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace

VideoServer::VideoServer(ServerOptions options, std::map<Task, Session*> sessions, std::vector<ServedModel> models)
    : options_(std::move(options)), sessions_(std::move(sessions)), models_(std::move(models)) {
    SR_THROW_IF(!is_loopback_host(options_.host) && options_.token.empty(),
                "--host {}: a server reachable from other machines needs a token: give --token or set "
                "SKYREELS_SERVER_TOKEN (clients send Authorization: Bearer <token>)",
                options_.host);
    SR_THROW_IF(options_.port < 0 || options_.port > 65535, "--port {}: must be in 0..65535", options_.port);
    SR_THROW_IF(options_.max_body_bytes < 1024, "--max-body {}: must be at least 1 KiB", options_.max_body_bytes);
    SR_THROW_IF(options_.http_threads < 2 || options_.http_threads > 1024, "--http-threads {}: must be in 2..1024",
                options_.http_threads);
    SR_THROW_IF(models_.empty(), "no model to serve");
    if (options_.data_dir.empty()) options_.data_dir = default_data_dir();
    store_ = std::make_unique<JobStore>(options_.data_dir);
    queue_ = std::make_unique<JobQueue>(
        *store_,
        session_runner(sessions_, *store_,
                       {.lora_dir = options_.lora_dir, .checkpoint_every = options_.checkpoint_every}),
        options_.queue);
    http_ = std::make_unique<httplib::Server>();
    const int threads = options_.http_threads;
    http_->new_task_queue = [threads] { return new httplib::ThreadPool(size_t(threads)); };
    http_->set_payload_max_length(options_.max_body_bytes);  // also bounds chunked bodies as they arrive
    http_->set_read_timeout(30);
    http_->set_keep_alive_timeout(5);
    http_->set_default_headers({{"X-Content-Type-Options", "nosniff"}, {"Referrer-Policy", "no-referrer"}});
    install_guards(*http_, options_);
    install_routes(*http_, *this);
    started_ = now_seconds();
}

VideoServer::~VideoServer() {
    stop();
    queue_.reset();  // the worker stops before the sessions it runs on go away
}

int VideoServer::bind() {
    const int port = options_.port == 0 ? http_->bind_to_any_port(options_.host)
                                        : (http_->bind_to_port(options_.host, options_.port) ? options_.port : -1);
    SR_THROW_IF(port <= 0, "cannot listen on {}:{} (in use, or not an address of this machine)", options_.host,
                options_.port);
    return port;
}

void VideoServer::run() {
    http_->listen_after_bind();
}

void VideoServer::stop() {
    if (http_) http_->stop();
}

double VideoServer::uptime_seconds() const {
    return now_seconds() - started_;
}

}  // namespace sr::server
