// Row normalizations over the last dimension. Statistics accumulate in double: rows are up to 4096 wide
// here and the reference computes them in f32 with pairwise-like vector sums, so a plain f32 running sum
// would drift further from it than double does.
#include <cmath>

#include "backends/cpu/cpu_backend.h"
#include "backends/cpu/f32_rows.h"
#include "backends/cpu/row_kernels.h"
#include "backends/cpu/vec_math.h"
#include "core/parallel.h"

namespace sr {

namespace {

void check_rows(const Tensor& x, const Tensor& y) {
    SR_ASSERT(x.dtype() == DType::F32 && y.dtype() == DType::F32 && x.is_contiguous() && y.is_contiguous() &&
                  x.shape() == y.shape(),
              "norm on {} -> {}", x.describe(), y.describe());
}

}  // namespace

void CpuBackend::exec(const LayerNormOp& op) {
    const auto& [x, weight, bias, eps, y] = op;
    SR_ASSERT(x.shape() == y.shape(), "layer_norm on {} -> {}", x.describe(), y.describe());
    const int64_t D = x.dim(-1), rows = D ? x.numel() / D : 0;
    const F32Vector wv(weight, D, "layer_norm weight"), bv(bias, D, "layer_norm bias");
    const float *w = wv.get(), *b = bv.get();
    const F32Rows xs(x, D, "layer_norm x");  // f32 or bf16 activations (f32_rows.h)
    F32Rows ys(y, D, "layer_norm y");
    parallel_for(
        rows,
        [&](int64_t r0, int64_t r1) {
            std::vector<float> xbuf(xs.is_f32() ? 0 : size_t(D)), ybuf(ys.is_f32() ? 0 : size_t(D));
            for (int64_t r = r0; r < r1; ++r) {
                const float* xr = xs.read(r, xbuf.data());
                float* yr = ys.out(r, ybuf.data());
                const double mean = vec::sum_f64(xr, D, [](auto v) { return v; }) / double(D);
                const double var = vec::sum_f64(xr, D, [mean](auto v) {
                    const auto c = v - mean;
                    return c * c;
                });
                const float inv = float(1.0 / std::sqrt(var / double(D) + eps));
                const float m = float(mean);
                for (int64_t i = 0; i < D; ++i) {
                    float v = (xr[i] - m) * inv;
                    if (w) v *= w[i];
                    if (b) v += b[i];
                    yr[i] = v;
                }
                ys.store(r, yr);
            }
        },
        std::max<int64_t>(1, 4096 / std::max<int64_t>(D, 1)));
}

void CpuBackend::exec(const RmsNormOp& op) {
    const auto& [x, weight, eps, y] = op;
    check_rows(x, y);
    const int64_t D = x.dim(-1), rows = D ? x.numel() / D : 0;
    const F32Vector w(weight, D, "rms_norm weight");
    const float* xd = x.data<float>();
    float* yd = y.data<float>();
    parallel_for(
        rows,
        [&](int64_t r0, int64_t r1) {
            for (int64_t r = r0; r < r1; ++r) {
                rms_norm_row(xd + r * D, w.get(), D, eps, yd + r * D);
            }
        },
        std::max<int64_t>(1, 4096 / std::max<int64_t>(D, 1)));
}

}  // namespace sr
