#include "pipeline/latent_preview.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace sr {

// ComfyUI comfy/latent_formats.py, class HunyuanVideo (rows: latent channels 0..15; columns: R, G, B). Data,
// not code: a least-squares fit of the VAE's decoded colours to the latents, published with ComfyUI.
const float kHunyuanVideoLatentRgbFactors[kPreviewLatentChannels][3] = {
    {-0.0395f, -0.0331f, 0.0445f},  {0.0696f, 0.0795f, 0.0518f},    {0.0135f, -0.0945f, -0.0282f},
    {0.0108f, -0.0250f, -0.0765f},  {-0.0209f, 0.0032f, 0.0224f},   {-0.0804f, -0.0254f, -0.0639f},
    {-0.0991f, 0.0271f, -0.0669f},  {-0.0646f, -0.0422f, -0.0400f}, {-0.0696f, -0.0595f, -0.0894f},
    {-0.0799f, -0.0208f, -0.0375f}, {0.1166f, 0.1627f, 0.0962f},    {0.1165f, 0.0432f, 0.0407f},
    {-0.2315f, -0.1920f, -0.1355f}, {-0.0270f, 0.0401f, -0.0821f},  {-0.0616f, -0.0997f, -0.0727f},
    {0.0249f, -0.0469f, -0.1703f}};
const float kHunyuanVideoLatentRgbBias[3] = {0.0259f, -0.0192f, -0.0761f};

Image8 PreviewFrames::frame_image(int64_t t) const {
    SR_ASSERT(t >= 0 && t < frames);
    Image8 im;
    im.width = width;
    im.height = height;
    im.rgb.assign(frame(t), frame(t) + height * width * 3);
    return im;
}

bool preview_due(int steps_done, int total, int every) {
    return steps_done == total || (every > 0 && steps_done % every == 0);
}

int preview_upscale(int64_t latent_height, int64_t latent_width) {
    constexpr int64_t kMinLongSide = 240, kMaxUpscale = 8;  // 8: the VAE's spatial ratio, the video's own size
    const int64_t side = std::max<int64_t>(1, std::max(latent_height, latent_width));
    return int(std::clamp<int64_t>((kMinLongSide + side - 1) / side, 1, kMaxUpscale));
}

PreviewFrames latent_preview(const Tensor& denoised, int step, int total_steps) {
    SR_THROW_IF(denoised.rank() != 5 || denoised.dim(0) != 1 || denoised.dim(1) != kPreviewLatentChannels,
                "preview: expected latents [1, {}, T, h, w], got {}", kPreviewLatentChannels, denoised.describe());
    const Tensor x = denoised.to(DType::F32).contiguous();
    const int64_t T = x.dim(2), h = x.dim(3), w = x.dim(4), plane = T * h * w;
    const int s = preview_upscale(h, w);
    PreviewFrames p;
    p.step = step;
    p.total_steps = total_steps;
    p.frames = T;
    p.height = h * s;
    p.width = w * s;
    p.upscale = s;
    p.rgb.resize(size_t(T * p.height * p.width * 3));
    const float* src = x.data<float>();
    for (int64_t t = 0; t < T; ++t)
        for (int64_t y = 0; y < h; ++y)
            for (int64_t xx = 0; xx < w; ++xx) {
                const float* at = src + (t * h + y) * w + xx;  // channel k at at[k * plane]
                uint8_t px[3];
                for (int c = 0; c < 3; ++c) {
                    float v = kHunyuanVideoLatentRgbBias[c];
                    for (int k = 0; k < kPreviewLatentChannels; ++k)
                        v += at[k * plane] * kHunyuanVideoLatentRgbFactors[k][c];
                    // ComfyUI: ((v + 1) / 2).clamp(0, 1) * 255, then a cast to uint8 (truncation). NaN goes to 0.
                    const float u = std::clamp((v + 1.0f) / 2.0f, 0.0f, 1.0f);
                    px[c] = std::isnan(v) ? 0 : uint8_t(u * 255.0f);
                }
                for (int dy = 0; dy < s; ++dy) {
                    uint8_t* row = p.rgb.data() + ((t * p.height + y * s + dy) * p.width + xx * s) * 3;
                    for (int dx = 0; dx < s; ++dx)
                        for (int c = 0; c < 3; ++c) row[dx * 3 + c] = px[c];
                }
            }
    return p;
}

Image8 contact_sheet(const PreviewFrames& p) {
    const int64_t cols = std::max<int64_t>(1, int64_t(std::ceil(std::sqrt(double(p.frames))))),
                  rows = std::max<int64_t>(1, (p.frames + cols - 1) / cols);
    Image8 sheet;
    sheet.width = cols * p.width;
    sheet.height = rows * p.height;
    sheet.rgb.assign(size_t(sheet.width * sheet.height * 3), 0);
    const size_t row_bytes = size_t(p.width * 3);
    for (int64_t t = 0; t < p.frames; ++t) {
        const int64_t x0 = (t % cols) * p.width, y0 = (t / cols) * p.height;
        for (int64_t y = 0; y < p.height; ++y)
            std::copy_n(p.frame(t) + y * p.width * 3, row_bytes, sheet.rgb.data() + ((y0 + y) * sheet.width + x0) * 3);
    }
    return sheet;
}

}  // namespace sr
