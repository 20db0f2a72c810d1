#include "runtime/simulated_kernels.h"

namespace sr {

void SimulatedKernels::check_on_device(const char* op, std::initializer_list<Arg> args) const {
    for (const Arg& a : args) {
        if (!a.tensor || !a.tensor->defined()) continue;
        SR_ASSERT(a.tensor->device() == device(),
                  "{}: {} {} is on {}, not on the device {} (upload it with to_device())", op, a.name,
                  a.tensor->describe(), a.tensor->device().name(), device().name());
    }
}

void SimulatedKernels::linear(const Tensor& x, const Tensor& weight, const Tensor* bias, Tensor& y) {
    check_on_device("linear", {{"x", &x}, {"weight", &weight}, {"bias", bias}, {"y", &y}});
    const DeviceCodeScope kernel;
    cpu_.linear(x, weight, bias, y);
}

void SimulatedKernels::attention(const Tensor& q, const Tensor& k, const Tensor& v, Tensor& out,
                                 const AttentionMask& mask, float scale) {
    check_on_device("attention", {{"q", &q}, {"k", &k}, {"v", &v}, {"out", &out}, {"dense mask", &mask.dense}});
    const DeviceCodeScope kernel;
    cpu_.attention(q, k, v, out, mask, scale);
}

void SimulatedKernels::layer_norm(const Tensor& x, const Tensor* weight, const Tensor* bias, float eps, Tensor& y) {
    check_on_device("layer_norm", {{"x", &x}, {"weight", weight}, {"bias", bias}, {"y", &y}});
    const DeviceCodeScope kernel;
    cpu_.layer_norm(x, weight, bias, eps, y);
}

void SimulatedKernels::rms_norm(const Tensor& x, const Tensor* weight, float eps, Tensor& y) {
    check_on_device("rms_norm", {{"x", &x}, {"weight", weight}, {"y", &y}});
    const DeviceCodeScope kernel;
    cpu_.rms_norm(x, weight, eps, y);
}

void SimulatedKernels::rope_interleaved(Tensor& x, const Tensor& cos, const Tensor& sin) {
    check_on_device("rope_interleaved", {{"x", &x}, {"cos", &cos}, {"sin", &sin}});
    const DeviceCodeScope kernel;
    cpu_.rope_interleaved(x, cos, sin);
}

void SimulatedKernels::gelu_tanh(const Tensor& x, Tensor& y) {
    check_on_device("gelu_tanh", {{"x", &x}, {"y", &y}});
    const DeviceCodeScope kernel;
    cpu_.gelu_tanh(x, y);
}

void SimulatedKernels::silu(const Tensor& x, Tensor& y) {
    check_on_device("silu", {{"x", &x}, {"y", &y}});
    const DeviceCodeScope kernel;
    cpu_.silu(x, y);
}

void SimulatedKernels::modulate(const Tensor& x, const Tensor& shift, const Tensor& scale, Tensor& y) {
    check_on_device("modulate", {{"x", &x}, {"shift", &shift}, {"scale", &scale}, {"y", &y}});
    const DeviceCodeScope kernel;
    cpu_.modulate(x, shift, scale, y);
}

void SimulatedKernels::gated_residual(Tensor& x, const Tensor& y, const Tensor& gate) {
    check_on_device("gated_residual", {{"x", &x}, {"y", &y}, {"gate", &gate}});
    const DeviceCodeScope kernel;
    cpu_.gated_residual(x, y, gate);
}

void SimulatedKernels::add(Tensor& x, const Tensor& y) {
    check_on_device("add", {{"x", &x}, {"y", &y}});
    const DeviceCodeScope kernel;
    cpu_.add(x, y);
}

void SimulatedKernels::patch_embed_3d(const Tensor& x, const Tensor& weight, const Tensor* bias, Tensor& y) {
    check_on_device("patch_embed_3d", {{"x", &x}, {"weight", &weight}, {"bias", bias}, {"y", &y}});
    const DeviceCodeScope kernel;
    cpu_.patch_embed_3d(x, weight, bias, y);
}

void SimulatedKernels::timestep_embedding(const Tensor& t, int dim, bool flip_sin_to_cos, float downscale_freq_shift,
                                          float max_period, Tensor& y) {
    check_on_device("timestep_embedding", {{"t", &t}, {"y", &y}});
    const DeviceCodeScope kernel;
    cpu_.timestep_embedding(t, dim, flip_sin_to_cos, downscale_freq_shift, max_period, y);
}

void SimulatedKernels::copy(const Tensor& src, Tensor& dst) {
    // Like cudaMemcpy, a copy may cross between the host and the device (to_device, to_host).
    for (const Arg a : {Arg{"src", &src}, Arg{"dst", &dst}})
        SR_ASSERT(a.tensor->device() == device() || a.tensor->device().type == DeviceType::CPU,
                  "copy: {} {} is on {}, neither the host nor the device {}", a.name, a.tensor->describe(),
                  a.tensor->device().name(), device().name());
    const DeviceCodeScope kernel;
    cpu_.copy(src, dst);
}

void SimulatedKernels::conv3d(const Tensor& x, const Tensor& weight, const Tensor* bias, std::array<int64_t, 3> stride,
                              std::array<int64_t, 3> padding, Tensor& y) {
    check_on_device("conv3d", {{"x", &x}, {"weight", &weight}, {"bias", bias}, {"y", &y}});
    const DeviceCodeScope kernel;
    cpu_.conv3d(x, weight, bias, stride, padding, y);
}

void SimulatedKernels::pad3d_replicate(const Tensor& x, std::array<int64_t, 6> pads, Tensor& y) {
    check_on_device("pad3d_replicate", {{"x", &x}, {"y", &y}});
    const DeviceCodeScope kernel;
    cpu_.pad3d_replicate(x, pads, y);
}

void SimulatedKernels::group_norm(const Tensor& x, int64_t groups, const Tensor* weight, const Tensor* bias, float eps,
                                  Tensor& y) {
    check_on_device("group_norm", {{"x", &x}, {"weight", weight}, {"bias", bias}, {"y", &y}});
    const DeviceCodeScope kernel;
    cpu_.group_norm(x, groups, weight, bias, eps, y);
}

void SimulatedKernels::upsample_nearest3d(const Tensor& x, std::array<int64_t, 3> scale, Tensor& y) {
    check_on_device("upsample_nearest3d", {{"x", &x}, {"y", &y}});
    const DeviceCodeScope kernel;
    cpu_.upsample_nearest3d(x, scale, y);
}

void SimulatedKernels::embedding(const Tensor& ids, const Tensor& table, Tensor& y) {
    // The ids may come from the host, as the CUDA backend allows (it checks them there before the gather).
    check_on_device("embedding", {{"table", &table}, {"y", &y}});
    const DeviceCodeScope kernel;
    cpu_.embedding(ids, table, y);
}

void SimulatedKernels::rope_half(Tensor& x, const Tensor& cos, const Tensor& sin) {
    check_on_device("rope_half", {{"x", &x}, {"cos", &cos}, {"sin", &sin}});
    const DeviceCodeScope kernel;
    cpu_.rope_half(x, cos, sin);
}

void SimulatedKernels::quick_gelu(const Tensor& x, Tensor& y) {
    check_on_device("quick_gelu", {{"x", &x}, {"y", &y}});
    const DeviceCodeScope kernel;
    cpu_.quick_gelu(x, y);
}

void SimulatedKernels::mul(Tensor& x, const Tensor& y) {
    check_on_device("mul", {{"x", &x}, {"y", &y}});
    const DeviceCodeScope kernel;
    cpu_.mul(x, y);
}

}  // namespace sr
