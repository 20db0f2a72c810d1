// CPU ops of the causal 3-D VAE: convolution (oneDNN, with a direct fallback), replicate padding, group
// norm, nearest upsampling.
//
// conv3d runs oneDNN's convolution with format_tag::any, so oneDNN picks its blocked layouts (nCdhw16c on
// AVX-512) and its JIT kernels; our plain ncdhw tensors are reordered in and out around it. The plain-layout
// convolution falls back to a slow reference kernel on many machines, and the reorders cost a pass over
// memory against 2*C*k^3 FLOPs per output, so they pay for themselves at every VAE layer. Primitives are
// cached per shape (creation costs milliseconds) and run with our own per-thread scratchpads
// (scratchpad_mode::user), for the reason given in gemm.cpp: the default library scratchpad is shared
// between primitives and races when two of them run on different threads.
//
// conv3d_direct is the fallback used when oneDNN refuses a shape, and the op tests check the two against
// each other. Weights stored as bf16/f16 are widened to f32 per call (f32 arithmetic, as the parity tests
// want); the widening costs one pass over the weights, negligible next to the convolution.
#include <oneapi/dnnl/dnnl.hpp>

#include <cmath>
#include <map>
#include <mutex>
#include <tuple>
#include <vector>

#include "backends/cpu/cpu_backend.h"
#include "backends/op_checks.h"
#include "core/parallel.h"

