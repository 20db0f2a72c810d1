#include "server/http_guard.h"

#include <fmt/format.h>

#include <charconv>

#include "core/error.h"
#include "core/log.h"
#include "server/api_error.h"
#include "server/security.h"

namespace sr::server {

using Handled = httplib::Server::HandlerResponse;

void send_error(httplib::Response& res, int status, const std::string& type, const std::string& code,
                const std::string& param, const std::string& message) {
    res.status = status;
    res.set_content(error_body(type, code, param, message), "application/json");
}

void install_guards(httplib::Server& http, const ServerOptions& options) {
    const HostAllowlist hosts(options.host, options.allowed_hosts);
    const std::string token = options.token;
    const std::string cors = options.cors_origin;
    const size_t max_body = options.max_body_bytes;

    http.set_pre_routing_handler([=](const httplib::Request& req, httplib::Response& res) {
        if (!hosts.allows(req.get_header_value("Host"))) {
            send_error(res, 403, "invalid_request_error", "host_not_allowed", "",
                       "this server does not answer to that Host name (--allowed-host adds one)");
            return Handled::Handled;
        }
        const std::string origin = req.get_header_value("Origin");
        const bool cors_ok = !cors.empty() && origin == cors;
        if (cors_ok) {
            res.set_header("Access-Control-Allow-Origin", cors);
            res.set_header("Vary", "Origin");
        }
        if (req.method == "OPTIONS") {  // a preflight: answered only for the allowed origin
            if (!cors_ok) {
                send_error(res, 403, "invalid_request_error", "cors_not_allowed", "",
                           "cross-origin requests are not allowed (--cors-origin allows one origin)");
                return Handled::Handled;
            }
            res.status = 204;
            res.set_header("Access-Control-Allow-Methods", "GET, POST, DELETE, OPTIONS");
            res.set_header("Access-Control-Allow-Headers", "Authorization, Content-Type");
            res.set_header("Access-Control-Max-Age", "600");
            return Handled::Handled;
        }
        if (req.has_header("Content-Encoding")) {
            res.set_header("Connection", "close");
            send_error(res, 415, "invalid_request_error", "content_encoding_not_supported", "",
                       "request bodies with a Content-Encoding are not accepted: send them uncompressed");
            return Handled::Handled;
        }
        if (req.has_header("Content-Length")) {
            const std::string v = req.get_header_value("Content-Length");
            uint64_t n = 0;
            const auto [end, err] = std::from_chars(v.data(), v.data() + v.size(), n);
            if (err != std::errc() || end != v.data() + v.size() || n > max_body) {
                res.set_header("Connection", "close");  // the body is never read: the connection cannot go on
                send_error(
                    res, err != std::errc() || end != v.data() + v.size() ? 400 : 413, "invalid_request_error",
                    err != std::errc() || end != v.data() + v.size() ? "invalid_content_length" : "request_too_large",
                    "", fmt::format("the request body is over the limit of {} bytes (--max-body)", max_body));
                return Handled::Handled;
            }
        }
        const bool open = req.path == "/" || req.path == "/v1/health" || req.path.rfind("/v1/", 0) != 0;
        if (!token.empty() && !open && !token_matches(req.get_header_value("Authorization"), token)) {
            res.set_header("WWW-Authenticate", "Bearer");
            send_error(res, 401, "invalid_request_error", "invalid_api_key", "",
                       "a Bearer token is required: Authorization: Bearer <token>");
            return Handled::Handled;
        }
        return Handled::Unhandled;
    });

    http.set_exception_handler([](const httplib::Request& req, httplib::Response& res, std::exception_ptr ep) {
        // Only our own words reach the client: the library's default would put what() in a header.
        try {
            std::rethrow_exception(ep);
        } catch (const ApiError& e) {
            res.status = e.status;
            if (e.status == 429) res.set_header("Retry-After", "5");
            res.set_content(e.body(), "application/json");
        } catch (const InputError& e) {
            send_error(res, 400, "invalid_request_error", "invalid_value", "", e.what());
        } catch (const std::exception& e) {
            SR_LOG_ERROR("{} {}: {}", req.method, req.path, e.what());
            send_error(res, 500, "server_error", "internal_error", "", "internal server error");
        } catch (...) {
            send_error(res, 500, "server_error", "internal_error", "", "internal server error");
        }
    });

    http.set_error_handler(
        httplib::Server::HandlerWithResponse([max_body](const httplib::Request& req, httplib::Response& res) {
            if (!res.body.empty()) return Handled::Unhandled;  // a route's own error
            switch (res.status) {
                case 404:
                    send_error(res, 404, "invalid_request_error", "not_found", "",
                               fmt::format("no such endpoint: {} {}", req.method, req.path.substr(0, 200)));
                    break;
                case 413:
                    send_error(res, 413, "invalid_request_error", "request_too_large", "",
                               fmt::format("the request body is over the limit of {} bytes (--max-body)", max_body));
                    break;
                default:
                    send_error(res, res.status, res.status >= 500 ? "server_error" : "invalid_request_error",
                               fmt::format("http_{}", res.status), "",
                               res.status == 400 ? "malformed request" : fmt::format("HTTP status {}", res.status));
            }
            return Handled::Handled;
        }));
}

}  // namespace sr::server
