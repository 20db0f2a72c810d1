// The CUDA runtime pieces: the caching device allocator (budget, reuse, no cudaMalloc in a repeated step),
// pinned host memory, and the accelerator's copy engine (copies land before the compute that waits for
// them, a buffer is refilled only after the compute recorded before the refill, staged and pageable paths,
// statistics). Without a usable GPU every test that needs one skips with "no CUDA device: <reason>".
#include <gtest/gtest.h>

#include <cstring>
#include <numeric>
#include <random>
#include <vector>

#include "backends/cpu/cpu_backend.h"
#include "backends/cuda/cuda_allocator.h"
#include "backends/cuda/cuda_backend.h"
#include "runtime/cuda_accelerator.h"

namespace {

using namespace sr;

#define SKIP_WITHOUT_CUDA()                                            \
    do {                                                               \
        const std::string why_ = cuda_unavailable_reason();            \
        if (!why_.empty()) GTEST_SKIP() << "no CUDA device: " << why_; \
    } while (0)

Tensor randn(const Shape& s, std::mt19937_64& rng) {
    Tensor t = Tensor::empty(s, DType::F32);
    std::normal_distribution<float> dist(0.0f, 1.0f);
    for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = dist(rng);
    return t;
}

bool same_bytes(const Tensor& a, const Tensor& b) {
    return a.nbytes() == b.nbytes() && std::memcmp(a.raw_data(), b.raw_data(), a.nbytes()) == 0;
}

TEST(CudaAllocator, RoundsToBuckets) {
    // No GPU needed: the size classes themselves.
    EXPECT_EQ(CudaCachingAllocator::round_size(0), 512u);
    EXPECT_EQ(CudaCachingAllocator::round_size(1), 512u);
    EXPECT_EQ(CudaCachingAllocator::round_size(513), 1024u);
    EXPECT_EQ(CudaCachingAllocator::round_size(1u << 20), 1u << 20);
    EXPECT_EQ(CudaCachingAllocator::round_size((1u << 20) + 1), 2u << 20);
    EXPECT_EQ(CudaCachingAllocator::round_size((5u << 20) + 7), 6u << 20);
}

TEST(CudaAllocator, BudgetIsEnforced) {
    SKIP_WITHOUT_CUDA();
    CudaBackend be(CudaBackendOptions{0, 64u << 20});  // 64 MiB
    CudaCachingAllocator& mem = be.memory();
    void* a = mem.allocate(40u << 20, "a");
    EXPECT_THROW(mem.allocate(30u << 20, "b"), OutOfMemoryError);  // 70 MiB in use would pass 64
    void* c = mem.allocate(20u << 20, "c");
    EXPECT_LE(mem.reserved_bytes(), 64u << 20);
    mem.deallocate(a, 40u << 20);
    mem.deallocate(c, 20u << 20);
    EXPECT_EQ(mem.in_use_bytes(), 0u);
    EXPECT_EQ(mem.peak_bytes(), 60u << 20);
    // A different size now needs room the cache holds: the cache is released, so reserved stays in budget.
    void* d = mem.allocate(50u << 20, "d");
    EXPECT_LE(mem.reserved_bytes(), 64u << 20);
    mem.deallocate(d, 50u << 20);
}

TEST(CudaAllocator, ReusesFreedBlocks) {
    SKIP_WITHOUT_CUDA();
    CudaBackend be;
    CudaCachingAllocator& mem = be.memory();
    void* a = mem.allocate(3u << 20, "a");
    const uint64_t mallocs = mem.device_allocations();
    mem.deallocate(a, 3u << 20);
    EXPECT_EQ(mem.cached_bytes(), 4u << 20);
    void* b = mem.allocate(3u << 20, "b");  // same bucket: the same block, no cudaMalloc
    EXPECT_EQ(b, a);
    EXPECT_EQ(mem.device_allocations(), mallocs);
    EXPECT_EQ(mem.cached_bytes(), 0u);
    mem.deallocate(b, 3u << 20);
    mem.release_cached();
    EXPECT_EQ(mem.reserved_bytes(), 0u);
}

TEST(CudaAllocator, CountsBlockBytesAndFreesOnlyWhatIsNeeded) {
    SKIP_WITHOUT_CUDA();
    CudaBackend be(CudaBackendOptions{0, 64u << 20});
    CudaCachingAllocator& mem = be.memory();
    void* a = mem.allocate((3u << 20) + 1, "a");  // a 4 MiB block
    EXPECT_EQ(mem.in_use_bytes(), 4u << 20);
    void* b = mem.allocate(40u << 20, "b");
    void* c = mem.allocate(8u << 20, "c");
    mem.deallocate(a, (3u << 20) + 1);
    mem.deallocate(b, 40u << 20);
    mem.deallocate(c, 8u << 20);
    EXPECT_EQ(mem.in_use_bytes(), 0u);
    EXPECT_EQ(mem.cached_bytes(), 52u << 20);
    // 20 MiB new: 52 + 20 passes 64 by 8: the 8 MiB block alone goes back to the driver.
    void* d = mem.allocate(20u << 20, "d");
    EXPECT_EQ(mem.cached_bytes(), 44u << 20);
    EXPECT_LE(mem.reserved_bytes(), 64u << 20);
    mem.deallocate(d, 20u << 20);
    mem.release_cached();
    EXPECT_EQ(mem.reserved_bytes(), 0u);
}

TEST(CudaAllocator, NoDeviceAllocationInSteadyState) {
    // A transformer-block-like sequence of ops with scratch (GEMMs with widened weights, bf16 attention,
    // norms): after the first step, repeating it must be served from the cache alone.
    SKIP_WITHOUT_CUDA();
    CudaBackend be;
    be.set_attention_precision(GemmPrecision::BF16);
    std::mt19937_64 rng(1);
    const int64_t L = 300, D = 256, H = 2;
    const Tensor x = be.upload(randn({1, L, D}, rng));
    const Tensor w = be.upload(randn({3 * D, D}, rng).to(DType::BF16));
    auto step = [&] {
        Tensor qkv = new_activation(be, {1, L, 3 * D}, "qkv");
        be.linear(x, w, nullptr, qkv);
        Tensor qkv5 = qkv.view({1, L, 3, H, 128});
        Tensor out = new_activation(be, {1, L, H, 128}, "attn");
        Tensor o = out.permute({0, 2, 1, 3});
        be.attention(qkv5.select(2, 0).permute({0, 2, 1, 3}), qkv5.select(2, 1).permute({0, 2, 1, 3}),
                     qkv5.select(2, 2).permute({0, 2, 1, 3}), o, AttentionMask{}, 0.088f);
        Tensor y = new_activation(be, {1, L, D}, "norm");
        be.layer_norm(out.view({1, L, D}), nullptr, nullptr, 1e-6f, y);
    };
    step();
    be.synchronize();
    const uint64_t after_first = be.memory().device_allocations();
    for (int i = 0; i < 3; ++i) step();
    be.synchronize();
    EXPECT_EQ(be.memory().device_allocations(), after_first);
    EXPECT_GT(be.memory().cache_hits(), 0u);
}

TEST(CudaAllocator, PinnedMemoryIsCounted) {
    SKIP_WITHOUT_CUDA();
    CudaPinnedAllocator pinned("pinned", 8u << 20);
    void* p = pinned.allocate(4u << 20, "staging");
    EXPECT_EQ(pinned.in_use_bytes(), 4u << 20);
    std::memset(p, 1, 4u << 20);  // host-accessible
    EXPECT_THROW(pinned.allocate(5u << 20, "too much"), OutOfMemoryError);
    pinned.deallocate(p, 4u << 20);
    EXPECT_EQ(pinned.in_use_bytes(), 0u);
}

class CudaAcceleratorTest : public ::testing::Test {
protected:
    void SetUp() override { SKIP_WITHOUT_CUDA(); }
};

TEST_F(CudaAcceleratorTest, CopiesLandBeforeComputeThatWaits) {
    CudaAccelerator dev;
    CudaBackend& be = dev.cuda();
    std::mt19937_64 rng(2);
    const Tensor host = randn({1 << 20}, rng);
    Tensor pinned_buf = Tensor::empty({1 << 20}, DType::F32, dev.pinned_memory(), "pinned source");
    std::memcpy(pinned_buf.raw_data(), host.raw_data(), host.nbytes());
    Tensor dst = Tensor::empty({1 << 20}, DType::F32, dev.memory(), "dst");
    Tensor out = Tensor::empty({1 << 20}, DType::F32, dev.memory(), "out");
    const uint64_t t = dev.copy_async(dst.raw_data(), pinned_buf.raw_data(), host.nbytes(), CopyPath::Pinned);
    dev.wait(t);
    be.copy(dst, out);  // compute on the compute stream, ordered after the copy by wait()
    EXPECT_TRUE(same_bytes(be.download(out), host));
    EXPECT_TRUE(dev.is_done(t));
}

TEST_F(CudaAcceleratorTest, RefillWaitsForRecordedCompute) {
    // buf holds A; a slow GEMM runs, then compute copies buf to out1; record_compute; buf is refilled with B
    // with that marker; wait; compute copies buf to out2. Without the marker the refill could land before
    // the first read (the GEMM in front makes that likely): out1 must be A, out2 B.
    CudaAccelerator dev;
    CudaBackend& be = dev.cuda();
    std::mt19937_64 rng(3);
    const int64_t n = 8 << 20;
    const Tensor a = randn({n}, rng), b = randn({n}, rng);
    Tensor pa = Tensor::empty({n}, DType::F32, dev.pinned_memory(), "A"),
           pb = Tensor::empty({n}, DType::F32, dev.pinned_memory(), "B");
    std::memcpy(pa.raw_data(), a.raw_data(), a.nbytes());
    std::memcpy(pb.raw_data(), b.raw_data(), b.nbytes());
    Tensor buf = Tensor::empty({n}, DType::F32, dev.memory(), "ring slot");
    Tensor out1 = Tensor::empty({n}, DType::F32, dev.memory(), "out1"),
           out2 = Tensor::empty({n}, DType::F32, dev.memory(), "out2");
    const Tensor gx = be.upload(randn({4096, 4096}, rng)), gw = be.upload(randn({4096, 4096}, rng));
    Tensor gy = Tensor::empty({4096, 4096}, DType::F32, dev.memory(), "slow gemm");

    dev.wait(dev.copy_async(buf.raw_data(), pa.raw_data(), a.nbytes()));
    for (int i = 0; i < 4; ++i) be.linear(gx, gw, nullptr, gy);  // ~0.5 TFLOP of f32: milliseconds
    be.copy(buf, out1);
    const uint64_t c = dev.record_compute();
    const uint64_t t = dev.copy_async(buf.raw_data(), pb.raw_data(), b.nbytes(), CopyPath::Pinned, c);
    dev.wait(t);
    be.copy(buf, out2);
    EXPECT_TRUE(same_bytes(be.download(out1), a));
    EXPECT_TRUE(same_bytes(be.download(out2), b));
}

TEST_F(CudaAcceleratorTest, ReusedBlockWaitsForItsLastReader) {
    // A block freed while a GEMM still reads it comes back from the cache for a copy target; the copy stream
    // must wait for that GEMM (the allocator's free event), or the GEMM would read the new bytes.
    CudaAccelerator dev;
    CudaBackend& be = dev.cuda();
    std::mt19937_64 rng(4);
    const int64_t M = 4096, K = 4096, N = 2048;
    const Tensor xh = randn({M, K}, rng), wh = randn({N, K}, rng);
    Tensor y = Tensor::empty({M, N}, DType::F32, dev.memory(), "y");
    const Tensor w = be.upload(wh);
    Tensor junk = Tensor::empty({M, K}, DType::F32, dev.pinned_memory(), "junk");
    std::memset(junk.raw_data(), 0x7f, junk.nbytes());
    void* reused = nullptr;
    {
        const Tensor x = be.upload(xh);
        reused = const_cast<void*>(x.raw_data());
        // Queued (four times, ~0.3 TFLOP of f32: milliseconds, longer than the copy); x is freed below while
        // they may still run.
        for (int i = 0; i < 4; ++i) be.linear(x, w, nullptr, y);
    }
    Tensor target = Tensor::empty({M, K}, DType::F32, dev.memory(), "reused");
    ASSERT_EQ(target.raw_data(), reused) << "the cache should hand the same block back";
    dev.wait(dev.copy_async(target.raw_data(), junk.raw_data(), junk.nbytes()));
    Tensor want = Tensor::empty({M, N}, DType::F32);
    cpu_backend().linear(xh, wh, nullptr, want);
    const Tensor got = be.download(y);
    double worst = 0;
    for (int64_t i = 0; i < got.numel(); ++i)
        worst = std::max(worst, double(std::fabs(got.data<float>()[i] - want.data<float>()[i])));
    EXPECT_LT(worst, 1e-1) << "the GEMM read overwritten input";  // |y| ~ 64; f32 differences ~1e-4
}

TEST_F(CudaAcceleratorTest, StagedAndPageablePaths) {
    // 5.5 chunks through a ring of two 1 MiB chunks (each slot reused after its transfer), and a pageable copy;
    // then the statistics.
    CudaAcceleratorOptions opt;
    opt.staging_chunk_bytes = 1u << 20;
    CudaAccelerator dev(opt);
    EXPECT_EQ(dev.staging_bytes(), 2u << 20);           // the ring's size, for the memory plan
    EXPECT_EQ(dev.pinned_memory().in_use_bytes(), 0u);  // allocated at the first staged copy
    std::mt19937_64 rng(5);
    const int64_t n = (11 << 20) / 8;  // 5.5 MiB of floats
    const Tensor src = randn({n}, rng), src2 = randn({n}, rng);
    Tensor dst = Tensor::empty({n}, DType::F32, dev.memory(), "dst");
    Tensor dst2 = Tensor::empty({n}, DType::F32, dev.memory(), "dst2");
    const uint64_t t1 = dev.copy_async(dst.raw_data(), src.raw_data(), src.nbytes(), CopyPath::Staged);
    const uint64_t t2 = dev.copy_async(dst2.raw_data(), src2.raw_data(), src2.nbytes(), CopyPath::Pageable);
    EXPECT_EQ(dev.pinned_memory().in_use_bytes(), 2u << 20);
    dev.wait(t2);  // covers t1 too (copies complete in order)
    Tensor out = Tensor::empty({n}, DType::F32, dev.memory(), "out");
    dev.cuda().copy(dst, out);
    EXPECT_TRUE(same_bytes(dev.cuda().download(out), src));
    EXPECT_TRUE(same_bytes(dev.cuda().download(dst2), src2));
    dev.drain();
    EXPECT_TRUE(dev.is_done(t1));
    const CopyEngineStats s = dev.stats();
    EXPECT_EQ(s.copies, 2u);
    EXPECT_EQ(s.bytes, src.nbytes() + src2.nbytes());
    EXPECT_EQ(s.staged_bytes, src.nbytes());
    EXPECT_GT(s.busy_seconds, 0.0);
    EXPECT_GE(s.wait_seconds, 0.0);
}

TEST_F(CudaAcceleratorTest, CopiesRunInSubmissionOrder) {
    // Ten copies of different sources into one buffer, mixing paths: the last one wins.
    CudaAcceleratorOptions opt;
    opt.staging_chunk_bytes = 256u << 10;
    CudaAccelerator dev(opt);
    std::mt19937_64 rng(6);
    const int64_t n = 1 << 18;
    std::vector<Tensor> srcs;
    for (int i = 0; i < 10; ++i) srcs.push_back(randn({n}, rng));
    Tensor dst = Tensor::empty({n}, DType::F32, dev.memory(), "dst");
    uint64_t last = 0;
    const CopyPath paths[] = {CopyPath::Staged, CopyPath::Pageable};
    for (int i = 0; i < 10; ++i)
        last = dev.copy_async(dst.raw_data(), srcs[size_t(i)].raw_data(), srcs[size_t(i)].nbytes(), paths[i % 2]);
    dev.wait(last);
    EXPECT_TRUE(same_bytes(dev.cuda().download(dst), srcs.back()));
}

}  // namespace
