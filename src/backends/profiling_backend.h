// A Backend that forwards every op to another backend and records, per op, the calls, the wall time and
// the FLOPs done (for GEMM-like ops), so a run can print where its time went and the achieved rate of
// each op family. Used by the benchmarks and by --profile.
//
//   sr::ProfilingBackend prof(sr::cpu_backend());
//   model.forward(prof, inputs);
//   for (auto& [op, s] : prof.stats()) printf("%s %d calls %.3f s %.1f GFLOP/s\n", ...);
#pragma once

#include <chrono>
#include <map>
#include <string>

#include "backends/backend.h"

namespace sr {

struct OpStats {
    int64_t calls = 0;
    double seconds = 0;
    double flops = 0;  // 0 for ops whose cost is memory traffic
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

    void linear(const Tensor& x, const Tensor& weight, const Tensor* bias, Tensor& y) override;
    void attention(const Tensor& q, const Tensor& k, const Tensor& v, Tensor& out, const AttentionMask& mask,
                   float scale) override;
    void layer_norm(const Tensor& x, const Tensor* weight, const Tensor* bias, float eps, Tensor& y) override;
    void rms_norm(const Tensor& x, const Tensor* weight, float eps, Tensor& y) override;
    void rope_interleaved(Tensor& x, const Tensor& cos, const Tensor& sin) override;
    void gelu_tanh(const Tensor& x, Tensor& y) override;
    void silu(const Tensor& x, Tensor& y) override;
    void modulate(const Tensor& x, const Tensor& shift, const Tensor& scale, Tensor& y) override;
    void gated_residual(Tensor& x, const Tensor& y, const Tensor& gate) override;
    void add(Tensor& x, const Tensor& y) override;
    void patch_embed_3d(const Tensor& x, const Tensor& weight, const Tensor* bias, Tensor& y) override;
    void timestep_embedding(const Tensor& t, int dim, bool flip_sin_to_cos, float downscale_freq_shift,
                            float max_period, Tensor& y) override;
    void copy(const Tensor& src, Tensor& dst) override;
    void conv3d(const Tensor& x, const Tensor& weight, const Tensor* bias, std::array<int64_t, 3> stride,
                std::array<int64_t, 3> padding, Tensor& y) override;
    void pad3d_replicate(const Tensor& x, std::array<int64_t, 6> pads, Tensor& y) override;
    void group_norm(const Tensor& x, int64_t groups, const Tensor* weight, const Tensor* bias, float eps,
                    Tensor& y) override;
    void upsample_nearest3d(const Tensor& x, std::array<int64_t, 3> scale, Tensor& y) override;
    void embedding(const Tensor& ids, const Tensor& table, Tensor& y) override;
    void rope_half(Tensor& x, const Tensor& cos, const Tensor& sin) override;
    void quick_gelu(const Tensor& x, Tensor& y) override;
    void mul(Tensor& x, const Tensor& y) override;

private:
    template <class F>
    void timed(const char* op, double flops, F&& f) {
        const auto t0 = std::chrono::steady_clock::now();
        f();
        OpStats& s = stats_[op];
        s.calls += 1;
        s.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        s.flops += flops;
    }
    Backend& inner_;
    std::map<std::string, OpStats> stats_;
};

}  // namespace sr
