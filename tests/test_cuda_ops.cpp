// The CUDA backend against the CPU backend, op by op, at the model's shapes, in f32 and in bf16. The op-parity
// harness (test_cuda_harness: the op test files on the CUDA backend) already holds every op to a double
// reference on small shapes; this file adds what it cannot: the bf16 GEMM and the bf16 tensor-core attention
// (whose error budget differs from f32's), sizes that take the multi-chunk and multi-tile paths (weight
// widening in chunks, group-norm partial sums, thousands of keys), and bit-exact agreement where both sides
// compute the same roundings. Each tolerance is derived next to its check; kU = 2^-24 is f32's unit roundoff.
//
// Without a usable GPU every test skips with "no CUDA device: <reason>".
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "backends/cpu/cpu_backend.h"
#include "backends/cuda/cuda_backend.h"
#include "backends/cuda/kernels.h"

namespace {

using namespace sr;

constexpr double kU = 0x1p-24;
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

Tensor randn(const Shape& s, std::mt19937_64& rng, double mean = 0.0, double stddev = 1.0) {
    Tensor t = Tensor::empty(s, DType::F32);
    std::normal_distribution<double> dist(mean, stddev);
    for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = float(dist(rng));
    return t;
}

Tensor filled(const Shape& s, float v) {
    Tensor t = Tensor::empty(s, DType::F32);
    std::fill(t.data<float>(), t.data<float>() + t.numel(), v);
    return t;
}

// Host f32 contiguous values of any host tensor.
std::vector<double> values(const Tensor& t) {
    std::vector<double> v(size_t(t.numel()));
    for (int64_t i = 0; i < t.numel(); ++i) v[size_t(i)] = t.item_as_float(i);
    return v;
}

// Every element within tol(i); NaN only against NaN, infinities exactly. Names the worst element.
::testing::AssertionResult close(const Tensor& got, const Tensor& want, const std::function<double(int64_t)>& tol) {
    if (!(got.shape() == want.shape()))
        return ::testing::AssertionFailure() << "shape " << got.shape().str() << " != " << want.shape().str();
    const std::vector<double> g = values(got), w = values(want);
    int64_t bad = 0, worst = -1;
    double worst_ratio = 0;
    for (size_t i = 0; i < w.size(); ++i) {
        double ratio;
        if (std::isnan(g[i]) || std::isnan(w[i]))
            ratio = std::isnan(g[i]) && std::isnan(w[i]) ? 0 : INFINITY;
        else if (std::isinf(g[i]) || std::isinf(w[i]))
            ratio = g[i] == w[i] ? 0 : INFINITY;
        else {
            const double t = tol(int64_t(i)), d = std::fabs(g[i] - w[i]);
            ratio = d <= t ? 0 : (t > 0 ? d / t : INFINITY);
        }
        if (ratio > 0) ++bad;
        if (ratio > worst_ratio) worst_ratio = ratio, worst = int64_t(i);
    }
    if (bad == 0) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << bad << " of " << w.size() << " elements out of tolerance; worst at flat "
                                         << worst << ": got " << g[size_t(worst)] << ", expected " << w[size_t(worst)]
                                         << ", tol " << tol(worst);
}

// ||got - want|| / ||want|| over all elements.
double relative_l2(const Tensor& got, const Tensor& want) {
    const std::vector<double> g = values(got), w = values(want);
    double num = 0, den = 0;
    for (size_t i = 0; i < w.size(); ++i) {
        num += (g[i] - w[i]) * (g[i] - w[i]);
        den += w[i] * w[i];
    }
    return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

std::vector<double> row_norms(const Tensor& t, int64_t width) {
    const std::vector<double> v = values(t);
    std::vector<double> n(v.size() / size_t(width));
    for (size_t r = 0; r < n.size(); ++r) {
        double s = 0;
        for (int64_t i = 0; i < width; ++i) s += v[r * size_t(width) + size_t(i)] * v[r * size_t(width) + size_t(i)];
        n[r] = std::sqrt(s);
    }
    return n;
}

double max_abs(const Tensor& t) {
    double m = 0;
    for (double x : values(t)) m = std::max(m, std::fabs(x));
    return m;
}

class CudaVsCpu : public ::testing::Test {
protected:
    void SetUp() override {
        const std::string why = cuda_unavailable_reason();
        if (!why.empty()) GTEST_SKIP() << "no CUDA device: " << why;
        gpu_ = &cuda_backend();
        reset_precision();
    }
    void TearDown() override {
        if (gpu_) reset_precision();
    }
    void reset_precision() {
        gpu_->set_gemm_precision(GemmPrecision::F32);
        gpu_->set_attention_precision(GemmPrecision::F32);
        gpu_->set_attention_impl(CudaImpl::Cudnn);
        gpu_->set_conv_impl(CudaImpl::Cudnn);
        cpu_backend().set_gemm_precision(GemmPrecision::F32);
    }
    CudaBackend& gpu() { return *gpu_; }
    CpuBackend& cpu() { return cpu_backend(); }
    Tensor up(const Tensor& t) { return gpu_->upload(t); }
    Tensor down(const Tensor& t) { return gpu_->download(t); }
    // A device output pre-filled with NaN: an element the op never writes fails every comparison.
    Tensor gpu_out(const Shape& s) { return up(filled(s, kNaN)); }

    CudaBackend* gpu_ = nullptr;
};

// ----------------------------------------------------------------------------------------------------------
// GEMM

struct LinearCase {
    int64_t M, K, N;
};

void run_linear(CudaBackend& gpu, const LinearCase& c, DType wt, double rtol, std::mt19937_64& rng) {
    SCOPED_TRACE(::testing::Message() << "M" << c.M << " K" << c.K << " N" << c.N << " w " << dtype_name(wt));
    const Tensor x = randn({c.M, c.K}, rng);
    const Tensor w = randn({c.N, c.K}, rng, 0.0, 1.0 / std::sqrt(double(c.K))).to(wt);
    const Tensor b = randn({c.N}, rng).to(wt);
    Tensor want = Tensor::empty({c.M, c.N}, DType::F32);
    cpu_backend().linear(x, w, &b, want);
    Tensor y = gpu.upload(filled({c.M, c.N}, kNaN));
    const Tensor wd = gpu.upload(w), bd = gpu.upload(b);
    gpu.linear(gpu.upload(x), wd, &bd, y);
    const std::vector<double> xn = row_norms(x, c.K), wn = row_norms(w.to(DType::F32), c.K), bv = values(b),
                              yv = values(want);
    EXPECT_TRUE(close(gpu.download(y), want, [&](int64_t i) {
        const double dot_scale = xn[size_t(i / c.N)] * wn[size_t(i % c.N)] / std::sqrt(double(c.K));
        return rtol * (dot_scale + std::fabs(bv[size_t(i % c.N)]) + std::fabs(yv[size_t(i)]));
    }));
}

TEST_F(CudaVsCpu, LinearF32AtModelShapes) {
    // Both sides sum the same exact products in f32 (bf16/f16 weights widen exactly): each is within about
    // u sqrt(K/6) of the magnitude |x||w|/sqrt(K) of the exact dot product (1.6e-6 at K = 4096, test_ops.cpp),
    // so their difference has std ~2.3e-6 at most; 2e-5 is ~9 sigma. The cases cover the attention
    // projections (3072 -> 3072), the fused qkv (-> 9216) and the MLP (-> 12288, whose f32-widened weights
    // pass the 64 MiB scratch and go in three chunks), at token counts off the tile sizes.
    std::mt19937_64 rng(1);
    for (const LinearCase& c : std::vector<LinearCase>{
             {333, 3072, 3072}, {97, 3072, 9216}, {64, 3072, 12288}, {77, 768, 3072}, {1, 256, 3072}})
        for (DType wt : {DType::F32, DType::BF16, DType::F16}) run_linear(gpu(), c, wt, 2e-5, rng);
}

TEST_F(CudaVsCpu, LinearBf16) {
    // BF16 precision on both sides: activations rounded to bf16 (round to nearest even on both), products of
    // two bf16 values exact in f32, f32 accumulation: the same bound as the f32 case above applies, with x the
    // rounded activations (|x| changes by at most 2^-9 relative, inside the margin).
    gpu().set_gemm_precision(GemmPrecision::BF16);
    cpu().set_gemm_precision(GemmPrecision::BF16);
    std::mt19937_64 rng(2);
    for (const LinearCase& c : std::vector<LinearCase>{{333, 3072, 3072}, {97, 3072, 9216}, {130, 3072, 12288}})
        run_linear(gpu(), c, DType::BF16, 2e-5, rng);
}

TEST_F(CudaVsCpu, MatmulBf16OutputAndAlignment) {
    // The raw GEMM the benchmarks call: bf16 operands, bf16 output, and an x pointer 2 bytes off 256-byte
    // alignment (a row view). Against the CPU's bf16 GEMM: both accumulate the same exact products in f32,
    // then the GPU rounds to bf16 (half an ulp, 2^-9 relative) and the f32 sums differ by ~2e-6 relative:
    // tol = 2^-8 |y| + 2e-5 |x||w|/sqrt(K).
    std::mt19937_64 rng(3);
    const int64_t M = 129, K = 1024, N = 520;
    const Tensor xb = randn({M + 1, K}, rng).to(DType::BF16), wb = randn({N, K}, rng, 0, 0.03).to(DType::BF16);
    const Tensor xd = up(xb), wd = up(wb);
    Tensor yd = up(filled({M, N}, kNaN).to(DType::BF16));
    const auto* x_row1 = static_cast<const char*>(xd.raw_data()) + K * 2;  // row 1: 2048 bytes in, 256-aligned
    gpu().matmul(M, N, K, x_row1, wd.raw_data(), DType::BF16, yd.raw_data(), DType::BF16, N, nullptr);
    Tensor want = Tensor::empty({M, N}, DType::F32);
    gemm(M, N, K, static_cast<const char*>(xb.raw_data()) + K * 2, K, wb.raw_data(), K, true, DType::BF16,
         want.data<float>(), N, false);
    const std::vector<double> xn = row_norms(xb.slice(0, 1, M + 1).to(DType::F32), K),
                              wn = row_norms(wb.to(DType::F32), K), yv = values(want);
    EXPECT_TRUE(close(down(yd).to(DType::F32), want, [&](int64_t i) {
        return 0x1p-8 * std::fabs(yv[size_t(i)]) + 2e-5 * xn[size_t(i / N)] * wn[size_t(i % N)] / std::sqrt(double(K));
    }));
}

// ----------------------------------------------------------------------------------------------------------
// attention

struct AttnCase {
    const char* name;
    int64_t B, H, Lq, Lk, D;
    std::vector<int64_t> kv_len = {};
    bool causal = false;
    bool dense = false;  // a random dense mask with a fully masked row
    double qk_std = 1.0;
};

struct AttnRun {
    Tensor got, want, q, k, v;  // host; q, k, v as [B,H,L,D] views
    float scale;
};

AttnRun run_attention(CudaBackend& gpu, const AttnCase& c, std::mt19937_64& rng) {
    // [B, L, H, D] buffers, as the model holds them, passed as permuted views.
    const Tensor qb = randn({c.B, c.Lq, c.H, c.D}, rng, 0, c.qk_std),
                 kb = randn({c.B, c.Lk, c.H, c.D}, rng, 0, c.qk_std), vb = randn({c.B, c.Lk, c.H, c.D}, rng);
    AttentionMask mh, md;
    mh.kv_len = md.kv_len = c.kv_len;
    mh.causal = md.causal = c.causal;
    if (c.dense) {
        Tensor m = Tensor::empty({c.B, c.Lq, c.Lk}, DType::Bool);
        std::uniform_real_distribution<double> u01(0, 1);
        for (int64_t b = 0; b < c.B; ++b)
            for (int64_t i = 0; i < c.Lq; ++i)
                for (int64_t j = 0; j < c.Lk; ++j)
                    m.data<uint8_t>()[(b * c.Lq + i) * c.Lk + j] = i != 1 && u01(rng) < 0.7;
        mh.dense = m;
        md.dense = gpu.upload(m);
    }
    const float scale = float(1.0 / std::sqrt(double(c.D)));
    AttnRun r;
    r.q = qb.permute({0, 2, 1, 3});
    r.k = kb.permute({0, 2, 1, 3});
    r.v = vb.permute({0, 2, 1, 3});
    r.scale = scale;
    Tensor want_buf = Tensor::empty({c.B, c.Lq, c.H, c.D}, DType::F32);
    Tensor want = want_buf.permute({0, 2, 1, 3});
    cpu_backend().attention(r.q, r.k, r.v, want, mh, scale);
    const Tensor qd = gpu.upload(qb), kd = gpu.upload(kb), vd = gpu.upload(vb);
    Tensor out_buf = gpu.upload(filled({c.B, c.Lq, c.H, c.D}, kNaN));
    Tensor o = out_buf.permute({0, 2, 1, 3});
    gpu.attention(qd.permute({0, 2, 1, 3}), kd.permute({0, 2, 1, 3}), vd.permute({0, 2, 1, 3}), o, md, scale);
    r.got = gpu.download(out_buf);
    r.want = want_buf;
    return r;
}

// max over rows of |q_row| times max |k_row| times scale: a bound on every score's magnitude.
double score_bound(const AttnRun& r, int64_t D) {
    const std::vector<double> qn = row_norms(r.q.contiguous(), D), kn = row_norms(r.k.contiguous(), D);
    return *std::max_element(qn.begin(), qn.end()) * *std::max_element(kn.begin(), kn.end()) * r.scale;
}

// The typical relative error of the bf16 attention (derivation in AttentionBf16TensorCores), 4 sigma.
double bf16_attention_rel_l2(const AttnCase& c) {
    const double scale = 1.0 / std::sqrt(double(c.D));
    const double sigma = scale * std::sqrt(2.0 * double(c.D)) * c.qk_std * c.qk_std * 0x1p-9 / std::sqrt(3.0);
    return 4 * (sigma + 0x1p-9);
}

const std::vector<AttnCase> kAttentionCases = {
    {"joint attention, padded text", 2, 3, 300, 300, 128, {300, 177}},
    {"three key tiles plus one", 1, 2, 130, 2113, 128},
    {"causal llama", 1, 4, 351, 351, 128, {351}, true},
    {"causal, queries at the end", 1, 2, 100, 351, 128, {}, true},
    {"refiner-like dense mask", 2, 2, 257, 257, 128, {}, false, true},
    {"a batch row with no key", 2, 2, 70, 90, 128, {90, 0}},
    {"large scores", 1, 2, 200, 700, 128, {}, false, false, std::sqrt(8.0)},
    {"clip head 64", 2, 12, 77, 77, 64},
    {"vae head 512", 1, 1, 300, 300, 512},
    {"head 16, odd lengths", 2, 3, 33, 47, 16},
};

TEST_F(CudaVsCpu, AttentionF32) {
    // test_ops.cpp's budget per implementation: max|v| (8u * score_bound + 1e-6); two implementations, twice it.
    std::mt19937_64 rng(4);
    for (const AttnCase& c : kAttentionCases) {
        SCOPED_TRACE(c.name);
        const AttnRun r = run_attention(gpu(), c, rng);
        const double tol = 2 * max_abs(r.v) * (8 * kU * score_bound(r, c.D) + 1e-6);
        EXPECT_TRUE(close(r.got, r.want, [&](int64_t) { return tol; })) << "tol " << tol;
    }
}

TEST_F(CudaVsCpu, AttentionBf16TensorCores) {
    // q, k and v rounded to bf16 (relative error <= 2^-9 each), scores and softmax in f32, probabilities
    // rounded to bf16 for P V. Worst case per element: a score moves by at most 2^-8 scale |q||k| (both
    // operands' roundings, Cauchy-Schwarz), which moves the output by at most twice that in units of max|v|;
    // the rounding of v and of the probabilities adds at most 2^-9 max|v| each:
    //     |err| <= max|v| (2 * 2^-8 * score_bound + 2^-8).
    // That bound is loose for typical data, so the relative l2 error is also held to what random roundings
    // give: each operand's relative rounding error is uniform in +-2^-9 (std 2^-9/sqrt(3)), so a score moves by
    // sigma = scale sqrt(2 D) qk_std^2 2^-9/sqrt(3) (std), which moves a peaked softmax's output by about
    // sigma relative, and v's and p's roundings add ~2^-9. We allow 4 (sigma + 2^-9): 1.4e-2 for unit q and k
    // at D = 128. A wrong fragment layout or a skipped tile gives errors of order 1.
    gpu().set_attention_precision(GemmPrecision::BF16);
    gpu().set_attention_impl(CudaImpl::Kernel);  // the custom kernel; cuDNN: AttentionCudnnSdpa
    std::mt19937_64 rng(5);
    for (const AttnCase& c : kAttentionCases) {
        SCOPED_TRACE(c.name);
        const AttnRun r = run_attention(gpu(), c, rng);
        const double bound = max_abs(r.v) * (2 * 0x1p-8 * score_bound(r, c.D) + 0x1p-8);
        if (c.D == 128) {
            EXPECT_TRUE(close(r.got, r.want, [&](int64_t) { return bound; })) << "bound " << bound;
            EXPECT_LE(relative_l2(r.got, r.want), bf16_attention_rel_l2(c));
        } else {
            // Other head dims stay on the f32 kernel: the f32 budget applies.
            const double tol = 2 * max_abs(r.v) * (8 * kU * score_bound(r, c.D) + 1e-6);
            EXPECT_TRUE(close(r.got, r.want, [&](int64_t) { return tol; })) << "tol " << tol;
        }
    }
}

TEST_F(CudaVsCpu, AttentionCudnnSdpa) {
    // cuDNN's fused SDPA (the default bf16 attention) on every case: the same bf16 budget as the kernel (its
    // operands are the same bf16 roundings; it keeps scores and statistics in f32 too). Cases it does not take
    // (masks, head dims) go to the kernels, and are held to their budgets. The joint attention's shape must
    // really run on cuDNN: a plan that fails to build falls back silently in production, so it is counted here.
    gpu().set_attention_precision(GemmPrecision::BF16);
    gpu().set_attention_impl(CudaImpl::Cudnn);
    std::printf("%s\n", gpu().cudnn_status().c_str());
    std::mt19937_64 rng(7);
    for (const AttnCase& c : kAttentionCases) {
        SCOPED_TRACE(c.name);
        const AttentionPath path = gpu().attention_path(c.D, c.dense, c.causal);
        const auto failed_before = gpu().cudnn_plan_counts().second;
        const AttnRun r = run_attention(gpu(), c, rng);
        if (path == AttentionPath::F32Kernel) {
            const double tol = 2 * max_abs(r.v) * (8 * kU * score_bound(r, c.D) + 1e-6);
            EXPECT_TRUE(close(r.got, r.want, [&](int64_t) { return tol; })) << "tol " << tol;
            continue;
        }
        const double bound = max_abs(r.v) * (2 * 0x1p-8 * score_bound(r, c.D) + 0x1p-8);
        EXPECT_TRUE(close(r.got, r.want, [&](int64_t) { return bound; })) << attention_path_name(path);
        EXPECT_LE(relative_l2(r.got, r.want), bf16_attention_rel_l2(c)) << attention_path_name(path);
        if (path == AttentionPath::CudnnSdpa) {
            EXPECT_EQ(gpu().cudnn_plan_counts().second, failed_before) << gpu().cudnn_status();
        }
    }
    const AttnCase joint{"joint attention", 1, 2, 300, 300, 128, {200}};
    EXPECT_EQ(gpu().attention_path(joint.D, false, false), AttentionPath::CudnnSdpa) << gpu().cudnn_status();
    EXPECT_GT(gpu().cudnn_plan_counts().first, 0u) << gpu().cudnn_status();
}

TEST_F(CudaVsCpu, AttentionBf16LongSequence) {
    // 4,096 video + 256 text tokens with padded text, 2 heads: 68 key tiles per query block, the online
    // softmax's long run, on cuDNN and on the kernel. Tolerance as above.
    gpu().set_attention_precision(GemmPrecision::BF16);
    for (const CudaImpl impl : {CudaImpl::Cudnn, CudaImpl::Kernel}) {
        SCOPED_TRACE(cuda_impl_name(impl));
        gpu().set_attention_impl(impl);
        std::mt19937_64 rng(6);
        const AttnCase c{"4096 + 256 tokens", 1, 2, 4352, 4352, 128, {4096 + 100}};
        const AttnRun r = run_attention(gpu(), c, rng);
        const double bound = max_abs(r.v) * (2 * 0x1p-8 * score_bound(r, c.D) + 0x1p-8);
        EXPECT_TRUE(close(r.got, r.want, [&](int64_t) { return bound; }));
        EXPECT_LE(relative_l2(r.got, r.want), bf16_attention_rel_l2(c));
    }
}

// ----------------------------------------------------------------------------------------------------------
// the attention's QK-RMSNorm + RoPE prologue (ops.h QkNormRope): fused into the bf16 packing, or apart in f32

struct QkCase {
    Tensor q, k, v;  // [B, L, H, D] host
    Tensor w[4];     // q video, q text, k video, k text (bf16, as checkpoints hold them)
    Tensor cos, sin;
    QkNormRope qk;
    AttentionMask mask;
    int64_t n_rope;
};

QkCase make_qk_case(int64_t B, int64_t L, int64_t H, int64_t n_rope, std::vector<int64_t> kv_len,
                    std::mt19937_64& rng) {
    const int64_t D = 128;
    QkCase c;
    c.q = randn({B, L, H, D}, rng, 0.0, 4.0);  // projections are not unit-scale: the norm must undo it
    c.k = randn({B, L, H, D}, rng, 0.5, 0.3);
    c.v = randn({B, L, H, D}, rng);
    for (Tensor& w : c.w) w = randn({D}, rng, 1.0, 0.3).to(DType::BF16);
    c.cos = Tensor::empty({n_rope, D}, DType::F32);
    c.sin = Tensor::empty({n_rope, D}, DType::F32);
    for (int64_t l = 0; l < n_rope; ++l)
        for (int64_t i = 0; i < D; i += 2) {
            const double angle = double(l) * std::pow(256.0, -double(i % 56) / 56.0);
            c.cos.data<float>()[l * D + i] = c.cos.data<float>()[l * D + i + 1] = float(std::cos(angle));
            c.sin.data<float>()[l * D + i] = c.sin.data<float>()[l * D + i + 1] = float(std::sin(angle));
        }
    c.n_rope = n_rope;
    c.mask.kv_len = std::move(kv_len);
    return c;
}

// The CPU's rms_norm per segment then rope on [B, L, H, D] x: what the prologue means.
Tensor qk_reference(const QkCase& c, const Tensor& x, const Tensor& w0, const Tensor& w1) {
    const int64_t B = x.dim(0), L = x.dim(1), D = x.dim(3);
    Tensor y = Tensor::empty(x.shape(), DType::F32);
    for (int64_t b = 0; b < B; ++b) {
        Tensor d0 = y.select(0, b).slice(0, 0, c.n_rope).view({-1, D});
        cpu_backend().rms_norm(x.select(0, b).slice(0, 0, c.n_rope).view({-1, D}), &w0, 1e-6f, d0);
        Tensor d1 = y.select(0, b).slice(0, c.n_rope, L).view({-1, D});
        cpu_backend().rms_norm(x.select(0, b).slice(0, c.n_rope, L).view({-1, D}), &w1, 1e-6f, d1);
    }
    Tensor rotated = y.slice(1, 0, c.n_rope);
    cpu_backend().rope_interleaved(rotated, c.cos, c.sin);
    return y;
}

TEST_F(CudaVsCpu, QkNormRopeKernelAgainstTheCpuOps) {
    // The fused kernel alone, on a [H, L, 128] head-major view of a [L, H, 128] buffer with n_rope < L: its bf16
    // rows against the CPU's rms_norm + rope rounded to bf16. Tolerance from test_cuda_host.cpp's
    // ElementLogicMatchesTheCpuOps (same element functions): 2^-8 |cpu| + 32u (|n0 c0| + |n1 s0|), bounded here by
    // 2^-8 |cpu| + 64u |n|max; and at least 99% bit-identical.
    std::mt19937_64 rng(21);
    const int64_t L = 700, H = 6, D = 128;
    QkCase c = make_qk_case(1, L, H, 500, {}, rng);
    const Tensor want = qk_reference(c, c.q, c.w[0], c.w[1]);  // [1, L, H, D]
    const Tensor xd = up(c.q), w0 = up(c.w[0]), w1 = up(c.w[1]), cd = up(c.cos), sd = up(c.sin);
    Tensor out = up(Tensor::empty({H, L, D}, DType::BF16));
    gpu().synchronize();
    cuda::QkNormRopeArgs a{};
    a.src = static_cast<const float*>(xd.raw_data());
    a.s_sh = D;
    a.s_sl = H * D;
    a.dst = static_cast<uint16_t*>(out.raw_data());
    a.H = H;
    a.L = L;
    a.n_rope = c.n_rope;
    a.w0 = w0.raw_data();
    a.w1 = w1.raw_data();
    a.w0_type = a.w1_type = cuda::KType::BF16;
    a.cos = static_cast<const float*>(cd.raw_data());
    a.sin = static_cast<const float*>(sd.raw_data());
    a.eps = 1e-6f;
    ASSERT_TRUE(cuda::qk_norm_rope_fits(a));
    cuda::qk_norm_rope_bf16(a, nullptr);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    const Tensor got = down(out).to(DType::F32);  // [H, L, D]
    const Tensor want_hl = want.select(0, 0).permute({1, 0, 2}).contiguous();
    const Tensor want_bf16 = want_hl.to(DType::BF16).to(DType::F32);
    const double n_max = max_abs(want_hl);
    const std::vector<double> wv = values(want_hl);
    EXPECT_TRUE(close(got, want_hl, [&](int64_t i) { return 0x1p-8 * std::fabs(wv[size_t(i)]) + 64 * kU * n_max; }));
    const std::vector<double> gv = values(got), bv = values(want_bf16);
    int64_t exact = 0;
    for (size_t i = 0; i < gv.size(); ++i) exact += gv[i] == bv[i];
    EXPECT_GE(double(exact), 0.99 * double(gv.size())) << exact << " of " << gv.size() << " bit-identical";
}

TEST_F(CudaVsCpu, AttentionWithQkNormRope) {
    // The transformer's joint attention on raw projections (video rows normalized with one weight and rotated,
    // text rows with another, padded text), against the CPU backend's attention with the same prologue, on every
    // path: the fused prologue feeding cuDNN and the bf16 kernel, and the unfused f32 prologue feeding the f32
    // kernel (the parity path). Tolerances as AttentionBf16TensorCores / AttentionF32, with the scores bounded by
    // the normalized q and k (the CPU's own normalization, qk_reference).
    std::mt19937_64 rng(22);
    const int64_t B = 2, L = 300, H = 3, D = 128;
    QkCase c = make_qk_case(B, L, H, 220, {300, 250}, rng);
    c.qk.q_weight = {&c.w[0], &c.w[1]};
    c.qk.k_weight = {&c.w[2], &c.w[3]};
    c.qk.cos = &c.cos;
    c.qk.sin = &c.sin;
    c.qk.n_rope = c.n_rope;
    const float scale = float(1.0 / std::sqrt(double(D)));
    Tensor want_buf = Tensor::empty({B, L, H, D}, DType::F32);
    {
        Tensor want = want_buf.permute({0, 2, 1, 3});
        cpu().attention(c.q.permute({0, 2, 1, 3}), c.k.permute({0, 2, 1, 3}), c.v.permute({0, 2, 1, 3}), want, c.mask,
                        scale, c.qk);
    }
    const Tensor qn = qk_reference(c, c.q, c.w[0], c.w[1]), kn = qk_reference(c, c.k, c.w[2], c.w[3]);
    const std::vector<double> qr = row_norms(qn, D), kr = row_norms(kn, D);
    const double bound_scores =
        *std::max_element(qr.begin(), qr.end()) * *std::max_element(kr.begin(), kr.end()) * scale;
    const double vmax = max_abs(c.v);

    const Tensor qd = up(c.q), kd = up(c.k), vd = up(c.v);
    Tensor wd[4];
    for (int i = 0; i < 4; ++i) wd[i] = up(c.w[i]);
    const Tensor cd = up(c.cos), sd = up(c.sin);
    QkNormRope qk_dev = c.qk;
    qk_dev.q_weight = {&wd[0], &wd[1]};
    qk_dev.k_weight = {&wd[2], &wd[3]};
    qk_dev.cos = &cd;
    qk_dev.sin = &sd;
    auto run = [&] {
        Tensor out_buf = gpu_out({B, L, H, D});
        Tensor o = out_buf.permute({0, 2, 1, 3});
        gpu().attention(qd.permute({0, 2, 1, 3}), kd.permute({0, 2, 1, 3}), vd.permute({0, 2, 1, 3}), o, c.mask, scale,
                        qk_dev);
        return down(out_buf);
    };
    gpu().set_attention_precision(GemmPrecision::BF16);
    for (const CudaImpl impl : {CudaImpl::Cudnn, CudaImpl::Kernel}) {
        SCOPED_TRACE(cuda_impl_name(impl));
        gpu().set_attention_impl(impl);
        const Tensor got = run();
        const double bound = vmax * (2 * 0x1p-8 * bound_scores + 0x1p-8);
        EXPECT_TRUE(close(got, want_buf, [&](int64_t) { return bound; })) << "bound " << bound;
        // The normalized rows have norm ~ sqrt(128) |w|: scores of std ~ |w|^2, as qk_std = 1 in the plain cases.
        AttnCase like{"qk", B, H, L, L, D};
        EXPECT_LE(relative_l2(got, want_buf), bf16_attention_rel_l2(like));
    }
    gpu().set_attention_precision(GemmPrecision::F32);
    const Tensor got = run();
    const double tol = 2 * vmax * (8 * kU * bound_scores + 1e-6) + 2 * vmax * 64 * kU * bound_scores;
    // f32: the attention's budget, plus the prologue's: rms_norm and rope agree to a few u of |n| on both sides,
    // which moves each score by <= 64u of the bound (a generous count) and the output by twice that times max|v|.
    EXPECT_TRUE(close(got, want_buf, [&](int64_t) { return tol; })) << "tol " << tol;
}

// ----------------------------------------------------------------------------------------------------------
// normalizations, RoPE, element-wise

TEST_F(CudaVsCpu, LayerNormAndRmsNormAtWidth3072) {
    // Both compute the row statistics in double and the output in f32 with the same operations; f32 rounding of
    // x - mean (u (|x| + |mean|)), the products and the sum, on each side: 16u of (|x| + |mean|) rstd |w| + |b|
    // + |y| (twice test_ops.cpp's 8u, for two implementations).
    std::mt19937_64 rng(7);
    const int64_t rows = 2 * 300, D = 3072;
    const Tensor x = randn({2, 300, D}, rng, 3.0, 2.0);
    const Tensor w = randn({D}, rng, 1.0, 0.5).to(DType::BF16), b = randn({D}, rng);
    Tensor want = Tensor::empty(x.shape(), DType::F32);
    cpu().layer_norm(x, &w, &b, 1e-6f, want);
    Tensor y = gpu_out(x.shape());
    const Tensor wd = up(w), bd = up(b);
    gpu().layer_norm(up(x), &wd, &bd, 1e-6f, y);
    const std::vector<double> xv = values(x), wv = values(w), bv = values(b), yv = values(want);
    std::vector<double> mean(static_cast<size_t>(rows)), rstd(static_cast<size_t>(rows));
    for (int64_t r = 0; r < rows; ++r) {
        double s = 0, q = 0;
        for (int64_t i = 0; i < D; ++i) s += xv[size_t(r * D + i)];
        mean[size_t(r)] = s / double(D);
        for (int64_t i = 0; i < D; ++i) q += std::pow(xv[size_t(r * D + i)] - mean[size_t(r)], 2);
        rstd[size_t(r)] = 1.0 / std::sqrt(q / double(D) + 1e-6);
    }
    EXPECT_TRUE(close(down(y), want, [&](int64_t i) {
        const size_t r = size_t(i / D), d = size_t(i % D);
        return 16 * kU *
               ((std::fabs(xv[size_t(i)]) + std::fabs(mean[r])) * rstd[r] * std::fabs(wv[d]) + std::fabs(bv[d]) +
                std::fabs(yv[size_t(i)]));
    }));

    // RMS norm (QK norm: rows of 128 over 24 heads): products only, a few u of |y| each side; 16u.
    const Tensor xq = randn({2, 300, 24, 128}, rng), wq = randn({128}, rng, 1.0, 0.3);
    Tensor want_q = Tensor::empty(xq.shape(), DType::F32);
    cpu().rms_norm(xq, &wq, 1e-6f, want_q);
    Tensor yq = gpu_out(xq.shape());
    const Tensor wqd = up(wq);
    gpu().rms_norm(up(xq), &wqd, 1e-6f, yq);
    const std::vector<double> yqv = values(want_q);
    EXPECT_TRUE(close(down(yq), want_q, [&](int64_t i) { return 16 * kU * std::fabs(yqv[size_t(i)]) + 1e-37; }));
}

TEST_F(CudaVsCpu, GroupNormAcrossPartialChunks) {
    // A VAE decoder norm: 128 channels in 32 groups over 5 x 68 x 60 positions (20,400 per channel, past one
    // 16,384-element partial-sum chunk). Both sides: double statistics, then x * scale + shift in f32 with
    // scale and shift rounded from double; a fused multiply-add on the GPU rounds once instead of twice:
    // 4u (|x scale| + |shift| + |y|) covers both.
    std::mt19937_64 rng(8);
    const Tensor x = randn({1, 128, 5, 68, 60}, rng, 2.0, 0.5);
    const Tensor w = randn({128}, rng, 1.0, 0.3), b = randn({128}, rng);
    Tensor want = Tensor::empty(x.shape(), DType::F32);
    cpu().group_norm(x, 32, &w, &b, 1e-6f, want);
    Tensor y = gpu_out(x.shape());
    const Tensor wd = up(w), bd = up(b);
    gpu().group_norm(up(x), 32, &wd, &bd, 1e-6f, y);
    const std::vector<double> xv = values(x), yv = values(want);
    // |x scale| <= |x| * rstd * |w| with rstd ~ 2 (std 0.5) and |w| < 3; |shift| <= |b| + 2 |mean| rstd |w|.
    EXPECT_TRUE(close(down(y), want, [&](int64_t i) {
        return 4 * kU * (std::fabs(xv[size_t(i)]) * 6 + 30 + std::fabs(yv[size_t(i)]));
    }));
}

TEST_F(CudaVsCpu, RopeOnFusedQkvAtModelShape) {
    // q slot of a [B, L, 3, 24, 128] buffer: two products and an add per element on each side; 32u of
    // |x_2i| + |x_2i+1| (twice test_ops.cpp's 16u). The k and v slots must stay bit-identical.
    std::mt19937_64 rng(9);
    const int64_t B = 1, L = 700, H = 24, D = 128;
    const Tensor buf = randn({B, L, 3, H, D}, rng);
    Tensor cos = Tensor::empty({L, D}, DType::F32), sin = Tensor::empty({L, D}, DType::F32);
    for (int64_t l = 0; l < L; ++l)
        for (int64_t i = 0; i < D; i += 2) {
            const double angle = double(l) * std::pow(256.0, -double(i % 56) / 56.0);
            cos.data<float>()[l * D + i] = cos.data<float>()[l * D + i + 1] = float(std::cos(angle));
            sin.data<float>()[l * D + i] = sin.data<float>()[l * D + i + 1] = float(std::sin(angle));
        }
    Tensor want = buf.clone();
    Tensor want_q = want.select(2, 0);
    cpu().rope_interleaved(want_q, cos, sin);
    Tensor dev = up(buf);
    Tensor dev_q = dev.select(2, 0);
    gpu().rope_interleaved(dev_q, up(cos), up(sin));
    const std::vector<double> before = values(buf);
    EXPECT_TRUE(close(down(dev), want, [&](int64_t i) {
        const int64_t pair = i - (i % 2);
        return 32 * kU * (std::fabs(before[size_t(pair)]) + std::fabs(before[size_t(pair + 1)]));
    }));
}

TEST_F(CudaVsCpu, ActivationsAndBroadcastOps) {
    // One million values (randn * 4): the CPU's vectorized exp/tanh (relative error < 2e-7) against the GPU's
    // libm (2 ulp): gelu 32u (|x| + |y|), silu 2e-6 |y| (test_ops.cpp's bounds, doubled), plus 1e-36 where
    // results underflow.
    std::mt19937_64 rng(10);
    const int64_t n = 1 << 20;
    const Tensor x = randn({n}, rng, 0.0, 4.0);
    const std::vector<double> xv = values(x);
    Tensor want = Tensor::empty({n}, DType::F32);
    Tensor y = gpu_out({n});
    const Tensor xd = up(x);
    cpu().gelu_tanh(x, want);
    gpu().gelu_tanh(xd, y);
    std::vector<double> wv = values(want);
    EXPECT_TRUE(close(down(y), want, [&](int64_t i) {
        return 32 * kU * (std::fabs(xv[size_t(i)]) + std::fabs(wv[size_t(i)])) + 1e-37;
    })) << "gelu_tanh";
    cpu().silu(x, want);
    gpu().silu(xd, y);
    wv = values(want);
    EXPECT_TRUE(close(down(y), want, [&](int64_t i) { return 2e-6 * std::fabs(wv[size_t(i)]) + 1e-36; })) << "silu";

    // modulate / gated residual on [2, 1000, 3072] with sliced adaLN vectors: at most three roundings per
    // element on each side (a fused multiply-add rounds fewer): 32u of the terms' sizes.
    const int64_t B = 2, L = 1000, D = 3072;
    const Tensor xs = randn({B, L, D}, rng), mod = randn({B, 6 * D}, rng), res = randn({B, L, D}, rng);
    const Tensor mod_dev = up(mod), xs_dev = up(xs), res_dev = up(res);
    Tensor want_m = Tensor::empty(xs.shape(), DType::F32);
    cpu().modulate(xs, mod.slice(1, 0, D), mod.slice(1, D, 2 * D), want_m);
    Tensor ym = gpu_out(xs.shape());
    gpu().modulate(xs_dev, mod_dev.slice(1, 0, D), mod_dev.slice(1, D, 2 * D), ym);
    const std::vector<double> xsv = values(xs), modv = values(mod), resv = values(res);
    EXPECT_TRUE(close(down(ym), want_m, [&](int64_t i) {
        const int64_t b = i / (L * D), d = i % D;
        return 32 * kU *
               (std::fabs(xsv[size_t(i)]) * (1 + std::fabs(modv[size_t(b * 6 * D + D + d)])) +
                std::fabs(modv[size_t(b * 6 * D + d)]));
    })) << "modulate";
    Tensor want_g = xs.clone();
    cpu().gated_residual(want_g, res, mod.slice(1, 2 * D, 3 * D));
    Tensor xg = up(xs);
    gpu().gated_residual(xg, res_dev, mod_dev.slice(1, 2 * D, 3 * D));
    EXPECT_TRUE(close(down(xg), want_g, [&](int64_t i) {
        const int64_t b = i / (L * D), d = i % D;
        return 32 * kU * (std::fabs(xsv[size_t(i)]) + std::fabs(resv[size_t(i)] * modv[size_t(b * 6 * D + 2 * D + d)]));
    })) << "gated_residual";
}

TEST_F(CudaVsCpu, TimestepEmbeddingMatchesBits) {
    // Same f32 steps, the same SLEEF exp for the frequencies, sin/cos in double rounded once on both sides:
    // identical but for the last bit of a double sin/cos landing on a float rounding boundary; 1 ulp (2u|y|).
    const Tensor t = Tensor::from_vector({0.0f, 1.0f, 17.5f, 999.0f, 1000.0f, 6016.5f}, {6});
    for (int dim : {256, 257}) {
        Tensor want = Tensor::empty({6, dim}, DType::F32);
        cpu().timestep_embedding(t, dim, true, 0.0f, 10000.0f, want);
        Tensor y = gpu_out({6, dim});
        gpu().timestep_embedding(up(t), dim, true, 0.0f, 10000.0f, y);
        const std::vector<double> wv = values(want);
        EXPECT_TRUE(close(down(y), want, [&](int64_t i) { return 2 * kU * std::fabs(wv[size_t(i)]); })) << dim;
    }
}

TEST_F(CudaVsCpu, CopyConversionsAreBitExact) {
    // Every conversion between the float dtypes, on a permuted view, against the CPU's convert_elements: one
    // correctly rounded conversion each, so the bytes must match exactly (NaN against NaN).
    std::mt19937_64 rng(11);
    Tensor src = randn({16, 33, 65}, rng, 0.0, 300.0);  // spans e4m3 saturation and f16 subnormals below
    float* s = src.data<float>();
    const float specials[] = {0.0f, -0.0f, kNaN, INFINITY, -INFINITY, 65520.0f, 3e-8f, 1e-40f, 448.0f, 465.0f};
    for (size_t i = 0; i < std::size(specials); ++i) s[i] = specials[i];
    for (int64_t i = 10; i < 200; ++i) s[i] *= 1e-5f;
    const DType types[] = {DType::F32, DType::BF16, DType::F16, DType::F8_E4M3};
    for (DType from : types)
        for (DType to : types) {
            SCOPED_TRACE(fmt::format("{} -> {}", dtype_name(from), dtype_name(to)));
            const Tensor typed = src.to(from);
            const Tensor view = typed.permute({2, 0, 1});
            Tensor want = Tensor::empty(view.shape(), to);
            want.copy_from(view);
            Tensor dst = up(filled(view.shape(), kNaN).to(to));
            gpu().copy(up(typed).permute({2, 0, 1}), dst);
            EXPECT_TRUE(close(down(dst), want, [](int64_t) { return 0.0; }));
        }
}

TEST_F(CudaVsCpu, Conv3dAtDecoderShape) {
    // 64 -> 64 channels, 3x3x3, 6 frames of 34 x 40 (causally padded input): both sum K = 1,728 products in f32;
    // each within ~u sqrt(K) of the sum of |products| for random signs (test_ops_vae.cpp allows 8u sqrt(K)
    // per implementation); twice that.
    std::mt19937_64 rng(12);
    const Tensor x = randn({1, 64, 8, 36, 42}, rng);
    for (DType wt : {DType::F32, DType::BF16}) {
        const Tensor w = randn({64, 64, 3, 3, 3}, rng, 0.0, 0.05).to(wt), b = randn({64}, rng);
        Tensor want = Tensor::empty({1, 64, 6, 34, 40}, DType::F32);
        cpu().conv3d(x, w, &b, {1, 1, 1}, {0, 0, 0}, want);
        Tensor y = gpu_out(want.shape());
        const Tensor wd = up(w), bd = up(b);
        gpu().conv3d(up(x), wd, &bd, {1, 1, 1}, {0, 0, 0}, y);
        // sum |x w| <= |x|_max-ish bound: 1,728 terms of |x| |w| with |w| ~ 0.05: about 1728 * 0.8 * 0.04 = 55.
        const double abs_sum = 60.0;
        EXPECT_TRUE(close(down(y), want, [&](int64_t) { return 16 * kU * std::sqrt(1728.0) * abs_sum + 1e-6; }))
            << dtype_name(wt);
    }
}

TEST_F(CudaVsCpu, Conv3dCudnn) {
    // bf16 precision sends conv3d to cudnnConvolutionForward with tensor-op math: TF32 products (x and w each
    // rounded to 10 mantissa bits, relative error <= 2^-11 each) summed in f32. Per output the error is at most
    // 2 * 2^-11 of the sum of |products| (60, as above) plus f32 summation; random signs make it ~sqrt(K) times
    // smaller, but the bound is kept worst-case-free of that: 2 * 2^-11 * 60 = 0.06 would be loose, so the check
    // is the relative l2 error against 4 sigma of random roundings: 4 * 2^-11 / sqrt(3) * sqrt(2) = 1.6e-3. A
    // wrong layout or padding gives errors of order 1. Strided (the encoder's downsampling) and padded shapes too.
    gpu().set_gemm_precision(GemmPrecision::BF16);
    std::mt19937_64 rng(13);
    struct Case {
        Shape x;
        int64_t O, k;
        std::array<int64_t, 3> stride, pad;
    };
    for (const Case& c :
         {Case{{1, 64, 8, 36, 42}, 64, 3, {1, 1, 1}, {0, 0, 0}}, Case{{1, 32, 5, 20, 18}, 16, 3, {1, 2, 2}, {0, 1, 1}},
          Case{{2, 16, 3, 9, 11}, 8, 1, {1, 1, 1}, {0, 0, 0}}}) {
        SCOPED_TRACE(c.x[1]);
        const Tensor x = randn(c.x, rng);
        const Tensor w = randn({c.O, c.x[1], c.k, c.k, c.k}, rng, 0.0, 0.05), b = randn({c.O}, rng);
        Shape ys = {c.x[0], c.O, 0, 0, 0};
        for (int a = 0; a < 3; ++a)
            ys[size_t(2 + a)] = (c.x[size_t(2 + a)] + 2 * c.pad[size_t(a)] - c.k) / c.stride[size_t(a)] + 1;
        Tensor want = Tensor::empty(ys, DType::F32);
        cpu().conv3d(x, w, &b, c.stride, c.pad, want);
        gpu().set_conv_impl(CudaImpl::Cudnn);
        EXPECT_EQ(gpu().conv_path(), ConvPath::Cudnn) << gpu().cudnn_status();
        Tensor y = gpu_out(want.shape());
        const Tensor wd = up(w), bd = up(b);
        gpu().conv3d(up(x), wd, &bd, c.stride, c.pad, y);
        EXPECT_LE(relative_l2(down(y), want), 1.6e-3);
        // The switch: the kernel computes the same shape in f32.
        gpu().set_conv_impl(CudaImpl::Kernel);
        EXPECT_EQ(gpu().conv_path(), ConvPath::Kernel);
        Tensor yk = gpu_out(want.shape());
        gpu().conv3d(up(x), wd, &bd, c.stride, c.pad, yk);
        EXPECT_LE(relative_l2(down(yk), want), 1e-5);
    }
}

}  // namespace
