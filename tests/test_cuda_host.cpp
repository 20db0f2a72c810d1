// The CUDA backend's host-side rules, tested on the CPU (no GPU, no CUDA header): what a cuBLASLt plan is keyed
// on, how GEMM scratch is cut into row blocks, the device allocator's charging of block bytes (its block cache,
// shared with the host allocator, is tested in test_allocator.cpp), the staging ring's slot cycling, the kernels'
// 32-bit index math and fused QK-norm/RoPE element logic, and the cuDNN descriptors' shapes and strides. The
// GPU code calls exactly these functions, so a failure here is a failure there.
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <cstring>
#include <random>
#include <set>

#include "backends/cpu/cpu_backend.h"
#include "backends/cuda/attention_tiling.h"
#include "backends/cuda/cudnn_plan.h"
#include "backends/cuda/gemm_plan.h"
#include "backends/cuda/index_math.h"
#include "backends/cuda/qk_norm_rope.h"
#include "backends/cuda/staging_ring.h"
#include "core/allocator.h"
#include "core/block_cache.h"
#include "core/error.h"
#include "core/virtual_allocator.h"

namespace {

using namespace sr;

const void* at(uintptr_t address) {
    return reinterpret_cast<const void*>(address);
}

TEST(CudaGemmPlan, PointerAlignment) {
    EXPECT_EQ(pointer_alignment(at(0x10000)), 256);
    EXPECT_EQ(pointer_alignment(at(0x10080)), 128);
    EXPECT_EQ(pointer_alignment(at(0x10010)), 16);
    EXPECT_EQ(pointer_alignment(at(0x10004)), 4);
    EXPECT_EQ(pointer_alignment(at(0x10002)), 2);
    EXPECT_EQ(pointer_alignment(at(0x10001)), 1);
}

TEST(CudaGemmPlan, KeyHoldsEveryPointersAlignment) {
    const GemmShape shape{64, 3072, 3072, 3072, 0, 0};
    const auto base = gemm_plan_key(shape, at(0x1000), at(0x2000), at(0x3000), at(0x4000));
    EXPECT_TRUE(base.bias);
    EXPECT_EQ(base.align_bias, 256);
    // A bias slice 4 floats in (a column block of a fused projection) must not reuse a plan chosen for 256.
    const auto bias_view = gemm_plan_key(shape, at(0x1000), at(0x2000), at(0x3000), at(0x4010));
    EXPECT_EQ(bias_view.align_bias, 16);
    EXPECT_NE(base, bias_view);
    EXPECT_NE(base, gemm_plan_key(shape, at(0x1008), at(0x2000), at(0x3000), at(0x4000)));
    EXPECT_NE(base, gemm_plan_key(shape, at(0x1000), at(0x2008), at(0x3000), at(0x4000)));
    EXPECT_NE(base, gemm_plan_key(shape, at(0x1000), at(0x2000), at(0x3008), at(0x4000)));
    // Without a bias: no bias alignment, and a different key from the biased one.
    const auto no_bias = gemm_plan_key(shape, at(0x1000), at(0x2000), at(0x3000), nullptr);
    EXPECT_FALSE(no_bias.bias);
    EXPECT_EQ(no_bias.align_bias, 0);
    EXPECT_NE(base, no_bias);
    // Same pointers' alignment, other addresses: the same plan.
    EXPECT_EQ(base, gemm_plan_key(shape, at(0x9000), at(0xa000), at(0xb000), at(0xc000)));
    // Shape and types are in the key.
    GemmShape other = shape;
    other.ldy = 3 * 3072;
    EXPECT_NE(base, gemm_plan_key(other, at(0x1000), at(0x2000), at(0x3000), at(0x4000)));
    other = shape;
    other.ab_type = 1;
    EXPECT_NE(base, gemm_plan_key(other, at(0x1000), at(0x2000), at(0x3000), at(0x4000)));
    std::set<GemmPlanKey> keys{base, bias_view, no_bias, base};
    EXPECT_EQ(keys.size(), 3u);
}

TEST(CudaGemmPlan, ScratchChunksStayInsideTheBound) {
    const int64_t scratch = int64_t(64) << 20;
    // The model's shapes: 51,456 tokens, K = 3072 (f32 rows) and K = 12288 (the MLP's down projection).
    for (const int64_t K : {int64_t(3072), int64_t(12288), int64_t(3), int64_t(1) << 17}) {
        const int64_t bytes_per_row = K * 4;
        const int64_t rows = scratch_chunk_rows(51456, bytes_per_row, scratch);
        EXPECT_EQ(rows % 64, 0) << K;
        EXPECT_GE(rows, 64);
        if (64 * bytes_per_row <= scratch) {
            EXPECT_LE(rows * bytes_per_row, scratch) << K;
        }
        // Every row is covered exactly once by the blocks.
        int64_t covered = 0;
        for (int64_t r0 = 0; r0 < 51456; r0 += rows) covered += std::min(rows, 51456 - r0);
        EXPECT_EQ(covered, 51456);
    }
    EXPECT_EQ(scratch_chunk_rows(10, 4, scratch), 10);  // fewer rows than a block
    EXPECT_EQ(scratch_chunk_rows(0, 4, scratch), 0);
}

constexpr size_t kMiB = size_t(1) << 20;

// An allocator that serves requests with 1 KiB blocks, as the CUDA allocator serves them with its rounded
// blocks: the base class must count the blocks' bytes, against the budget, and give them back.
class RoundingAllocator final : public Allocator {
public:
    explicit RoundingAllocator(size_t budget) : Allocator("rounding", budget) {}
    Device device() const override { return Device::cpu(); }

protected:
    void* raw_allocate(size_t bytes) override {
        const size_t block = (bytes + 1023) / 1024 * 1024;
        if (!charge_extra(block - bytes)) return nullptr;
        return ::operator new(block);
    }
    void raw_deallocate(void* p, size_t bytes) override {
        uncharge_extra((bytes + 1023) / 1024 * 1024 - bytes);
        ::operator delete(p);
    }
};

TEST(CudaBlockCache, BudgetCountsBlockBytes) {
    RoundingAllocator a(4096);
    void* p = a.allocate(1, "one byte");
    EXPECT_EQ(a.in_use_bytes(), 1024u);
    void* q = a.allocate(2049, "three blocks");
    EXPECT_EQ(a.in_use_bytes(), 4096u);
    EXPECT_EQ(a.peak_bytes(), 4096u);
    // One more byte fits a request count (2050 + 1) but not a block count.
    EXPECT_THROW(a.allocate(1, "past the budget"), OutOfMemoryError);
    EXPECT_EQ(a.in_use_bytes(), 4096u);
    a.deallocate(q, 2049);
    a.deallocate(p, 1);
    EXPECT_EQ(a.in_use_bytes(), 0u);
}

TEST(CudaBlockCache, PlansChargeTheDevicesRounding) {
    // A memory plan for a CUDA device runs on a VirtualAllocator charged as the caching allocator charges.
    VirtualAllocator plan("plan", 0, Device{DeviceType::CUDA, 0}, &BlockCache::round_size);
    EXPECT_EQ(plan.block_bytes(kMiB + 1), 2 * kMiB);
    void* p = plan.allocate(kMiB + 1, "activation");
    void* q = plan.allocate(100, "small");
    EXPECT_EQ(plan.in_use_bytes(), 2 * kMiB + 512);
    plan.deallocate(q, 100);
    plan.deallocate(p, kMiB + 1);
    EXPECT_EQ(plan.in_use_bytes(), 0u);
    EXPECT_EQ(plan.peak_bytes(), 2 * kMiB + 512);
    VirtualAllocator plain("plan");  // the simulated device: no rounding
    EXPECT_EQ(plain.block_bytes(kMiB + 1), kMiB + 1);
}

struct Chunk {
    size_t offset, length;
    int slot;
    bool wait;
};

std::vector<Chunk> chunks_of(StagingRing& ring, size_t bytes) {
    std::vector<Chunk> out;
    ring.for_each_chunk(bytes, [&](size_t off, size_t len, int slot, bool wait) {
        out.push_back({off, len, slot, wait});
    });
    return out;
}

TEST(CudaStagingRing, SlotsCycleAcrossCopies) {
    StagingRing ring(2, 100);
    // Three small copies: slots 0, 1, 0 — the second does not wait for the first's DMA; only the third reuses
    // a slot (and must wait for it).
    auto a = chunks_of(ring, 10), b = chunks_of(ring, 10), c = chunks_of(ring, 10);
    ASSERT_EQ(a.size(), 1u);
    EXPECT_EQ(a[0].slot, 0);
    EXPECT_FALSE(a[0].wait);
    EXPECT_EQ(b[0].slot, 1);
    EXPECT_FALSE(b[0].wait);
    EXPECT_EQ(c[0].slot, 0);
    EXPECT_TRUE(c[0].wait);
    // A copy of 250 bytes starts where the ring is (slot 1): chunks 100, 100, 50 in slots 1, 0, 1.
    auto d = chunks_of(ring, 250);
    ASSERT_EQ(d.size(), 3u);
    EXPECT_EQ(d[0].slot, 1);
    EXPECT_EQ(d[1].slot, 0);
    EXPECT_EQ(d[2].slot, 1);
    EXPECT_EQ(d[2].offset, 200u);
    EXPECT_EQ(d[2].length, 50u);
    size_t total = 0;
    for (const Chunk& ch : d) total += ch.length;
    EXPECT_EQ(total, 250u);
    EXPECT_EQ(ring.cursor(), 0);
    EXPECT_TRUE(chunks_of(ring, 0).empty());  // nothing to copy: the cursor stays
    EXPECT_EQ(ring.cursor(), 0);
}

TEST(CudaStagingRing, ThreeSlotsAndExactMultiples) {
    StagingRing ring(3, 64);
    auto a = chunks_of(ring, 128);  // exactly two chunks
    ASSERT_EQ(a.size(), 2u);
    EXPECT_EQ(a[1].length, 64u);
    auto b = chunks_of(ring, 64);
    EXPECT_EQ(b[0].slot, 2);
    EXPECT_FALSE(b[0].wait);  // the third slot is fresh
    auto c = chunks_of(ring, 1);
    EXPECT_EQ(c[0].slot, 0);
    EXPECT_TRUE(c[0].wait);
}

TEST(CudaIndexMath, FastDivmodIsExact) {
    using cuda::FastDivmod;
    std::mt19937 rng(7);
    std::uniform_int_distribution<uint32_t> any(0, uint32_t(cuda::kMaxIndex32));
    auto check = [&](uint32_t d) {
        const FastDivmod f(d);
        const uint32_t edges[] = {0,
                                  1,
                                  d - 1,
                                  d,
                                  d + 1,
                                  2 * d - 1,
                                  uint32_t(cuda::kMaxIndex32),
                                  uint32_t(cuda::kMaxIndex32) - 1,
                                  uint32_t(cuda::kMaxIndex32) / d * d};
        for (uint32_t n : edges) {
            if (n > uint32_t(cuda::kMaxIndex32)) continue;
            uint32_t q, r;
            f.divmod(n, q, r);
            ASSERT_EQ(q, n / d) << n << " / " << d;
            ASSERT_EQ(r, n % d) << n << " % " << d;
        }
        for (int t = 0; t < 200; ++t) {
            const uint32_t n = any(rng);
            ASSERT_EQ(f.div(n), n / d) << n << " / " << d;
        }
    };
    for (uint32_t d = 1; d <= 4096; ++d) check(d);
    // The model's divisors (51,456 tokens, 24 heads, 64 pairs, 3072 wide, 27-element windows) and large ones.
    for (uint32_t d : {51456u, 24u * 51456u, 3072u, 27u, 1u << 30, (1u << 31) - 1, 1000003u, 65536u * 3u}) check(d);
}

TEST(CudaIndexMath, StridedOffsetsMatchTheDirectDecomposition) {
    // The strided copy's 32-bit offsets against 64-bit division, for permuted and sliced views up to rank 8.
    std::mt19937 rng(3);
    for (int trial = 0; trial < 200; ++trial) {
        const int rank = 1 + int(rng() % 8);
        cuda::StridedIndex32<8> ix;
        ix.rank = rank;
        int64_t shape[8], sa[8], sb[8], n = 1;
        for (int d = 0; d < rank; ++d) {
            shape[d] = 1 + int64_t(rng() % 7);
            sa[d] = int64_t(rng() % 5000);
            sb[d] = int64_t(rng() % 5000);
            n *= shape[d];
            ix.dims[d] = cuda::FastDivmod(uint32_t(shape[d]));
            ix.a_stride[d] = sa[d];
            ix.b_stride[d] = sb[d];
        }
        for (int64_t i = 0; i < n; i += 1 + n / 97) {
            int64_t rem = i, ea = 0, eb = 0;
            for (int d = rank - 1; d >= 0; --d) {
                ea += (rem % shape[d]) * sa[d];
                eb += (rem % shape[d]) * sb[d];
                rem /= shape[d];
            }
            int64_t a, b;
            ix.offsets(uint32_t(i), a, b);
            ASSERT_EQ(a, ea) << "trial " << trial << " i " << i;
            ASSERT_EQ(b, eb) << "trial " << trial << " i " << i;
        }
    }
}

TEST(CudaIndexMath, ConvWindowDecomposition) {
    // conv3d's gather: k -> (c, a, i, j) by three 32-bit divmods equals the 64-bit formula it replaced.
    for (const auto& [C, kt, kh, kw] : {std::array<uint32_t, 4>{512, 3, 3, 3}, std::array<uint32_t, 4>{16, 1, 1, 1},
                                        std::array<uint32_t, 4>{3, 2, 3, 4}}) {
        const cuda::FastDivmod window(kt * kh * kw), khw(kh * kw), by_kw(kw);
        for (uint32_t k = 0; k < C * kt * kh * kw; ++k) {
            uint32_t c, r, a, rhw, i, j;
            window.divmod(k, c, r);
            khw.divmod(r, a, rhw);
            by_kw.divmod(rhw, i, j);
            const int64_t k64 = k, win = kt * kh * kw;
            ASSERT_EQ(c, uint32_t(k64 / win));
            ASSERT_EQ(a, uint32_t((k64 % win) / (kh * kw)));
            ASSERT_EQ(i, uint32_t(((k64 % win) / kw) % kh));
            ASSERT_EQ(j, uint32_t((k64 % win) % kw));
        }
    }
    EXPECT_TRUE(cuda::fits_32(cuda::kMaxIndex32));
    EXPECT_FALSE(cuda::fits_32(cuda::kMaxIndex32 + 1));
    EXPECT_FALSE(cuda::fits_32(-1));
}

TEST(CudaCudnnPlan, AttentionDispatch) {
    AttentionCase c;
    c.bf16 = true;
    c.head_dim = 128;
    c.cudnn_usable = true;
    // The joint attention in bf16: cuDNN by default, the kernel when switched off or unusable.
    EXPECT_EQ(choose_attention_path(CudaImpl::Cudnn, c), AttentionPath::CudnnSdpa);
    EXPECT_EQ(choose_attention_path(CudaImpl::Kernel, c), AttentionPath::Bf16Kernel);
    AttentionCase no_cudnn = c;
    no_cudnn.cudnn_usable = false;
    EXPECT_EQ(choose_attention_path(CudaImpl::Cudnn, no_cudnn), AttentionPath::Bf16Kernel);
    // Masks the SDPA call is not given: the kernels.
    AttentionCase dense = c;
    dense.dense_mask = true;
    EXPECT_EQ(choose_attention_path(CudaImpl::Cudnn, dense), AttentionPath::Bf16Kernel);
    AttentionCase causal = c;
    causal.causal = true;
    EXPECT_EQ(choose_attention_path(CudaImpl::Cudnn, causal), AttentionPath::Bf16Kernel);
    // f32 precision is the parity path whatever the switch says.
    AttentionCase f32 = c;
    f32.bf16 = false;
    EXPECT_EQ(choose_attention_path(CudaImpl::Cudnn, f32), AttentionPath::F32Kernel);
    // Head dims: CLIP's 64 goes to cuDNN (multiple of 8, <= 128); the VAE's 512 and odd ones to the f32 kernel.
    AttentionCase d64 = c;
    d64.head_dim = 64;
    EXPECT_EQ(choose_attention_path(CudaImpl::Cudnn, d64), AttentionPath::CudnnSdpa);
    EXPECT_EQ(choose_attention_path(CudaImpl::Kernel, d64), AttentionPath::F32Kernel);
    AttentionCase d512 = c;
    d512.head_dim = 512;
    EXPECT_EQ(choose_attention_path(CudaImpl::Cudnn, d512), AttentionPath::F32Kernel);
    AttentionCase d100 = c;
    d100.head_dim = 100;
    EXPECT_EQ(choose_attention_path(CudaImpl::Cudnn, d100), AttentionPath::F32Kernel);

    CudaImpl impl = CudaImpl::Kernel;
    EXPECT_TRUE(parse_cuda_impl("cudnn", impl));
    EXPECT_EQ(impl, CudaImpl::Cudnn);
    EXPECT_TRUE(parse_cuda_impl("kernel", impl));
    EXPECT_EQ(impl, CudaImpl::Kernel);
    EXPECT_FALSE(parse_cuda_impl("CUDNN", impl));
    EXPECT_FALSE(parse_cuda_impl("", impl));
    EXPECT_STREQ(cuda_impl_name(CudaImpl::Cudnn), "cudnn");
}

TEST(CudaCudnnPlan, HeadsPerGroupKeepTheScratchBound) {
    const int64_t scratch = int64_t(256) << 20, L = 51456, D = 128;
    // The kernel: q, k, v copies (3 x L x D x 2 bytes = 37.7 MiB a head): 6 heads. cuDNN adds its output: 5.
    const int64_t kernel = attention_heads_per_group(24, L, L, D, scratch, false);
    const int64_t cudnn = attention_heads_per_group(24, L, L, D, scratch, true);
    EXPECT_EQ(kernel, 6);
    EXPECT_EQ(cudnn, 5);
    EXPECT_LE(cudnn * 4 * L * D * 2, scratch);
    EXPECT_LE(kernel * 3 * L * D * 2, scratch);
    // Short sequences: every head at once; enormous ones: still one head.
    EXPECT_EQ(attention_heads_per_group(24, 256, 256, 128, scratch, true), 24);
    EXPECT_EQ(attention_heads_per_group(24, 10000000, 10000000, 128, scratch, true), 1);
}

TEST(CudaCudnnPlan, SdpaShapesAndStrides) {
    // 5 heads, 51,456 queries, 51,356 valid keys in buffers cut to them, head dim 128: BHSD, contiguous.
    const SdpaPlanKey key{5, 51456, 51356, 51356, 128};
    const SdpaShapes s = sdpa_shapes(key);
    EXPECT_EQ(s.q.dims, (std::array<int64_t, 4>{1, 5, 51456, 128}));
    EXPECT_EQ(s.q.strides, (std::array<int64_t, 4>{5 * 51456 * 128, 51456 * 128, 128, 1}));
    EXPECT_EQ(s.o.dims, s.q.dims);
    EXPECT_EQ(s.o.strides, s.q.strides);
    EXPECT_EQ(s.k.dims, (std::array<int64_t, 4>{1, 5, 51356, 128}));
    EXPECT_EQ(s.k.strides, (std::array<int64_t, 4>{5 * 51356 * 128, 51356 * 128, 128, 1}));
    EXPECT_EQ(s.v.dims, s.k.dims);
    // Keys in a buffer with more rows per head than are valid: the head stride follows the buffer.
    const SdpaShapes cut = sdpa_shapes({2, 10, 7, 12, 64});
    EXPECT_EQ(cut.k.dims, (std::array<int64_t, 4>{1, 2, 7, 64}));
    EXPECT_EQ(cut.k.strides, (std::array<int64_t, 4>{2 * 12 * 64, 12 * 64, 64, 1}));
    // Every element a descriptor addresses lies inside its buffer.
    for (const SdpaTensorLayout* l : {&s.q, &s.k, &s.v, &s.o, &cut.k}) {
        int64_t last = 0;
        for (int i = 0; i < 4; ++i) last += (l->dims[size_t(i)] - 1) * l->strides[size_t(i)];
        EXPECT_LT(last, l->strides[0] * l->dims[0]);
    }
    // Plan keys tell shapes apart (the two CFG rows' text lengths give two plans).
    EXPECT_NE(SdpaPlanKey({5, 100, 90, 90, 128}), SdpaPlanKey({5, 100, 80, 80, 128}));
    EXPECT_EQ(SdpaPlanKey({5, 100, 90, 90, 128}), SdpaPlanKey({5, 100, 90, 90, 128}));
}

TEST(CudaCudnnPlan, ConvDispatchAndDescriptors) {
    EXPECT_EQ(choose_conv_path(CudaImpl::Cudnn, true, true), ConvPath::Cudnn);
    EXPECT_EQ(choose_conv_path(CudaImpl::Kernel, true, true), ConvPath::Kernel);
    EXPECT_EQ(choose_conv_path(CudaImpl::Cudnn, false, true), ConvPath::Kernel);  // f32: the parity kernel
    EXPECT_EQ(choose_conv_path(CudaImpl::Cudnn, true, false), ConvPath::Kernel);

    // A decoder conv after the causal pad: [1, 512, 6, 70, 122], 3x3x3, no padding -> [1, 512, 4, 68, 120].
    Conv3dGeometry g{1, 512, 6, 70, 122, 512, 3, 3, 3, {1, 1, 1}, {0, 0, 0}};
    CudnnConvDims d;
    ASSERT_TRUE(cudnn_conv_dims(g, d));
    EXPECT_EQ(d.x_dims, (std::array<int, 5>{1, 512, 6, 70, 122}));
    EXPECT_EQ(d.x_strides, (std::array<int, 5>{512 * 6 * 70 * 122, 6 * 70 * 122, 70 * 122, 122, 1}));
    EXPECT_EQ(d.w_dims, (std::array<int, 5>{512, 512, 3, 3, 3}));
    EXPECT_EQ(d.y_dims, (std::array<int, 5>{1, 512, 4, 68, 120}));
    EXPECT_EQ(d.y_strides, (std::array<int, 5>{512 * 4 * 68 * 120, 4 * 68 * 120, 68 * 120, 120, 1}));
    EXPECT_EQ(d.dilation, (std::array<int, 3>{1, 1, 1}));
    // The encoder's downsampling: stride 2 in space with padding 1 (as the CPU op's formula).
    Conv3dGeometry down{1, 128, 5, 64, 64, 128, 3, 3, 3, {1, 2, 2}, {0, 1, 1}};
    ASSERT_TRUE(cudnn_conv_dims(down, d));
    EXPECT_EQ(d.y_dims, (std::array<int, 5>{1, 128, 3, 32, 32}));
    EXPECT_EQ(d.stride, (std::array<int, 3>{1, 2, 2}));
    EXPECT_EQ(d.pad, (std::array<int, 3>{0, 1, 1}));
    // Shapes cuDNN's int descriptors cannot hold, and empty outputs, are refused (the kernel runs them).
    Conv3dGeometry huge{1, 512, 100, 600, 600, 512, 3, 3, 3, {1, 1, 1}, {1, 1, 1}};  // 1.8e10 elements
    EXPECT_FALSE(cudnn_conv_dims(huge, d));
    Conv3dGeometry empty{1, 4, 2, 8, 8, 4, 3, 3, 3, {1, 1, 1}, {0, 0, 0}};  // 2 frames < 3-frame kernel
    EXPECT_FALSE(cudnn_conv_dims(empty, d));
}

// ----------------------------------------------------------------------------------------------------------
// The fused QK-RMSNorm + RoPE + bf16 kernel's element logic (qk_norm_rope.h) against the CPU backend's rms_norm
// then rope_interleaved, which is what the attention's QkNormRope means (ops.h).

float bf16_value(uint16_t bits) {
    const uint32_t u = uint32_t(bits) << 16;
    float f;
    std::memcpy(&f, &u, sizeof f);
    return f;
}

// HunyuanVideo-like tables [L, 128]: each frequency at both positions of its pair.
void rope_tables(int64_t L, Tensor& cos, Tensor& sin) {
    const int64_t D = cuda::kQkNormRopeHeadDim;
    cos = Tensor::empty({L, D}, DType::F32);
    sin = Tensor::empty({L, D}, DType::F32);
    for (int64_t l = 0; l < L; ++l)
        for (int64_t i = 0; i < D; i += 2) {
            const double angle = double(l * 7 + 3) * std::pow(256.0, -double(i % 56) / 56.0);
            cos.data<float>()[l * D + i] = cos.data<float>()[l * D + i + 1] = float(std::cos(angle));
            sin.data<float>()[l * D + i] = sin.data<float>()[l * D + i + 1] = float(std::sin(angle));
        }
}

TEST(CudaQkNormRope, ElementLogicMatchesTheCpuOps) {
    // Rows of very different scales (the projections' rows differ by orders of magnitude), two weights (video
    // and text), rotated and plain rows.
    const int64_t D = cuda::kQkNormRopeHeadDim, L = 300, n_rope = 200;
    const float eps = 1e-6f;
    std::mt19937_64 rng(11);
    std::normal_distribution<double> normal(0, 1);
    std::uniform_real_distribution<double> log_scale(-6, 6);
    Tensor x = Tensor::empty({L, D}, DType::F32);
    for (int64_t l = 0; l < L; ++l) {
        const double s = std::exp2(log_scale(rng));
        for (int64_t i = 0; i < D; ++i) x.data<float>()[l * D + i] = float(s * normal(rng));
    }
    Tensor w[2] = {Tensor::empty({D}, DType::BF16), Tensor::empty({D}, DType::BF16)};
    for (Tensor& t : w) {
        Tensor f = Tensor::empty({D}, DType::F32);
        for (int64_t i = 0; i < D; ++i) f.data<float>()[i] = float(1.0 + 0.3 * normal(rng));
        t = f.to(DType::BF16);  // the checkpoint's dtype
    }
    Tensor cos, sin;
    rope_tables(n_rope, cos, sin);

    // The CPU ops: rms_norm per segment with its weight, then rope on the first n_rope rows ([1, n_rope, 1, D]).
    Tensor normed = Tensor::empty({L, D}, DType::F32);
    for (int s = 0; s < 2; ++s) {
        const int64_t l0 = s == 0 ? 0 : n_rope, l1 = s == 0 ? n_rope : L;
        Tensor dst = normed.slice(0, l0, l1);
        cpu_backend().rms_norm(x.slice(0, l0, l1), &w[s], eps, dst);
    }
    Tensor want = normed.clone();
    {
        Tensor rotated = want.slice(0, 0, n_rope).view({1, n_rope, 1, D});
        cpu_backend().rope_interleaved(rotated, cos, sin);
    }

    // Tolerance, from f32 and bf16 rounding. The fused row forms 1/rms from an f32 sum of 128 positive squares
    // (a 7-level tree: relative error <= 7u) plus the mean, eps, sqrt and division (4u), where the CPU sums in
    // double and rounds once: the two inverses differ by <= 12u relative (u = 2^-24). The products (x inv) w then
    // differ by <= 14u |n|, and the rotation n0 c0 - n1 s0 (contracted to an FMA or not on either side) by
    // <= 16u (|n0 c0| + |n1 s0|) =: E. Rounding to bf16 (8 significant bits, round to nearest) moves the value
    // by <= 2^-8 of its magnitude. So |fused - cpu| <= 2^-8 |cpu| + (1 + 2^-8) E; we allow 2^-8 |cpu| + 32u S
    // with S = |n0 c0| + |n1 s0| (S = |n0| for a row that is not rotated). A wrong pair, weight, sign or row
    // statistic is off by far more.
    constexpr double kU = 0x1p-24;
    int64_t exact = 0;
    std::array<uint16_t, 128> row{};
    std::vector<float> w_f32[2];
    for (int s = 0; s < 2; ++s) {
        const Tensor f = w[s].to(DType::F32);
        w_f32[s].assign(f.data<float>(), f.data<float>() + D);
    }
    for (int64_t l = 0; l < L; ++l) {
        const bool rotate = l < n_rope;
        cuda::qk_norm_rope_row_reference(x.data<float>() + l * D, w_f32[rotate ? 0 : 1].data(),
                                         rotate ? cos.data<float>() + l * D : nullptr,
                                         rotate ? sin.data<float>() + l * D : nullptr, rotate, eps, row.data());
        for (int64_t i = 0; i < D; ++i) {
            const int64_t p = i - i % 2, other = i % 2 == 0 ? i + 1 : i - 1;
            const float* n = normed.data<float>() + l * D;
            const double S = rotate ? std::fabs(double(n[i]) * cos.data<float>()[l * D + i]) +
                                          std::fabs(double(n[other]) * sin.data<float>()[l * D + i])
                                    : std::fabs(double(n[i]));
            const double r = want.data<float>()[l * D + i], got = bf16_value(row[size_t(i)]);
            ASSERT_LE(std::fabs(got - r), 0x1p-8 * std::fabs(r) + 32 * kU * S)
                << "row " << l << " element " << i << " (pair " << p << ")" << (rotate ? " rotated" : "");
            exact += row[size_t(i)] == cuda::qk_bf16_bits(float(r));
        }
    }
    // Within bf16 rounding and almost always bit for bit: only values whose f32 results straddle a bf16 rounding
    // boundary may differ (by one bf16 ulp), a few in a thousand at most.
    EXPECT_GE(double(exact), 0.99 * double(L * D)) << exact << " of " << L * D << " bit-identical";
}

TEST(CudaQkNormRope, Bf16RoundingIsNearestEven) {
    // The packing's rounding against the library's f32 -> bf16 conversion (core/dtype), on ties, NaN, infinities
    // and random values.
    std::vector<float> v = {0.0f, -0.0f, 1.0f, 1.00390625f, 1.01171875f, -3.3e38f, 1e-40f, INFINITY, -INFINITY, NAN};
    std::mt19937 rng(3);
    std::uniform_int_distribution<uint32_t> bits;
    for (int i = 0; i < 10000; ++i) {
        const uint32_t u = bits(rng);
        float f;
        std::memcpy(&f, &u, sizeof f);
        v.push_back(f);
    }
    Tensor t = Tensor::empty({int64_t(v.size())}, DType::F32);
    std::copy(v.begin(), v.end(), t.data<float>());
    const Tensor b = t.to(DType::BF16);
    for (size_t i = 0; i < v.size(); ++i) ASSERT_EQ(cuda::qk_bf16_bits(v[i]), b.data<uint16_t>()[i]) << v[i];
}

TEST(CudaQkNormRope, CpuAttentionAppliesItAsTheSeparateOps) {
    // The attention op's QkNormRope on the CPU backend (the reference the CUDA tests compare to) is bit for bit
    // rms_norm per segment, rope on the first n_rope tokens, then the attention: the transformer's results do not
    // move by handing the prologue to the attention. Under BF16 precision too, where on an AMX or AVX-512 BF16
    // processor the prologue runs fused into the flash attention's operand packing (attention_flash_bf16.cpp).
    const int64_t B = 2, L = 70, H = 3, D = 128, n_rope = 50;
    std::mt19937_64 rng(12);
    std::normal_distribution<double> normal(0, 1);
    auto randn = [&](const Shape& s, double scale) {
        Tensor t = Tensor::empty(s, DType::F32);
        for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = float(scale * normal(rng));
        return t;
    };
    const Tensor q = randn({B, L, H, D}, 3.0), k = randn({B, L, H, D}, 0.5), v = randn({B, L, H, D}, 1.0);
    const Tensor wq0 = randn({D}, 1.0), wq1 = randn({D}, 1.0), wk0 = randn({D}, 1.0), wk1 = randn({D}, 1.0);
    Tensor cos, sin;
    rope_tables(n_rope, cos, sin);
    AttentionMask mask;
    mask.kv_len = {L, 60};
    const float scale = float(1.0 / std::sqrt(double(D)));
    CpuBackend& be = cpu_backend();

    auto unfused = [&](const Tensor& x, const Tensor& w0, const Tensor& w1) {
        Tensor y = Tensor::empty({B, L, H, D}, DType::F32);
        for (int64_t b = 0; b < B; ++b) {
            Tensor d0 = y.select(0, b).slice(0, 0, n_rope).view({-1, D});
            be.rms_norm(x.select(0, b).slice(0, 0, n_rope).view({-1, D}), &w0, 1e-6f, d0);
            Tensor d1 = y.select(0, b).slice(0, n_rope, L).view({-1, D});
            be.rms_norm(x.select(0, b).slice(0, n_rope, L).view({-1, D}), &w1, 1e-6f, d1);
        }
        Tensor rotated = y.slice(1, 0, n_rope);
        be.rope_interleaved(rotated, cos, sin);
        return y;
    };
    const Tensor qn = unfused(q, wq0, wq1), kn = unfused(k, wk0, wk1);
    for (const GemmPrecision precision : {GemmPrecision::F32, GemmPrecision::BF16}) {
        SCOPED_TRACE(precision == GemmPrecision::BF16 ? "bf16" : "f32");
        be.set_gemm_precision(precision);
        Tensor want = Tensor::empty({B, L, H, D}, DType::F32), got = Tensor::empty({B, L, H, D}, DType::F32);
        Tensor want_heads = want.permute({0, 2, 1, 3}), got_heads = got.permute({0, 2, 1, 3});
        be.attention(qn.permute({0, 2, 1, 3}), kn.permute({0, 2, 1, 3}), v.permute({0, 2, 1, 3}), want_heads, mask,
                     scale);
        QkNormRope qk;
        qk.q_weight = {&wq0, &wq1};
        qk.k_weight = {&wk0, &wk1};
        qk.cos = &cos;
        qk.sin = &sin;
        qk.n_rope = n_rope;
        be.attention(q.permute({0, 2, 1, 3}), k.permute({0, 2, 1, 3}), v.permute({0, 2, 1, 3}), got_heads, mask, scale,
                     qk);
        EXPECT_EQ(std::memcmp(got.data<float>(), want.data<float>(), size_t(got.numel()) * sizeof(float)), 0);
    }
    be.set_gemm_precision(GemmPrecision::F32);
}

TEST(CudaCudnnPlan, HeadsPerGroupWithTheF32QkFallback) {
    // The unfused prologue's f32 scratch (normalized q and k, one staging buffer) joins the bf16 copies within
    // the bound; the f32 path alone (not packed) groups heads only when it needs that scratch.
    const int64_t scratch = int64_t(256) << 20, L = 51456, D = 128;
    const int64_t both = attention_heads_per_group(24, L, L, D, scratch, false, true, true);
    EXPECT_LE(both * (3 * L * D * 2 + 3 * L * D * 4), scratch);
    EXPECT_GT((both + 1) * (3 * L * D * 2 + 3 * L * D * 4), scratch);
    const int64_t f32_only = attention_heads_per_group(24, L, L, D, scratch, false, false, true);
    EXPECT_LE(f32_only * 3 * L * D * 4, scratch);
    EXPECT_GT((f32_only + 1) * 3 * L * D * 4, scratch);
    EXPECT_EQ(attention_heads_per_group(24, L, L, D, scratch, false, false, false), 24);
}

// ----------------------------------------------------------------------------------------------------------
// The bf16 attention kernel's tiling (attention_tiling.h).

TEST(CudaAttentionTiling, SwizzleIsAPermutationAndConflictFree) {
    using namespace sr::cuda;
    for (int row = 0; row < kAttnBlockRows; ++row) {
        std::set<int> seen;
        for (int col = 0; col < kAttnHeadDim; ++col) {
            const int at = attn_swizzle(row, col);
            ASSERT_GE(at, row * kAttnHeadDim);
            ASSERT_LT(at, (row + 1) * kAttnHeadDim);
            ASSERT_EQ(at % 8, col % 8);  // 16-byte chunks stay whole: cp.async and ldmatrix move them as one
            seen.insert(at);
        }
        ASSERT_EQ(seen.size(), size_t(kAttnHeadDim));
    }
    // One ldmatrix 8x8 read: eight consecutive rows (from a multiple of 8), one logical chunk column. Its eight
    // 16-byte rows must sit in eight different chunk positions (4 banks each: 32 banks, no conflict).
    for (int row0 = 0; row0 < kAttnBlockRows; row0 += 8)
        for (int chunk = 0; chunk < kAttnHeadDim / 8; ++chunk) {
            std::set<int> banks;
            for (int r = row0; r < row0 + 8; ++r) banks.insert((attn_swizzle(r, chunk * 8) % kAttnHeadDim) / 8 % 8);
            ASSERT_EQ(banks.size(), 8u) << "rows " << row0 << "+, chunk " << chunk;
        }
}

TEST(CudaAttentionTiling, MaskOnlyWhereAKeyOrRowIsInvalid) {
    // Brute force over shapes, padding and causal offsets: every thread's four rows, every tile its block visits.
    // An interior tile must hold only valid (row, key) pairs; a block must visit every key any of its rows sees;
    // and without padding or causality only the last partial tile and the last rows are masked.
    using namespace sr::cuda;
    struct Case {
        int64_t lq, lk, kv_len;
        bool causal;
    };
    const std::vector<Case> cases = {{300, 300, 300, false}, {300, 300, 177, false}, {130, 2113, 2113, false},
                                     {351, 351, 351, true},  {100, 351, 351, true},  {70, 90, 0, false},
                                     {256, 256, 256, false}, {257, 513, 400, true},  {51456 % 997, 4096, 4000, false}};
    for (const Case& c : cases) {
        SCOPED_TRACE(::testing::Message() << c.lq << "x" << c.lk << " kv " << c.kv_len << (c.causal ? " causal" : ""));
        const int64_t kv_end = attn_kv_end(c.kv_len, c.lk), offset = c.lk - c.lq;
        int64_t masked_tiles = 0, tiles = 0;
        for (int64_t i0 = 0; i0 < c.lq; i0 += kAttnBlockRows) {
            const int64_t i_last = std::min<int64_t>(i0 + kAttnBlockRows, c.lq) - 1;
            const int64_t block_end = attn_row_key_end(i_last, kv_end, c.causal, offset);
            const int n_tiles = attn_tile_count(block_end);
            for (int warp = 0; warp < kAttnWarps; ++warp)
                for (int g = 0; g < 8; ++g) {
                    int64_t rows[4], ends[4], min_end = INT64_MAX;
                    for (int rr = 0; rr < 4; ++rr) {
                        rows[rr] = attn_fragment_row(i0, warp, g, rr);
                        ends[rr] = attn_row_key_end(rows[rr], kv_end, c.causal, offset);
                        min_end = std::min(min_end, ends[rr]);
                        if (rows[rr] < c.lq) {
                            ASSERT_LE(ends[rr], int64_t(n_tiles) * kAttnKeyTile);
                        }
                    }
                    // The kernel's own shortcut: the first row's end is the smallest, the last row the largest.
                    ASSERT_EQ(min_end, ends[0]);
                    ASSERT_EQ(*std::max_element(rows, rows + 4), rows[3]);
                    const bool rows_valid = rows[3] < c.lq;
                    for (int t = 0; t < n_tiles; ++t) {
                        const int64_t j0 = int64_t(t) * kAttnKeyTile;
                        const bool interior = attn_tile_is_interior(j0, min_end, rows_valid, false);
                        bool all_valid = true;
                        for (int rr = 0; rr < 4; ++rr)
                            for (int64_t j = j0; j < j0 + kAttnKeyTile; ++j)
                                all_valid = all_valid && rows[rr] < c.lq && j < ends[rr];
                        if (interior) {
                            ASSERT_TRUE(all_valid) << "tile " << t << " of block " << i0;
                        }
                        // Interior exactly when every pair is valid: no tile is masked without need.
                        ASSERT_EQ(interior, all_valid) << "tile " << t << " of block " << i0;
                        EXPECT_FALSE(attn_tile_is_interior(j0, min_end, rows_valid, true));  // a dense mask
                        ++tiles;
                        masked_tiles += !interior;
                    }
                }
        }
        if (!c.causal && c.kv_len == c.lk && c.lq % kAttnBlockRows == 0) {
            // Only the last key tile, and only when the keys do not fill it.
            const int64_t per_thread = c.lk % kAttnKeyTile == 0 ? 0 : 1;
            EXPECT_EQ(masked_tiles, per_thread * (c.lq / kAttnBlockRows) * kAttnWarps * 8) << tiles << " tiles";
        }
    }
}

}  // namespace
