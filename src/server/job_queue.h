// The job queue: every job the server knows, in submission order, and the one worker thread that runs the
// queued ones on the runner (the Session) one at a time. A bounded number may wait (submit() refuses more with
// 429); a job can be cancelled (queued: at once; running: between steps, leaving no file) or deleted; a
// finished job expires after `keep_seconds` or when more than `keep_count` are kept. Every change is saved
// in the JobStore first, so a restarted server (kill -9 included) finds finished jobs and requeues the
// queued and running ones. Watchers (SSE streams) wait on a version counter that every change bumps.
//
//   sr::server::JobQueue queue(store, runner, {.max_queued = 16});
//   sr::nlohmann::json video = queue.submit(parsed).to_api();
//   queue.cancel(id);  queue.remove(id);
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "pipeline/progress.h"
#include "server/job.h"
#include "server/job_request.h"
#include "server/job_store.h"

namespace sr::server {

struct QueueOptions {
    size_t max_queued = 16;            // jobs waiting (the running one not counted)
    int64_t keep_seconds = 7 * 86400;  // a finished job's life; < 0: for ever
    size_t keep_count = 1000;          // finished jobs kept at most; 0: no limit
};

enum class RunResult { Completed, Cancelled };
struct RunCallbacks {
    ProgressListener progress;
    std::function<bool()> cancelled;
    std::function<void(int step)> preview;  // a preview after `step` is now at JobStore::preview_path(job.id)
};
// Runs one job to its end: Completed with the video at JobStore::video_path(job.id), or Cancelled (no file).
// Throws to fail it (sr::InputError: the request's fault; anything else: the server's).
using Runner = std::function<RunResult(const Job& job, const RunCallbacks& callbacks)>;

struct QueueStats {
    size_t queued = 0, in_progress = 0, jobs = 0, max_queued = 0;
};

struct JobList {
    std::vector<Job> jobs;
    bool has_more = false;
};

class JobQueue {
public:
    // Loads the store, requeues what was queued or running, expires old jobs, starts the worker.
    JobQueue(JobStore& store, Runner runner, QueueOptions options);
    ~JobQueue();  // stops the worker (a running job is stopped and stays queued for the next start)
    JobQueue(const JobQueue&) = delete;
    JobQueue& operator=(const JobQueue&) = delete;

    // ApiError 429 when max_queued jobs wait.
    Job submit(ParsedRequest request);
    // ApiError 404 for an unknown (or deleted) id; 400 for one of the wrong shape.
    Job get(const std::string& id) const;
    // `after`: an id in the list (ApiError 400 naming `after` otherwise); newest first unless `ascending`.
    JobList list(const std::string& after, size_t limit, bool ascending) const;
    Job cancel(const std::string& id);  // ApiError 409 when the job has finished
    void remove(const std::string& id);
    QueueStats stats() const;

    // Waits until something changed since `version` (or `timeout`); returns the current version and, if the
    // job still exists, a copy of it.
    std::pair<uint64_t, std::optional<Job>> wait(const std::string& id, uint64_t version,
                                                 std::chrono::milliseconds timeout) const;
    uint64_t version() const;

private:
    void work();
    void finish(const std::string& id, const std::function<void(Job&)>& update);
    void expire_locked(int64_t now);
    void bump_locked();
    const Job& find_locked(const std::string& id) const;

    JobStore& store_;
    Runner runner_;
    QueueOptions options_;
    std::map<std::string, Job> jobs_;
    std::vector<std::string> queue_;  // ids waiting, in order
    int64_t next_sequence_ = 1;
    uint64_t version_ = 0;
    bool stopping_ = false;
    mutable std::mutex mutex_;
    mutable std::condition_variable changed_;  // version_ moved
    std::condition_variable work_;             // a job was queued, or stop
    std::thread worker_;
};

// The job's progress (0..100) from a pipeline event: text encoding 0-5, image encoding 5-10, denoising 10-90,
// decoding 90-99; 100 only when the file is complete.
int progress_percent(const ProgressEvent& e);

int64_t unix_now();

}  // namespace sr::server
