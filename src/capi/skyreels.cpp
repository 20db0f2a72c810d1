// The C API (include/skyreels.h) over sr::Session (pipeline/session.h). Each entry point catches every
// exception and turns it into a status code and a last-error string: InputError (and OutOfMemoryError under
// a budget) is SKYREELS_ERROR_INPUT, anything else SKYREELS_ERROR_INTERNAL.
#include "skyreels.h"

#include <exception>
#include <memory>
#include <new>
#include <optional>
#include <random>
#include <string>

#include "core/error.h"
#include "core/log.h"
#include "pipeline/session.h"

struct skyreels_context {
    std::unique_ptr<sr::Session> session;
    std::string last_error;
};

namespace {

thread_local std::string t_last_error;

static_assert(int(sr::Stage::Loading) == SKYREELS_STAGE_LOADING &&
                  int(sr::Stage::Decoding) == SKYREELS_STAGE_DECODING &&
                  int(sr::Stage::Denoising) == SKYREELS_STAGE_DENOISING,
              "skyreels_stage mirrors sr::Stage");
static_assert(int(sr::LogLevel::Debug) == SKYREELS_LOG_DEBUG && int(sr::LogLevel::Quiet) == SKYREELS_LOG_QUIET,
              "skyreels_log_level mirrors sr::LogLevel");

std::optional<sr::LogLevel> log_level(int level, const char* what) {
    if (level == SKYREELS_LOG_DEFAULT) return std::nullopt;
    SR_THROW_IF(level < SKYREELS_LOG_DEBUG || level > SKYREELS_LOG_QUIET, "{} {}: expected -1 (default) or 0..4", what,
                level);
    return sr::LogLevel(level);
}

sr::Task task(int task, const char* what) {
    SR_THROW_IF(task != SKYREELS_TASK_T2V && task != SKYREELS_TASK_I2V, "{} {}: expected SKYREELS_TASK_T2V or _I2V",
                what, task);
    return task == SKYREELS_TASK_I2V ? sr::Task::I2V : sr::Task::T2V;
}

bool given(const char* s) {
    return s && *s;
}

sr::SessionOptions session_options(const skyreels_context_params& p) {
    sr::SessionOptions o;
    if (p.model) o.model = p.model;
    if (p.base) o.base = p.base;
    o.demo = p.demo;
    o.demo_task = task(p.demo_task, "demo_task");
    if (given(p.device)) o.device = p.device;
    if (given(p.precision)) {
        const std::string s = p.precision;
        SR_THROW_IF(s != "f32" && s != "bf16", "precision {}: expected f32 or bf16", s);
        o.precision = s == "bf16" ? sr::GemmPrecision::BF16 : sr::GemmPrecision::F32;
    }
    if (given(p.offload)) o.memory.offload = sr::parse_offload_mode(p.offload, "offload");
    if (given(p.vram_budget)) {
        o.memory.vram_budget = sr::parse_bytes(p.vram_budget, "vram_budget");
        SR_THROW_IF(o.memory.vram_budget == 0, "vram_budget {}: must be more than zero", p.vram_budget);
    }
    if (given(p.host_memory)) o.memory.host_memory = sr::parse_host_memory_mode(p.host_memory, "host_memory");
    if (given(p.pinned_budget)) {
        o.memory.pinned_budget = sr::parse_bytes(p.pinned_budget, "pinned_budget");
        SR_THROW_IF(o.memory.pinned_budget == 0, "pinned_budget {}: must be more than zero (leave it out for no limit)",
                    p.pinned_budget);
    }
    o.memory.prefetch = p.prefetch;
    o.sim_bandwidth_gbs = p.sim_bandwidth_gbs;
    o.log_level = log_level(p.log_level, "log_level");
    SR_THROW_IF(p.n_loras < 0 || (p.n_loras > 0 && !p.loras), "n_loras {} with {} loras", p.n_loras,
                p.loras ? "the" : "no");
    for (int i = 0; i < p.n_loras; ++i) {
        SR_THROW_IF(!given(p.loras[i]), "loras[{}] is empty", i);
        o.lora.files.push_back(sr::parse_lora_argument(p.loras[i]));
    }
    if (given(p.lora_mode)) o.lora.mode = sr::parse_lora_mode(p.lora_mode);
    o.lora.ignore_unmatched = p.lora_ignore_unmatched;
    return o;
}

sr::Request request(const sr::Session& session, const skyreels_request& q) {
    sr::Request r;
    const sr::Task t = q.task == SKYREELS_TASK_DEFAULT ? session.task() : task(q.task, "task");
    sr::GenerationParams& p = r.generation.params;
    p = session.default_params(t);
    // 0: the model's default. Anything else goes to the checks, which name the value.
    if (q.height) p.height = q.height;
    if (q.width) p.width = q.width;
    if (q.frames) p.num_frames = q.frames;
    if (q.steps) p.num_inference_steps = q.steps;
    p.guidance_scale = q.guidance;
    p.embedded_guidance_scale = q.embedded_guidance;
    p.sequence_batch = q.sequence_batch;
    if (q.cache) p.cache = sr::parse_step_cache(q.cache, "cache");
    SR_THROW_IF(q.seed < -1, "seed {}: must be >= 0 (or -1 for a random seed)", q.seed);
    p.seed = q.seed == -1 ? (std::random_device{}() & 0xffffffffu) : uint64_t(q.seed);
    r.generation.prompt = q.prompt ? q.prompt : "";
    if (q.negative_prompt) r.generation.negative_prompt = q.negative_prompt;
    if (q.image_path) r.image_path = q.image_path;
    if (q.output_path) r.output_path = q.output_path;
    r.fps = q.fps;
    r.crf = q.crf;
    r.log_level = log_level(q.log_level, "log_level");
    if (q.preview_path) r.preview_path = q.preview_path;
    r.preview_every = q.preview_every;
    SR_THROW_IF(q.n_loras < 0 || (q.n_loras > 0 && !q.loras), "request n_loras {} with {} loras", q.n_loras,
                q.loras ? "the" : "no");
    for (int i = 0; i < q.n_loras; ++i) {
        SR_THROW_IF(!given(q.loras[i]), "request loras[{}] is empty", i);
        r.loras.push_back(sr::parse_lora_argument(q.loras[i]));
    }
    r.lora_ignore_unmatched = q.lora_ignore_unmatched;
    SR_THROW_IF(q.checkpoint_every < 0, "checkpoint_every {}: must be >= 0", q.checkpoint_every);
    r.checkpoint_every = q.checkpoint_every;
    if (given(q.checkpoint_path))
        r.checkpoint_path = q.checkpoint_path;
    else if (q.checkpoint_every > 0 && given(q.output_path))
        r.checkpoint_path = std::string(q.output_path) + ".ckpt";  // as the CLI names it
    SR_THROW_IF(q.checkpoint_every > 0 && r.checkpoint_path.empty(),
                "checkpoint_every {} needs checkpoint_path (or an output_path to put it next to)", q.checkpoint_every);
    if (given(q.resume_path)) r.resume_path = q.resume_path;
    return r;
}

skyreels_progress to_c(const sr::ProgressEvent& e) {
    skyreels_progress p{};
    p.stage = int(e.stage);
    p.stage_name = sr::stage_name(e.stage);
    p.done = e.done;
    p.total = e.total;
    p.stage_seconds = e.stage_seconds;
    p.eta_seconds = e.eta_seconds;
    p.job_seconds = e.job_seconds;
    p.on_device = e.on_device;
    p.device_in_use = e.device_in_use;
    p.device_peak = e.device_peak;
    p.host_rss = e.host_rss;
    p.host_peak_rss = e.host_peak_rss;
    return p;
}

// Runs `f`; returns its status, or the status of the exception it threw with the message in `error`.
template <class F>
int guarded(std::string& error, F&& f) {
    try {
        error.clear();
        return f();
    } catch (const sr::InputError& e) {
        error = e.what();
        return SKYREELS_ERROR_INPUT;
    } catch (const std::bad_alloc&) {
        error = "out of host memory";
    } catch (const std::exception& e) {
        error = e.what();
    } catch (...) {
        error = "unknown error";
    }
    return SKYREELS_ERROR_INTERNAL;
}

}  // namespace

