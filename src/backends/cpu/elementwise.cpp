// Element-wise and row-broadcast ops: activations, adaLN modulate / gate, residual add, RoPE.
#include <algorithm>
#include <optional>
#include <vector>

#include "backends/cpu/cpu_backend.h"
#include "backends/cpu/f32_rows.h"
#include "backends/cpu/rope_rows.h"
#include "backends/cpu/row_kernels.h"
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

// A per-batch [B, D] vector of modulate / gated_residual as f32 rows: the tensor's own (f32, unit-stride
// rows) or, for bf16 activations, widened once per call (B x D floats).
class BatchVectors {
public:
    BatchVectors(const Tensor& v, int64_t B, int64_t D) {
        SR_ASSERT(
            (v.dtype() == DType::F32 || v.dtype() == DType::BF16) && v.rank() == 2 && v.dim(0) == B && v.dim(1) == D,
            "per-batch vector {} for [{},{}]", v.describe(), B, D);
        if (v.dtype() == DType::F32 && v.stride(1) == 1) {
            data_ = static_cast<const float*>(v.raw_data());
            stride_ = v.stride(0);
            return;
        }
        widened_.resize(size_t(B * D));
        Tensor::wrap(widened_.data(), {B, D}, DType::F32, Device::cpu(), nullptr).copy_from(v);
        data_ = widened_.data();
        stride_ = D;
    }
    const float* row(int64_t b) const { return data_ + b * stride_; }

private:
    std::vector<float> widened_;
    const float* data_ = nullptr;
    int64_t stride_ = 0;
};

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
    SR_ASSERT(x.shape() == y.shape(), "modulate on {} -> {}", x.describe(), y.describe());
    const auto s = RowBroadcast::of(x);
    const F32Rows xs(x, s.D, "modulate x");  // f32 or bf16 activations (f32_rows.h)
    F32Rows ys(y, s.D, "modulate y");
    const BatchVectors sh(shift, s.B, s.D), sc(scale, s.B, s.D);
    parallel_for(
        s.B * s.L,
        [&](int64_t r0, int64_t r1) {
            std::vector<float> xbuf(xs.is_f32() ? 0 : size_t(s.D)), ybuf(ys.is_f32() ? 0 : size_t(s.D));
            for (int64_t r = r0; r < r1; ++r) {
                const int64_t b = r / s.L;
                const float* shr = sh.row(b);
                const float* scr = sc.row(b);
                const float* xr = xs.read(r, xbuf.data());
                float* yr = ys.out(r, ybuf.data());
                for (int64_t i = 0; i < s.D; ++i) yr[i] = xr[i] * (1.0f + scr[i]) + shr[i];
                ys.store(r, yr);
            }
        },
        std::max<int64_t>(1, kGrain / std::max<int64_t>(1, s.D)));
}

void CpuBackend::exec(const GatedResidualOp& op) {
    const auto& [x, y, gate] = op;
    SR_ASSERT(x.shape() == y.shape(), "gated_residual on {} and {}", x.describe(), y.describe());
    const auto s = RowBroadcast::of(x);
    F32Rows xs(x, s.D, "gated_residual x");  // f32 or bf16 activations (f32_rows.h)
    const F32Rows ys(y, s.D, "gated_residual y");
    const std::optional<BatchVectors> g =
        gate.defined() ? std::optional<BatchVectors>(BatchVectors(gate, s.B, s.D)) : std::nullopt;
    parallel_for(
        s.B * s.L,
        [&](int64_t r0, int64_t r1) {
            std::vector<float> xbuf(xs.is_f32() ? 0 : size_t(s.D)), ybuf(ys.is_f32() ? 0 : size_t(s.D));
            for (int64_t r = r0; r < r1; ++r) {
                // x is read and written: out() is its own row (f32) or xbuf, which read() fills first.
                float* xr = xs.out(r, xbuf.data());
                xs.read(r, xr);
                const float* yr = ys.read(r, ybuf.data());
                if (!g) {
                    for (int64_t i = 0; i < s.D; ++i) xr[i] += yr[i];
                } else {
                    const float* gr = g->row(r / s.L);
                    for (int64_t i = 0; i < s.D; ++i) xr[i] += yr[i] * gr[i];
                }
                xs.store(r, xr);
            }
        },
        std::max<int64_t>(1, kGrain / std::max<int64_t>(1, s.D)));
}

void CpuBackend::exec(const RopeInterleavedOp& op) {
    const auto& [x, cos, sin] = op;
    // Pairs (x[2i], x[2i+1]), each frequency repeated twice in the tables.
    for_each_rope_head(x, cos, sin, "rope", rope_interleaved_row);
}

}  // namespace sr
