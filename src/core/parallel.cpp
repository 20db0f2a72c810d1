#include "core/parallel.h"

#include <omp.h>

#include <algorithm>
#include <exception>
#include <mutex>
#include <thread>

#include "core/log.h"

namespace sr {

namespace {

// OMP_NUM_THREADS=100000 makes libgomp and oneDNN start that many threads at the first parallel region and
// crash (stacks, the kernel's thread limit) instead of failing cleanly: more than a few threads per hardware
// thread only slows a run down, so clamp with a warning. This runs during static initialization, after
// libgomp has read the environment and before any parallel region.
int clamp_threads() {
    const int hardware = int(std::max(1u, std::thread::hardware_concurrency()));
    const int limit = std::max(8, 4 * hardware), asked = omp_get_max_threads();
    if (asked <= limit) return asked;
    omp_set_num_threads(limit);
    SR_LOG_WARN("OMP_NUM_THREADS asks for {} threads, more than 4 per hardware thread ({}): using {}", asked, hardware,
                limit);
    return limit;
}
[[maybe_unused]] const int g_clamped_threads = clamp_threads();

}  // namespace

int n_threads() {
    return std::max(1, omp_get_max_threads());
}

void set_n_threads(int n) {
    omp_set_num_threads(std::max(1, n));
}

bool in_parallel_region() {
    return omp_in_parallel() != 0;
}

void parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn, int64_t grain) {
    if (n <= 0) return;
    grain = std::max<int64_t>(1, grain);
    const int64_t max_chunks = std::max<int64_t>(1, n / grain);
    const int threads = int(std::min<int64_t>(in_parallel_region() ? 1 : n_threads(), max_chunks));
    if (threads <= 1) {
        fn(0, n);
        return;
    }
    std::exception_ptr error;
    std::mutex error_mutex;
#pragma omp parallel num_threads(threads)
    {
        const int64_t t = omp_get_thread_num();
        const int64_t nt = omp_get_num_threads();
        const int64_t begin = n * t / nt;
        const int64_t end = n * (t + 1) / nt;
        try {
            if (begin < end) fn(begin, end);
        } catch (...) {
            std::lock_guard<std::mutex> lock(error_mutex);
            if (!error) error = std::current_exception();
        }
    }
    if (error) std::rethrow_exception(error);
}

}  // namespace sr
