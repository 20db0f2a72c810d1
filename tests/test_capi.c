/* The C API (include/skyreels.h) driven from C, end to end on the demo model: a text-to-video job to a file
 * with every progress report checked, a bad request refused with the input code and a message naming the
 * value, a job cancelled from its progress that leaves no file, the models reused between jobs, a job's
 * own LoRA adapter (run, and refused when its file is missing), and a cancelled job resumed from its
 * checkpoint to the uninterrupted job's bytes. Compiled
 * as C11; run by ctest (label capi), also under ASan with leak checks. Exit status 0 when every check holds.
 */
#define _POSIX_C_SOURCE 200809L /* mkdtemp */

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "skyreels.h"

static int g_failures = 0;

#define CHECK(cond, ...)                                                             \
    do {                                                                             \
        if (!(cond)) {                                                               \
            fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                            \
            fprintf(stderr, "\n");                                                   \
            ++g_failures;                                                            \
        }                                                                            \
    } while (0)

static long file_size(const char* path) {
    struct stat st;
    return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

/* 1 when the two files hold the same bytes. */
static int same_bytes(const char* a, const char* b) {
    FILE* fa = fopen(a, "rb");
    FILE* fb = fopen(b, "rb");
    int same = fa != NULL && fb != NULL;
    while (same) {
        const int ca = fgetc(fa), cb = fgetc(fb);
        if (ca != cb) same = 0;
        if (ca == EOF || cb == EOF) break;
    }
    if (fa) fclose(fa);
    if (fb) fclose(fb);
    return same;
}

/* What the callbacks saw. */
typedef struct {
    int events;
    int last_stage;
    int denoise_done, denoise_total; /* the last denoising report */
    int denoise_first;               /* the first denoising report's steps done, + 1 (0: none yet) */
    int saw_decoding;
    int stages_in_order;
    int eta_after_first_step; /* an ETA was given once a step was done */
    int cancel_at_step;       /* > 0: cancel once denoising reaches this step */
    int cancel_in_decoding;   /* cancel at the first decoding report */
    int previews;             /* preview callbacks, and the last one's figures */
    int preview_steps[8];
    int preview_frames, preview_width, preview_height, preview_bytes_ok;
} Watch;

static void on_preview(const skyreels_preview* p, void* user) {
    Watch* w = (Watch*)user;
    if (w->previews < 8) w->preview_steps[w->previews] = p->step;
    ++w->previews;
    w->preview_frames = p->frames;
    w->preview_width = p->width;
    w->preview_height = p->height;
    /* Every byte readable (ASan checks the span); the map gives grey-ish pixels, never all zero here. */
    long sum = 0;
    for (long i = 0; i < (long)p->frames * p->width * p->height * 3; ++i) sum += p->rgb[i];
    w->preview_bytes_ok = p->rgb != NULL && sum > 0;
}

static void on_progress(const skyreels_progress* p, void* user) {
    Watch* w = (Watch*)user;
    ++w->events;
    if (p->stage < w->last_stage) w->stages_in_order = 0;
    w->last_stage = p->stage;
    if (p->stage == SKYREELS_STAGE_DENOISING) {
        if (!w->denoise_first) w->denoise_first = p->done + 1;
        w->denoise_done = p->done;
        w->denoise_total = p->total;
        if (p->done > 0 && p->eta_seconds >= 0) w->eta_after_first_step = 1;
    }
    if (p->stage == SKYREELS_STAGE_DECODING) w->saw_decoding = 1;
    if (!p->stage_name || !*p->stage_name) w->stages_in_order = 0;
}

static bool should_cancel(void* user) {
    const Watch* w = (const Watch*)user;
    if (w->cancel_at_step > 0 && w->last_stage == SKYREELS_STAGE_DENOISING && w->denoise_done >= w->cancel_at_step)
        return true;
    return w->cancel_in_decoding && w->saw_decoding;
}

static Watch watch(void) {
    Watch w;
    memset(&w, 0, sizeof w);
    w.stages_in_order = 1;
    return w;
}

/* The writers' temporaries in `dir`: "<name>.XXXXXX.partial". */
static int partial_files(const char* dir) {
    int n = 0;
    DIR* d = opendir(dir);
    if (!d) return -1;
    for (struct dirent* e; (e = readdir(d)) != NULL;) {
        const size_t len = strlen(e->d_name);
        if (len > 8 && strcmp(e->d_name + len - 8, ".partial") == 0) ++n;
    }
    closedir(d);
    return n;
}

int main(void) {
    const char* version = skyreels_version();
    CHECK(version && *version, "empty version");

    char dir[] = "/tmp/skyreels_capi_XXXXXX";
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    char video[256], cancelled[256], bad[256];
    snprintf(video, sizeof video, "%s/t2v.mp4", dir);
    snprintf(cancelled, sizeof cancelled, "%s/cancelled.mp4", dir);
    snprintf(bad, sizeof bad, "%s/bad.mp4", dir);

    /* A context that cannot be made says why, with no context to ask. */
    skyreels_context_params cp = skyreels_context_default_params();
    cp.device = "gpu";
    cp.demo = true;
    CHECK(skyreels_context_new(&cp) == NULL, "a context on device 'gpu'");
    CHECK(strstr(skyreels_last_error(NULL), "gpu") != NULL, "error: %s", skyreels_last_error(NULL));

    /* LoRA adapters are checked when the context is made: a bad mode, and the demo model (random weights). */
    const char* loras[] = {"style.safetensors:0.8"};
    cp = skyreels_context_default_params();
    cp.demo = true;
    cp.loras = loras;
    cp.n_loras = 1;
    cp.lora_mode = "fast";
    CHECK(skyreels_context_new(&cp) == NULL, "a context with lora_mode 'fast'");
    CHECK(strstr(skyreels_last_error(NULL), "fast") != NULL, "error: %s", skyreels_last_error(NULL));
    cp.lora_mode = "runtime";
    CHECK(skyreels_context_new(&cp) == NULL, "a demo context with a LoRA");
    CHECK(strstr(skyreels_last_error(NULL), "lora") != NULL, "error: %s", skyreels_last_error(NULL));

    cp = skyreels_context_default_params();
    cp.demo = true;
    cp.log_level = SKYREELS_LOG_ERROR;
    skyreels_context* ctx = skyreels_context_new(&cp);
    if (!ctx) {
        fprintf(stderr, "skyreels_context_new: %s\n", skyreels_last_error(NULL));
        return 1;
    }

    /* Text to video, small. */
    skyreels_request req = skyreels_request_default();
    req.prompt = "FPS-24, a lighthouse at dusk";
    req.height = 32;
    req.width = 48;
    req.frames = 5;
    req.steps = 3;
    req.output_path = video;
    Watch w = watch();
    int rc = skyreels_generate(ctx, &req, on_progress, should_cancel, &w);
    CHECK(rc == SKYREELS_OK, "rc %d: %s", rc, skyreels_last_error(ctx));
    CHECK(file_size(video) > 0, "no video at %s", video);
    CHECK(w.denoise_done == 3 && w.denoise_total == 3, "denoising reached %d/%d", w.denoise_done, w.denoise_total);
    CHECK(w.saw_decoding && w.stages_in_order, "stages out of order or no decoding");
    CHECK(w.eta_after_first_step, "no ETA once a step was done");
    CHECK(strcmp(skyreels_last_error(ctx), "") == 0, "an error after success: %s", skyreels_last_error(ctx));

    /* Previews every 2 of 3 steps (after steps 2 and 3) to the callback and a contact sheet; the video is the
     * same file size as without (test_preview checks the bytes). 5 frames: 2 latent frames of 4x6, drawn 8x. */
    char sheet[256], with_preview[256];
    snprintf(sheet, sizeof sheet, "%s/preview.png", dir);
    snprintf(with_preview, sizeof with_preview, "%s/t2v_preview.mp4", dir);
    req.output_path = with_preview;
    req.preview_path = sheet;
    req.preview_every = 2;
    req.preview = on_preview;
    w = watch();
    rc = skyreels_generate(ctx, &req, NULL, NULL, &w);
    CHECK(rc == SKYREELS_OK, "rc %d: %s", rc, skyreels_last_error(ctx));
    CHECK(w.previews == 2 && w.preview_steps[0] == 2 && w.preview_steps[1] == 3, "previews %d (steps %d, %d)",
          w.previews, w.preview_steps[0], w.preview_steps[1]);
    CHECK(w.preview_frames == 2 && w.preview_width == 48 && w.preview_height == 32 && w.preview_bytes_ok,
          "preview %d frames of %dx%d", w.preview_frames, w.preview_width, w.preview_height);
    CHECK(file_size(sheet) > 8, "no contact sheet at %s", sheet);
    CHECK(file_size(with_preview) == file_size(video), "the video with previews has %ld bytes, without %ld",
          file_size(with_preview), file_size(video));
    req.preview_every = 0; /* refused, naming the field */
    rc = skyreels_generate(ctx, &req, NULL, NULL, &w);
    CHECK(rc == SKYREELS_ERROR_INPUT && strstr(skyreels_last_error(ctx), "preview-every") != NULL, "rc %d: %s", rc,
          skyreels_last_error(ctx));
    req.preview_path = NULL;
    req.preview_every = 5;
    req.preview = NULL;
    remove(sheet);
    remove(with_preview);

    /* A bad request: frames not 4k+1. Refused before any work, naming the value; no file. */
    req.frames = 10;
    req.output_path = bad;
    w = watch();
    rc = skyreels_generate(ctx, &req, on_progress, NULL, &w);
    CHECK(rc == SKYREELS_ERROR_INPUT, "rc %d", rc);
    CHECK(strstr(skyreels_last_error(ctx), "frames") != NULL && strstr(skyreels_last_error(ctx), "10") != NULL,
          "error: %s", skyreels_last_error(ctx));
    CHECK(w.events == 0, "%d progress reports for a refused request", w.events);
    CHECK(file_size(bad) < 0, "a refused request left %s", bad);

    /* Cancelled after the first denoising step: the cancelled code, no file, no partial file. */
    req.frames = 5;
    req.output_path = cancelled;
    w = watch();
    w.cancel_at_step = 1;
    rc = skyreels_generate(ctx, &req, on_progress, should_cancel, &w);
    CHECK(rc == SKYREELS_CANCELLED, "rc %d: %s", rc, skyreels_last_error(ctx));
    CHECK(w.denoise_done == 1, "the job went on to step %d", w.denoise_done);
    CHECK(file_size(cancelled) < 0, "a cancelled job left %s", cancelled);
    CHECK(partial_files(dir) == 0, "a cancelled job left a temporary (*.partial) in %s", dir);

    /* Cancelled while decoding: still no file. */
    w = watch();
    w.cancel_in_decoding = 1;
    rc = skyreels_generate(ctx, &req, on_progress, should_cancel, &w);
    CHECK(rc == SKYREELS_CANCELLED, "rc %d: %s", rc, skyreels_last_error(ctx));
    CHECK(w.denoise_done == 3 && w.saw_decoding, "cancelled before decoding");
    CHECK(file_size(cancelled) < 0 && partial_files(dir) == 0, "a job cancelled while decoding left a file");

    /* The context is still good after a cancel: the same job again, to completion. */
    w = watch();
    rc = skyreels_generate(ctx, &req, NULL, NULL, NULL);
    CHECK(rc == SKYREELS_OK, "rc %d after a cancel: %s", rc, skyreels_last_error(ctx));
    CHECK(file_size(cancelled) > 0, "no video after a cancel");

    /* Checkpoints: a job checkpointing every step, cancelled after step 2, leaves its checkpoint next to the
     * output; resumed from it, the video has the very bytes of the uninterrupted job's (`cancelled` now holds
     * that one), and the checkpoint is gone once the video is complete. A checkpoint is refused for other
     * parameters, naming them; bad checkpoint fields are refused naming the field. */
    {
        char resumed[256], ckpt[256];
        snprintf(resumed, sizeof resumed, "%s/resumed.mp4", dir);
        snprintf(ckpt, sizeof ckpt, "%s/resumed.mp4.ckpt", dir);
        req.output_path = resumed;
        req.checkpoint_every = 1;
        w = watch();
        w.cancel_at_step = 2;
        rc = skyreels_generate(ctx, &req, on_progress, should_cancel, &w);
        CHECK(rc == SKYREELS_CANCELLED, "rc %d: %s", rc, skyreels_last_error(ctx));
        CHECK(file_size(ckpt) > 0, "no checkpoint at %s after a cancelled job", ckpt);
        CHECK(file_size(resumed) < 0, "a cancelled job left %s", resumed);
        req.resume_path = ckpt;
        req.seed = 7;
        rc = skyreels_generate(ctx, &req, NULL, NULL, NULL);
        CHECK(rc == SKYREELS_ERROR_INPUT && strstr(skyreels_last_error(ctx), "seed") != NULL,
              "rc %d resuming with another seed: %s", rc, skyreels_last_error(ctx));
        req.seed = 42;
        w = watch();
        rc = skyreels_generate(ctx, &req, on_progress, NULL, &w);
        CHECK(rc == SKYREELS_OK, "rc %d resuming: %s", rc, skyreels_last_error(ctx));
        CHECK(w.denoise_first - 1 == 2 && w.denoise_done == 3, "the resumed job went from step %d to %d",
              w.denoise_first - 1, w.denoise_done);
        CHECK(same_bytes(resumed, cancelled), "the resumed video differs from the uninterrupted one");
        CHECK(file_size(ckpt) < 0, "the checkpoint outlived the finished video");
        req.resume_path = NULL;
        req.checkpoint_every = -1;
        rc = skyreels_generate(ctx, &req, NULL, NULL, NULL);
        CHECK(rc == SKYREELS_ERROR_INPUT && strstr(skyreels_last_error(ctx), "checkpoint_every") != NULL, "rc %d: %s",
              rc, skyreels_last_error(ctx));
        req.checkpoint_every = 1;
        req.output_path = NULL;
        rc = skyreels_generate(ctx, &req, NULL, NULL, NULL);
        CHECK(rc == SKYREELS_ERROR_INPUT && strstr(skyreels_last_error(ctx), "checkpoint_path") != NULL, "rc %d: %s",
              rc, skyreels_last_error(ctx));
        req.checkpoint_every = 0;
        req.output_path = cancelled;
        remove(resumed);
    }

    /* A bad step cache is refused before any work, naming the field; a good one runs. */
    req.cache = "teacache";
    w = watch();
    rc = skyreels_generate(ctx, &req, on_progress, NULL, &w);
    CHECK(rc == SKYREELS_ERROR_INPUT, "rc %d for cache \"teacache\"", rc);
    CHECK(strstr(skyreels_last_error(ctx), "cache") != NULL, "error: %s", skyreels_last_error(ctx));
    CHECK(w.events == 0, "%d progress reports for a refused request", w.events);
    req.cache = "teacache:0.15";
    rc = skyreels_generate(ctx, &req, NULL, NULL, NULL);
    CHECK(rc == SKYREELS_OK, "rc %d with a step cache: %s", rc, skyreels_last_error(ctx));
    req.cache = NULL;
    /* A job's own LoRA adapter (rank 1 on the demo transformer's first query projection, width 32): the job
     * runs with it; a missing file and a bad count are refused naming them; the context runs on without it. */
    {
        char lora[1100];
        snprintf(lora, sizeof lora, "%s/style.safetensors", dir);
        const char* header =
            "{\"transformer.transformer_blocks.0.attn.to_q.lora_A.weight\":{\"dtype\":\"F32\",\"shape\":[1,32],"
            "\"data_offsets\":[0,128]},\"transformer.transformer_blocks.0.attn.to_q.lora_B.weight\":{\"dtype\":"
            "\"F32\",\"shape\":[32,1],\"data_offsets\":[128,256]}}";
        size_t n = strlen(header), padded = (n + 7) / 8 * 8;
        FILE* f = fopen(lora, "wb");
        CHECK(f != NULL, "cannot write %s", lora);
        if (f) {
            unsigned char len[8];
            for (int i = 0; i < 8; ++i) len[i] = (unsigned char)((padded >> (8 * i)) & 0xff);
            fwrite(len, 1, 8, f);
            fwrite(header, 1, n, f);
            for (size_t i = n; i < padded; ++i) fputc(' ', f);
            for (int i = 0; i < 64; ++i) {
                const float v = 0.5f * (float)((i * 7) % 5 - 2);
                fwrite(&v, sizeof v, 1, f);
            }
            fclose(f);
        }
        char with_strength[1200];
        snprintf(with_strength, sizeof with_strength, "%s:0.8", lora);
        const char* job_loras[] = {with_strength};
        req.loras = job_loras;
        req.n_loras = 1;
        req.output_path = NULL;
        rc = skyreels_generate(ctx, &req, NULL, NULL, NULL);
        CHECK(rc == SKYREELS_OK, "rc %d with a job LoRA: %s", rc, skyreels_last_error(ctx));
        const char* missing[] = {"/nonexistent/adapter.safetensors"};
        req.loras = missing;
        rc = skyreels_generate(ctx, &req, NULL, NULL, NULL);
        CHECK(rc == SKYREELS_ERROR_INPUT, "rc %d for a missing job LoRA", rc);
        CHECK(strstr(skyreels_last_error(ctx), "adapter.safetensors") != NULL, "error: %s", skyreels_last_error(ctx));
        req.loras = NULL;
        rc = skyreels_generate(ctx, &req, NULL, NULL, NULL);
        CHECK(rc == SKYREELS_ERROR_INPUT, "rc %d for n_loras 1 with no loras", rc);
        req.n_loras = 0;
        rc = skyreels_generate(ctx, &req, NULL, NULL, NULL);
        CHECK(rc == SKYREELS_OK, "rc %d after refused LoRA jobs: %s", rc, skyreels_last_error(ctx));
        remove(lora);
    }

    /* A NULL request is refused, not a crash. */
    CHECK(skyreels_generate(ctx, NULL, NULL, NULL, NULL) == SKYREELS_ERROR_INPUT, "NULL request");

    skyreels_context_free(ctx);
    skyreels_context_free(NULL);
    remove(video);
    remove(cancelled);
    rmdir(dir);
    if (g_failures)
        fprintf(stderr, "%d check(s) failed\n", g_failures);
    else
        printf("test_capi: all checks passed (skyreels %s)\n", version);
    return g_failures ? 1 : 0;
}
