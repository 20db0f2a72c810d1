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
