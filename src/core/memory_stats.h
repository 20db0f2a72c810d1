// Host memory of this process, as the kernel counts it (/proc/self/status): resident set, its peak, and
// the split into anonymous memory (what the process really holds) and file-backed pages (memory-mapped
// weights in the page cache, which the kernel can reclaim).
//
//   auto m = sr::read_host_memory();   printf("peak RSS %s\n", sr::format_bytes(m.peak_rss).c_str());
#pragma once

#include <cstddef>

namespace sr {

struct HostMemory {
    size_t rss = 0;       // VmRSS
    size_t peak_rss = 0;  // VmHWM
    size_t anon = 0;      // RssAnon: heap, stacks, anonymous mappings
    size_t file = 0;      // RssFile: file-backed pages (mapped checkpoints)
};

// Zeros when /proc is unavailable.
HostMemory read_host_memory();

}  // namespace sr
