#include "server/job_queue.h"

#include <malloc.h>

#include <algorithm>
#include <chrono>

#include "core/error.h"
#include "core/log.h"
#include "server/api_error.h"

namespace sr::server {

int64_t unix_now() {
    return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
        .count();
}

int progress_percent(const ProgressEvent& e) {
    const double f = e.total > 0 ? std::clamp(double(e.done) / e.total, 0.0, 1.0) : 0.0;
    double p = 0;
    switch (e.stage) {
        case Stage::Loading:
        case Stage::TextEncoding:
            p = 5 * f;
            break;
        case Stage::ImageEncoding:
            p = 5 + 5 * f;
            break;
        case Stage::Denoising:
            p = 10 + 80 * f;
            break;
        case Stage::Decoding:
            p = 90 + 9 * f;
            break;
    }
    return int(p);
}

JobQueue::JobQueue(JobStore& store, Runner runner, QueueOptions options)
    : store_(store), runner_(std::move(runner)), options_(options) {
    for (Job& j : store_.load()) {
        next_sequence_ = std::max(next_sequence_, j.sequence + 1);
        if (!j.finished()) {
            // Queued or cut short while running (a crash, kill -9, a stop): run again, from its last denoising
            // checkpoint if it has one (session_runner.h).
            j.status = JobStatus::Queued;
            j.progress = 0;
            queue_.push_back(j.id);
            SR_LOG_INFO("requeued {} from the data directory", j.id);
        }
        jobs_.emplace(j.id, std::move(j));
    }
    {
        std::lock_guard<std::mutex> lock(mutex_);
        expire_locked(unix_now());
    }
    worker_ = std::thread([this] { work(); });
}

JobQueue::~JobQueue() {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        stopping_ = true;
        bump_locked();
    }
    work_.notify_all();
    if (worker_.joinable()) worker_.join();
}

void JobQueue::bump_locked() {
    ++version_;
    changed_.notify_all();
}

const Job& JobQueue::find_locked(const std::string& id) const {
    if (!is_job_id(id))
        throw ApiError::not_found("no video with this id (ids look like video_ and 32 hex digits)", "video_id");
    const auto it = jobs_.find(id);
    if (it == jobs_.end() || it->second.deleted) throw ApiError::not_found("no video with this id", "video_id");
    return it->second;
}

Job JobQueue::submit(ParsedRequest request) {
    std::unique_lock<std::mutex> lock(mutex_);
    if (queue_.size() >= options_.max_queued)
        throw ApiError(
            429, "rate_limit_error", "queue_full", "",
            fmt::format("the queue is full ({} jobs waiting): try again when one has finished", queue_.size()));
    Job job = Job::create(request.spec, unix_now());
    job.sequence = next_sequence_++;
    if (!request.image.empty()) {
        job.spec.image_file = job.id + (request.image_header.format == "png" ? ".png" : ".jpg");
        store_.write_input(job.spec.image_file, request.image);
    }
    store_.save(job);
    jobs_.emplace(job.id, job);
    queue_.push_back(job.id);
    bump_locked();
    lock.unlock();
    work_.notify_one();
    return job;
}

Job JobQueue::get(const std::string& id) const {
    std::lock_guard<std::mutex> lock(mutex_);
    return find_locked(id);
}

JobList JobQueue::list(const std::string& after, size_t limit, bool ascending) const {
    std::lock_guard<std::mutex> lock(mutex_);
    std::vector<const Job*> all;
    for (const auto& [id, j] : jobs_)
        if (!j.deleted) all.push_back(&j);
    std::sort(all.begin(), all.end(), [&](const Job* a, const Job* b) {
        return ascending ? a->sequence < b->sequence : a->sequence > b->sequence;
    });
    size_t start = 0;
    if (!after.empty()) {
        const auto it = std::find_if(all.begin(), all.end(), [&](const Job* j) { return j->id == after; });
        if (!is_job_id(after) || it == all.end())
            throw ApiError::bad_request("after", "after: no video with this id in the list");
        start = size_t(it - all.begin()) + 1;
    }
    JobList out;
    for (size_t i = start; i < all.size() && out.jobs.size() < limit; ++i) out.jobs.push_back(*all[i]);
    out.has_more = start + out.jobs.size() < all.size();
    return out;
}

