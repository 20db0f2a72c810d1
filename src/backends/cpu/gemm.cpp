// Row-major GEMM through oneDNN's matmul primitive. Primitive creation costs far more than a small GEMM,
// so primitives are cached by everything that shapes them (dims, leading dims, dtypes, accumulate, bias,
// and whether the call runs inside a parallel region, where oneDNN plans for one thread).
//
// A linear layer's bias is a post-op of the primitive (DNNL_ARG_BIAS), added to the f32 sum before it is
// stored, and a bf16 destination is rounded from that sum once, on store: one pass over the output where
// a separate bias loop (and an f32 copy to round from) took two or three, on a machine whose memory
// bandwidth, not its AMX units, bounds these layers.
//
// Scratchpads are ours, one per thread (scratchpad_mode::user): oneDNN's default "library" scratchpad is
// shared by all primitives unless the library was built with DNNL_ENABLE_CONCURRENT_EXEC, so two attention
// tiles running GEMMs on two threads corrupted each other's partial sums.
#include <oneapi/dnnl/dnnl.hpp>

#include <cstring>
#include <map>
#include <mutex>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "backends/cpu/cpu_backend.h"
#include "backends/cpu/vec_math.h"
#include "core/parallel.h"

namespace sr {

namespace {

// M, N, K, lda, ldb, ldc, b_transposed, A/B dtype, C dtype, accumulate, bias, nested, activation.
using Key = std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, bool, int, int, bool, bool, bool, int>;

dnnl::memory::data_type dnnl_type(DType t) {
    return t == DType::BF16 ? dnnl::memory::data_type::bf16 : dnnl::memory::data_type::f32;
}

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
    const auto [M, N, K, lda, ldb, ldc, b_transposed, dtype, c_dtype, accumulate, bias, nested, activation] = key;
    const auto ab = dnnl_type(DType(dtype));
    dnnl::memory::desc a_md({M, K}, ab, {lda, 1});
    dnnl::memory::desc b_md({K, N}, ab, b_transposed ? dnnl::memory::dims{1, ldb} : dnnl::memory::dims{ldb, 1});
    dnnl::memory::desc c_md({M, N}, dnnl_type(DType(c_dtype)), {ldc, 1});
    dnnl::memory::desc bias_md({1, N}, dnnl::memory::data_type::f32, {N, 1});
    dnnl::primitive_attr attr;
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    dnnl::post_ops ops;
    if (accumulate) ops.append_sum(1.0f);
    // The epilogue's GELU: x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), PyTorch's approximate="tanh".
    if (Activation(activation) == Activation::GeluTanh)
        ops.append_eltwise(1.0f, dnnl::algorithm::eltwise_gelu_tanh, 0.0f, 0.0f);
    attr.set_post_ops(ops);
    std::shared_ptr<CachedMatmul> prim;
    try {
        auto pd = dnnl::matmul::primitive_desc(
            bias ? dnnl::matmul::desc(a_md, b_md, bias_md, c_md) : dnnl::matmul::desc(a_md, b_md, c_md), attr,
            cpu_engine());
        prim = std::make_shared<CachedMatmul>(CachedMatmul{dnnl::matmul(pd), pd.scratchpad_desc().get_size()});
    } catch (const dnnl::error& e) {
        throw VendorError(fmt::format("oneDNN matmul creation failed for M={} N={} K={} ({} -> {}{}): {}", M, N, K,
                                      dtype_name(DType(dtype)), dtype_name(DType(c_dtype)), bias ? ", bias" : "",
                                      e.what()));
    }
    std::lock_guard<std::mutex> lock(mutex);
    cache.emplace(key, prim);
    return prim;
}

// The cached primitive for `key` run on A, B, the f32 bias (when the key has one) and C.
void run_matmul(const Key& key, const void* A, const void* B, const float* bias, void* C) {
    const auto [M, N, K, lda, ldb, ldc, b_transposed, dtype, c_dtype, accumulate, has_bias, nested, activation] = key;
    auto prim = get_primitive(key);
    const auto ab = dnnl_type(DType(dtype));
    auto& eng = cpu_engine();
    dnnl::memory a_mem({{M, K}, ab, {lda, 1}}, eng, const_cast<void*>(A));
    dnnl::memory b_mem({{K, N}, ab, b_transposed ? dnnl::memory::dims{1, ldb} : dnnl::memory::dims{ldb, 1}}, eng,
                       const_cast<void*>(B));
    dnnl::memory c_mem({{M, N}, dnnl_type(DType(c_dtype)), {ldc, 1}}, eng, C);
    thread_local dnnl::stream stream(eng);
    thread_local std::vector<uint8_t> scratchpad;
    if (scratchpad.size() < prim->scratchpad_bytes) scratchpad.resize(prim->scratchpad_bytes);
    dnnl::memory scratch_mem({{int64_t(scratchpad.size())}, dnnl::memory::data_type::u8, {1}}, eng, scratchpad.data());
    std::unordered_map<int, dnnl::memory> args{
        {DNNL_ARG_SRC, a_mem}, {DNNL_ARG_WEIGHTS, b_mem}, {DNNL_ARG_DST, c_mem}, {DNNL_ARG_SCRATCHPAD, scratch_mem}};
    if (has_bias)
        args.emplace(DNNL_ARG_BIAS,
                     dnnl::memory({{1, N}, dnnl::memory::data_type::f32, {N, 1}}, eng, const_cast<float*>(bias)));
    try {
        prim->primitive.execute(stream, args);
        stream.wait();
    } catch (const dnnl::error& e) {
        throw VendorError(fmt::format("oneDNN matmul M={} N={} K={} failed: {}", M, N, K, e.what()));
    }
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
    run_matmul({M, N, K, lda, ldb, ldc, b_transposed, int(ab_dtype), int(DType::F32), accumulate, false,
                in_parallel_region(), int(Activation::None)},
               A, B, nullptr, C);
}

void gemm_linear(int64_t M, int64_t N, int64_t K, const void* A, int64_t lda, const void* B, int64_t ldb,
                 DType ab_dtype, const float* bias, void* C, int64_t ldc, DType c_dtype, Activation activation) {
    SR_ASSERT(ab_dtype == DType::F32 || ab_dtype == DType::BF16, "gemm on {}", dtype_name(ab_dtype));
    SR_ASSERT(c_dtype == DType::F32 || c_dtype == DType::BF16, "gemm into {}", dtype_name(c_dtype));
    if (M == 0 || N == 0) return;
    if (K == 0) {  // an empty sum: the bias, or zeros
        std::vector<float> row = bias ? std::vector<float>(bias, bias + N) : std::vector<float>(size_t(N), 0.0f);
        if (activation == Activation::GeluTanh)
            vec::map(row.data(), row.data(), N, [](auto v) { return vec::gelu_tanh(v); });
        for (int64_t i = 0; i < M; ++i)
            convert_elements(row.data(), DType::F32, static_cast<char*>(C) + size_t(i * ldc) * dtype_size(c_dtype),
                             c_dtype, size_t(N));
        return;
    }
    if (M == 1 && ab_dtype == DType::BF16) {
        // oneDNN multiplies a single bf16 row with another kernel (AVX-512, not AMX) that sums in another
        // order, so the row would differ in its last bits from the same row of a larger call. Two rows (the
        // second a copy) take the AMX kernel every larger M takes.
        const size_t cs = dtype_size(c_dtype);
        std::vector<uint16_t> a2(size_t(2 * K));
        std::memcpy(a2.data(), A, size_t(K) * 2);
        std::memcpy(a2.data() + K, A, size_t(K) * 2);
        std::vector<char> c2(size_t(2 * N) * cs);
        run_matmul({2, N, K, K, ldb, N, true, int(ab_dtype), int(c_dtype), false, bias != nullptr, in_parallel_region(),
                    int(activation)},
                   a2.data(), B, bias, c2.data());
        std::memcpy(C, c2.data(), size_t(N) * cs);
        return;
    }
    run_matmul({M, N, K, lda, ldb, ldc, true, int(ab_dtype), int(c_dtype), false, bias != nullptr, in_parallel_region(),
                int(activation)},
               A, B, bias, C);
}

}  // namespace sr
