// Denoising checkpoints (`--checkpoint-every K`, `--resume FILE`): the latents after a step and everything a
// run needs to continue from there with the numbers of an uninterrupted run: the step, the text conditioning
// (so the text encoders need not run again), and what the continuing run must match: its parameters (size,
// steps, guidance, seed, prompts, CFG rows, precision) and a fingerprint of the model files. One small
// safetensors file (a few MB: latents and prompt embeddings, f32), written to a temporary name and renamed
// over the previous one, so a kill at any moment leaves the last complete checkpoint. With a step cache
// (--cache) it also holds what rebuilds the cache's state (pipeline.h StepCacheReplay): the counts, and the
// latents of the one or two steps whose transformer calls the resumed run replays first (about one pass of
// work, once), so that it skips what the uninterrupted one would and ends with its video bit for bit, on one
// rank or several. The state itself (two activations of the video tokens per guidance row, 2.5 GB at
// 544x960x97 with CFG) is never written.
//
//   sr::write_checkpoint("clip.mp4.ckpt", {.steps_done = 12, .latents = latents, .text = text, ...});
//   sr::DenoiseCheckpoint c = sr::read_checkpoint("clip.mp4.ckpt");
//   c.check_matches(params_json, fingerprint, "clip.mp4.ckpt");  // InputError naming what differs
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "pipeline/pipeline.h"

namespace sr {

struct DenoiseCheckpoint {
    int steps_done = 0;     // denoising steps already applied to `latents`
    Tensor latents;         // [1, 16, T, h, w] f32 after steps_done steps
    TextConditioning text;  // as the run encoded it
    std::string params;     // the run's parameters as JSON (checkpoint_params)
    std::string model;      // model_fingerprint of the files the run loaded
    // What rebuilds the step cache's state after steps_done steps (its counts, and the latents of the one or
    // two steps whose transformer calls the resumed run replays); null when the run had no cache (or the
    // checkpoint is from an older version: its resumed run starts with an empty cache).
    std::shared_ptr<const StepCacheReplay> cache;

    // InputError naming the checkpoint and what differs (the model files, or each parameter by name and both
    // values) when it is not from a run with these parameters and models.
    void check_matches(const std::string& params_json, const std::string& model_fingerprint,
                       const std::string& path) const;
};

// The parameters that decide a run's numbers, as JSON: the request's parameters, seed and prompts, plus
// `extra` (the session's: precision, quantization).
std::string checkpoint_params(const GenerationRequest& req, const Json& extra);

// Atomic: written to "<path>.XXXXXX.partial" and renamed over `path`. InputError naming the path when it cannot be.
void write_checkpoint(const std::string& path, const DenoiseCheckpoint& checkpoint);
// InputError naming the file when it is not a checkpoint (or a damaged one).
DenoiseCheckpoint read_checkpoint(const std::string& path);

// A fingerprint of the model files under each of `paths` (a folder, searched recursively, or a file): per
// file, sorted by path, its path relative to the folder, its size and its first and last 64 KiB (a
// safetensors header names every tensor's shape and offset), hashed with 64-bit FNV-1a. Cheap on 40 GB of
// weights; a file changed only in the middle of its data is not noticed.
std::string model_fingerprint(const std::vector<std::string>& paths);

}  // namespace sr