namespace sr {

// Declared here and in the op tests (tests/test_ops_vae.cpp): the direct convolution, plain loops.
void conv3d_direct(const Tensor& x, const Tensor& weight, const Tensor* bias, std::array<int64_t, 3> stride,
                   std::array<int64_t, 3> padding, Tensor& y);

namespace {

using Dims = dnnl::memory::dims;
using Tag = dnnl::memory::format_tag;
using Dt = dnnl::memory::data_type;

dnnl::engine& conv_engine() {
    static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
    return engine;
}

// Everything that shapes a convolution primitive: x dims (5), O, kernel (3), stride (3), padding (3), bias,
// and whether it runs nested in a parallel region (oneDNN then plans for one thread).
using ConvKey = std::tuple<std::array<int64_t, 5>, int64_t, std::array<int64_t, 3>, std::array<int64_t, 3>,
                           std::array<int64_t, 3>, bool, bool>;

struct CachedConv {
    bool ok = false;  // false: oneDNN refused the shape; use the direct kernel
    dnnl::convolution_forward::primitive_desc pd;
    dnnl::convolution_forward conv;
    dnnl::memory::desc src_plain, wei_plain, dst_plain;
    bool reorder_src = false, reorder_wei = false, reorder_dst = false;
    dnnl::reorder src_in, wei_in, dst_out;
    size_t scratchpad_bytes = 0;
};

std::shared_ptr<CachedConv> get_conv(const ConvKey& key) {
    static std::mutex mutex;
    static std::map<ConvKey, std::shared_ptr<CachedConv>> cache;
    {
        std::lock_guard<std::mutex> lock(mutex);
        auto it = cache.find(key);
        if (it != cache.end()) return it->second;
    }
    const auto& [xd, O, k, s, p, has_bias, nested] = key;
    (void)nested;
    auto c = std::make_shared<CachedConv>();
    const auto out_dim = [&](int i) {
        return (xd[size_t(2 + i)] + 2 * p[size_t(i)] - k[size_t(i)]) / s[size_t(i)] + 1;
    };
    const Dims src_dims{xd[0], xd[1], xd[2], xd[3], xd[4]};
    const Dims wei_dims{O, xd[1], k[0], k[1], k[2]};
    const Dims dst_dims{xd[0], O, out_dim(0), out_dim(1), out_dim(2)};
    c->src_plain = dnnl::memory::desc(src_dims, Dt::f32, Tag::ncdhw);
    c->wei_plain = dnnl::memory::desc(wei_dims, Dt::f32, Tag::oidhw);
    c->dst_plain = dnnl::memory::desc(dst_dims, Dt::f32, Tag::ncdhw);
    try {
        dnnl::memory::desc src_any(src_dims, Dt::f32, Tag::any), wei_any(wei_dims, Dt::f32, Tag::any),
            dst_any(dst_dims, Dt::f32, Tag::any);
        dnnl::memory::desc bias_md = has_bias ? dnnl::memory::desc({O}, Dt::f32, Tag::x) : dnnl::memory::desc();
        const Dims strides{s[0], s[1], s[2]}, pads{p[0], p[1], p[2]};
        dnnl::convolution_forward::desc d(dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct,
                                          src_any, wei_any, bias_md, dst_any, strides, pads, pads);
        dnnl::primitive_attr attr;
        attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
        c->pd = dnnl::convolution_forward::primitive_desc(d, attr, conv_engine());
        c->conv = dnnl::convolution_forward(c->pd);
        c->scratchpad_bytes = c->pd.scratchpad_desc().get_size();
        auto& eng = conv_engine();
        c->reorder_src = c->pd.src_desc() != c->src_plain;
        c->reorder_wei = c->pd.weights_desc() != c->wei_plain;
        c->reorder_dst = c->pd.dst_desc() != c->dst_plain;
        if (c->reorder_src)
            c->src_in = dnnl::reorder(dnnl::reorder::primitive_desc(eng, c->src_plain, eng, c->pd.src_desc()));
        if (c->reorder_wei)
            c->wei_in = dnnl::reorder(dnnl::reorder::primitive_desc(eng, c->wei_plain, eng, c->pd.weights_desc()));
        if (c->reorder_dst)
            c->dst_out = dnnl::reorder(dnnl::reorder::primitive_desc(eng, c->pd.dst_desc(), eng, c->dst_plain));
        c->ok = true;
    } catch (const dnnl::error&) {
        c->ok = false;  // e.g. an unsupported shape: the caller runs the direct kernel
    }
    std::lock_guard<std::mutex> lock(mutex);
    cache.emplace(key, c);
    return c;
}

// A host buffer for a oneDNN layout, from the host allocator so conv workspace shows in peak memory.
Tensor layout_buffer(size_t bytes, std::string_view what) {
    return Tensor::empty({int64_t((bytes + 3) / 4)}, DType::F32, host_allocator(), what);
}

Tensor as_f32(const Tensor& t) {
    return t.dtype() == DType::F32 ? t.contiguous() : t.to(DType::F32);
}

}  // namespace

void conv3d_direct(const Tensor& x, const Tensor& weight, const Tensor* bias, std::array<int64_t, 3> stride,
                   std::array<int64_t, 3> padding, Tensor& y) {
    check_conv3d(x, weight, bias, stride, padding, y);
    const Tensor w = as_f32(weight);
    const Tensor b = bias ? as_f32(*bias) : Tensor();
    const int64_t B = x.dim(0), C = x.dim(1), F = x.dim(2), H = x.dim(3), W = x.dim(4);
    const int64_t O = y.dim(1), Fo = y.dim(2), Ho = y.dim(3), Wo = y.dim(4);
    const int64_t kt = w.dim(2), kh = w.dim(3), kw = w.dim(4);
    const float* xd = x.data<float>();
    const float* wd = w.data<float>();
    float* yd = y.data<float>();
    // One task per output row (b, o, f, h): each accumulates its row in f32 over (c, kt, kh, kw).
    parallel_for(B * O * Fo * Ho, [&](int64_t r0, int64_t r1) {
        std::vector<float> acc(static_cast<size_t>(Wo));
        for (int64_t r = r0; r < r1; ++r) {
            const int64_t ho = r % Ho, fo = (r / Ho) % Fo, o = (r / (Ho * Fo)) % O, bi = r / (Ho * Fo * O);
            std::fill(acc.begin(), acc.end(), b.defined() ? b.data<float>()[o] : 0.0f);
            for (int64_t c = 0; c < C; ++c)
                for (int64_t a = 0; a < kt; ++a) {
                    const int64_t fi = fo * stride[0] - padding[0] + a;
                    if (fi < 0 || fi >= F) continue;
                    for (int64_t i = 0; i < kh; ++i) {
                        const int64_t hi = ho * stride[1] - padding[1] + i;
                        if (hi < 0 || hi >= H) continue;
                        const float* xrow = xd + (((bi * C + c) * F + fi) * H + hi) * W;
                        const float* wrow = wd + (((o * C + c) * kt + a) * kh + i) * kw;
                        for (int64_t j = 0; j < kw; ++j) {
                            const float wv = wrow[j];
                            for (int64_t wo = 0; wo < Wo; ++wo) {
                                const int64_t wi = wo * stride[2] - padding[2] + j;
                                if (wi >= 0 && wi < W) acc[size_t(wo)] += xrow[wi] * wv;
                            }
                        }
                    }
                }
            std::copy(acc.begin(), acc.end(), yd + r * Wo);
        }
    });
}

void CpuBackend::exec(const Conv3dOp& op) {
    const auto& [x, weight, bias, stride, padding, y] = op;
    check_conv3d(x, weight, bias, stride, padding, y);
    if (y.numel() == 0) return;
    const ConvKey key{{x.dim(0), x.dim(1), x.dim(2), x.dim(3), x.dim(4)},
                      weight.dim(0),
                      {weight.dim(2), weight.dim(3), weight.dim(4)},
                      stride,
                      padding,
                      bias != nullptr,
                      in_parallel_region()};
    auto c = get_conv(key);
    if (!c->ok) return conv3d_direct(x, weight, bias, stride, padding, y);

    const Tensor w = as_f32(weight);
    const Tensor b = bias ? as_f32(*bias) : Tensor();
    auto& eng = conv_engine();
    thread_local dnnl::stream stream(eng);
    thread_local std::vector<uint8_t> scratchpad;
    if (scratchpad.size() < c->scratchpad_bytes) scratchpad.resize(c->scratchpad_bytes);
    dnnl::memory scratch({{int64_t(scratchpad.size())}, Dt::u8, Tag::x}, eng, scratchpad.data());

    dnnl::memory src_plain(c->src_plain, eng, const_cast<void*>(x.raw_data()));
    dnnl::memory wei_plain(c->wei_plain, eng, const_cast<void*>(w.raw_data()));
    dnnl::memory dst_plain(c->dst_plain, eng, y.raw_data());
    Tensor src_buf, wei_buf, dst_buf;
    dnnl::memory src = src_plain, wei = wei_plain, dst = dst_plain;
    try {
        if (c->reorder_src) {
            src_buf = layout_buffer(c->pd.src_desc().get_size(), "conv3d input (oneDNN layout)");
            src = dnnl::memory(c->pd.src_desc(), eng, src_buf.raw_data());
            c->src_in.execute(stream, src_plain, src);
        }
        if (c->reorder_wei) {
            wei_buf = layout_buffer(c->pd.weights_desc().get_size(), "conv3d weights (oneDNN layout)");
            wei = dnnl::memory(c->pd.weights_desc(), eng, wei_buf.raw_data());
            c->wei_in.execute(stream, wei_plain, wei);
        }
        if (c->reorder_dst) {
            dst_buf = layout_buffer(c->pd.dst_desc().get_size(), "conv3d output (oneDNN layout)");
            dst = dnnl::memory(c->pd.dst_desc(), eng, dst_buf.raw_data());
        }
        std::unordered_map<int, dnnl::memory> args{
            {DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, wei}, {DNNL_ARG_DST, dst}, {DNNL_ARG_SCRATCHPAD, scratch}};
        if (b.defined())
            args.emplace(DNNL_ARG_BIAS, dnnl::memory(c->pd.bias_desc(), eng, const_cast<void*>(b.raw_data())));
        c->conv.execute(stream, args);
        if (c->reorder_dst) {
            src_buf = Tensor();  // the input copy is dead: release it before the output reorder
            c->dst_out.execute(stream, dst, dst_plain);
        }
        stream.wait();
    } catch (const dnnl::error& e) {
        throw VendorError(fmt::format("oneDNN conv3d {} * {} failed: {}", x.describe(), weight.describe(), e.what()));
    }
}

void CpuBackend::exec(const Pad3dReplicateOp& op) {
    const auto& [x, pads, y] = op;
    SR_ASSERT(x.rank() == 5 && y.rank() == 5 && x.dtype() == DType::F32 && y.dtype() == DType::F32 &&
                  x.is_contiguous() && y.is_contiguous(),
              "pad3d_replicate on {} -> {}", x.describe(), y.describe());
    for (int i = 0; i < 3; ++i)
        SR_ASSERT(pads[size_t(2 * i)] >= 0 && pads[size_t(2 * i + 1)] >= 0 &&
                      y.dim(2 + i) == x.dim(2 + i) + pads[size_t(2 * i)] + pads[size_t(2 * i + 1)] && x.dim(2 + i) > 0,
                  "pad3d_replicate {} -> {}", x.describe(), y.describe());
    SR_ASSERT(y.dim(0) == x.dim(0) && y.dim(1) == x.dim(1), "pad3d_replicate {} -> {}", x.describe(), y.describe());
    const int64_t F = x.dim(2), H = x.dim(3), W = x.dim(4), Fo = y.dim(2), Ho = y.dim(3), Wo = y.dim(4);
    const int64_t pw = pads[4];
    const float* xd = x.data<float>();
    float* yd = y.data<float>();
    // One output row (bc, f, h) per item: its source row is the clamped (f, h); the row is edge-extended.
    parallel_for(
        x.dim(0) * x.dim(1) * Fo * Ho,
        [&](int64_t r0, int64_t r1) {
            for (int64_t r = r0; r < r1; ++r) {
                const int64_t h = r % Ho, f = (r / Ho) % Fo, bc = r / (Ho * Fo);
                const int64_t fi = std::clamp<int64_t>(f - pads[0], 0, F - 1);
                const int64_t hi = std::clamp<int64_t>(h - pads[2], 0, H - 1);
                const float* src = xd + ((bc * F + fi) * H + hi) * W;
                float* dst = yd + r * Wo;
                std::fill(dst, dst + pw, src[0]);
                std::copy(src, src + W, dst + pw);
                std::fill(dst + pw + W, dst + Wo, src[W - 1]);
            }
        },
        16);
}

void CpuBackend::exec(const GroupNormOp& op) {
    const auto& [x, groups, weight, bias, eps, y] = op;
    SR_ASSERT(x.rank() >= 2 && x.dtype() == DType::F32 && y.dtype() == DType::F32 && x.is_contiguous() &&
                  y.is_contiguous() && x.shape() == y.shape(),
              "group_norm on {} -> {}", x.describe(), y.describe());
    const int64_t B = x.dim(0), C = x.dim(1);
    SR_ASSERT(groups > 0 && C % groups == 0, "group_norm: {} channels in {} groups", C, groups);
    const int64_t S = C ? x.numel() / (B * C) : 0;  // positions per channel
    const int64_t cg = C / groups, n = cg * S;      // channels and elements per group
    const Tensor w = weight ? as_f32(*weight) : Tensor();
    const Tensor b = bias ? as_f32(*bias) : Tensor();
    SR_ASSERT((!w.defined() || w.numel() == C) && (!b.defined() || b.numel() == C), "group_norm affine size");
    const float* xd = x.data<float>();
    float* yd = y.data<float>();

    // Statistics per (batch, group), two-pass (mean, then centred squares) in double: a group holds up to
    // ~10^8 elements at real sizes, where a one-pass f32 variance would lose most of its digits. Four
    // independent double accumulators let the compiler vectorize the sums.
    std::vector<double> mean(static_cast<size_t>(B * groups)), rstd(static_cast<size_t>(B * groups));
    // sum of (p[i] - centre)^power, power 1 or 2.
    auto sum4 = [](const float* p, int64_t len, double centre, int power) {
        double a[4] = {0, 0, 0, 0};
        int64_t i = 0;
        for (; i + 4 <= len; i += 4)
            for (int l = 0; l < 4; ++l) {
                const double d = double(p[i + l]) - centre;
                a[l] += power == 1 ? d : d * d;
            }
        for (; i < len; ++i) {
            const double d = double(p[i]) - centre;
            a[0] += power == 1 ? d : d * d;
        }
        return (a[0] + a[1]) + (a[2] + a[3]);
    };
    // Partial sums per (batch, channel), so a few large groups still use every thread.
    const int64_t n_chunks = B * C;
    std::vector<double> partial(static_cast<size_t>(n_chunks));
    parallel_for(n_chunks, [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i) partial[size_t(i)] = sum4(xd + i * S, S, 0.0, 1);
    });
    for (int64_t g = 0; g < B * groups; ++g) {
        double s = 0;
        for (int64_t c = 0; c < cg; ++c) s += partial[size_t(g * cg + c)];
        mean[size_t(g)] = n ? s / double(n) : 0.0;
    }
    parallel_for(n_chunks, [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i) {
            partial[size_t(i)] = sum4(xd + i * S, S, mean[size_t(i / cg)], 2);
        }
    });
    for (int64_t g = 0; g < B * groups; ++g) {
        double s = 0;
        for (int64_t c = 0; c < cg; ++c) s += partial[size_t(g * cg + c)];
        rstd[size_t(g)] = 1.0 / std::sqrt((n ? s / double(n) : 0.0) + double(eps));
    }
    parallel_for(n_chunks, [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i) {
            const int64_t c = i % C, g = i / cg;
            // y = (x - mean) * rstd * w + b folded into one multiply-add per element.
            const double scale = rstd[size_t(g)] * (w.defined() ? double(w.data<float>()[c]) : 1.0);
            const double shift = (b.defined() ? double(b.data<float>()[c]) : 0.0) - mean[size_t(g)] * scale;
            const float sf = float(scale), hf = float(shift);
            const float* xs = xd + i * S;
            float* ys = yd + i * S;
            for (int64_t k = 0; k < S; ++k) ys[k] = xs[k] * sf + hf;
        }
    });
}

