// The queue's Runner on loaded Sessions (pipeline/session.h): a job's spec becomes a Request, its video goes to
// the data directory (the Session writes it under a temporary name and renames it when complete; a cancelled
// or failed job leaves no file), its first frame becomes the thumbnail, written once the video is done, and
// after every denoising step a preview of the video forming replaces the last (JobStore::preview_path). Every
// `checkpoint_every` steps the job's denoising checkpoint replaces the last (JobStore::checkpoint_path); a job
// that finds one (it was cut short by a kill or a stop) resumes after that step with the video of an
// uninterrupted run, or, when the checkpoint is refused (other weights since), starts again with a warning.
//
//   sr::server::Runner run = sr::server::session_runner({{sr::Task::T2V, &t2v_session}}, store, {});
#pragma once

#include <map>

#include "pipeline/session.h"
#include "server/job_queue.h"
#include "server/job_store.h"

namespace sr::server {

struct RunnerOptions {
    std::string lora_dir;      // the folder the jobs' LoRA names are resolved in (server/security.h), again at run time
    int checkpoint_every = 1;  // denoising steps between a running job's checkpoints; 0: none
};

// `sessions`: the Session that runs each task (a demo server has one per task; a model serves its own).
Runner session_runner(std::map<Task, Session*> sessions, const JobStore& store, RunnerOptions options);

}  // namespace sr::server
