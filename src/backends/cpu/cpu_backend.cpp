#include "backends/cpu/cpu_backend.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <memory>
#include <vector>

#include "backends/cpu/f32_rows.h"
#include "backends/cpu/torch_math.h"
#include "backends/op_checks.h"
#include "core/dequantize.h"
#include "core/parallel.h"

namespace sr {

static_assert(implements_every_op<CpuBackend>(), "the CPU backend is the reference: it runs every op");

CpuBackend::CpuBackend(Allocator* activations) : activations_(activations) {}
CpuBackend::~CpuBackend() = default;

CpuBackend& cpu_backend() {
    static CpuBackend backend;
    return backend;
}

namespace {

// Weight rows widened per block: 16 MiB of f32 scratch bounds the copy for the 13B model's largest matrix
// (3072 x 15360, 189 MB widened) while each block's GEMM stays large enough for full speed. Measured on
// the real block shape (bench_transformer --config real_block --weights bf16 --gemm f32): linear layers
// at 55% of the 1024^3 GEMM rate with 1 MiB blocks, 69% with 4 MiB, 77% with 16 MiB, 76% with 64 MiB.
constexpr int64_t kWidenScratchFloats = 4 << 20;

void widen_rows(const Tensor& w, int64_t row0, int64_t rows, int64_t K, float* dst) {
    const size_t es = dtype_size(w.dtype());
    const char* src = static_cast<const char*>(w.raw_data()) + size_t(row0 * K) * es;
    parallel_for(
        rows,
        [&](int64_t r0, int64_t r1) {
            convert_elements(src + size_t(r0 * K) * es, w.dtype(), dst + r0 * K, DType::F32, size_t((r1 - r0) * K));
        },
        std::max<int64_t>(1, 16384 / std::max<int64_t>(1, K)));
}

// `rows` rows of `width` floats rounded to bf16 into this thread's scratch buffer `slot` (0 or 1: a call
// needs at most two at once), in parallel over rows. The buffers are kept and grow to the largest request,
// never zero-filled: a fresh zeroed vector per call cost a page-faulting allocation and a pass over memory
// more than the rounding itself, for every linear layer (host memory, outside the activation budget, as
// the CPU backend's other scratch).
const uint16_t* to_bf16(const float* src, int64_t rows, int64_t width, int slot) {
    struct Buffer {
        std::unique_ptr<uint16_t[]> data;
        size_t size = 0;
    };
    thread_local std::array<Buffer, 2> buffers;
    Buffer& buf = buffers.at(size_t(slot));
    const size_t n = size_t(rows * width);
    if (buf.size < n) {
        buf.data.reset();  // the old buffer goes before the larger one comes
        buf.data = std::make_unique_for_overwrite<uint16_t[]>(n);
        buf.size = n;
    }
    uint16_t* out = buf.data.get();
    parallel_for(
        rows,
        [&](int64_t r0, int64_t r1) {
            convert_elements(src + r0 * width, DType::F32, out + r0 * width, DType::BF16, size_t((r1 - r0) * width));
        },
        std::max<int64_t>(1, 16384 / std::max<int64_t>(1, width)));
    return out;
}

// y[M, N] = x[M, K] W^T + bias, W produced a block of rows at a time as f32 by rows_to_f32(n0, nb, dst), so
// that no more than kWidenScratchFloats of it exist at once. BF16 precision rounds x and each block to bf16
// and multiplies in bf16 (f32 accumulation). Each block's GEMM adds its slice of the bias as it stores its
// columns of y.
template <class RowsToF32>
void gemm_by_row_blocks(int64_t M, int64_t N, int64_t K, const float* xd, const float* bias, float* yd, int64_t ldy,
                        GemmPrecision precision, Activation activation, RowsToF32&& rows_to_f32) {
    const int64_t block = std::min(std::max<int64_t>(kWidenScratchFloats / std::max<int64_t>(K, 1), 16), N);
    std::vector<float> scratch(size_t(std::min(block, N) * K));
    const uint16_t* xb = precision == GemmPrecision::BF16 ? to_bf16(xd, M, K, 0) : nullptr;
    for (int64_t n0 = 0; n0 < N; n0 += block) {
        const int64_t nb = std::min(block, N - n0);
        rows_to_f32(n0, nb, scratch.data());
        const float* bias_block = bias ? bias + n0 : nullptr;
        if (precision == GemmPrecision::BF16) {
            const uint16_t* wb = to_bf16(scratch.data(), nb, K, 1);
            gemm_linear(M, nb, K, xb, K, wb, K, DType::BF16, bias_block, yd + n0, ldy, DType::F32, activation);
        } else {
            gemm_linear(M, nb, K, xd, K, scratch.data(), K, DType::F32, bias_block, yd + n0, ldy, DType::F32,
                        activation);
        }
    }
}

}  // namespace

void CpuBackend::exec(const LinearOp& op) {
    const auto& [x, weight, bias, y, activation] = op;
    const LinearShape s = check_linear(x, weight, bias, y);
    const int64_t M = s.M, N = s.N, K = s.K, ldy = s.ldy;
    const F32Vector b(bias, N, "linear bias");  // f32, as oneDNN takes it

    if (weight.dtype() == DType::BF16 && gemm_precision_ == GemmPrecision::BF16) {
        // bf16 x and y (bf16 activations, bf16_activations.cpp) go to oneDNN as they are; f32 x is rounded.
        const void* xb = x.dtype() == DType::BF16 ? x.raw_data() : to_bf16(x.data<float>(), M, K, 0);
        gemm_linear(M, N, K, xb, K, weight.raw_data(), K, DType::BF16, b.get(), y.raw_data(), ldy, y.dtype(),
                    activation);
        return;
    }
    SR_ASSERT(x.dtype() == DType::F32 && y.dtype() == DType::F32, "linear on {} -> {} with {} weights", x.describe(),
              y.describe(), dtype_name(weight.dtype()));
    const float* xd = x.data<float>();
    float* yd = y.data<float>();
    if (weight.dtype() == DType::F32) {
        gemm_linear(M, N, K, xd, K, weight.raw_data(), K, DType::F32, b.get(), yd, ldy, DType::F32, activation);
    } else {
        SR_ASSERT(dtype_is_float(weight.dtype()), "linear weight dtype {}", dtype_name(weight.dtype()));
        // Widen a block of weight rows (output columns) at a time and multiply it.
        gemm_by_row_blocks(M, N, K, xd, b.get(), yd, ldy, GemmPrecision::F32, activation,
                           [&](int64_t n0, int64_t nb, float* dst) { widen_rows(weight, n0, nb, K, dst); });
    }
}

void CpuBackend::exec(const QuantLinearOp& op) {
    const LinearShape s = check_quant_linear(op);
    const Tensor* scale = op.scale;
    const QuantizedRows w{op.weight.raw_data(),
                          op.block,
                          s.N,
                          s.K,
                          scale ? scale->raw_data() : nullptr,
                          scale ? scale->dtype() : DType::F32,
                          scale ? scale->numel() : 0};
    const F32Vector bias(op.bias, s.N, "linear bias");
    gemm_by_row_blocks(
        s.M, s.N, s.K, op.x.data<float>(), bias.get(), op.y.data<float>(), s.N, gemm_precision_, Activation::None,
        [&](int64_t n0, int64_t nb, float* dst) {
            parallel_for(nb, [&](int64_t r0, int64_t r1) { dequantize_rows(w, n0 + r0, r1 - r0, dst + r0 * s.K); });
        });
}

void CpuBackend::exec(const PatchEmbed3dOp& op) {
    const auto& [x, weight, bias, y] = op;
    const PatchEmbedShape s = check_patch_embed_3d(x, weight, y);
    const int64_t B = s.B, C = s.C, H = s.H, W = s.W, D = s.D, pt = s.pt, ph = s.ph, pw = s.pw;
    const int64_t Hp = H / ph, Wp = W / pw, N = s.N, P = s.P;
    // im2col: one row per patch, columns in the weight's (c, t, h, w) order; then one GEMM.
    Tensor cols = Tensor::empty({B * N, P}, DType::F32, allocator(), "patch columns");
    float* cd = cols.data<float>();
    const float* xd = static_cast<const float*>(x.raw_data());
    parallel_for(
        B * N,
        [&](int64_t r0, int64_t r1) {
            for (int64_t r = r0; r < r1; ++r) {
                const int64_t b = r / N, n = r % N;
                const int64_t f = n / (Hp * Wp), h = (n / Wp) % Hp, w = n % Wp;
                float* row = cd + r * P;
                for (int64_t c = 0; c < C; ++c)
                    for (int64_t kt = 0; kt < pt; ++kt)
                        for (int64_t kh = 0; kh < ph; ++kh)
                            for (int64_t kw = 0; kw < pw; ++kw)
                                *row++ = xd[b * x.stride(0) + c * x.stride(1) + (f * pt + kt) * x.stride(2) +
                                            (h * ph + kh) * x.stride(3) + (w * pw + kw) * x.stride(4)];
            }
        },
        16);
    Tensor out2d = y.view({B * N, D});
    linear(cols, weight.view({D, P}), bias, out2d);
}

void CpuBackend::exec(const TimestepEmbeddingOp& op) {
    const auto& [t, dim, flip_sin_to_cos, downscale_freq_shift, max_period, y] = op;
    const int64_t B = t.numel();
    SR_ASSERT(y.dtype() == DType::F32 && y.is_contiguous() && y.numel() == B * dim, "timestep_embedding out {}",
              y.describe());
    const int half = dim / 2;
    float* yd = y.data<float>();
    for (int64_t b = 0; b < B; ++b) {
        const float tv = t.item_as_float(b);
        float* row = yd + b * dim;
        for (int i = 0; i < half; ++i) {
            // f32 at each step, as the reference computes the exponent, frequency and argument in f32, with
            // torch's own expf (see torch_math.h for why the last bit matters here).
            const float exponent =
                float(-std::log(double(max_period))) * float(i) / (float(half) - downscale_freq_shift);
            const float freq = torch_math::expf(exponent);
            const float arg = tv * freq;
            const float s = float(std::sin(double(arg))), c = float(std::cos(double(arg)));
            row[i] = flip_sin_to_cos ? c : s;
            row[half + i] = flip_sin_to_cos ? s : c;
        }
        if (dim % 2) row[dim - 1] = 0.0f;  // odd dims are zero-padded, as in the reference
    }
}

void CpuBackend::exec(const CopyOp& op) {
    const auto& [src, dst] = op;
    dst.copy_from(src);
}

}  // namespace sr