Job JobQueue::cancel(const std::string& id) {
    std::lock_guard<std::mutex> lock(mutex_);
    Job& j = const_cast<Job&>(find_locked(id));
    if (j.finished())
        throw ApiError(409, "invalid_request_error", "job_finished", "video_id",
                       fmt::format("the video has already finished ({})", status_name(j.status)));
    if (j.status == JobStatus::Queued) {
        queue_.erase(std::remove(queue_.begin(), queue_.end(), id), queue_.end());
        j.status = JobStatus::Failed;
        j.error_code = "cancelled";
        j.error_message = "cancelled before it started";
        j.completed_at = unix_now();
        if (options_.keep_seconds >= 0) j.expires_at = *j.completed_at + options_.keep_seconds;
        store_.save(j);
        store_.remove_checkpoint(id);  // an interrupted job waiting to resume: it will not now
    } else {
        j.cancel_requested = true;  // the worker stops at the next step and fails the job as cancelled
    }
    bump_locked();
    return j;
}

void JobQueue::remove(const std::string& id) {
    std::lock_guard<std::mutex> lock(mutex_);
    Job& j = const_cast<Job&>(find_locked(id));
    if (j.status == JobStatus::InProgress) {
        j.cancel_requested = true;
        j.deleted = true;  // hidden now; the worker removes its files when the run has stopped
    } else {
        queue_.erase(std::remove(queue_.begin(), queue_.end(), id), queue_.end());
        store_.remove(j);
        jobs_.erase(id);
    }
    bump_locked();
}

QueueStats JobQueue::stats() const {
    std::lock_guard<std::mutex> lock(mutex_);
    QueueStats s;
    s.queued = queue_.size();
    for (const auto& [id, j] : jobs_) {
        if (j.deleted) continue;
        ++s.jobs;
        if (j.status == JobStatus::InProgress) ++s.in_progress;
    }
    s.max_queued = options_.max_queued;
    return s;
}

uint64_t JobQueue::version() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return version_;
}

std::pair<uint64_t, std::optional<Job>> JobQueue::wait(const std::string& id, uint64_t version,
                                                       std::chrono::milliseconds timeout) const {
    std::unique_lock<std::mutex> lock(mutex_);
    changed_.wait_for(lock, timeout, [&] { return version_ != version || stopping_; });
    std::optional<Job> job;
    if (const auto it = jobs_.find(id); it != jobs_.end() && !it->second.deleted) job = it->second;
    return {version_, job};
}

void JobQueue::expire_locked(int64_t now) {
    std::vector<const Job*> finished;
    for (const auto& [id, j] : jobs_)
        if (j.finished()) finished.push_back(&j);
    std::sort(finished.begin(), finished.end(), [](const Job* a, const Job* b) { return a->sequence < b->sequence; });
    const size_t over =
        options_.keep_count && finished.size() > options_.keep_count ? finished.size() - options_.keep_count : 0;
    std::vector<std::string> gone;
    for (size_t i = 0; i < finished.size(); ++i)
        if (i < over || (finished[i]->expires_at && *finished[i]->expires_at <= now)) gone.push_back(finished[i]->id);
    for (const std::string& id : gone) {
        SR_LOG_INFO("{} expired: removed with its files", id);
        store_.remove(jobs_.at(id));
        jobs_.erase(id);
    }
    if (!gone.empty()) bump_locked();
}

void JobQueue::finish(const std::string& id, const std::function<void(Job&)>& update) {
    std::lock_guard<std::mutex> lock(mutex_);
    Job& j = jobs_.at(id);
    update(j);
    if (j.deleted) {
        store_.remove(j);
        jobs_.erase(id);
    } else {
        try {
            store_.save(j);
        } catch (const std::exception& e) {
            SR_LOG_ERROR("{}: cannot save its record: {}", id, e.what());
        }
    }
    expire_locked(unix_now());
    bump_locked();
}

