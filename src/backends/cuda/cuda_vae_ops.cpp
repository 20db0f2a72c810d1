// The CUDA backend's VAE ops: 3-D convolution (an f32 implicit GEMM, conv3d.cu), replicate padding, group
// norm and nearest upsampling, with the CPU backend's shape checks (backends/cpu/vae_ops.cpp).
#include "backends/cuda/cuda_backend.h"
#include "backends/cuda/cuda_check.h"
#include "backends/cuda/kernels.h"
#include "backends/op_checks.h"

namespace sr {

namespace {

cuda::KType ktype(DType t) {
    return static_cast<cuda::KType>(static_cast<int>(t));
}

void check_5d(const CudaBackend& be, const Tensor& x, const Tensor& y, const char* op) {
    be.check_here(x, op);
    be.check_here(y, op);
    SR_ASSERT(x.rank() == 5 && y.rank() == 5 && x.dtype() == DType::F32 && y.dtype() == DType::F32 &&
                  x.is_contiguous() && y.is_contiguous(),
              "{} on {} -> {}", op, x.describe(), y.describe());
}

}  // namespace

ConvPath CudaBackend::conv_path() {
    const bool bf16 = gemm_precision_ == GemmPrecision::BF16;
    return choose_conv_path(conv_impl_, bf16, bf16 && conv_impl_ == CudaImpl::Cudnn && cudnn_usable());
}

void CudaBackend::exec(const Conv3dOp& op) {
    const auto& [x, weight, bias, stride, padding, y] = op;
    check_5d(*this, x, y, "conv3d");
    check_here(weight, "conv3d weight");
    SR_ASSERT(weight.is_contiguous(), "conv3d weight {}", weight.describe());
    check_conv3d(x, weight, bias, stride, padding, y);
    if (y.numel() == 0) return;
    SR_ASSERT(weight.numel() / weight.dim(0) < (int64_t(1) << 31), "conv3d: a reduction of {} elements",
              weight.numel() / weight.dim(0));
    // Weights widened to f32 once per call (a pass over the weights, small next to the convolution's FLOPs).
    Tensor w32 = weight;
    if (weight.dtype() != DType::F32) {
        w32 = Tensor::empty(weight.shape(), DType::F32, memory_, "conv3d weights (f32)");
        copy(weight, w32);
    }
    const Tensor b32 = bias ? f32_vector(*bias, weight.dim(0), "conv3d bias (f32)") : Tensor();
    if (conv_path() == ConvPath::Cudnn) {
        Conv3dGeometry g;
        g.B = x.dim(0);
        g.C = x.dim(1);
        g.F = x.dim(2);
        g.H = x.dim(3);
        g.W = x.dim(4);
        g.O = weight.dim(0);
        g.kt = weight.dim(2);
        g.kh = weight.dim(3);
        g.kw = weight.dim(4);
        g.stride = {stride[0], stride[1], stride[2]};
        g.pad = {padding[0], padding[1], padding[2]};
        CudnnConvDims dims;
        if (cudnn_conv_dims(g, dims) && dims.y_dims[2] == y.dim(2) && dims.y_dims[3] == y.dim(3) &&
            dims.y_dims[4] == y.dim(4) &&
            cudnn_conv3d(dims, x.data<float>(), w32.data<float>(), b32.defined() ? b32.data<float>() : nullptr,
                         y.data<float>()))
            return;
    }
    cuda::Conv3dShape s{};
    s.B = x.dim(0);
    s.C = x.dim(1);
    s.F = x.dim(2);
    s.H = x.dim(3);
    s.W = x.dim(4);
    s.O = weight.dim(0);
    s.kt = weight.dim(2);
    s.kh = weight.dim(3);
    s.kw = weight.dim(4);
    s.st = stride[0];
    s.sh = stride[1];
    s.sw = stride[2];
    s.pt = padding[0];
    s.ph = padding[1];
    s.pw = padding[2];
    s.Fo = y.dim(2);
    s.Ho = y.dim(3);
    s.Wo = y.dim(4);
    make_current();
    cuda::conv3d(x.data<float>(), w32.data<float>(), b32.defined() ? b32.data<float>() : nullptr, y.data<float>(), s,
                 stream_);
    SR_CUDA_CHECK_LAUNCH();
}

void CudaBackend::exec(const Pad3dReplicateOp& op) {
    const auto& [x, pads, y] = op;
    check_5d(*this, x, y, "pad3d_replicate");
    for (int i = 0; i < 3; ++i)
        SR_ASSERT(pads[size_t(2 * i)] >= 0 && pads[size_t(2 * i + 1)] >= 0 &&
                      y.dim(2 + i) == x.dim(2 + i) + pads[size_t(2 * i)] + pads[size_t(2 * i + 1)] && x.dim(2 + i) > 0,
                  "pad3d_replicate {} -> {}", x.describe(), y.describe());
    SR_ASSERT(y.dim(0) == x.dim(0) && y.dim(1) == x.dim(1), "pad3d_replicate {} -> {}", x.describe(), y.describe());
    make_current();
    cuda::pad3d_replicate(x.data<float>(), y.data<float>(), x.dim(0) * x.dim(1), x.dim(2), x.dim(3), x.dim(4),
                          pads.data(), stream_);
    SR_CUDA_CHECK_LAUNCH();
}

void CudaBackend::exec(const GroupNormOp& op) {
    const auto& [x, groups, weight, bias, eps, y] = op;
    check_here(x, "group_norm");
    check_here(y, "group_norm");
    SR_ASSERT(x.rank() >= 2 && x.dtype() == DType::F32 && y.dtype() == DType::F32 && x.is_contiguous() &&
                  y.is_contiguous() && x.shape() == y.shape(),
              "group_norm on {} -> {}", x.describe(), y.describe());
    const int64_t B = x.dim(0), C = x.dim(1);
    SR_ASSERT(groups > 0 && C % groups == 0, "group_norm: {} channels in {} groups", C, groups);
    const int64_t S = C ? x.numel() / (B * C) : 0;
    cuda::KType wt = cuda::KType::F32, bt = cuda::KType::F32;
    if (weight) {
        check_here(*weight, "group_norm weight");
        SR_ASSERT(weight->numel() == C && weight->is_contiguous() && dtype_is_float(weight->dtype()),
                  "group_norm weight {}", weight->describe());
        wt = ktype(weight->dtype());
    }
    if (bias) {
        check_here(*bias, "group_norm bias");
        SR_ASSERT(bias->numel() == C && bias->is_contiguous() && dtype_is_float(bias->dtype()), "group_norm bias {}",
                  bias->describe());
        bt = ktype(bias->dtype());
    }
    if (x.numel() == 0) return;
    SR_ASSERT(B * C <= 65535, "group_norm: {} rows of channels exceed the kernel grid", B * C);  // gridDim.y
    Tensor scratch = Tensor::empty({cuda::group_norm_scratch_doubles(B, C, S)}, DType::I64, memory_,
                                   "group_norm statistics");  // doubles, in an 8-byte dtype
    make_current();
    cuda::group_norm(x.data<float>(), y.data<float>(), B, C, S, groups, weight ? weight->raw_data() : nullptr, wt,
                     bias ? bias->raw_data() : nullptr, bt, eps, static_cast<double*>(scratch.raw_data()), stream_);
    SR_CUDA_CHECK_LAUNCH();
}

void CudaBackend::exec(const UpsampleNearest3dOp& op) {
    const auto& [x, scale, y] = op;
    check_5d(*this, x, y, "upsample_nearest3d");
    SR_ASSERT(y.dim(0) == x.dim(0) && y.dim(1) == x.dim(1) && y.dim(2) == x.dim(2) * scale[0] &&
                  y.dim(3) == x.dim(3) * scale[1] && y.dim(4) == x.dim(4) * scale[2],
              "upsample_nearest3d {} x ({},{},{}) -> {}", x.describe(), scale[0], scale[1], scale[2], y.describe());
    make_current();
    cuda::upsample_nearest3d(x.data<float>(), y.data<float>(), x.dim(0) * x.dim(1), x.dim(2), x.dim(3), x.dim(4),
                             scale[0], scale[1], scale[2], stream_);
    SR_CUDA_CHECK_LAUNCH();
}

}  // namespace sr
