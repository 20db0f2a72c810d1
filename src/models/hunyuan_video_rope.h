// HunyuanVideo's 3-D rotary position tables for the video tokens.
// ref: diffusers v0.32.2 HunyuanVideoRotaryPosEmbed + embeddings.get_1d_rotary_pos_embed(use_real=True)
//
// Token n = (t, h, w) in row-major order gets, per axis a with rope_axes_dim[a] = d_a, the frequencies
// theta^(-2i/d_a), i < d_a/2, times its coordinate on that axis; the axes are concatenated (t, h, w) and
// each frequency is repeated twice for the interleaved pairs. Returns cos and sin, each [N, head_dim] f32.
#pragma once

#include <utility>
#include <vector>

#include "core/tensor.h"

namespace sr {

std::pair<Tensor, Tensor> hunyuan_rope_tables(const std::vector<int64_t>& axes_dim, double theta, int64_t frames,
                                              int64_t height, int64_t width);

}  // namespace sr
