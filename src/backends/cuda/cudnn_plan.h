// The host-side rules of the CUDA backend's cuDNN paths, without cuDNN or CUDA headers (tests/test_cuda_host.cpp
// checks them on the CPU): which attention implementation an op takes, how many heads one launch covers within
// the scratch bound, and the shapes and strides of the tensors handed to cuDNN's fused SDPA operation
// (CUDNN_BACKEND_OPERATION_SDPA_FWD_DESCRIPTOR, cuDNN >= 9.13), and of the 3-D convolution handed to
// cudnnConvolutionForward.
//
// The SDPA call covers one batch row and a group of heads: q, k, v rounded to bf16 into contiguous
// [heads, rows, D] buffers (as the bf16 kernel's), the output in a bf16 [heads, Lq, D] buffer widened into the
// op's f32 output. A row's valid keys are a prefix (right-padded text), so the key and value tensors are simply
// cut to kv_len rows: no mask is needed, and a row with no valid key is zero-filled without calling cuDNN (as
// the CPU backend yields zeros). Plans are built once per key and cached.
//
//   const sr::AttentionPath path = sr::choose_attention_path(sr::CudaImpl::Cudnn, c);
//   const sr::SdpaShapes s = sr::sdpa_shapes({heads, Lq, kv_len, Lk, 128});   // dims/strides per tensor
#pragma once

#include <array>
#include <compare>
#include <cstdint>
#include <string_view>

namespace sr {

// The switches (CudaBackend::set_attention_impl / set_conv_impl, or SKYREELS_CUDA_ATTENTION and
// SKYREELS_CUDA_CONV = cudnn|kernel in the environment): Cudnn (the default) uses cuDNN wherever it applies and
// the custom kernels elsewhere; Kernel never uses cuDNN.
enum class CudaImpl : uint8_t { Cudnn, Kernel };
// "cudnn" | "kernel"; false for anything else.
bool parse_cuda_impl(std::string_view text, CudaImpl& out);
const char* cuda_impl_name(CudaImpl impl);

enum class AttentionPath : uint8_t { CudnnSdpa, Bf16Kernel, F32Kernel };
const char* attention_path_name(AttentionPath path);

struct AttentionCase {
    bool bf16 = false;  // the backend's attention precision is BF16 (F32 is the parity path: f32 kernel)
    int64_t head_dim = 0;
    bool dense_mask = false;    // the token refiner's [B, Lq, Lk] mask: the kernels only
    bool causal = false;        // the kernels only (no model here needs cuDNN for it)
    bool cudnn_usable = false;  // cuDNN >= 9.13 loaded and a handle made on this device
};
// cuDNN for bf16, head dim a multiple of 8 up to 128 (every architecture from sm_80 supports that), no dense or
// causal mask; else the bf16 tensor-core kernel for head dim 128; else the f32 kernel.
AttentionPath choose_attention_path(CudaImpl impl, const AttentionCase& c);

// Heads per launch: as many as keep the attention's scratch within `scratch_bytes`, at least one, at most
// `heads`: the bf16 copies of q, k, v when `packed` (and of the output, for cuDNN), and when `f32_qk` (an op with
// a QkNormRope that the fused kernel cannot take) the f32 normalized copies of q and k plus one f32 staging
// buffer of the longer of the two.
int64_t attention_heads_per_group(int64_t heads, int64_t lq, int64_t lk, int64_t head_dim, int64_t scratch_bytes,
                                  bool bf16_output, bool packed = true, bool f32_qk = false);

struct SdpaPlanKey {
    int64_t heads = 0, lq = 0, kv_len = 0, lk_alloc = 0, head_dim = 0;
    auto operator<=>(const SdpaPlanKey&) const = default;
};

struct SdpaTensorLayout {
    std::array<int64_t, 4> dims{}, strides{};  // [batch, heads, rows, head dim], in elements
};
struct SdpaShapes {
    SdpaTensorLayout q, k, v, o;
};
// q, o: [1, heads, lq, D] contiguous; k, v: [1, heads, kv_len, D] inside buffers of lk_alloc rows per head.
SdpaShapes sdpa_shapes(const SdpaPlanKey& key);

// ---- conv3d ----
// The VAE's convolutions in production (bf16 precision) go to cudnnConvolutionForward: f32 tensors in and out
// with tensor-core math (TF32 on sm_80+; 10 mantissa bits, more than bf16's 7), so no rounded copies of the
// activations are made (a bf16 copy of a decoder tile's input and output would pass the scratch bound); the
// f32 implicit GEMM (conv3d.cu) stays the parity path (f32 precision) and the fallback.
enum class ConvPath : uint8_t { Cudnn, Kernel };
ConvPath choose_conv_path(CudaImpl impl, bool bf16, bool cudnn_usable);

struct Conv3dGeometry {
    int64_t B = 0, C = 0, F = 0, H = 0, W = 0;  // input [B, C, F, H, W], contiguous
    int64_t O = 0, kt = 0, kh = 0, kw = 0;      // weight [O, C, kt, kh, kw], contiguous
    std::array<int64_t, 3> stride{}, pad{};     // per axis (t, h, w); symmetric zero padding
};
// The legacy API's int arrays: NCDHW dims and packed strides of x and y, the filter dims, padding, stride,
// dilation (1), and y's dims by cuDNN's own formula (o = (i + 2p - k) / s + 1).
struct CudnnConvDims {
    std::array<int, 5> x_dims{}, x_strides{}, w_dims{}, y_dims{}, y_strides{};
    std::array<int, 3> pad{}, stride{}, dilation{};
    auto operator<=>(const CudnnConvDims&) const = default;
};
// False (nothing filled) when a size does not fit cuDNN's int or the output would be empty.
bool cudnn_conv_dims(const Conv3dGeometry& g, CudnnConvDims& out);

}  // namespace sr
