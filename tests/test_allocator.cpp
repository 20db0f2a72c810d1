// Budgeted allocators, byte-size parsing/formatting and the parallel loop: the pieces every memory report
// and every threaded kernel rely on.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/allocator.h"
#include "core/block_cache.h"
#include "core/error.h"
#include "core/parallel.h"
#include "core/tensor.h"

namespace {

bool contains(const std::string& s, const std::string& part) {
    return s.find(part) != std::string::npos;
}

TEST(Allocator, BudgetEnforcedWithANamedError) {
    sr::HostAllocator arena("activations", 1024);
    void* a = arena.allocate(512, "latents");
    void* b = arena.allocate(512, "noise");
    ASSERT_NE(a, nullptr);
    ASSERT_NE(b, nullptr);
    EXPECT_EQ(arena.in_use_bytes(), 1024u);
    try {
        arena.allocate(100, "attention scratch");
        FAIL() << "allocation past the budget succeeded";
    } catch (const sr::OutOfMemoryError& e) {
        const std::string m = e.what();
        EXPECT_TRUE(contains(m, "activations")) << m;        // which pool
        EXPECT_TRUE(contains(m, "attention scratch")) << m;  // which request
        EXPECT_TRUE(contains(m, "100 B")) << m;              // how much was asked for
        EXPECT_TRUE(contains(m, "1.00 KiB")) << m;           // the budget (and what is in use)
    }
    // A refused request must not leak into the counters.
    EXPECT_EQ(arena.in_use_bytes(), 1024u);
    arena.deallocate(a, 512);
    void* c = arena.allocate(500, "retry");  // fits again once memory is returned
    arena.deallocate(b, 512);
    arena.deallocate(c, 500);
    EXPECT_EQ(arena.in_use_bytes(), 0u);
}

TEST(Allocator, OutOfMemoryIsAnInputError) {
    // The CLI catches InputError once at the edge; a budget overrun must be caught there, not abort.
    sr::HostAllocator arena("vram", 64);
    EXPECT_THROW(arena.allocate(65, "weights"), sr::InputError);
    EXPECT_EQ(arena.in_use_bytes(), 0u);
}

TEST(Allocator, ExactlyTheBudgetFits) {
    sr::HostAllocator arena("exact", 4096);
    void* p = arena.allocate(4096, "all of it");
    EXPECT_EQ(arena.in_use_bytes(), 4096u);
    EXPECT_THROW(arena.allocate(1, "one more"), sr::OutOfMemoryError);
    arena.deallocate(p, 4096);
}

TEST(Allocator, PeakTrackingAndReset) {
    sr::HostAllocator arena("peak", 0);  // 0 = unlimited
    void* a = arena.allocate(300, "a");
    void* b = arena.allocate(200, "b");
    EXPECT_EQ(arena.peak_bytes(), 500u);
    arena.deallocate(a, 300);
    void* c = arena.allocate(100, "c");
    EXPECT_EQ(arena.in_use_bytes(), 300u);
    EXPECT_EQ(arena.peak_bytes(), 500u);  // the peak does not fall with frees
    arena.reset_peak();
    EXPECT_EQ(arena.peak_bytes(), 300u);  // it restarts from what is in use now
    arena.deallocate(b, 200);
    arena.deallocate(c, 100);
    EXPECT_EQ(arena.in_use_bytes(), 0u);
    EXPECT_EQ(arena.peak_bytes(), 300u);
}

TEST(Allocator, BudgetCanBeChangedAndUnlimited) {
    sr::HostAllocator arena("grow", 128);
    EXPECT_THROW(arena.allocate(256, "big"), sr::OutOfMemoryError);
    arena.set_budget_bytes(0);
    void* p = arena.allocate(1 << 20, "big");
    EXPECT_EQ(arena.budget_bytes(), 0u);
    arena.deallocate(p, 1 << 20);
}

TEST(Allocator, HostMemoryIs64ByteAligned) {
    sr::HostAllocator arena("align", 0);
    for (size_t n : {1, 3, 63, 64, 65, 1000}) {
        void* p = arena.allocate(n, "aligned");
        EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % 64, 0u) << n;
        static_cast<char*>(p)[n - 1] = 1;  // the whole requested size is writable (ASan checks it)
        arena.deallocate(p, n);
    }
    EXPECT_EQ(arena.in_use_bytes(), 0u);
}