extern "C" {

const char* skyreels_version(void) {
    return SKYREELS_VERSION;
}

skyreels_context_params skyreels_context_default_params(void) {
    skyreels_context_params p{};
    p.demo_task = SKYREELS_TASK_T2V;
    p.device = "cpu";
    p.prefetch = 1;
    p.sim_bandwidth_gbs = 25.0;
    p.log_level = SKYREELS_LOG_DEFAULT;
    return p;
}

skyreels_request skyreels_request_default(void) {
    skyreels_request r{};
    r.prompt = "";
    r.task = SKYREELS_TASK_DEFAULT;
    r.guidance = 6.0;
    r.embedded_guidance = 1.0;
    r.seed = 42;
    r.fps = 24;
    r.crf = 18;
    r.log_level = SKYREELS_LOG_DEFAULT;
    r.preview_every = 5;
    return r;
}

skyreels_context* skyreels_context_new(const skyreels_context_params* params) {
    std::unique_ptr<skyreels_context> ctx;
    const int rc = guarded(t_last_error, [&] {
        SR_THROW_IF(!params, "skyreels_context_new: params is NULL (use skyreels_context_default_params())");
        auto c = std::make_unique<skyreels_context>();
        c->session = std::make_unique<sr::Session>(session_options(*params));
        ctx = std::move(c);
        return SKYREELS_OK;
    });
    return rc == SKYREELS_OK ? ctx.release() : nullptr;
}

void skyreels_context_free(skyreels_context* ctx) {
    delete ctx;  // the session's destructor does not throw
}

int skyreels_generate(skyreels_context* ctx, const skyreels_request* req, skyreels_progress_fn progress,
                      skyreels_cancel_fn cancel, void* user) {
    std::string& error = ctx ? ctx->last_error : t_last_error;
    const int rc = guarded(error, [&] {
        SR_THROW_IF(!ctx, "skyreels_generate: ctx is NULL");
        SR_THROW_IF(!req, "skyreels_generate: request is NULL (use skyreels_request_default())");
        const sr::Request r = request(*ctx->session, *req);
        sr::JobCallbacks callbacks;
        if (progress)
            callbacks.progress = [&](const sr::ProgressEvent& e) {
                const skyreels_progress p = to_c(e);
                progress(&p, user);
            };
        if (cancel) callbacks.cancel = [&] { return cancel(user); };
        if (req->preview)
            callbacks.preview = [&](const sr::PreviewFrames& f) {
                const skyreels_preview p{.step = f.step,
                                         .total_steps = f.total_steps,
                                         .frames = int(f.frames),
                                         .width = int(f.width),
                                         .height = int(f.height),
                                         .rgb = f.rgb.data()};
                req->preview(&p, user);
            };
        const sr::JobResult result = ctx->session->generate(r, callbacks);
        if (result.status == sr::JobStatus::Cancelled) {
            error = "the job was cancelled";
            return SKYREELS_CANCELLED;
        }
        return SKYREELS_OK;
    });
    if (ctx && rc != SKYREELS_OK) t_last_error = error;
    return rc;
}

const char* skyreels_last_error(const skyreels_context* ctx) {
    return ctx ? ctx->last_error.c_str() : t_last_error.c_str();
}

}  // extern "C"
