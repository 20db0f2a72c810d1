/* skyreels.h: the C API of skyreels.cpp, a C++ inference engine for the SkyReels-V1 video models
 * (text-to-video and image-to-video with the HunyuanVideo diffusion transformer).
 *
 * A context holds what outlives one video: the device, the loaded models and the settings (precision,
 * offload, budgets, log level). skyreels_generate runs one job on it (prompt in, video file out), with a
 * progress callback and a cancel callback; the models stay loaded for the next job. Every function is
 * callable from C; no C++ exception crosses this boundary. Errors are status codes, with a message from
 * skyreels_last_error. One job runs at a time per context.
 *
 *   skyreels_context_params cp = skyreels_context_default_params();
 *   cp.model = "SkyReels-V1-Hunyuan-T2V";
 *   cp.base = "HunyuanVideo";              // or cp.demo = true: a tiny built-in random-weight model
 *   skyreels_context* ctx = skyreels_context_new(&cp);
 *   if (!ctx) { fprintf(stderr, "%s\n", skyreels_last_error(NULL)); return 1; }
 *
 *   skyreels_request req = skyreels_request_default();
 *   req.prompt = "FPS-24, A cat walks on the grass";
 *   req.output_path = "cat.mp4";
 *   int rc = skyreels_generate(ctx, &req, on_progress, should_cancel, &my_state);
 *   if (rc != SKYREELS_OK) fprintf(stderr, "%s\n", skyreels_last_error(ctx));
 *   skyreels_context_free(ctx);
 *
 * Strings the caller passes are copied or used only during the call. Strings returned belong to the library.
 * The "sim" device runs a copy thread beside the OpenMP workers: on machines with few cores, start the
 * process with OMP_WAIT_POLICY=passive (the skyreels CLI does so itself), or its copies crawl.
 */
#ifndef SKYREELS_H
#define SKYREELS_H

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Results of skyreels_generate. */
enum skyreels_status {
    SKYREELS_OK = 0,
    SKYREELS_ERROR_INPUT = 1,    /* a bad request or option, an unreadable file, a request over the memory budget */
    SKYREELS_CANCELLED = 2,      /* the cancel callback stopped the job; no output file was left */
    SKYREELS_ERROR_INTERNAL = 3, /* a failure inside the engine or a library it calls (out of host memory too) */
};

enum skyreels_task {
    SKYREELS_TASK_DEFAULT = -1, /* a request: the model's own task */
    SKYREELS_TASK_T2V = 0,
    SKYREELS_TASK_I2V = 1,
};

enum skyreels_log_level {
    SKYREELS_LOG_DEFAULT = -1, /* the process's level (SKYREELS_LOG), or for a request the context's */
    SKYREELS_LOG_DEBUG = 0,
    SKYREELS_LOG_INFO = 1,
    SKYREELS_LOG_WARN = 2,
    SKYREELS_LOG_ERROR = 3,
    SKYREELS_LOG_QUIET = 4,
};

/* The stages of a job, in order (image encoding for I2V only; loading happens in skyreels_context_new). */
enum skyreels_stage {
    SKYREELS_STAGE_LOADING = 0,
    SKYREELS_STAGE_TEXT_ENCODING = 1,
    SKYREELS_STAGE_IMAGE_ENCODING = 2,
    SKYREELS_STAGE_DENOISING = 3,
    SKYREELS_STAGE_DECODING = 4,
};

typedef struct skyreels_context skyreels_context;

typedef struct skyreels_context_params {
    const char* model;         /* SkyReels-V1 transformer folder, or a diffusers pipeline folder (model_index.json) */
    const char* base;          /* HunyuanVideo folder (text encoders, tokenizers, VAE, scheduler); NULL: model */
    bool demo;                 /* the built-in random-weight demo model instead of folders */
    int demo_task;             /* enum skyreels_task: the demo model's task (T2V or I2V) */
    const char* device;        /* "cpu" (default), "sim" (simulated accelerator) or "cuda[:N]" */
    const char* precision;     /* "f32" or "bf16" for GEMMs with bf16 weights; NULL: f32 on cpu/sim, bf16 on cuda */
    const char* offload;       /* "none" (default), "model" or "block" (accelerators only) */
    const char* vram_budget;   /* device memory for weights and activations, e.g. "12G"; NULL: unlimited */
    const char* host_memory;   /* "mmap" (default), "pinned" or "pageable" */
    const char* pinned_budget; /* with host_memory "pinned": at most this much page-locked, the staging ring
                                  included ("0" is refused); NULL: no limit */
    int prefetch;              /* streamed blocks copied ahead of compute (default 1) */
    double sim_bandwidth_gbs;  /* "sim": host-to-device GB/s (default 25) */
    int log_level;             /* enum skyreels_log_level, for the load and the jobs on the calling thread */
    const char* const* loras;  /* n_loras LoRA adapters "FILE[:STRENGTH]" on the transformer, applied in order
                                  at load (diffusers/PEFT, kohya/musubi or ComfyUI files); NULL: none */
    int n_loras;
    const char* lora_mode;      /* "auto" (default), "merge" or "runtime" */
    bool lora_ignore_unmatched; /* skip adapter keys that match no layer (a warning) instead of failing */
} skyreels_context_params;