TEST(Allocator, ConcurrentAllocationsBalance) {
    sr::HostAllocator arena("threads", 1 << 20);
    std::vector<std::thread> threads;
    std::atomic<int> failures{0};
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&, t] {
            for (int i = 0; i < 2000; ++i) {
                const size_t n = size_t(64 + (i * 37 + t) % 4096);
                void* p = arena.allocate(n, "worker");
                if (!p) ++failures;
                arena.deallocate(p, n);
            }
        });
    }
    for (auto& th : threads) th.join();
    EXPECT_EQ(failures.load(), 0);
    EXPECT_EQ(arena.in_use_bytes(), 0u);
    EXPECT_LE(arena.peak_bytes(), size_t(4 * (64 + 4095)));
    EXPECT_GE(arena.peak_bytes(), 64u);
}

// Blocks of 1 MiB and more are kept when freed and handed to the next request of their size: what keeps a
// forward's repeated shapes off the page-fault path (allocator.h).
TEST(HostBlocks, AFreedBlockServesTheNextRequestOfItsSize) {
    constexpr size_t kMiB = size_t(1) << 20, kPage = 4096;
    sr::HostAllocator arena("reuse", 0);
    const size_t n = 3 * kMiB + 100, block = 3 * kMiB + kPage;  // whole pages
    auto* p = static_cast<char*>(arena.allocate(n, "activation"));
    p[0] = 1;
    p[n - 1] = 2;  // every requested byte is writable
    arena.deallocate(p, n);
    EXPECT_EQ(arena.in_use_bytes(), 0u);  // the budget counts live tensors, not kept blocks
    EXPECT_EQ(arena.cached_bytes(), block);
    void* q = arena.allocate(3 * kMiB + 50, "same shape again");
    EXPECT_EQ(q, p);
    EXPECT_EQ(arena.reused_blocks(), 1u);
    EXPECT_EQ(arena.cached_bytes(), 0u);
    EXPECT_EQ(arena.mapped_bytes(), block);
    arena.deallocate(q, 3 * kMiB + 50);
    // A much smaller request does not take the big block (it would hold 3 MiB for 1.5): a block of its own,
    // the 3 MiB one kept (within the high-water mark's headroom).
    void* r = arena.allocate(kMiB + kMiB / 2, "smaller");
    EXPECT_EQ(arena.reused_blocks(), 1u);
    EXPECT_EQ(arena.mapped_bytes(), block + kMiB + kMiB / 2);
    arena.deallocate(r, kMiB + kMiB / 2);
    // Under 1 MiB: malloc's, never kept.
    void* small = arena.allocate(1000, "small");
    arena.deallocate(small, 1000);
    EXPECT_EQ(arena.cached_bytes(), block + kMiB + kMiB / 2);
    arena.release_cached();
    EXPECT_EQ(arena.cached_bytes(), 0u);
    EXPECT_EQ(arena.mapped_bytes(), 0u);
}

