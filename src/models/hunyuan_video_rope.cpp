#include "models/hunyuan_video_rope.h"

#include <cmath>

namespace sr {

std::pair<Tensor, Tensor> hunyuan_rope_tables(const std::vector<int64_t>& axes_dim, double theta, int64_t frames,
                                              int64_t height, int64_t width) {
    int64_t head_dim = 0;
    for (int64_t d : axes_dim) head_dim += d;
    const int64_t N = frames * height * width;
    Tensor cos_t = Tensor::empty({N, head_dim}, DType::F32, host_allocator(), "rope cos");
    Tensor sin_t = Tensor::empty({N, head_dim}, DType::F32, host_allocator(), "rope sin");
    if (host_values_skipped()) return {cos_t, sin_t};  // a memory plan: only the sizes matter
    float* c = cos_t.data<float>();
    float* s = sin_t.data<float>();
    // Frequencies in f32, as the reference computes them: 1 / theta^(float(2i) / d).
    std::vector<std::vector<float>> freqs;
    for (int64_t d : axes_dim) {
        std::vector<float> f;
        for (int64_t i = 0; i < d / 2; ++i) {
            const float exponent = float(2 * i) / float(d);
            f.push_back(1.0f / float(std::pow(theta, double(exponent))));
        }
        freqs.push_back(std::move(f));
    }
    for (int64_t n = 0; n < N; ++n) {
        const int64_t coord[3] = {n / (height * width), (n / width) % height, n % width};
        int64_t col = 0;
        for (size_t a = 0; a < 3; ++a) {
            for (float f : freqs[a]) {
                const float arg = float(coord[a]) * f;  // f32 product, then an accurate cos/sin of it
                const float cv = float(std::cos(double(arg))), sv = float(std::sin(double(arg)));
                c[n * head_dim + col] = cv;
                c[n * head_dim + col + 1] = cv;
                s[n * head_dim + col] = sv;
                s[n * head_dim + col + 1] = sv;
                col += 2;
            }
        }
    }
    return {cos_t, sin_t};
}

}  // namespace sr