void JobQueue::work() {
    for (;;) {
        std::string id;
        Job snapshot;
        {
            std::unique_lock<std::mutex> lock(mutex_);
            // Wake at least once a minute to expire old jobs while idle.
            work_.wait_for(lock, std::chrono::seconds(60), [&] { return stopping_ || !queue_.empty(); });
            if (stopping_) return;
            if (queue_.empty()) {
                expire_locked(unix_now());
                continue;
            }
            id = queue_.front();
            queue_.erase(queue_.begin());
            Job& j = jobs_.at(id);
            j.status = JobStatus::InProgress;
            j.progress = 0;
            j.stage = "queued";
            try {
                store_.save(j);
            } catch (const std::exception& e) {
                SR_LOG_ERROR("{}: cannot save its record: {}", id, e.what());
            }
            bump_locked();
            snapshot = j;
        }
        RunCallbacks callbacks;
        callbacks.progress = [&](const ProgressEvent& e) {
            std::lock_guard<std::mutex> lock(mutex_);
            Job& j = jobs_.at(id);
            j.progress = std::max(j.progress, progress_percent(e));
            j.stage = stage_name(e.stage);
            j.step = e.done;
            j.total = e.total;
            j.eta_seconds = e.eta_seconds;
            j.on_device = e.on_device;
            j.device_in_use = e.device_in_use;
            j.device_peak = e.device_peak;
            j.host_rss = e.host_rss;
            bump_locked();
        };
        callbacks.preview = [&](int step) {
            std::lock_guard<std::mutex> lock(mutex_);
            jobs_.at(id).preview_step = step;
            bump_locked();  // event streams tell pages to fetch it
        };
        bool stopped_by_shutdown = false;
        callbacks.cancelled = [&] {
            std::lock_guard<std::mutex> lock(mutex_);
            // A job cancelled (or deleted) before the stop stays cancelled: only the stop alone requeues it.
            stopped_by_shutdown = stopping_ && !jobs_.at(id).cancel_requested;
            return stopping_ || jobs_.at(id).cancel_requested;
        };
        std::function<void(Job&)> outcome;
        try {
            const RunResult r = runner_(snapshot, callbacks);
            if (r == RunResult::Completed) {
                outcome = [this](Job& j) {
                    j.status = JobStatus::Completed;
                    j.progress = 100;
                    j.completed_at = unix_now();
                    if (options_.keep_seconds >= 0) j.expires_at = *j.completed_at + options_.keep_seconds;
                };
            } else if (stopped_by_shutdown) {
                return;  // the record still says in_progress: the next start runs it again
            } else {
                outcome = [](Job& j) {
                    j.error_code = "cancelled";
                    j.error_message = "cancelled while running";
                };
            }
        } catch (const OutOfMemoryError& e) {
            const std::string what = e.what();
            outcome = [what](Job& j) {
                j.error_code = "out_of_memory";
                j.error_message = what;
            };
        } catch (const InputError& e) {
            const std::string what = e.what();
            outcome = [what](Job& j) {
                j.error_code = "invalid_request";
                j.error_message = what;
            };
        } catch (const std::exception& e) {
            SR_LOG_ERROR("{} failed: {}", id, e.what());
            const std::string what = dynamic_cast<const Error*>(&e) ? std::string(e.what()) : "an internal error";
            outcome = [what](Job& j) {
                j.error_code = "internal_error";
                j.error_message = what;
            };
        }
        finish(id, [&](Job& j) {
            if (outcome) outcome(j);
            store_.remove_checkpoint(j.id);  // finished: nothing will resume it
            if (j.status != JobStatus::Completed) {
                store_.remove_preview(j.id);  // like its video: a failed or cancelled job leaves no file
                j.preview_step = 0;
                j.status = JobStatus::Failed;
                j.completed_at = unix_now();
                if (options_.keep_seconds >= 0) j.expires_at = *j.completed_at + options_.keep_seconds;
            }
            j.stage.clear();
            j.eta_seconds = -1;
        });
        // The job's buffers went back to the allocator; hand the free pages back to the system too, so the
        // server's resident memory returns to its idle level between jobs.
        malloc_trim(0);
    }
}

}  // namespace sr::server