// Kept and live blocks together stay within the most block bytes live at once (the resident set's high-water
// mark) plus half of it, at most 64 MiB: a miss first gives back what would pass that; release_cached()
// resets the mark to what is live. (Mappings are lazy: blocks never written take no memory here.)
TEST(HostBlocks, KeptBlocksStayWithinTheHighWaterMark) {
    constexpr size_t kMiB = size_t(1) << 20;
    sr::HostAllocator arena("bound", 0);
    auto alloc = [&](size_t mib) { return arena.allocate(mib * kMiB, "block"); };
    auto give_back = [&](void* p, size_t mib) { arena.deallocate(p, mib * kMiB); };
    void* a = alloc(8);
    void* b = alloc(8);
    give_back(a, 8);
    give_back(b, 8);
    EXPECT_EQ(arena.mapped_bytes(), 16 * kMiB);  // the mark: 16 MiB were live at once
    // 12 MiB reuses neither (past the 1/8 slack). Mark 16, limit 24: 16 kept + 12 would be 28, so one 8 MiB
    // block goes (the smallest that covers the 4 MiB over).
    void* c = alloc(12);
    EXPECT_EQ(arena.mapped_bytes(), 20 * kMiB);
    EXPECT_EQ(arena.cached_bytes(), 8 * kMiB);
    void* d = alloc(2);  // 22 of 24: nothing goes
    EXPECT_EQ(arena.mapped_bytes(), 22 * kMiB);
    give_back(c, 12);
    // 40 MiB: a new mark of 42 (2 live + 40), limit 63: the 20 kept stay.
    void* e = alloc(40);
    EXPECT_EQ(arena.mapped_bytes(), 62 * kMiB);
    give_back(d, 2);
    give_back(e, 40);
    // 100 MiB: mark 100, limit 150: 62 kept + 100 is 12 over, so the 12 MiB block goes.
    void* f = alloc(100);
    EXPECT_EQ(arena.mapped_bytes(), 150 * kMiB);
    give_back(f, 100);
    arena.release_cached();
    EXPECT_EQ(arena.mapped_bytes(), 0u);
    // The headroom is at most 64 MiB: after a 400 MiB block, a 100 MiB one may keep it only within 464.
    void* g = alloc(400);
    give_back(g, 400);
    void* h = alloc(100);
    EXPECT_EQ(arena.mapped_bytes(), 100 * kMiB);
    give_back(h, 100);
    arena.release_cached();
    // After a release the mark is what is live (nothing): kept again, within the new mark's limit.
    void* i = alloc(2);
    give_back(i, 2);
    void* j = alloc(6);  // mark 6, limit 9: 2 kept + 6 stay
    EXPECT_EQ(arena.mapped_bytes(), 8 * kMiB);
    void* k = alloc(4);  // mark 10, limit 15: 2 + 6 + 4 = 12 stay
    EXPECT_EQ(arena.mapped_bytes(), 12 * kMiB);
    give_back(j, 6);
    give_back(k, 4);
    EXPECT_EQ(arena.in_use_bytes(), 0u);
}

TEST(HostBlocks, ThreadsShareTheKeptBlocks) {
    constexpr size_t kMiB = size_t(1) << 20;
    sr::HostAllocator arena("threads", 0);
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t)
        threads.emplace_back([&, t] {
            for (int i = 0; i < 200; ++i) {
                const size_t n = kMiB * size_t(1 + (i + t) % 3);
                auto* p = static_cast<char*>(arena.allocate(n, "worker"));
                p[0] = p[n - 1] = char(i);
                arena.deallocate(p, n);
            }
        });
    for (auto& th : threads) th.join();
    EXPECT_EQ(arena.in_use_bytes(), 0u);
    EXPECT_EQ(arena.mapped_bytes(), arena.cached_bytes());
    // The four threads held at most 4 x 3 MiB at once: kept and live within that and half of it.
    EXPECT_LE(arena.mapped_bytes(), 18 * kMiB);
    EXPECT_GT(arena.reused_blocks(), 0u);
    arena.release_cached();
    EXPECT_EQ(arena.mapped_bytes(), 0u);
}

