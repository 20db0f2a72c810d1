// The queue's Runner on loaded Sessions (pipeline/session.h): a job's spec becomes a Request, its video goes to
// the data directory (the Session writes it under a temporary name and renames it when complete; a cancelled
// or failed job leaves no file), its first frame becomes the thumbnail, written once the video is done, and
// after every denoising step a preview of the video forming replaces the last (JobStore::preview_path).
//
//   sr::server::Runner run = sr::server::session_runner({{sr::Task::T2V, &t2v_session}}, store);
#pragma once

#include <map>

#include "pipeline/session.h"
#include "server/job_queue.h"
#include "server/job_store.h"

namespace sr::server {

// `sessions`: the Session that runs each task (a demo server has one per task; a model serves its own).
// `lora_dir`: the folder the jobs' LoRA names are resolved in (server/security.h), again at run time.
Runner session_runner(std::map<Task, Session*> sessions, const JobStore& store, std::string lora_dir = {});

}  // namespace sr::server
