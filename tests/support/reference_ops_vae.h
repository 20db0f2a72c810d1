// Plain double-precision references of the VAE ops (backends/backend.h, "VAE ops"), for tests/test_ops_vae.cpp.
// Same rules as reference_ops.h: naive loops straight from the definition, tensors decoded by
// ref::to_array (bf16/f16 widened by hand), nothing shared with the backends.
//
//   ref::Array want = ref::conv3d(x, w, &b, {1, 2, 2}, {0, 1, 1});   // [B, O, F', H', W']
#pragma once

#include <array>

#include "support/reference_ops.h"

namespace sr::test::ref {

// 3-D convolution with zero padding: x [B,C,F,H,W], w [O,C,kt,kh,kw], bias [O] or nullptr. With `absolute`,
// sums |x||w| instead (the scale of the rounding error of the real sum).
Array conv3d(const Tensor& x, const Tensor& w, const Tensor* bias, std::array<int64_t, 3> stride,
             std::array<int64_t, 3> padding, bool absolute = false);
// Edge padding; pads = {t_before, t_after, h_before, h_after, w_before, w_after}.
Array pad3d_replicate(const Tensor& x, std::array<int64_t, 6> pads);
// GroupNorm over [B, C, ...]: two-pass mean and biased variance per (batch, group).
Array group_norm(const Tensor& x, int64_t groups, const Tensor* weight, const Tensor* bias, double eps);
// Nearest upsampling by integer factors (t, h, w): y[f, h, w] = x[f / st, h / sh, w / sw].
Array upsample_nearest3d(const Tensor& x, std::array<int64_t, 3> scale);

}  // namespace sr::test::ref