TEST(Allocator, TensorsFromABudgetedAllocator) {
    sr::HostAllocator arena("tensors", 1000);
    {
        const sr::Tensor t = sr::Tensor::empty({10, 20}, sr::DType::F32, arena, "hidden states");  // 800 B
        EXPECT_EQ(arena.in_use_bytes(), 800u);
        try {
            sr::Tensor::empty({2, 3, 4, 5, 6}, sr::DType::F16, arena, "rope table");  // 1440 B
            FAIL() << "tensor past the budget allocated";
        } catch (const sr::OutOfMemoryError& e) {
            EXPECT_TRUE(contains(e.what(), "rope table")) << e.what();
            EXPECT_TRUE(contains(e.what(), "1.41 KiB")) << e.what();  // 1440 B
        }
    }
    EXPECT_EQ(arena.in_use_bytes(), 0u);  // the tensor returned its memory
    EXPECT_EQ(arena.peak_bytes(), 800u);
}

using sr::BlockCache;
constexpr size_t kMiB = size_t(1) << 20;

void* fake(uintptr_t address) {
    return reinterpret_cast<void*>(address);
}

TEST(BlockCache, SizesAndSlack) {
    EXPECT_EQ(BlockCache::round_size(0), 512u);
    EXPECT_EQ(BlockCache::round_size(513), 1024u);
    EXPECT_EQ(BlockCache::round_size(kMiB), kMiB);
    EXPECT_EQ(BlockCache::round_size(kMiB + 1), 2 * kMiB);
    EXPECT_EQ(BlockCache::round_size(5 * kMiB + 7), 6 * kMiB);
    EXPECT_EQ(BlockCache::max_slack(8 * kMiB), kMiB);
    EXPECT_EQ(BlockCache::max_slack(1024 * kMiB), 8 * kMiB);  // capped: 1/8 would be 128 MiB
}

