// Row-major GEMM through oneDNN's matmul primitive. Primitive creation costs far more than a small GEMM,
// so primitives are cached by everything that shapes them (dims, leading dims, dtype, accumulate, and
// whether the call runs inside a parallel region, where oneDNN plans for one thread).
//
// Scratchpads are ours, one per thread (scratchpad_mode::user): oneDNN's default "library" scratchpad is
// shared by all primitives unless the library was built with DNNL_ENABLE_CONCURRENT_EXEC, so two attention
// tiles running GEMMs on two threads corrupted each other's partial sums.
#include <oneapi/dnnl/dnnl.hpp>

#include <map>
#include <mutex>
#include <tuple>
#include <vector>

#include "backends/cpu/cpu_backend.h"
#include "core/parallel.h"

namespace sr {

namespace {

using Key = std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, bool, int, bool, bool>;

dnnl::engine& cpu_engine() {
    static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
    return engine;
}

struct CachedMatmul {
    dnnl::matmul primitive;
    size_t scratchpad_bytes = 0;
};

std::shared_ptr<CachedMatmul> get_primitive(const Key& key) {
    static std::mutex mutex;
    static std::map<Key, std::shared_ptr<CachedMatmul>> cache;
    {
        std::lock_guard<std::mutex> lock(mutex);
        auto it = cache.find(key);
        if (it != cache.end()) return it->second;
    }
    const auto [M, N, K, lda, ldb, ldc, b_transposed, dtype, accumulate, nested] = key;
    using dt = dnnl::memory::data_type;
    const dt ab = DType(dtype) == DType::BF16 ? dt::bf16 : dt::f32;
    dnnl::memory::desc a_md({M, K}, ab, {lda, 1});
    dnnl::memory::desc b_md({K, N}, ab, b_transposed ? dnnl::memory::dims{1, ldb} : dnnl::memory::dims{ldb, 1});
    dnnl::memory::desc c_md({M, N}, dt::f32, {ldc, 1});
    dnnl::primitive_attr attr;
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    if (accumulate) {
        dnnl::post_ops ops;
        ops.append_sum(1.0f);
        attr.set_post_ops(ops);
    }
    std::shared_ptr<CachedMatmul> prim;
    try {
        auto pd = dnnl::matmul::primitive_desc(dnnl::matmul::desc(a_md, b_md, c_md), attr, cpu_engine());
        prim = std::make_shared<CachedMatmul>(CachedMatmul{dnnl::matmul(pd), pd.scratchpad_desc().get_size()});
    } catch (const dnnl::error& e) {
        throw VendorError(fmt::format("oneDNN matmul creation failed for M={} N={} K={} ({}): {}", M, N, K,
                                      dtype_name(DType(dtype)), e.what()));
    }
    std::lock_guard<std::mutex> lock(mutex);
    cache.emplace(key, prim);
    return prim;
}

}  // namespace

void gemm(int64_t M, int64_t N, int64_t K, const void* A, int64_t lda, const void* B, int64_t ldb, bool b_transposed,
          DType ab_dtype, float* C, int64_t ldc, bool accumulate) {
    SR_ASSERT(ab_dtype == DType::F32 || ab_dtype == DType::BF16, "gemm on {}", dtype_name(ab_dtype));
    if (M == 0 || N == 0) return;
    if (K == 0) {
        if (!accumulate)
            for (int64_t i = 0; i < M; ++i) std::fill(C + i * ldc, C + i * ldc + N, 0.0f);
        return;
    }
    const Key key{M, N, K, lda, ldb, ldc, b_transposed, int(ab_dtype), accumulate, in_parallel_region()};
    auto prim = get_primitive(key);
    using dt = dnnl::memory::data_type;
    const dt ab = ab_dtype == DType::BF16 ? dt::bf16 : dt::f32;
    auto& eng = cpu_engine();
    dnnl::memory a_mem({{M, K}, ab, {lda, 1}}, eng, const_cast<void*>(A));
    dnnl::memory b_mem({{K, N}, ab, b_transposed ? dnnl::memory::dims{1, ldb} : dnnl::memory::dims{ldb, 1}}, eng,
                       const_cast<void*>(B));
    dnnl::memory c_mem({{M, N}, dt::f32, {ldc, 1}}, eng, C);
    thread_local dnnl::stream stream(eng);
    thread_local std::vector<uint8_t> scratchpad;
    if (scratchpad.size() < prim->scratchpad_bytes) scratchpad.resize(prim->scratchpad_bytes);
    dnnl::memory scratch_mem({{int64_t(scratchpad.size())}, dnnl::memory::data_type::u8, {1}}, eng, scratchpad.data());
    try {
        prim->primitive.execute(stream, {{DNNL_ARG_SRC, a_mem},
                                         {DNNL_ARG_WEIGHTS, b_mem},
                                         {DNNL_ARG_DST, c_mem},
                                         {DNNL_ARG_SCRATCHPAD, scratch_mem}});
        stream.wait();
    } catch (const dnnl::error& e) {
        throw VendorError(fmt::format("oneDNN matmul M={} N={} K={} failed: {}", M, N, K, e.what()));
    }
}

}  // namespace sr
