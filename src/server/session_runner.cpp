#include "server/session_runner.h"

#include <filesystem>
#include <optional>

#include "core/error.h"
#include "core/files.h"
#include "core/log.h"
#include "media/image.h"
#include "server/security.h"

namespace sr::server {

namespace {

// The first decoded frame as an 8-bit image: frames [1, 3, n, H, W] in about [-1, 1].
Image8 first_frame(const Tensor& frames) {
    const Tensor f = frames.select(0, 0).select(1, 0).contiguous();  // [3, H, W]
    Tensor rgb = Tensor::empty(f.shape(), DType::F32);
    const float* src = f.data<float>();
    float* dst = rgb.data<float>();
    for (int64_t i = 0; i < f.numel(); ++i) dst[i] = src[i] * 0.5f + 0.5f;  // image_from_tensor clamps
    return image_from_tensor(rgb);
}

// The preview as a contact sheet PNG (the page shows one image). A preview that cannot be written (a full
// disk) is logged and skipped: it never fails the job.
bool write_preview(const JobStore& store, const std::string& id, const PreviewFrames& preview) {
    try {
        const std::vector<uint8_t> png = encode_png(contact_sheet(preview));
        store.write_preview(id, std::string(png.begin(), png.end()));
        return true;
    } catch (const InputError& e) {
        SR_LOG_WARN("{}: preview after step {}: {}", id, preview.step, e.what());
        return false;
    }
}

}  // namespace

Runner session_runner(std::map<Task, Session*> sessions, const JobStore& store, RunnerOptions options) {
    return [sessions = std::move(sessions), &store, options = std::move(options)](const Job& job,
                                                                                  const RunCallbacks& callbacks) {
        const auto it = sessions.find(job.spec.task);
        SR_THROW_IF(it == sessions.end(), "this server runs no {} model", job.spec.task == Task::I2V ? "i2v" : "t2v");
        Session& session = *it->second;
        Request r;
        GenerationParams& p = r.generation.params;
        p = session.default_params(job.spec.task);
        p.width = job.spec.width;
        p.height = job.spec.height;
        p.num_frames = job.spec.frames;
        p.num_inference_steps = job.spec.steps;
        p.guidance_scale = job.spec.guidance;
        p.embedded_guidance_scale = job.spec.embedded_guidance;
        p.seed = job.spec.seed;
        p.cache = parse_step_cache(job.spec.cache, "cache");
        r.generation.prompt = job.spec.prompt;
        r.generation.negative_prompt = job.spec.negative_prompt;
        if (!job.spec.image_file.empty()) r.image_path = store.input_path(job.spec.image_file);
        r.output_path = store.video_path(job.id);
        r.fps = job.spec.fps;
        // A preview after every step: a page shows the video forming, and a step of a real job takes far longer
        // than drawing and encoding the preview (a few milliseconds).
        r.preview_every = 1;
        // Names checked when the job was posted, and again here: the folder or a record may have changed since.
        for (const LoraFile& f : job.spec.loras)
            r.loras.push_back({file_in_folder(options.lora_dir, f.path), f.strength});
        if (options.checkpoint_every > 0) {
            r.checkpoint_every = options.checkpoint_every;
            r.checkpoint_path = store.checkpoint_path(job.id);
            std::error_code ec;
            if (std::filesystem::exists(r.checkpoint_path, ec)) {  // cut short before: go on from there
                r.resume_path = r.checkpoint_path;
                r.restart_if_refused = true;
            }
        }
        r.lora_ignore_unmatched = job.spec.lora_ignore_unmatched;
        std::optional<Image8> thumbnail;
        JobResult result;
        try {
            result = session.generate(r, {.progress = callbacks.progress,
                                          .cancel = callbacks.cancelled,
                                          .frames =
                                              [&](const Tensor& frames, int64_t first) {
                                                  if (first == 0 && !thumbnail && frames.dtype() == DType::F32)
                                                      thumbnail = first_frame(frames);
                                              },
                                          .preview =
                                              [&](const PreviewFrames& preview) {
                                                  if (write_preview(store, job.id, preview) && callbacks.preview)
                                                      callbacks.preview(preview.step);
                                              }});
        } catch (const InputError& e) {
            // The client reads the job's error: its adapters named as it named them, not by the server's folder.
            std::string message = e.what();
            for (size_t i = 0; i < r.loras.size(); ++i)
                for (size_t at = message.find(r.loras[i].path); at != std::string::npos;
                     at = message.find(r.loras[i].path, at + job.spec.loras[i].path.size()))
                    message.replace(at, r.loras[i].path.size(), job.spec.loras[i].path);
            if (message == e.what()) throw;
            throw InputError(message);
        }
        if (result.status == sr::JobStatus::Cancelled) return RunResult::Cancelled;
        if (thumbnail) {
            const std::vector<uint8_t> png = encode_png(*thumbnail);
            const std::string target = store.thumbnail_path(job.id);
            TemporaryFile tmp = create_temporary_file(target, ".partial");
            write_all(tmp.fd(), png.data(), png.size(), target);
            tmp.commit(target);
        }
        return RunResult::Completed;
    };
}

}  // namespace sr::server
