// The flow-matching Euler scheduler of HunyuanVideo / SkyReels-V1 (FlowMatchEulerDiscreteScheduler), in the
// configuration the checkpoints ship: a static `shift`, the sigmas SkyReels passes
// (linspace(1, 0, steps + 1)[:-1]) shifted as shift*s / (1 + (shift-1)*s), timesteps = 1000 * sigma, and
// the Euler step x + (sigma[i+1] - sigma[i]) * v. Computed in float32, as the reference does.
// ref: diffusers v0.32.2 src/diffusers/schedulers/scheduling_flow_match_euler_discrete.py
//      (set_timesteps with sigmas=..., step), pipeline_hunyuan_video.py (the sigmas argument)
//
//   auto sched = sr::FlowMatchEulerScheduler::from_json(sr::load_json_file(dir + "/scheduler_config.json"), dir);
//   sched.set_timesteps(30);
//   for (int i = 0; i < 30; ++i) sched.step(velocity, i, latents);   // latents updated in place
#pragma once

#include <string>
#include <vector>

#include "core/tensor.h"
#include "io/json.h"

namespace sr {

// scheduler_config.json fields that this implementation honours; the others must keep their defaults.
struct FlowMatchSchedulerConfig {
    int64_t num_train_timesteps = 1000;
    double shift = 7.0;  // HunyuanVideo's conversion script writes 7.0

    // Throws InputError naming `source` for options we do not implement (dynamic shifting, Karras,
    // exponential or beta sigmas, inverted sigmas, a terminal shift).
    static FlowMatchSchedulerConfig from_json(const Json& j, const std::string& source);
};

class FlowMatchEulerScheduler {
public:
    explicit FlowMatchEulerScheduler(FlowMatchSchedulerConfig config = {}) : config_(config) {}
    static FlowMatchEulerScheduler from_json(const Json& j, const std::string& source) {
        return FlowMatchEulerScheduler(FlowMatchSchedulerConfig::from_json(j, source));
    }

    // sigmas = shift(linspace(1, 0, n + 1)[:-1]) followed by a final 0; timesteps = 1000 * sigmas[:-1].
    void set_timesteps(int n_steps);

    const FlowMatchSchedulerConfig& config() const { return config_; }
    const std::vector<float>& sigmas() const { return sigmas_; }        // n + 1 values
    const std::vector<float>& timesteps() const { return timesteps_; }  // n values
    int n_steps() const { return int(timesteps_.size()); }

    // latents += (sigma[i+1] - sigma[i]) * velocity, in float32. Both f32, same shape.
    void step(const Tensor& velocity, int step_index, Tensor& latents) const;
    // The step's prediction of the clean latents, x0 = latents - sigma[i] * velocity (x_t = (1 - sigma) x0 +
    // sigma * noise and v = noise - x0): what previews show. After the last step it equals the final latents.
    Tensor denoised(const Tensor& velocity, int step_index, const Tensor& latents) const;

private:
    FlowMatchSchedulerConfig config_;
    std::vector<float> sigmas_, timesteps_;
};

}  // namespace sr
