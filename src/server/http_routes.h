// The HTTP API's routes on a VideoServer:
//   POST   /v1/videos                 JSON or multipart (prompt, model, seconds, size, input_reference, ...)
//   GET    /v1/videos                 ?after=&limit=&order=asc|desc -> {object: "list", data, has_more, last_id}
//   GET    /v1/videos/{id}            the video object
//   DELETE /v1/videos/{id}            {id, object: "video.deleted", deleted: true}
//   GET    /v1/videos/{id}/content    the MP4 (Range requests); ?variant=thumbnail: the first frame (PNG)
//   GET    /v1/videos/{id}/events     server-sent events: progress (stage, step, ETA, memory), then done
//   POST   /v1/videos/{id}/cancel     stop a queued or running job
//   GET    /v1/videos/{id}/preview    the latest preview (PNG contact sheet of the latent frames) while it forms
//   GET    /v1/loras                  the adapter names a job may give in `loras` (--lora-dir); 404 without one
//   GET    /v1/health, /v1/models, and / (the web page, compiled in)
#pragma once

#include <httplib.h>

#include "server/server.h"

namespace sr::server {

void install_routes(httplib::Server& http, VideoServer& server);

}  // namespace sr::server
