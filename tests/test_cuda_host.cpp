// The CUDA backend's host-side rules, tested on the CPU (no GPU, no CUDA header): what a cuBLASLt plan is keyed
// on, how GEMM scratch is cut into row blocks, the device allocator's block cache (real block bytes against the
// budget, capped reuse slack, freeing only what a miss needs), the staging ring's slot cycling, the kernels'
// 32-bit index math and fused QK-norm/RoPE element logic, and the cuDNN descriptors' shapes and strides. The
// GPU code calls exactly these functions, so a failure here is a failure there.
#include <gtest/gtest.h>

#include <set>

#include "backends/cuda/block_cache.h"
#include "backends/cuda/gemm_plan.h"
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

}  // namespace
