#include "backends/profiling_backend.h"

#include <chrono>

namespace sr {

double ProfilingBackend::total_seconds() const {
    double t = 0;
    for (const auto& [op, s] : stats_) t += s.seconds;
    return t;
}

void ProfilingBackend::run(const OpCall& op) {
    const auto t0 = std::chrono::steady_clock::now();
    inner_.run(op);
    OpStats& s = stats_[std::string(op_name(op))];
    s.calls += 1;
    s.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    s.flops += op_flops(op);
    for_each_tensor_arg(op, [&](const OpTensorArg& a) {
        if (a.tensor && a.tensor->defined()) s.bytes += double(a.tensor->nbytes());
    });
}

}  // namespace sr
