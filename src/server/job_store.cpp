#include "server/job_store.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <set>

#include "core/error.h"
#include "core/files.h"
#include "core/log.h"

namespace fs = std::filesystem;

namespace sr::server {

namespace {

constexpr size_t kMaxRecordBytes = size_t(1) << 20;

void make_private_dir(const fs::path& p) {
    std::error_code ec;
    fs::create_directories(p, ec);
    SR_THROW_IF(ec || !fs::is_directory(p, ec), "--data-dir: cannot create {}: {}", p.string(), ec.message());
    ::chmod(p.c_str(), 0700);
}

// Writes `bytes` to `target` through a temporary file in the same folder, so a reader (or a restarted server)
// sees the old content or the new, never half of one.
void write_atomically(const std::string& target, const std::string& bytes) {
    TemporaryFile tmp = create_temporary_file(target, ".partial");
    write_all(tmp.fd(), bytes.data(), bytes.size(), target);
    tmp.commit(target);
}

}  // namespace

std::string default_data_dir() {
    if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg && *xdg)
        return (fs::path(xdg) / "skyreels" / "server").string();
    const char* home = std::getenv("HOME");
    return (fs::path(home && *home ? home : ".") / ".cache" / "skyreels" / "server").string();
}

JobStore::JobStore(std::string dir) : dir_(std::move(dir)) {
    for (const char* sub : {"jobs", "videos", "inputs"}) make_private_dir(fs::path(dir_) / sub);
    // One server per data directory: a second one would requeue the first one's running job and delete the
    // partial video it is writing. The kernel drops the lock when the holder dies, even by kill -9.
    const std::string lock_path = (fs::path(dir_) / "server.lock").string();
    lock_ = FileHandle(::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
    SR_THROW_IF(!lock_, "--data-dir {}: cannot open {}: {}", dir_, lock_path, std::strerror(errno));
    SR_THROW_IF(::flock(lock_.get(), LOCK_EX | LOCK_NB) != 0,
                "--data-dir {}: another skyreels server is using it (give each server its own --data-dir)", dir_);
}

std::string JobStore::video_path(const std::string& id) const {
    return (fs::path(dir_) / "videos" / (id + ".mp4")).string();
}
std::string JobStore::thumbnail_path(const std::string& id) const {
    return (fs::path(dir_) / "videos" / (id + ".png")).string();
}
std::string JobStore::preview_path(const std::string& id) const {
    return (fs::path(dir_) / "videos" / (id + ".preview.png")).string();
}
std::string JobStore::checkpoint_path(const std::string& id) const {
    return (fs::path(dir_) / "jobs" / (id + ".ckpt")).string();
}
std::string JobStore::input_path(const std::string& file_name) const {
    return (fs::path(dir_) / "inputs" / file_name).string();
}

std::vector<Job> JobStore::load() {
    std::vector<Job> jobs;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(fs::path(dir_) / "jobs", ec)) {
        const fs::path p = e.path();
        const std::string name = p.filename().string();
        if (name.size() > 8 && name.find(".partial") != std::string::npos) {  // a record cut short by a kill
            fs::remove(p, ec);
            continue;
        }
        if (p.extension() != ".json" || !is_job_id(p.stem().string())) continue;
        try {
            Job j = Job::from_record(nlohmann::json::parse(read_regular_file(p.string(), kMaxRecordBytes)));
            SR_THROW_IF(j.id != p.stem().string(), "the record's id {} is not its file's name", j.id);
            jobs.push_back(std::move(j));
        } catch (const std::exception& ex) {
            SR_LOG_WARN("{}: {}; set aside as {}.bad", p.string(), ex.what(), name);
            fs::rename(p, p.string() + ".bad", ec);
        }
    }
    // Checkpoints are kept for the jobs that will run again (queued or cut short) only.
    std::set<std::string> unfinished;
    for (const Job& j : jobs)
        if (!j.finished()) unfinished.insert(j.id);
    for (const auto& e : fs::directory_iterator(fs::path(dir_) / "jobs", ec))
        if (e.path().extension() == ".ckpt" && !unfinished.count(e.path().stem().string())) fs::remove(e.path(), ec);
    // Videos and frames a killed server was writing: "<id>.mp4.XXXXXX.partial" and temporary PNGs.
    for (const auto& e : fs::directory_iterator(fs::path(dir_) / "videos", ec))
        if (e.path().extension() == ".partial") fs::remove(e.path(), ec);
    std::sort(jobs.begin(), jobs.end(), [](const Job& a, const Job& b) {
        return a.sequence != b.sequence ? a.sequence < b.sequence : a.id < b.id;
    });
    return jobs;
}

void JobStore::save(const Job& job) {
    SR_THROW_IF(!is_job_id(job.id), "job id {}: not a job id", job.id);
    write_atomically((fs::path(dir_) / "jobs" / (job.id + ".json")).string(), job.to_record().dump(2));
}

void JobStore::write_input(const std::string& file_name, const std::string& bytes) {
    write_atomically(input_path(file_name), bytes);
}

void JobStore::write_preview(const std::string& id, const std::string& png) const {
    SR_THROW_IF(!is_job_id(id), "job id {}: not a job id", id);
    write_atomically(preview_path(id), png);
}

void JobStore::remove_preview(const std::string& id) const {
    SR_THROW_IF(!is_job_id(id), "job id {}: not a job id", id);
    std::error_code ec;
    fs::remove(preview_path(id), ec);
}

void JobStore::remove_checkpoint(const std::string& id) const {
    SR_THROW_IF(!is_job_id(id), "job id {}: not a job id", id);
    std::error_code ec;
    fs::remove(checkpoint_path(id), ec);
}

void JobStore::remove(const Job& job) {
    SR_THROW_IF(!is_job_id(job.id), "job id {}: not a job id", job.id);
    std::error_code ec;
    fs::remove(video_path(job.id), ec);
    fs::remove(thumbnail_path(job.id), ec);
    fs::remove(preview_path(job.id), ec);
    fs::remove(checkpoint_path(job.id), ec);
    if (!job.spec.image_file.empty()) fs::remove(input_path(job.spec.image_file), ec);
    fs::remove(fs::path(dir_) / "jobs" / (job.id + ".json"), ec);
}

}  // namespace sr::server
