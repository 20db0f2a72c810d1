#include "backends/profiling_backend.h"

#include <algorithm>

namespace sr {

double ProfilingBackend::total_seconds() const {
    double t = 0;
    for (const auto& [op, s] : stats_) t += s.seconds;
    return t;
}

void ProfilingBackend::linear(const Tensor& x, const Tensor& weight, const Tensor* bias, Tensor& y) {
    const double flops = 2.0 * double(x.numel()) * double(weight.dim(0));
    timed("linear", flops, [&] { inner_.linear(x, weight, bias, y); });
}

void ProfilingBackend::attention(const Tensor& q, const Tensor& k, const Tensor& v, Tensor& out,
                                 const AttentionMask& mask, float scale) {
    // Counted over all keys, as the cost model does (masked keys are skipped, so this is an upper bound).
    const double flops = 4.0 * double(q.dim(0) * q.dim(1)) * double(q.dim(2)) * double(k.dim(2)) * double(q.dim(3));
    timed("attention", flops, [&] { inner_.attention(q, k, v, out, mask, scale); });
}

void ProfilingBackend::layer_norm(const Tensor& x, const Tensor* weight, const Tensor* bias, float eps, Tensor& y) {
    timed("layer_norm", 0, [&] { inner_.layer_norm(x, weight, bias, eps, y); });
}

void ProfilingBackend::rms_norm(const Tensor& x, const Tensor* weight, float eps, Tensor& y) {
    timed("rms_norm", 0, [&] { inner_.rms_norm(x, weight, eps, y); });
}

void ProfilingBackend::rope_interleaved(Tensor& x, const Tensor& cos, const Tensor& sin) {
    timed("rope", 0, [&] { inner_.rope_interleaved(x, cos, sin); });
}

void ProfilingBackend::gelu_tanh(const Tensor& x, Tensor& y) {
    timed("gelu_tanh", 0, [&] { inner_.gelu_tanh(x, y); });
}

void ProfilingBackend::silu(const Tensor& x, Tensor& y) {
    timed("silu", 0, [&] { inner_.silu(x, y); });
}

void ProfilingBackend::modulate(const Tensor& x, const Tensor& shift, const Tensor& scale, Tensor& y) {
    timed("modulate", 0, [&] { inner_.modulate(x, shift, scale, y); });
}

void ProfilingBackend::gated_residual(Tensor& x, const Tensor& y, const Tensor& gate) {
    timed("gated_residual", 0, [&] { inner_.gated_residual(x, y, gate); });
}

void ProfilingBackend::add(Tensor& x, const Tensor& y) {
    timed("add", 0, [&] { inner_.add(x, y); });
}

void ProfilingBackend::patch_embed_3d(const Tensor& x, const Tensor& weight, const Tensor* bias, Tensor& y) {
    const double flops = 2.0 * double(y.numel()) * double(weight.numel() / weight.dim(0));
    timed("patch_embed_3d", flops, [&] { inner_.patch_embed_3d(x, weight, bias, y); });
}

void ProfilingBackend::timestep_embedding(const Tensor& t, int dim, bool flip_sin_to_cos, float downscale_freq_shift,
                                          float max_period, Tensor& y) {
    timed("timestep_embedding", 0,
          [&] { inner_.timestep_embedding(t, dim, flip_sin_to_cos, downscale_freq_shift, max_period, y); });
}

void ProfilingBackend::conv3d(const Tensor& x, const Tensor& weight, const Tensor* bias, std::array<int64_t, 3> stride,
                              std::array<int64_t, 3> padding, Tensor& y) {
    // 2 * outputs * (C * kt * kh * kw) per output element
    const double flops = 2.0 * double(y.numel()) * double(weight.numel() / std::max<int64_t>(weight.dim(0), 1));
    timed("conv3d", flops, [&] { inner_.conv3d(x, weight, bias, stride, padding, y); });
}

void ProfilingBackend::pad3d_replicate(const Tensor& x, std::array<int64_t, 6> pads, Tensor& y) {
    timed("pad3d_replicate", 0, [&] { inner_.pad3d_replicate(x, pads, y); });
}

void ProfilingBackend::group_norm(const Tensor& x, int64_t groups, const Tensor* weight, const Tensor* bias, float eps,
                                  Tensor& y) {
    timed("group_norm", 0, [&] { inner_.group_norm(x, groups, weight, bias, eps, y); });
}

void ProfilingBackend::upsample_nearest3d(const Tensor& x, std::array<int64_t, 3> scale, Tensor& y) {
    timed("upsample_nearest3d", 0, [&] { inner_.upsample_nearest3d(x, scale, y); });
}

void ProfilingBackend::embedding(const Tensor& ids, const Tensor& table, Tensor& y) {
    timed("embedding", 0, [&] { inner_.embedding(ids, table, y); });
}

void ProfilingBackend::rope_half(Tensor& x, const Tensor& cos, const Tensor& sin) {
    timed("rope_half", 0, [&] { inner_.rope_half(x, cos, sin); });
}

void ProfilingBackend::quick_gelu(const Tensor& x, Tensor& y) {
    timed("quick_gelu", 0, [&] { inner_.quick_gelu(x, y); });
}

void ProfilingBackend::mul(Tensor& x, const Tensor& y) {
    timed("mul", 0, [&] { inner_.mul(x, y); });
}

void ProfilingBackend::copy(const Tensor& src, Tensor& dst) {
    timed("copy", 0, [&] { inner_.copy(src, dst); });
}

}  // namespace sr
