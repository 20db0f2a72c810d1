// The data directory, where jobs and their files outlive the process:
//   <dir>/jobs/<id>.json       each job's record (written under a temporary name, then renamed)
//   <dir>/videos/<id>.mp4      the finished video (the Session writes "<id>.mp4.XXXXXX.partial", then renames)
//   <dir>/videos/<id>.png      its first frame (the thumbnail)
//   <dir>/videos/<id>.preview.png   the latest preview while it forms (pipeline/latent_preview.h: a contact
//                              sheet); a completed job keeps its last one, a failed or cancelled job none
//   <dir>/inputs/<id>.png|jpg  an I2V job's uploaded image
//   <dir>/jobs/<id>.ckpt       a running job's denoising checkpoint (pipeline/checkpoint.h): a job interrupted
//                              by a kill resumes there; it goes when the job finishes
// Paths are built here from ids that passed is_job_id() only. load() reads every record back (a damaged one is
// set aside as <id>.json.bad with a warning, never fatal) and removes partial files a killed run left, and the
// checkpoints of jobs that have finished or are gone.
//
//   sr::server::JobStore store("/var/cache/skyreels");
//   for (sr::server::Job& j : store.load()) ...;
//   store.save(job);  store.remove(job);
#pragma once

#include <string>
#include <vector>

#include "core/files.h"
#include "server/job.h"

namespace sr::server {

class JobStore {
public:
    // Creates the folders (0700: the videos and prompts are the user's). InputError naming the folder.
    explicit JobStore(std::string dir);

    std::vector<Job> load();
    void save(const Job& job);
    // The job's record and every file it has.
    void remove(const Job& job);
    void write_input(const std::string& file_name, const std::string& bytes);
    // Replaces the job's preview (a PNG), atomically: a reader gets the last one or this one.
    void write_preview(const std::string& id, const std::string& png) const;
    void remove_preview(const std::string& id) const;  // a failed or cancelled job leaves no file
    void remove_checkpoint(const std::string& id) const;

    const std::string& dir() const { return dir_; }
    std::string video_path(const std::string& id) const;
    std::string thumbnail_path(const std::string& id) const;
    std::string preview_path(const std::string& id) const;
    std::string input_path(const std::string& file_name) const;
    std::string checkpoint_path(const std::string& id) const;

private:
    std::string dir_;
    FileHandle lock_;
};

// $XDG_CACHE_HOME/skyreels/server, else ~/.cache/skyreels/server.
std::string default_data_dir();

}  // namespace sr::server
