// A tiny random-weight model of the whole SkyReels-V1 architecture (transformer, causal VAE, Llama and CLIP
// text encoders, and both tokenizers), built in memory with no files, so `skyreels generate --demo` runs
// the complete path (tokenize, encode, denoise with CFG, decode, encode to MP4) in seconds on a CPU.
// Random weights give noise, not a picture: the demo shows the machinery, not the model.
//
// The tokenizers are generated in code: a byte-level BPE with the 256 byte tokens and the Llama-3 special
// tokens the prompt template uses (no merges), and a CLIP vocabulary of the byte characters, their
// end-of-word forms, one merge and <|startoftext|> / <|endoftext|>. They are built in memory: no scratch
// files, so nothing another user of the machine could race or redirect through a symlink.
//
//   sr::SkyReelsPipeline pipe = sr::make_demo_pipeline(sr::Task::T2V);
//   sr::GenerationRequest req;  req.params = sr::demo_params(sr::Task::T2V);
#pragma once

#include <cstdint>

#include "pipeline/pipeline.h"

namespace sr {

// The transformer's size (the other models stay tiny): larger ones make the transformer dominate memory as
// it does at real size, for residency tests and benchmarks.
struct DemoTransformerSize {
    int64_t heads = 2, head_dim = 16;
    int64_t dual_blocks = 1, single_blocks = 1;
};

// The demo model for `task` (T2V: 16 transformer input channels, I2V: 32), weights seeded by `seed`;
// `quant` as PipelineLoadOptions::quant.
SkyReelsPipeline make_demo_pipeline(Task task, uint64_t seed = 0, const DemoTransformerSize& size = {},
                                    LinearQuant quant = LinearQuant::None);

// Small video settings that the demo model runs in seconds: 128x128, 17 frames, 6 steps, CFG 6.
GenerationParams demo_params(Task task);

// A colour gradient [3, height, width] in [-1, 1]: the demo's I2V input image when none is given.
Tensor demo_image(int64_t height, int64_t width);

}  // namespace sr
