// The op-parity harness's shared parts: the backends under test, host tensor helpers, the tolerance check,
// the per-op timing table, and the OpParity fixture (one backend per instantiation). Op test files
// (test_ops.cpp, and one per model family's ops) include this and instantiate their suites over
// backends_under_test(), so a new backend joins every op test by one line in backends_under_test().
//
// Coverage: a parity case names the op it checks, SR_OP_PARITY(OpParity, Linear, LinearOp) instead of
// TEST_P(OpParity, Linear). The op list (backends/ops.h) is then checked against the cases: OpCoverage fails
// for an op that no case names, and each named case fails unless its op really ran on the backend under test
// (the fixture hands the test a recording decorator around it).
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "backends/backend.h"
#include "backends/cpu/cpu_backend.h"
#if defined(SKYREELS_HAVE_CUDA) && defined(SKYREELS_OP_HARNESS_CUDA)
#include "backends/cuda/cuda_backend.h"
#endif
#include "core/parallel.h"
#include "support/reference_ops.h"

namespace sr::test::harness {

using namespace sr;
namespace ref = sr::test::ref;

inline constexpr double kU = 0x1p-24;  // f32 unit roundoff: half an ulp of 1
inline constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
inline constexpr float kInf = std::numeric_limits<float>::infinity();

// ----------------------------------------------------------------------------------------------------------
// Backends under test

struct BackendCase {
    std::string name;                   // test-name suffix
    std::function<Backend&()> acquire;  // configures the backend for this case and returns it
    GemmPrecision precision;            // how its GEMMs with non-f32 weights are computed
    // How its attention multiplies: BF16 rounds q, k, v and the softmax weights to bf16 (f32 accumulation).
    // The CPU backend follows its GEMM precision; the CUDA harness leaves attention at F32 (the bf16 CUDA
    // attention has its own tests in test_cuda_ops.cpp).
    GemmPrecision attention_precision;
    // Host tensor -> the backend's memory and back; sync waits for queued work (for timing). The CPU
    // backend's upload is a copy, so in-place ops never touch the host inputs the reference reads.
    std::function<Tensor(Backend&, const Tensor&)> upload;
    std::function<Tensor(Backend&, const Tensor&)> download;
    std::function<void(Backend&)> sync;
};

inline void PrintTo(const BackendCase& c, std::ostream* os) {
    *os << c.name;
}

inline BackendCase cpu_case(const char* name, GemmPrecision precision) {
    return {name,
            [precision]() -> Backend& {
                cpu_backend().set_gemm_precision(precision);
                return cpu_backend();
            },
            precision,
            precision,
            [](Backend& be, const Tensor& t) { return t.clone(be.allocator()); },
            [](Backend&, const Tensor& t) { return t; },
            [](Backend&) {}};
}

#if defined(SKYREELS_HAVE_CUDA) && defined(SKYREELS_OP_HARNESS_CUDA)
// The CUDA backend (the test_cuda_harness binary builds the op test files again with SKYREELS_OP_HARNESS_CUDA,
// tests/cuda.cmake): the same tests against the same references. Without a usable GPU each test skips in
// SetUp, naming the reason; the CPU backend returned then is never used.
inline BackendCase cuda_case(const char* name, GemmPrecision precision) {
    return {name,
            [precision]() -> Backend& {
                const std::string why = cuda_unavailable_reason();
                if (!why.empty()) {
                    [&] { GTEST_SKIP() << "no CUDA device: " << why; }();
                    return cpu_backend();
                }
                cuda_backend().set_gemm_precision(precision);
                return cuda_backend();
            },
            precision,
            GemmPrecision::F32,
            [](Backend& be, const Tensor& t) { return static_cast<CudaBackend&>(be).upload(t); },
            [](Backend& be, const Tensor& t) { return static_cast<CudaBackend&>(be).download(t); },
            [](Backend& be) { static_cast<CudaBackend&>(be).synchronize(); }};
}
#endif

inline std::vector<BackendCase> backends_under_test() {
#if defined(SKYREELS_HAVE_CUDA) && defined(SKYREELS_OP_HARNESS_CUDA)
    return {cuda_case("cuda_f32", GemmPrecision::F32), cuda_case("cuda_bf16", GemmPrecision::BF16)};
#else
    return {cpu_case("cpu_f32", GemmPrecision::F32), cpu_case("cpu_bf16", GemmPrecision::BF16)};
#endif
}

// An attention operand (q, k or v) as a backend whose attention runs at `precision` multiplies it: rounded to
// bf16 under BF16, so that a reference given these operands differs from the backend only by the rounding of the
// softmax weights, attention_weights_rounding(precision) in units of max|v|: each weight is off by at most 2^-9
// relative (bf16's unit roundoff) and the row sum stays the f32 one; the CPU's bf16 flash kernel also takes
// its exponentials from a polynomial of relative error below 3e-6 (attention_flash_bf16.cpp), twice in l1.
inline Tensor attention_operand(const Tensor& t, GemmPrecision precision) {
    return precision == GemmPrecision::BF16 ? t.to(DType::BF16).to(DType::F32) : t;
}
inline double attention_weights_rounding(GemmPrecision precision) {
    return precision == GemmPrecision::BF16 ? 0x1p-9 + 6e-6 : 0.0;
}

// ----------------------------------------------------------------------------------------------------------
// Timing table: one row per (backend, op), printed when the binary exits.

struct TimingRow {
    std::string backend, op, shape;
    double ms, min_ms, work;  // median and fastest of the timed runs; work: FLOPs or bytes per call
    const char* unit;         // "GFLOP/s" or "GB/s"
};

inline std::vector<TimingRow>& timing_rows() {
    static std::vector<TimingRow> rows;
    return rows;
}

class TimingTable : public ::testing::Environment {
public:
    void TearDown() override {
        if (timing_rows().empty()) return;
        std::printf("\nop timings, largest case per op (5 runs after a warm-up, %d threads; rate at the median):\n",
                    n_threads());
        std::printf("%-9s %-22s %-30s %10s %10s %16s\n", "backend", "op", "shape", "median ms", "min ms", "rate");
        for (const TimingRow& r : timing_rows())
            std::printf("%-9s %-22s %-30s %10.3f %10.3f %8.2f %-7s\n", r.backend.c_str(), r.op.c_str(), r.shape.c_str(),
                        r.ms, r.min_ms, r.work / (r.ms * 1e-3) * 1e-9, r.unit);
    }
};
// Registers the table once per binary (call from one translation unit; test_ops.cpp does).
inline void register_timing_table() {
    static ::testing::Environment* const env = ::testing::AddGlobalTestEnvironment(new TimingTable);
    (void)env;
}

// ----------------------------------------------------------------------------------------------------------
// Host tensors and comparison

inline Tensor filled(const Shape& s, float v) {
    Tensor t = Tensor::empty(s, DType::F32);
    std::fill(t.data<float>(), t.data<float>() + t.numel(), v);
    return t;
}

inline Tensor randn(const Shape& s, std::mt19937_64& rng, double mean = 0.0, double stddev = 1.0) {
    Tensor t = Tensor::empty(s, DType::F32);
    std::normal_distribution<double> dist(mean, stddev);
    for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = float(dist(rng));
    return t;
}

// A host f32 tensor holding a reference array (rounded to f32).
inline Tensor from_array(const ref::Array& a) {
    Tensor t = Tensor::empty(Shape(a.shape), DType::F32);
    for (int64_t i = 0; i < a.numel(); ++i) t.data<float>()[i] = float(a[i]);
    return t;
}

inline ref::Array map(ref::Array a, double (*f)(double)) {
    for (double& v : a.data) v = f(v);
    return a;
}

// Element-wise squares as a host f32 tensor: exact for bf16/f16 values (at most 22 significant bits).
inline Tensor squared(const Tensor& t) {
    return from_array(map(ref::to_array(t), [](double v) { return v * v; }));
}

// The l2 norm of each `width`-wide row.
inline std::vector<double> row_norms(const ref::Array& a, int64_t width) {
    std::vector<double> n(size_t(width ? a.numel() / width : 0));
    for (size_t r = 0; r < n.size(); ++r) {
        double s = 0;
        for (int64_t i = 0; i < width; ++i) s += a[int64_t(r) * width + i] * a[int64_t(r) * width + i];
        n[r] = std::sqrt(s);
    }
    return n;
}

inline double max_abs(const ref::Array& a) {
    double m = 0;
    for (double v : a.data) m = std::max(m, std::fabs(v));
    return m;
}

inline std::string index_str(const std::vector<int64_t>& shape, int64_t flat) {
    std::vector<int64_t> idx(shape.size());
    for (size_t i = shape.size(); i-- > 0;) {
        idx[i] = flat % std::max<int64_t>(shape[i], 1);
        flat /= std::max<int64_t>(shape[i], 1);
    }
    std::string s = "[";
    for (size_t i = 0; i < idx.size(); ++i) s += (i ? "," : "") + std::to_string(idx[i]);
    return s + "]";
}

// Passes when |got[i] - want[i]| <= tol(i) for every element; NaN must meet NaN and an infinity must match
// exactly. On failure it names the worst element (largest error / tolerance) by its index and counts the rest.
inline ::testing::AssertionResult all_close(const ref::Array& got, const ref::Array& want,
                                            const std::function<double(int64_t)>& tol) {
    if (got.shape != want.shape)
        return ::testing::AssertionFailure() << "shape " << got.shape_str() << " != expected " << want.shape_str();
    int64_t n_bad = 0, worst = -1;
    double worst_ratio = 0;
    for (int64_t i = 0; i < want.numel(); ++i) {
        const double g = got[i], w = want[i], t = tol(i);
        double ratio;
        if (std::isnan(w) || std::isnan(g))
            ratio = std::isnan(w) && std::isnan(g) ? 0 : INFINITY;
        else if (std::isinf(w) || std::isinf(g))
            ratio = g == w ? 0 : INFINITY;
        else
            ratio = std::fabs(g - w) <= t ? 0 : (t > 0 ? std::fabs(g - w) / t : INFINITY);
        if (ratio > 0) ++n_bad;
        if (ratio > worst_ratio) worst_ratio = ratio, worst = i;
    }
    if (n_bad == 0) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << n_bad << " of " << want.numel() << " elements out of tolerance; worst at "
                                         << index_str(want.shape, worst) << ": got " << got[worst] << ", expected "
                                         << want[worst] << ", |diff| " << std::fabs(got[worst] - want[worst])
                                         << " > tol " << tol(worst);
}

inline std::string shape_str(const Tensor& t) {
    return t.describe();
}

// ----------------------------------------------------------------------------------------------------------
// The fixture: one backend per instantiation.

// ----------------------------------------------------------------------------------------------------------
// Which op each parity case checks (filled at static initialization by SR_OP_PARITY).

struct ParityCase {
    std::string suite, name;
    size_t op;
};
inline std::vector<ParityCase>& parity_cases() {
    static std::vector<ParityCase> cases;
    return cases;
}
template <class Op>
bool register_parity_case(const char* suite, const char* name) {
    parity_cases().push_back({suite, name, op_index<Op>()});
    return true;
}
// The op the running parity case names, or kOpCount when it names none (a plain TEST_P).
inline size_t current_case_op() {
    const ::testing::TestInfo* info = ::testing::UnitTest::GetInstance()->current_test_info();
    if (!info) return kOpCount;
    // Parameterized names: suite "Backends/OpParity", test "Linear/cpu_f32".
    std::string suite = info->test_suite_name(), name = info->name();
    suite = suite.substr(suite.find('/') + 1);
    name = name.substr(0, name.find('/'));
    for (const ParityCase& c : parity_cases())
        if (c.suite == suite && c.name == name) return c.op;
    return kOpCount;
}

#define SR_OP_PARITY(fixture, name, Op)                                  \
    [[maybe_unused]] static const bool sr_op_parity_##fixture##_##name = \
        ::sr::test::harness::register_parity_case<Op>(#fixture, #name);  \
    TEST_P(fixture, name)

// Forwards every op to the backend under test and notes which ops ran.
class RecordingBackend final : public Backend {
public:
    explicit RecordingBackend(Backend& inner) : inner_(inner) {}
    std::string name() const override { return inner_.name(); }
    Device device() const override { return inner_.device(); }
    Allocator& allocator() override { return inner_.allocator(); }
    size_t workspace_bytes() const override { return inner_.workspace_bytes(); }
    void run(const OpCall& op) override {
        ran_[op.index()] = true;
        inner_.run(op);
    }
    bool ran(size_t op) const { return ran_[op]; }

private:
    Backend& inner_;
    std::array<bool, kOpCount> ran_{};
};

class OpParity : public ::testing::TestWithParam<BackendCase> {
protected:
    void SetUp() override {
        be_ = &GetParam().acquire();
        recorder_ = std::make_unique<RecordingBackend>(*be_);
    }
    void TearDown() override {
        const size_t op = current_case_op();
        if (op < kOpCount && !IsSkipped()) {
            EXPECT_TRUE(recorder_->ran(op))
                << "this case is registered for op '" << kOpNames[op] << "' but never ran it on " << GetParam().name;
        }
    }

    // The backend under test, seen through the recorder.
    Backend& be() { return *recorder_; }
    Tensor up(const Tensor& host) { return GetParam().upload(*be_, host); }
    ref::Array got(const Tensor& t) { return ref::to_array(GetParam().download(*be_, t)); }
    // An output buffer in the backend's memory, pre-filled with NaN so an element the op never writes fails.
    Tensor out(const Shape& s) { return up(filled(s, kNaN)); }

    // Times fn (median of 5 after a warm-up that also fills primitive caches) and adds it to the table.
    void time_op(const std::string& op, const std::string& shape, double work, const char* unit,
                 const std::function<void()>& fn) {
        fn();
        GetParam().sync(*be_);
        std::vector<double> ms;
        for (int r = 0; r < 5; ++r) {
            const auto t0 = std::chrono::steady_clock::now();
            fn();
            GetParam().sync(*be_);
            ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
        }
        std::sort(ms.begin(), ms.end());
        timing_rows().push_back({GetParam().name, op, shape, ms[2], ms[0], work, unit});
    }

    // Relative tolerance of a GEMM against the dot-product magnitude |x||w|/sqrt(K) (= sqrt(K) rms(x) rms(w),
    // the natural scale of rounding errors with random signs), by how this backend multiplies `weight_dtype`
    // weights.
    double gemm_rtol(DType weight_dtype) const {
        // BF16 precision: activations rounded to bf16, a relative error of at most 2^-8 (bf16's unit
        // roundoff) per term, so the error has std ~2^-8/sqrt(3)/1.44 = 1.6e-3 of the magnitude (1.67e-3
        // measured on the CPU); 1e-2 is ~6 sigma, and a hard bound while K <= 6
        // (|err| <= 2^-8 sum|x_k w_k| <= 2^-8 sqrt(K) magnitude).
        if (GetParam().precision == GemmPrecision::BF16 && weight_dtype != DType::F32) return 1e-2;
        // f32 arithmetic (weights widened exactly): accumulated rounding of the partial sums has std about
        // u sqrt(K/6) of the magnitude, 1.6e-6 at the largest K here (4096); 1e-5 leaves ~6 sigma.
        return 1e-5;
    }

    Backend* be_ = nullptr;
    std::unique_ptr<RecordingBackend> recorder_;
};

}  // namespace sr::test::harness
