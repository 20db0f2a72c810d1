#include "pipeline/flow_match_scheduler.h"

#include "core/error.h"

namespace sr {

FlowMatchSchedulerConfig FlowMatchSchedulerConfig::from_json(const Json& j, const std::string& source) {
    FlowMatchSchedulerConfig c;
    SR_THROW_IF(!j.is_object(), "{}: scheduler config is not a JSON object", source);
    // Typed reads: a string where a boolean belongs, or 1e30 where an integer does, is an error naming the key.
    auto flag = [&](const char* key) { return json_bool_or(j, key, false, source); };
    if (j.contains("_class_name"))
        SR_THROW_IF(j["_class_name"] != "FlowMatchEulerDiscreteScheduler",
                    "{}: _class_name {}: only FlowMatchEulerDiscreteScheduler is supported", source,
                    j["_class_name"].dump());
    c.num_train_timesteps = json_int_or(j, "num_train_timesteps", c.num_train_timesteps, source);
    c.shift = json_number_or(j, "shift", c.shift, source);
    SR_THROW_IF(c.num_train_timesteps < 1 || c.num_train_timesteps > 1000000,
                "{}: num_train_timesteps {} out of range 1..1000000", source, c.num_train_timesteps);
    SR_THROW_IF(!(c.shift > 0.0 && c.shift < 1000.0), "{}: shift {} out of range (0, 1000)", source, c.shift);
    for (const char* key :
         {"use_dynamic_shifting", "use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas", "invert_sigmas"})
        SR_THROW_IF(flag(key), "{}: {} = true is not supported", source, key);
    SR_THROW_IF(j.contains("shift_terminal") && !j["shift_terminal"].is_null(), "{}: shift_terminal is not supported",
                source);
    return c;
}

void FlowMatchEulerScheduler::set_timesteps(int n_steps) {
    SR_THROW_IF(n_steps < 1 || n_steps > 10000, "steps {}: must be in 1..10000", n_steps);
    sigmas_.assign(size_t(n_steps) + 1, 0.0f);
    timesteps_.assign(size_t(n_steps), 0.0f);
    const float shift = float(config_.shift);
    for (int i = 0; i < n_steps; ++i) {
        // np.linspace(1, 0, n + 1) computes i * (-1/n) + 1 in float64, then .astype(np.float32); the
        // shift runs on the float32 array.
        const float s = float(double(i) * (-1.0 / double(n_steps)) + 1.0);
        const float shifted = shift * s / (1.0f + (shift - 1.0f) * s);
        sigmas_[size_t(i)] = shifted;
        timesteps_[size_t(i)] = shifted * float(config_.num_train_timesteps);
    }
}

void FlowMatchEulerScheduler::step(const Tensor& velocity, int step_index, Tensor& latents) const {
    SR_ASSERT(step_index >= 0 && step_index < n_steps(), "step {} of {}", step_index, n_steps());
    SR_THROW_IF(!(velocity.shape() == latents.shape()) || velocity.dtype() != DType::F32 ||
                    latents.dtype() != DType::F32 || !latents.is_contiguous(),
                "scheduler step: velocity {} and latents {} must be f32 of one shape", velocity.describe(),
                latents.describe());
    const float dt = sigmas_[size_t(step_index) + 1] - sigmas_[size_t(step_index)];
    const Tensor v = velocity.contiguous();
    const float* pv = v.data<float>();
    float* px = latents.data<float>();
    for (int64_t i = 0; i < latents.numel(); ++i) px[i] = px[i] + dt * pv[i];
}

Tensor FlowMatchEulerScheduler::denoised(const Tensor& velocity, int step_index, const Tensor& latents) const {
    SR_ASSERT(step_index >= 0 && step_index < n_steps(), "step {} of {}", step_index, n_steps());
    SR_THROW_IF(
        !(velocity.shape() == latents.shape()) || velocity.dtype() != DType::F32 || latents.dtype() != DType::F32,
        "denoised estimate: velocity {} and latents {} must be f32 of one shape", velocity.describe(),
        latents.describe());
    const float sigma = sigmas_[size_t(step_index)];
    const Tensor v = velocity.contiguous(), x = latents.contiguous();
    Tensor out = Tensor::empty(latents.shape(), DType::F32, host_allocator(), "denoised estimate");
    const float* pv = v.data<float>();
    const float* px = x.data<float>();
    float* po = out.data<float>();
    for (int64_t i = 0; i < out.numel(); ++i) po[i] = px[i] - sigma * pv[i];
    return out;
}

}  // namespace sr