void CpuBackend::exec(const UpsampleNearest3dOp& op) {
    const auto& [x, scale, y] = op;
    SR_ASSERT(x.rank() == 5 && y.rank() == 5 && x.dtype() == DType::F32 && y.dtype() == DType::F32 &&
                  x.is_contiguous() && y.is_contiguous(),
              "upsample_nearest3d on {} -> {}", x.describe(), y.describe());
    SR_ASSERT(y.dim(0) == x.dim(0) && y.dim(1) == x.dim(1) && y.dim(2) == x.dim(2) * scale[0] &&
                  y.dim(3) == x.dim(3) * scale[1] && y.dim(4) == x.dim(4) * scale[2],
              "upsample_nearest3d {} x ({},{},{}) -> {}", x.describe(), scale[0], scale[1], scale[2], y.describe());
    const int64_t F = x.dim(2), H = x.dim(3), W = x.dim(4), Fo = y.dim(2), Ho = y.dim(3), Wo = y.dim(4);
    const int64_t sw = scale[2];
    const float* xd = x.data<float>();
    float* yd = y.data<float>();
    parallel_for(
        x.dim(0) * x.dim(1) * Fo * Ho,
        [&](int64_t r0, int64_t r1) {
            for (int64_t r = r0; r < r1; ++r) {
                const int64_t h = r % Ho, f = (r / Ho) % Fo, bc = r / (Ho * Fo);
                const float* src = xd + ((bc * F + f / scale[0]) * H + h / scale[1]) * W;
                float* dst = yd + r * Wo;
                for (int64_t w = 0; w < W; ++w)
                    for (int64_t k = 0; k < sw; ++k) dst[w * sw + k] = src[w];
            }
        },
        16);
}

}  // namespace sr
