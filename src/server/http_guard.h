// What every request passes before a route runs, and how failures become responses:
//  - pre-routing: the Host allowlist (403), a refused Content-Encoding (415: cpp-httplib 0.11.4 would
//    inflate the body before checking its size, CVE-2026-22776), the body limit from Content-Length before
//    any byte of the body is read (413), the Bearer token on /v1/ (401; /v1/health and the page are open),
//    CORS headers and preflights only for --cors-origin;
//  - the exception handler: ApiError as its status and JSON, an InputError as 400, anything else as a bare
//    500 (never the exception's text in a header: CVE-2026-28434);
//  - the error handler: a JSON error body for the statuses the library sets itself (404, 413, 400, ...).
#pragma once

#include <httplib.h>

#include "server/server.h"

namespace sr::server {

void install_guards(httplib::Server& http, const ServerOptions& options);

// Sends `e` (its status and JSON body).
void send_error(httplib::Response& res, int status, const std::string& type, const std::string& code,
                const std::string& param, const std::string& message);

}  // namespace sr::server
