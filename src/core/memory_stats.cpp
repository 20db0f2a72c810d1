#include "core/memory_stats.h"

#include <cstdio>
#include <cstring>

namespace sr {

HostMemory read_host_memory() {
    HostMemory m;
    FILE* f = std::fopen("/proc/self/status", "r");
    if (!f) return m;
    char line[256];
    while (std::fgets(line, sizeof line, f)) {
        unsigned long kb = 0;
        if (std::sscanf(line, "VmRSS: %lu kB", &kb) == 1)
            m.rss = kb * 1024;
        else if (std::sscanf(line, "VmHWM: %lu kB", &kb) == 1)
            m.peak_rss = kb * 1024;
        else if (std::sscanf(line, "RssAnon: %lu kB", &kb) == 1)
            m.anon = kb * 1024;
        else if (std::sscanf(line, "RssFile: %lu kB", &kb) == 1)
            m.file = kb * 1024;
    }
    std::fclose(f);
    return m;
}

}  // namespace sr
