// The CUDA backend's element-wise, normalization, RoPE, timestep and text-encoder ops: shape checks as in the
// CPU backend (backends/cpu/), then one kernel launch each (kernels.h).
#include <cmath>
#include <vector>

#include "backends/cuda/cuda_backend.h"
#include "backends/cuda/cuda_check.h"
#include "backends/cuda/kernels.h"
#include "backends/op_checks.h"

namespace sr {

namespace {

cuda::KType ktype(DType t) {
    return static_cast<cuda::KType>(static_cast<int>(t));
}

// `bf16`: the op takes bf16 activations (ops.h, kTakesBf16Activations), x and y each f32 or bf16.
void check_same(const CudaBackend& be, const Tensor& x, const Tensor& y, const char* op, bool bf16 = false) {
    be.check_here(x, op);
    be.check_here(y, op);
    auto ok = [&](const Tensor& t) { return t.dtype() == DType::F32 || (bf16 && t.dtype() == DType::BF16); };
    SR_ASSERT(ok(x) && ok(y) && x.is_contiguous() && y.is_contiguous() && x.numel() == y.numel(), "{} on {} -> {}", op,
              x.describe(), y.describe());
}

// A per-batch [B, D] f32 vector (rows may be strided, e.g. a slice of the adaLN output); returns its row stride.
int64_t check_row_vector(const CudaBackend& be, const Tensor& v, int64_t B, int64_t D, const char* op) {
    be.check_here(v, op);
    SR_ASSERT(v.dtype() == DType::F32 && v.rank() == 2 && v.dim(0) == B && v.dim(1) == D && v.stride(1) == 1,
              "{}: per-batch vector {} for [{},{}]", op, v.describe(), B, D);
    return v.stride(0);
}

// An optional [D] parameter in any float dtype, read in place by the kernel when contiguous.
const void* param(const CudaBackend& be, const Tensor* t, int64_t D, const char* what, cuda::KType& type) {
    if (!t) return nullptr;
    be.check_here(*t, what);
    SR_ASSERT(t->numel() == D && t->is_contiguous() && dtype_is_float(t->dtype()), "{} {} for rows of {}", what,
              t->describe(), D);
    type = ktype(t->dtype());
    return t->raw_data();
}

void check_norm_rows(const CudaBackend& be, const Tensor& x, const Tensor& y, const char* op, bool bf16 = false) {
    check_same(be, x, y, op, bf16);
    SR_ASSERT(x.shape() == y.shape(), "{} on {} -> {}", op, x.describe(), y.describe());
}

}  // namespace

void CudaBackend::exec(const GeluTanhOp& op) {
    const auto& [x, y] = op;
    check_same(*this, x, y, "gelu_tanh", true);
    make_current();
    cuda::unary(cuda::UnaryOp::GeluTanh, x.raw_data(), ktype(x.dtype()), y.raw_data(), ktype(y.dtype()), x.numel(),
                stream_);
    SR_CUDA_CHECK_LAUNCH();
}

void CudaBackend::exec(const SiluOp& op) {
    const auto& [x, y] = op;
    check_same(*this, x, y, "silu");
    make_current();
    cuda::unary(cuda::UnaryOp::Silu, x.raw_data(), cuda::KType::F32, y.raw_data(), cuda::KType::F32, x.numel(),
                stream_);
    SR_CUDA_CHECK_LAUNCH();
}

void CudaBackend::exec(const QuickGeluOp& op) {
    const auto& [x, y] = op;
    check_same(*this, x, y, "quick_gelu");
    make_current();
    cuda::unary(cuda::UnaryOp::QuickGelu, x.raw_data(), cuda::KType::F32, y.raw_data(), cuda::KType::F32, x.numel(),
                stream_);
    SR_CUDA_CHECK_LAUNCH();
}

void CudaBackend::exec(const AddOp& op) {
    const auto& [x, y] = op;
    check_same(*this, x, y, "add", true);
    make_current();
    cuda::add(x.raw_data(), ktype(x.dtype()), y.raw_data(), ktype(y.dtype()), x.numel(), stream_);
    SR_CUDA_CHECK_LAUNCH();
}

void CudaBackend::exec(const MulOp& op) {
    const auto& [x, y] = op;
    check_same(*this, x, y, "mul");
    make_current();
    cuda::mul(x.data<float>(), y.data<float>(), x.numel(), stream_);
    SR_CUDA_CHECK_LAUNCH();
}

void CudaBackend::exec(const ModulateOp& op) {
    const auto& [x, shift, scale, y] = op;
    check_same(*this, x, y, "modulate", true);
    SR_ASSERT(x.rank() == 3, "modulate wants [B,L,D], got {}", x.describe());
    const int64_t B = x.dim(0), L = x.dim(1), D = x.dim(2);
    const int64_t shift_sb = check_row_vector(*this, shift, B, D, "modulate shift");
    const int64_t scale_sb = check_row_vector(*this, scale, B, D, "modulate scale");
    make_current();
    cuda::modulate(x.raw_data(), ktype(x.dtype()), static_cast<const float*>(shift.raw_data()), shift_sb,
                   static_cast<const float*>(scale.raw_data()), scale_sb, y.raw_data(), ktype(y.dtype()), B, L, D,
                   stream_);
    SR_CUDA_CHECK_LAUNCH();
}

void CudaBackend::exec(const GatedResidualOp& op) {
    const auto& [x, y, gate] = op;
    check_same(*this, x, y, "gated_residual", true);
    SR_ASSERT(x.rank() == 3, "gated_residual wants [B,L,D], got {}", x.describe());
    const int64_t B = x.dim(0), L = x.dim(1), D = x.dim(2);
    const int64_t gate_sb = gate.defined() ? check_row_vector(*this, gate, B, D, "gated_residual gate") : 0;
    make_current();
    cuda::gated_residual(x.raw_data(), ktype(x.dtype()), y.raw_data(), ktype(y.dtype()),
                         gate.defined() ? static_cast<const float*>(gate.raw_data()) : nullptr, gate_sb, B, L, D,
                         stream_);
    SR_CUDA_CHECK_LAUNCH();
}

void CudaBackend::exec(const LayerNormOp& op) {
    const auto& [x, weight, bias, eps, y] = op;
    check_norm_rows(*this, x, y, "layer_norm", true);
    const int64_t D = x.dim(-1), rows = D ? x.numel() / D : 0;
    cuda::KType wt = cuda::KType::F32, bt = cuda::KType::F32;
    const void* w = param(*this, weight, D, "layer_norm weight", wt);
    const void* b = param(*this, bias, D, "layer_norm bias", bt);
    make_current();
    cuda::layer_norm(x.raw_data(), ktype(x.dtype()), y.raw_data(), ktype(y.dtype()), rows, D, w, wt, b, bt, eps,
                     stream_);
    SR_CUDA_CHECK_LAUNCH();
}

void CudaBackend::exec(const RmsNormOp& op) {
    const auto& [x, weight, eps, y] = op;
    check_norm_rows(*this, x, y, "rms_norm");
    const int64_t D = x.dim(-1), rows = D ? x.numel() / D : 0;
    cuda::KType wt = cuda::KType::F32;
    const void* w = param(*this, weight, D, "rms_norm weight", wt);
    make_current();
    cuda::rms_norm(x.data<float>(), y.data<float>(), rows, D, w, wt, eps, stream_);
    SR_CUDA_CHECK_LAUNCH();
}

void CudaBackend::rope(Tensor& x, const Tensor& cos, const Tensor& sin, bool interleaved, const char* op) {
    check_here(x, op);
    check_here(cos, op);
    check_here(sin, op);
    const RopeShape s = check_rope(x, cos, sin, op);
    const int64_t B = s.B, L = s.L, H = s.H, D = s.D;
    make_current();
    cuda::rope(static_cast<float*>(x.raw_data()), x.stride(0), x.stride(1), x.stride(2), B, L, H, D, cos.data<float>(),
               sin.data<float>(), interleaved, stream_);
    SR_CUDA_CHECK_LAUNCH();
}

void CudaBackend::exec(const RopeInterleavedOp& op) {
    const auto& [x, cos, sin] = op;
    rope(x, cos, sin, true, "rope");
}

void CudaBackend::exec(const RopeHalfOp& op) {
    const auto& [x, cos, sin] = op;
    rope(x, cos, sin, false, "rope_half");
}

void CudaBackend::exec(const TimestepEmbeddingOp& op) {
    const auto& [t, dim, flip_sin_to_cos, downscale_freq_shift, max_period, y] = op;
    check_here(y, "timestep_embedding");
    const int64_t B = t.numel();
    SR_ASSERT(y.dtype() == DType::F32 && y.is_contiguous() && y.numel() == B * dim, "timestep_embedding out {}",
              y.describe());
    // The timesteps may come from the host (the scheduler's values) or any float dtype on the device; the
    // kernel reads them as a strided float vector.
    Tensor tv = t.rank() == 1 ? t : t.contiguous().view({B});
    if (tv.device() != device() || !dtype_is_float(tv.dtype())) {
        Tensor f = Tensor::empty({B}, DType::F32);
        for (int64_t b = 0; b < B; ++b) f.data<float>()[b] = tv.item_as_float(b);
        tv = upload(f);
    }
    make_current();
    // -ln(max_period) rounded to f32 on the host, as the reference's f32 arithmetic starts from it.
    cuda::timestep_embedding(tv.raw_data(), ktype(tv.dtype()), B > 0 ? tv.stride(0) : 1, B, dim, flip_sin_to_cos,
                             downscale_freq_shift, float(-std::log(double(max_period))), y.data<float>(), stream_);
    SR_CUDA_CHECK_LAUNCH();
}

void CudaBackend::exec(const EmbeddingOp& op) {
    const auto& [ids, table, y] = op;
    check_here(table, "embedding table");
    check_here(y, "embedding output");
    const EmbeddingShape s = check_embedding(ids, table, y);
    const int64_t B = s.B, L = s.L, D = s.D;
    // Every id is checked before anything is written; the ids are a few hundred integers, so on the host.
    const Tensor host_ids = ids.device() == device() ? download(ids) : ids.contiguous();
    check_token_ids(host_ids, s.V);
    const Tensor dev_ids = ids.device() == device() ? ids : upload(host_ids);
    make_current();
    cuda::embedding(dev_ids.raw_data(), ktype(dev_ids.dtype()), dev_ids.stride(0), dev_ids.stride(1), table.raw_data(),
                    ktype(table.dtype()), y.data<float>(), B, L, D, stream_);
    SR_CUDA_CHECK_LAUNCH();
}

}  // namespace sr
