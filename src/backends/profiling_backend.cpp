#include "backends/profiling_backend.h"

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
    timed("timestep_embedding", 0, [&] { inner_.timestep_embedding(t, dim, flip_sin_to_cos, downscale_freq_shift, max_period, y); });
}

void ProfilingBackend::copy(const Tensor& src, Tensor& dst) {
    timed("copy", 0, [&] { inner_.copy(src, dst); });
}

}  // namespace sr