TEST(BlockCache, ReuseIsBestFitWithinTheSlack) {
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

TEST(BlockCache, AMissFreesOnlyWhatIsNeeded) {
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

TEST(FormatBytes, UnitsAndRounding) {
    EXPECT_EQ(sr::format_bytes(0), "0 B");
    EXPECT_EQ(sr::format_bytes(512), "512 B");
    EXPECT_EQ(sr::format_bytes(1023), "1023 B");
    EXPECT_EQ(sr::format_bytes(1024), "1.00 KiB");
    EXPECT_EQ(sr::format_bytes(1536), "1.50 KiB");
    EXPECT_EQ(sr::format_bytes(1.5 * (1 << 30)), "1.50 GiB");
    EXPECT_EQ(sr::format_bytes(double(80ull << 30)), "80.00 GiB");
    EXPECT_EQ(sr::format_bytes(double(3ull << 40)), "3.00 TiB");
    EXPECT_EQ(sr::format_bytes(double(2048ull << 40)), "2048.00 TiB");  // TiB is the largest unit
}

TEST(ParseBytes, AcceptedForms) {
    EXPECT_EQ(sr::parse_bytes("4096", "--x"), 4096u);
    EXPECT_EQ(sr::parse_bytes("0", "--x"), 0u);
    EXPECT_EQ(sr::parse_bytes("512B", "--x"), 512u);
    EXPECT_EQ(sr::parse_bytes("2k", "--x"), 2048u);
    EXPECT_EQ(sr::parse_bytes("512M", "--x"), 512ull << 20);
    EXPECT_EQ(sr::parse_bytes("512MB", "--x"), 512ull << 20);
    EXPECT_EQ(sr::parse_bytes("12G", "--x"), 12ull << 30);
    EXPECT_EQ(sr::parse_bytes("1.5GiB", "--x"), 3ull << 29);
    EXPECT_EQ(sr::parse_bytes("1.5gib", "--x"), 3ull << 29);
    EXPECT_EQ(sr::parse_bytes("2T", "--x"), 2ull << 40);
    // format_bytes output parses back to about the same size.
    EXPECT_EQ(sr::parse_bytes(sr::format_bytes(double(80ull << 30)).erase(5, 1), "--x"), 80ull << 30);
}

TEST(ParseBytes, BadInputNamesTheFlagAndTheText) {
    for (const char* text : {"", "abc", "12X", "12 G", "G12", "1.5QiB", "-1", "-1G", "nan", "inf", "1e30",
                             "18446744073709551615", "20000000T", "1e400"}) {
        try {
            const size_t v = sr::parse_bytes(text, "--max-vram");
            ADD_FAILURE() << "'" << text << "' parsed as " << v;
        } catch (const sr::InputError& e) {
            const std::string m = e.what();
            EXPECT_TRUE(contains(m, "--max-vram")) << m;
            EXPECT_TRUE(contains(m, "'" + std::string(text))) << m;
        }
    }
}

TEST(ParallelFor, CoversEveryIndexExactlyOnce) {
    const int saved = sr::n_threads();
    sr::set_n_threads(4);  // force several chunks even on a small machine
    for (int64_t n : {1, 2, 3, 7, 64, 1000, 10007}) {
        for (int64_t grain : {1, 5, 64, 5000}) {
            std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
            std::atomic<int> calls{0};
            sr::parallel_for(
                n,
                [&](int64_t b, int64_t e) {
                    ++calls;
                    EXPECT_LT(b, e);
                    for (int64_t i = b; i < e; ++i) hits[size_t(i)]++;
                },
                grain);
            int64_t wrong = 0;
            for (int64_t i = 0; i < n; ++i) wrong += hits[size_t(i)].load() != 1;
            EXPECT_EQ(wrong, 0) << "n=" << n << " grain=" << grain;
            EXPECT_LE(calls.load(), 4) << "n=" << n;
            // Chunks hold at least `grain` items, so a range smaller than two grains is one call.
            if (n < 2 * grain) {
                EXPECT_EQ(calls.load(), 1) << "n=" << n << " grain=" << grain;
            }
        }
    }
    sr::set_n_threads(saved);
    EXPECT_EQ(sr::n_threads(), saved);
}

TEST(ParallelFor, ZeroOrNegativeRunsNothing) {
    int calls = 0;
    sr::parallel_for(0, [&](int64_t, int64_t) { ++calls; });
    sr::parallel_for(-5, [&](int64_t, int64_t) { ++calls; });
    EXPECT_EQ(calls, 0);
}

TEST(ParallelFor, RethrowsTheWorkerExceptionWithItsType) {
    const int saved = sr::n_threads();
    sr::set_n_threads(4);
    try {
        sr::parallel_for(1000, [&](int64_t b, int64_t e) {
            if (b <= 700 && 700 < e) throw sr::InputError("row 700 is bad");
        });
        FAIL() << "the exception was swallowed";
    } catch (const sr::InputError& e) {
        EXPECT_STREQ(e.what(), "row 700 is bad");
    }
    // Every chunk throwing still yields exactly one exception, and the pool stays usable afterwards.
    EXPECT_THROW(sr::parallel_for(1000, [](int64_t, int64_t) { throw std::runtime_error("all"); }), std::runtime_error);
    std::atomic<int64_t> sum{0};
    sr::parallel_for(100, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) sum += i;
    });
    EXPECT_EQ(sum.load(), 4950);
    sr::set_n_threads(saved);
}

TEST(ParallelFor, NestedLoopsRunInlineAndStillCoverEverything) {
    const int saved = sr::n_threads();
    sr::set_n_threads(4);
    EXPECT_FALSE(sr::in_parallel_region());
    std::vector<std::atomic<int>> hits(40 * 50);
    std::atomic<int> inside{0};
    sr::parallel_for(40, [&](int64_t b, int64_t e) {
        if (sr::in_parallel_region()) ++inside;
        for (int64_t r = b; r < e; ++r) {
            sr::parallel_for(50, [&](int64_t cb, int64_t ce) {
                for (int64_t c = cb; c < ce; ++c) hits[size_t(r * 50 + c)]++;
            });
        }
    });
    int64_t wrong = 0;
    for (auto& h : hits) wrong += h.load() != 1;
    EXPECT_EQ(wrong, 0);
    EXPECT_GT(inside.load(), 0);  // with 4 threads, the outer loop did run in parallel
    sr::set_n_threads(saved);
}

}  // namespace
