// Element-wise and row-broadcast ops: activations, adaLN modulate / gate, residual add, RoPE.
#include <algorithm>

#include "backends/cpu/cpu_backend.h"
#include "backends/cpu/rope_rows.h"
#include "backends/cpu/vec_math.h"
#include "core/parallel.h"

namespace sr {

namespace {

constexpr int64_t kGrain = 1 << 14;  // elements per task: enough work to amortize a thread wake-up

void check_same(const Tensor& x, const Tensor& y, const char* op) {
    SR_ASSERT(x.dtype() == DType::F32 && y.dtype() == DType::F32 && x.is_contiguous() && y.is_contiguous() &&
                  x.numel() == y.numel(),
              "{} on {} -> {}", op, x.describe(), y.describe());
}

// y[i] = f(x[i]) over contiguous f32 or bf16 x and y (any mix; y may be x), computed in f32 and each bf16
// result rounded once as it is stored, as bf16_activations.cpp's contract says. A bf16 argument is widened a
// stack block at a time, not as a whole f32 copy: the copies both ways cost the in-place GELU of a bf16 MLP
// hidden layer 5x its f32 time.
template <class F>
void map_any_float(const Tensor& x, Tensor& y, F f) {
    const DType xt = x.dtype(), yt = y.dtype();
    const size_t xs = dtype_size(xt), ys = dtype_size(yt);
    const char* xd = static_cast<const char*>(x.raw_data());
    char* yd = static_cast<char*>(y.raw_data());
    parallel_for(
        x.numel(),
        [&](int64_t i0, int64_t i1) {
            if (xt == DType::F32 && yt == DType::F32) {
                vec::map(reinterpret_cast<const float*>(xd) + i0, reinterpret_cast<float*>(yd) + i0, i1 - i0, f);
                return;
            }
            constexpr int64_t kBlock = 1024;
            alignas(64) float buf[kBlock];
            for (int64_t b = i0; b < i1; b += kBlock) {
                const int64_t n = std::min(kBlock, i1 - b);
                convert_elements(xd + size_t(b) * xs, xt, buf, DType::F32, size_t(n));
                vec::map(buf, buf, n, f);
                convert_elements(buf, DType::F32, yd + size_t(b) * ys, yt, size_t(n));
            }
        },
        kGrain);
}

// [B, L, D] rows with a per-batch [B, D] vector (a view whose rows may be strided).
struct RowBroadcast {
    int64_t B, L, D;
    static RowBroadcast of(const Tensor& x) {
        SR_ASSERT(x.rank() == 3, "row-broadcast op wants [B,L,D], got {}", x.describe());
        return {x.dim(0), x.dim(1), x.dim(2)};
    }
};

const float* vec_row(const Tensor& v, int64_t b, int64_t B, int64_t D) {
    SR_ASSERT(v.dtype() == DType::F32 && v.rank() == 2 && v.dim(0) == B && v.dim(1) == D && v.stride(1) == 1,
              "per-batch vector {} for [{},{}]", v.describe(), B, D);
    return static_cast<const float*>(v.raw_data()) + b * v.stride(0);
}

}  // namespace

void CpuBackend::exec(const GeluTanhOp& op) {
    const auto& [x, y] = op;
    SR_ASSERT((x.dtype() == DType::F32 || x.dtype() == DType::BF16) &&
                  (y.dtype() == DType::F32 || y.dtype() == DType::BF16) && x.is_contiguous() && y.is_contiguous() &&
                  x.numel() == y.numel(),
              "gelu_tanh on {} -> {}", x.describe(), y.describe());
    map_any_float(x, y, [](auto v) { return vec::gelu_tanh(v); });
}

void CpuBackend::exec(const SiluOp& op) {
    const auto& [x, y] = op;
    check_same(x, y, "silu");
    const float* xd = x.data<float>();
    float* yd = y.data<float>();
    parallel_for(
        x.numel(),
        [&](int64_t i0, int64_t i1) { vec::map(xd + i0, yd + i0, i1 - i0, [](auto v) { return vec::silu(v); }); },
        kGrain);
}

void CpuBackend::exec(const AddOp& op) {
    const auto& [x, y] = op;
    check_same(x, y, "add");
    float* xd = x.data<float>();
    const float* yd = y.data<float>();
    parallel_for(
        x.numel(),
        [&](int64_t i0, int64_t i1) {
            for (int64_t i = i0; i < i1; ++i) xd[i] += yd[i];
        },
        kGrain);
}

void CpuBackend::exec(const ModulateOp& op) {
    const auto& [x, shift, scale, y] = op;
    check_same(x, y, "modulate");
    const auto s = RowBroadcast::of(x);
    const float* xd = x.data<float>();
    float* yd = y.data<float>();
    parallel_for(
        s.B * s.L,
        [&](int64_t r0, int64_t r1) {
            for (int64_t r = r0; r < r1; ++r) {
                const int64_t b = r / s.L;
                const float* sh = vec_row(shift, b, s.B, s.D);
                const float* sc = vec_row(scale, b, s.B, s.D);
                const float* xr = xd + r * s.D;
                float* yr = yd + r * s.D;
                for (int64_t i = 0; i < s.D; ++i) yr[i] = xr[i] * (1.0f + sc[i]) + sh[i];
            }
        },
        std::max<int64_t>(1, kGrain / std::max<int64_t>(1, s.D)));
}

void CpuBackend::exec(const GatedResidualOp& op) {
    const auto& [x, y, gate] = op;
    check_same(x, y, "gated_residual");
    const auto s = RowBroadcast::of(x);
    float* xd = x.data<float>();
    const float* yd = y.data<float>();
    parallel_for(
        s.B * s.L,
        [&](int64_t r0, int64_t r1) {
            for (int64_t r = r0; r < r1; ++r) {
                float* xr = xd + r * s.D;
                const float* yr = yd + r * s.D;
                if (!gate.defined()) {
                    for (int64_t i = 0; i < s.D; ++i) xr[i] += yr[i];
                    continue;
                }
                const float* g = vec_row(gate, r / s.L, s.B, s.D);
                for (int64_t i = 0; i < s.D; ++i) xr[i] += yr[i] * g[i];
            }
        },
        std::max<int64_t>(1, kGrain / std::max<int64_t>(1, s.D)));
}

void CpuBackend::exec(const RopeInterleavedOp& op) {
    const auto& [x, cos, sin] = op;
    // Pairs (x[2i], x[2i+1]), each frequency repeated twice in the tables.
    for_each_rope_head(x, cos, sin, "rope", [](float* v, const float* c, const float* s, int64_t D) {
        for (int64_t i = 0; i < D; i += 2) {
            const float re = v[i], im = v[i + 1];
            v[i] = re * c[i] - im * s[i];
            v[i + 1] = im * c[i + 1] + re * s[i + 1];
        }
    });
}

}  // namespace sr
