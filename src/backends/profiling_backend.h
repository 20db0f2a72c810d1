// A Backend that forwards every op to another backend and records, per op, the calls, the wall time and
// the FLOPs done (for GEMM-like ops), so a run can print where its time went and the achieved rate of
// each op family. Used by the benchmarks and by --profile.
//
//   sr::ProfilingBackend prof(sr::cpu_backend());
//   model.forward(prof, inputs);
//   for (auto& [op, s] : prof.stats()) printf("%s %d calls %.3f s %.1f GFLOP/s\n", ...);
#pragma once

#include <map>
#include <string>

#include "backends/backend.h"

namespace sr {

struct OpStats {
    int64_t calls = 0;
    double seconds = 0;
    double flops = 0;  // 0 for ops whose cost is memory traffic
    // The bytes of the calls' tensor arguments: each read or written once, a lower bound on the memory
    // traffic, so bytes / seconds says how near a memory-bound op runs to the machine's bandwidth.
    double bytes = 0;
};

class ProfilingBackend final : public Backend {
public:
    explicit ProfilingBackend(Backend& inner) : inner_(inner) {}
    std::string name() const override { return inner_.name() + "+profile"; }
    Device device() const override { return inner_.device(); }
    Allocator& allocator() override { return inner_.allocator(); }
    size_t workspace_bytes() const override { return inner_.workspace_bytes(); }

    const std::map<std::string, OpStats>& stats() const { return stats_; }
    void reset() { stats_.clear(); }
    double total_seconds() const;

    // Times the op on the inner backend and counts it under its name.
    void run(const OpCall& op) override;

private:
    Backend& inner_;
    std::map<std::string, OpStats> stats_;
};

}  // namespace sr
