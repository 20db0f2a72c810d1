// The CPU thread pool: one pool for the whole process, sized from the machine.
//
// oneDNN on Debian is built with the OpenMP runtime, so its GEMMs run on OpenMP's worker threads. A second
// pool of our own would compete with those threads for the same cores (OpenMP workers spin after each
// region), so our own parallel loops run on the same OpenMP pool. Inside a parallel_for body, nested
// oneDNN calls run single-threaded, which is what the attention kernel wants (one tile per thread).
//
//   sr::parallel_for(n_rows, [&](int64_t begin, int64_t end) { for (...) normalize(row); });
#pragma once

#include <cstdint>
#include <functional>

namespace sr {

// Threads used by parallel loops and oneDNN. Defaults to the machine's cores (or OMP_NUM_THREADS).
int n_threads();
void set_n_threads(int n);
// True while inside a parallel_for body.
bool in_parallel_region();

// Splits [0, n) into at most n_threads() contiguous chunks of at least `grain` items and calls
// fn(begin, end) for each, in parallel. Exceptions thrown by fn are rethrown on the calling thread.
void parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn, int64_t grain = 1);

}  // namespace sr
