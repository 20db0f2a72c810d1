// f32 functions that reproduce PyTorch's CPU results bit for bit, for the few places where the model
// amplifies the last bit. The timestep sinusoid evaluates sin(t * freq) at t up to 1000 * guidance (6000
// rad for guidance 6): a 1-ulp difference in a frequency moves the argument by ~5e-4 rad. torch.exp on a
// float32 CPU tensor runs SLEEF's expf_u10 (1-ulp, not correctly rounded: it differs from the correctly
// rounded value in 15 of the 128 HunyuanVideo frequencies), so we evaluate the same algorithm.
#pragma once

#include <cmath>

namespace sr::torch_math {

// SLEEF xexpf_u10: Cody-Waite reduction by ln2 split in two, degree-6 polynomial, both with FMA.
inline float expf(float d) {
    const float q = std::rint(d * 1.442695040888963407359924681001892137f);
    float s = std::fma(q, -0.693145751953125f, d);
    s = std::fma(q, -1.428606765330187045e-06f, s);
    float u = 0.000198527617612853646278381f;
    u = std::fma(u, s, 0.00139304355252534151077271f);
    u = std::fma(u, s, 0.00833336077630519866943359f);
    u = std::fma(u, s, 0.0416664853692054748535156f);
    u = std::fma(u, s, 0.166666671633720397949219f);
    u = std::fma(u, s, 0.5f);
    u = 1.0f + std::fma(s * s, u, s);
    if (d < -104.0f) return 0.0f;
    if (d > 100.0f) return INFINITY;
    return std::ldexp(u, int(q));
}

}  // namespace sr::torch_math
