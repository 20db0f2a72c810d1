// Pipeline fixture folders (model_index.json + params.json + inputs/output safetensors), found by content and
// loaded as the reference built its pipeline, with the request it ran; and transformer fixture inputs. Shared
// by the pipeline parity tests (CPU, simulated device, CUDA) and the parallel (MPI) tests.
#pragma once

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "io/json.h"
#include "io/safetensors.h"
#include "models/hunyuan_video_transformer.h"
#include "pipeline/pipeline.h"
#include "pipeline/session.h"

namespace sr::test {

std::vector<std::filesystem::path> pipeline_fixtures();

// Tolerances: the fixture's suggested_max_abs (documented as ~100-200x the measured float32-vs-float64
// noise of the reference run: our f32 sums run in another order, so we need headroom above that noise, and
// errors compound over the steps, which is why later steps get larger bounds). A tensor the fixture gives no
// bound for falls back to 100x its measured f32 noise, floored at 1e-5. `frames` = clamp(video/2 + 0.5):
// half of video's error at most, so video's bound covers it. Per-step latents of the cfg_for run use the
// batched run's per-step bounds (the two runs differ by ~1e-5, far below them).
struct Tolerances {
    std::map<std::string, double> suggested, noise;
    double of(const std::string& name) const;
};
Tolerances read_tolerances(const std::filesystem::path& dir);

struct Fixture {
    std::filesystem::path dir;
    Json params;
    WeightStore inputs, intermediates, output;
    static Fixture open(const std::filesystem::path& dir);
};

SkyReelsPipeline load_pipeline(const Fixture& f, LinearQuant quant = LinearQuant::None);
// The reference's request: its token ids, initial latents (and image, VAE sample noise), tiling enabled.
GenerationRequest make_request(const Fixture& f, bool sequence_batch);

// A Session job for the fixture folder `dir` whose pipeline is `pipe` (it has no tokenizers: token ids of the
// template's shapes, zeros, half the Llama mask set): the fixture's task and size, 2 steps.
Request fixture_session_request(const std::filesystem::path& dir, const SkyReelsPipeline& pipe);

// A transformer fixture's inputs.safetensors as forward() takes them.
TransformerInputs read_transformer_inputs(const WeightStore& s);

}  // namespace sr::test
