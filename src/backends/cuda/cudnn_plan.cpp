#include "backends/cuda/cudnn_plan.h"

#include <algorithm>

namespace sr {

bool parse_cuda_impl(std::string_view text, CudaImpl& out) {
    if (text == "cudnn") {
        out = CudaImpl::Cudnn;
        return true;
    }
    if (text == "kernel") {
        out = CudaImpl::Kernel;
        return true;
    }
    return false;
}

const char* cuda_impl_name(CudaImpl impl) {
    return impl == CudaImpl::Cudnn ? "cudnn" : "kernel";
}

const char* attention_path_name(AttentionPath path) {
    switch (path) {
        case AttentionPath::CudnnSdpa:
            return "cudnn_sdpa";
        case AttentionPath::Bf16Kernel:
            return "bf16_kernel";
        case AttentionPath::F32Kernel:
            return "f32_kernel";
    }
    return "?";
}

AttentionPath choose_attention_path(CudaImpl impl, const AttentionCase& c) {
    if (!c.bf16) return AttentionPath::F32Kernel;
    const bool masks = c.dense_mask || c.causal;
    if (impl == CudaImpl::Cudnn && c.cudnn_usable && !masks && c.head_dim > 0 && c.head_dim % 8 == 0 &&
        c.head_dim <= 128)
        return AttentionPath::CudnnSdpa;
    return c.head_dim == 128 ? AttentionPath::Bf16Kernel : AttentionPath::F32Kernel;
}

int64_t attention_heads_per_group(int64_t heads, int64_t lq, int64_t lk, int64_t head_dim, int64_t scratch_bytes,
                                  bool bf16_output, bool packed, bool f32_qk) {
    const int64_t bf16_bytes = packed ? ((bf16_output ? 2 : 1) * lq + 2 * lk) * head_dim * 2 : 0;
    const int64_t f32_bytes = f32_qk ? (lq + lk + std::max(lq, lk)) * head_dim * 4 : 0;
    const int64_t per_head = bf16_bytes + f32_bytes;
    return std::clamp<int64_t>(scratch_bytes / std::max<int64_t>(per_head, 1), 1, std::max<int64_t>(heads, 1));
}

SdpaShapes sdpa_shapes(const SdpaPlanKey& k) {
    const int64_t H = k.heads, D = k.head_dim;
    SdpaShapes s;
    s.q.dims = {1, H, k.lq, D};
    s.q.strides = {H * k.lq * D, k.lq * D, D, 1};
    s.o = s.q;
    s.k.dims = {1, H, k.kv_len, D};
    s.k.strides = {H * k.lk_alloc * D, k.lk_alloc * D, D, 1};
    s.v = s.k;
    return s;
}

ConvPath choose_conv_path(CudaImpl impl, bool bf16, bool cudnn_usable) {
    return impl == CudaImpl::Cudnn && bf16 && cudnn_usable ? ConvPath::Cudnn : ConvPath::Kernel;
}

bool cudnn_conv_dims(const Conv3dGeometry& g, CudnnConvDims& out) {
    const int64_t in[5] = {g.B, g.C, g.F, g.H, g.W}, k[3] = {g.kt, g.kh, g.kw};
    int64_t o[5] = {g.B, g.O, 0, 0, 0};
    for (int a = 0; a < 3; ++a) {
        if (g.stride[size_t(a)] <= 0 || g.pad[size_t(a)] < 0 || k[a] <= 0) return false;
        const int64_t span = in[2 + a] + 2 * g.pad[size_t(a)] - k[a];
        if (span < 0) return false;
        o[2 + a] = span / g.stride[size_t(a)] + 1;
    }
    const int64_t w[5] = {g.O, g.C, g.kt, g.kh, g.kw};
    const int64_t limit = (int64_t(1) << 31) - 1;
    int64_t x_total = 1, y_total = 1;
    for (int i = 0; i < 5; ++i) {
        if (in[i] <= 0 || o[i] <= 0 || w[i] <= 0 || in[i] > limit || o[i] > limit) return false;
        x_total *= in[i];
        y_total *= o[i];
    }
    if (x_total > limit || y_total > limit) return false;  // strides are ints too
    CudnnConvDims d;
    int64_t xs = 1, ys = 1;
    for (int i = 4; i >= 0; --i) {
        d.x_dims[size_t(i)] = int(in[i]);
        d.y_dims[size_t(i)] = int(o[i]);
        d.w_dims[size_t(i)] = int(w[i]);
        d.x_strides[size_t(i)] = int(xs);
        d.y_strides[size_t(i)] = int(ys);
        xs *= in[i];
        ys *= o[i];
    }
    for (int a = 0; a < 3; ++a) {
        d.pad[size_t(a)] = int(g.pad[size_t(a)]);
        d.stride[size_t(a)] = int(g.stride[size_t(a)]);
        d.dilation[size_t(a)] = 1;
    }
    out = d;
    return true;
}

}  // namespace sr
