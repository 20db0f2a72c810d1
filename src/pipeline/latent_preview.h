// A look at the video while it forms, without the VAE: the denoised estimate of a step (x0 = latents -
// sigma * velocity, the flow-matching prediction of the clean latents; pipeline.h's after_step_denoised)
// through a fixed linear map from the 16 latent channels to RGB, as ComfyUI previews HunyuanVideo latents.
// One 8-bit RGB frame per latent frame (a latent frame stands for 4 video frames, the first for 1), each
// latent pixel drawn as an s x s block (preview_upscale), and the frames tiled into one contact sheet.
// ref: ComfyUI comfy/latent_formats.py (class HunyuanVideo: latent_rgb_factors, latent_rgb_factors_bias) and
//      latent_preview.py (Latent2RGBPreviewer.decode_latent_to_preview, preview_to_image)
//
//   job.denoised_due = [&](int done) { return sr::preview_due(done, steps, 5); };   // x0 formed only then
//   job.after_step_denoised = [&](int done, const sr::Tensor& x0) {
//       const sr::PreviewFrames p = sr::latent_preview(x0, done, steps);   // p.frames x [p.height, p.width, 3]
//       const sr::Image8 sheet = sr::contact_sheet(p);
//   };
#pragma once

#include <cstdint>
#include <vector>

#include "core/image8.h"
#include "core/tensor.h"

namespace sr {

// HunyuanVideo's latent -> RGB factors: rgb[c] = bias[c] + sum_k latent[k] * factors[k][c], giving about
// [-1, 1] (the VAE's output range). They apply to the latents as the sampler sees them, i.e. already
// multiplied by the VAE's scaling_factor (0.476986): ComfyUI's sampler works on process_in(latent) = latent
// * scale_factor and hands that x0 to the previewer; our pipeline's latents are the same (decode divides by
// scaling_factor first), so the factors apply to them as they are.
inline constexpr int kPreviewLatentChannels = 16;
extern const float kHunyuanVideoLatentRgbFactors[kPreviewLatentChannels][3];
extern const float kHunyuanVideoLatentRgbBias[3];

// A preview of the video after `step` of `total_steps` denoising steps: one frame per latent frame.
struct PreviewFrames {
    int step = 0, total_steps = 0;
    int64_t frames = 0, height = 0, width = 0;  // frames of height x width pixels
    int upscale = 1;                            // pixels per latent pixel, each way
    std::vector<uint8_t> rgb;                   // [frames, height, width, 3]
    const uint8_t* frame(int64_t t) const { return rgb.data() + t * height * width * 3; }
    Image8 frame_image(int64_t t) const;
};

// Whether a preview is due after `steps_done` of `total` steps: every `every` steps, and always after the last
// (7 steps every 3: after 3, 6 and 7).
bool preview_due(int steps_done, int total, int every);

// Pixels per latent pixel for a latent frame of h x w: the smallest s that makes the longer side at least 240
// pixels (readable on a page: the latent is 1/8 of the video's side), at most 8 (the video's own size).
int preview_upscale(int64_t latent_height, int64_t latent_width);

// x0 [1, 16, T, h, w] (f32, host) -> T frames of (h * s) x (w * s), s = preview_upscale(h, w): each pixel
// clamp((rgb + 1) / 2, 0, 1) * 255 truncated to 8 bits, as ComfyUI's preview_to_image does. InputError when
// the latents do not have 16 channels.
PreviewFrames latent_preview(const Tensor& denoised, int step, int total_steps);

// The frames tiled in reading order on a grid of ceil(sqrt(T)) columns and as many rows as needed, without
// gaps; cells past the last frame are black. For 544x960x97 (25 latent frames of 68x120, s = 2): 5 x 5 frames of
// 136x240, 1200x680 pixels.
Image8 contact_sheet(const PreviewFrames& preview);

}  // namespace sr
