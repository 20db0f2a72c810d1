// The CUDA backend's host-side rules, tested on the CPU (no GPU, no CUDA header): what a cuBLASLt plan is keyed
// on, how GEMM scratch is cut into row blocks, the device allocator's block cache (real block bytes against the
// budget, capped reuse slack, freeing only what a miss needs), the staging ring's slot cycling, the kernels'
// 32-bit index math and fused QK-norm/RoPE element logic, and the cuDNN descriptors' shapes and strides. The
// GPU code calls exactly these functions, so a failure here is a failure there.
#include <gtest/gtest.h>

#include <array>
#include <random>
#include <set>

#include "backends/cuda/block_cache.h"
#include "backends/cuda/cudnn_plan.h"
#include "backends/cuda/gemm_plan.h"
#include "backends/cuda/index_math.h"
#include "backends/cuda/staging_ring.h"
#include "core/allocator.h"
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

void* fake(uintptr_t address) {
    return reinterpret_cast<void*>(address);
}

TEST(CudaBlockCache, SizesAndSlack) {
    EXPECT_EQ(BlockCache::round_size(0), 512u);
    EXPECT_EQ(BlockCache::round_size(513), 1024u);
    EXPECT_EQ(BlockCache::round_size(kMiB), kMiB);
    EXPECT_EQ(BlockCache::round_size(kMiB + 1), 2 * kMiB);
    EXPECT_EQ(BlockCache::round_size(5 * kMiB + 7), 6 * kMiB);
    EXPECT_EQ(BlockCache::max_slack(8 * kMiB), kMiB);
    EXPECT_EQ(BlockCache::max_slack(1024 * kMiB), 8 * kMiB);  // capped: 1/8 would be 128 MiB
}

TEST(CudaBlockCache, ReuseIsBestFitWithinTheSlack) {
    BlockCache c;
    c.add_live({fake(0x100000), 16 * kMiB, 16 * kMiB, nullptr});
    c.add_live({fake(0x2000000), 18 * kMiB, 18 * kMiB, nullptr});
    c.add_live({fake(0x4000000), 40 * kMiB, 40 * kMiB, nullptr});
    EXPECT_EQ(c.live_bytes(), 74 * kMiB);
    c.put_cached(c.remove_live(fake(0x100000)));
    c.put_cached(c.remove_live(fake(0x2000000)));
    c.put_cached(c.remove_live(fake(0x4000000)));
    EXPECT_EQ(c.live_bytes(), 0u);
    EXPECT_EQ(c.cached_bytes(), 74 * kMiB);
    EXPECT_EQ(c.reserved_bytes(), 74 * kMiB);
    // 17 MiB asked (18 MiB rounded): the 18 MiB block, not the 40 MiB one.
    auto b = c.take_cached(BlockCache::round_size(17 * kMiB), 17 * kMiB);
    ASSERT_TRUE(b.has_value());
    EXPECT_EQ(b->size, 18 * kMiB);
    EXPECT_EQ(b->requested, 17 * kMiB);
    EXPECT_EQ(c.live_bytes(), 18 * kMiB);  // block bytes, not the 17 asked for
    // 30 MiB: 40 MiB is 10 MiB more, beyond the slack (30/8 = 3.75 MiB): a miss.
    EXPECT_FALSE(c.take_cached(30 * kMiB, 30 * kMiB).has_value());
    // 36 MiB: 40 is within 4.5 MiB: reused.
    EXPECT_TRUE(c.take_cached(36 * kMiB, 36 * kMiB).has_value());
    EXPECT_EQ(c.cached_bytes(), 16 * kMiB);
    EXPECT_EQ(c.reserved_bytes(), 74 * kMiB);
    // An interior pointer finds its block; one past the end does not.
    ASSERT_NE(c.live_containing(fake(0x2000000 + 5 * kMiB)), nullptr);
    EXPECT_EQ(c.live_containing(fake(0x2000000 + 5 * kMiB))->size, 18 * kMiB);
    EXPECT_EQ(c.live_containing(fake(0x2000000 + 18 * kMiB)), nullptr);
    EXPECT_EQ(c.live_containing(fake(0x100000)), nullptr);  // cached, not live
}

TEST(CudaBlockCache, AMissFreesOnlyWhatIsNeeded) {
    BlockCache c;
    const size_t sizes[] = {2, 4, 8, 32};  // MiB, all cached
    uintptr_t addr = 0x10000000;
    for (size_t s : sizes) {
        c.add_live({fake(addr), s * kMiB, s * kMiB, nullptr});
        c.put_cached(c.remove_live(fake(addr)));
        addr += 0x4000000;
    }
    c.add_live({fake(addr), 10 * kMiB, 10 * kMiB, nullptr});  // one live block
    EXPECT_EQ(c.reserved_bytes(), 56 * kMiB);
    // No budget: nothing is freed.
    EXPECT_TRUE(c.make_room(100 * kMiB, 0).empty());
    // Fits already: nothing.
    EXPECT_TRUE(c.make_room(6 * kMiB, 64 * kMiB).empty());
    // 64 MiB budget, 12 MiB new: short by 4 MiB: the 4 MiB block alone (the smallest that covers it).
    auto freed = c.make_room(12 * kMiB, 64 * kMiB);
    ASSERT_EQ(freed.size(), 1u);
    EXPECT_EQ(freed[0].size, 4 * kMiB);
    EXPECT_EQ(c.reserved_bytes(), 52 * kMiB);
    EXPECT_LE(c.reserved_bytes() + 12 * kMiB, 64 * kMiB);
    // 50 MiB new: short by 38 MiB, no single block covers it: largest first (32, then 8).
    freed = c.make_room(50 * kMiB, 64 * kMiB);
    ASSERT_EQ(freed.size(), 2u);
    EXPECT_EQ(freed[0].size, 32 * kMiB);
    EXPECT_EQ(freed[1].size, 8 * kMiB);
    EXPECT_EQ(c.cached_bytes(), 2 * kMiB);  // the 2 MiB block stays cached
    EXPECT_LE(c.reserved_bytes() + 50 * kMiB, 64 * kMiB);
    EXPECT_EQ(c.take_all_cached().size(), 1u);
    EXPECT_EQ(c.reserved_bytes(), 10 * kMiB);
    EXPECT_EQ(c.live_bytes(), 10 * kMiB);
}

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

}  // namespace