/* A look at the video while it forms: after `step` of `total_steps` denoising steps, the current prediction
 * through HunyuanVideo's latent-to-RGB map (no VAE): one frame per latent frame, 8-bit RGB. */
typedef struct skyreels_preview {
    int step, total_steps;
    int frames, width, height; /* `frames` frames of width x height pixels */
    const uint8_t* rgb;        /* frames * height * width * 3 bytes (frame, row, pixel, R G B); valid during the call */
} skyreels_preview;
/* Called with each preview, on the thread that called skyreels_generate, with skyreels_generate's `user`. */
typedef void (*skyreels_preview_fn)(const skyreels_preview* preview, void* user);

typedef struct skyreels_request {
    const char* prompt;               /* SkyReels-V1 expects the "FPS-24, " prefix */
    const char* negative_prompt;      /* NULL: SkyReels' default negative prompt */
    int task;                         /* enum skyreels_task; default: the model's */
    const char* image_path;           /* I2V: PNG or JPEG (a demo context without one uses a gradient) */
    int height, width, frames, steps; /* 0: the model's defaults (544x960, 97 frames, 30 steps; the demo's smaller) */
    double guidance;                  /* true CFG scale (> 1: with the negative prompt); default 6 */
    double embedded_guidance;         /* the transformer's guidance input / 1000; default 1 */
    int64_t seed;                     /* -1: random */
    bool sequence_batch;              /* CFG rows one after the other: the same video with half the activations */
    int fps, crf;                     /* of the video file (defaults 24 and 18) */
    const char* output_path;          /* .mp4, .mov or .mkv, written only when complete; NULL: no file */
    int log_level;                    /* enum skyreels_log_level; default: the context's */
    const char* cache;                /* step caching, opt-in: "teacache:0.15", "fbcache:0.1"; NULL or "none": off */
    /* Appended after the fields above, which keep their offsets; skyreels_request_default sets them. The library
     * reads the whole struct: a program built against an earlier skyreels.h must be rebuilt (with the defaults
     * from skyreels_request_default, it needs no other change). */
    const char* preview_path;    /* a folder of PNG frames, or a .png contact sheet, replaced atomically at each
                                    preview (its folder must exist); NULL: none */
    int preview_every;           /* a preview every N denoising steps, and after the last (default 5) */
    skyreels_preview_fn preview; /* called with each preview; NULL: none */
    /* Appended fields (older callers that set them to zero get none). This job's LoRA adapters
     * "FILE[:STRENGTH]", applied in order on top of the context's (skyreels_context_params.loras) as a runtime
     * side path: the model is not reloaded, and the next job runs without them. NULL: none. */
    const char* const* loras;
    int n_loras;
    bool lora_ignore_unmatched; /* skip this job's adapter keys that match no layer (a warning) */
    /* Appended fields (older callers that set them to zero get none). Denoising checkpoints: after every
     * `checkpoint_every` steps (0: none) the latents and what a resumed job needs go to checkpoint_path (NULL:
     * "<output_path>.ckpt"), replaced atomically and removed once the video is complete, so a killed or
     * cancelled job loses at most that many steps. resume_path: continue from such a checkpoint; the video is
     * bit-identical to an uninterrupted job's, and a checkpoint from other model files or parameters is refused
     * (SKYREELS_ERROR_INPUT, naming what differs). */
    int checkpoint_every;
    const char* checkpoint_path;
    const char* resume_path;
} skyreels_request;

typedef struct skyreels_progress {
    int stage;              /* enum skyreels_stage */
    const char* stage_name; /* "text encoding", "denoising", ... */
    int done, total;        /* steps while denoising, frames while decoding */
    double stage_seconds;   /* since the stage began */
    double eta_seconds;     /* the stage's remaining time; -1 before its first unit */
    double job_seconds;     /* since the job began */
    bool on_device;         /* the device figures are set */
    uint64_t device_in_use, device_peak;
    uint64_t host_rss, host_peak_rss;
} skyreels_progress;

/* Called at every progress report, on the thread that called skyreels_generate. */
typedef void (*skyreels_progress_fn)(const skyreels_progress* progress, void* user);
/* Polled after every report (between denoising steps and decoded chunks): true stops the job. */
typedef bool (*skyreels_cancel_fn)(void* user);

/* "0.1.0". */
const char* skyreels_version(void);

skyreels_context_params skyreels_context_default_params(void);
/* Checks the params, makes the device and loads the models. NULL on failure: skyreels_last_error(NULL) says why. */
skyreels_context* skyreels_context_new(const skyreels_context_params* params);
void skyreels_context_free(skyreels_context* ctx);

skyreels_request skyreels_request_default(void);
/* Runs one job. Returns enum skyreels_status; on SKYREELS_ERROR_* skyreels_last_error(ctx) says why, and no
 * output file is left. Callbacks may be NULL. */
int skyreels_generate(skyreels_context* ctx, const skyreels_request* request, skyreels_progress_fn progress,
                      skyreels_cancel_fn cancel, void* user);

/* The last error of `ctx` (of its last skyreels_generate), or with NULL the calling thread's last error
 * (skyreels_context_new). "" when none. Valid until the next call that sets it. */
const char* skyreels_last_error(const skyreels_context* ctx);

#ifdef __cplusplus
}
#endif

#endif /* SKYREELS_H */
