// Parallel scaling of the transformer forward on this machine, measured, and a model of the 8-GPU case.
//
//   OMP_NUM_THREADS=1 mpirun --oversubscribe --bind-to none -np 2 build/bench/bench_parallel [--reps 3]
//
// On the "medium" transformer (512 wide: 4 heads x 128, 2 dual + 4 single blocks, 4096 video + 256 text
// tokens) and one CFG pair (batch 2), with one thread per rank: rank 0 alone runs the batched pair (the
// one-process baseline, the other ranks waiting), then every rank runs each mesh the world allows (cfg=2: one
// row per rank; ulysses=P: the tokens split). Each line: the median seconds per forward, the speedup over the
// baseline, and the bytes and seconds the ranks' collectives took (measured by wrapping the communicator).
//
// Then the model of the released transformer at 544x960x97 (51,000 video + 256 text tokens, 20 dual + 40
// single blocks, bf16 activations on the GPU) for 1-8 GPUs: compute as one GPU's time divided among the ranks
// (the padded token share included), plus the Ulysses all-to-all volume per step over the link bandwidth,
// next to SkyReelsInfer's published times. Human lines on stderr, one JSON object per line on stdout.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <vector>

#include "backends/cpu/cpu_backend.h"
#include "bench_inputs.h"
#include "core/parallel.h"
#include "io/json.h"
#include "models/hunyuan_video_transformer.h"
#include "models/sequence_parallel.h"
#include "runtime/mpi_communicator.h"
#include "runtime/parallel_mesh.h"

using namespace sr;

namespace {

double now() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// A communicator that counts what goes through it (bytes sent by this rank) and the time spent waiting in it.
class CountingCommunicator final : public Communicator {
public:
    explicit CountingCommunicator(Communicator& inner) : inner_(inner) {}
    int rank() const override { return inner_.rank(); }
    int size() const override { return inner_.size(); }
    std::string kind() const override { return inner_.kind(); }
    bool moves(Device d) const override { return inner_.moves(d); }
    void all_to_all(const Tensor& s, Tensor& r) override {
        timed(s.nbytes(), [&] { inner_.all_to_all(s, r); });
    }
    void all_gather(const Tensor& s, Tensor& r) override {
        timed(s.nbytes(), [&] { inner_.all_gather(s, r); });
    }
    void broadcast(Tensor& t, int root) override {
        timed(t.nbytes(), [&] { inner_.broadcast(t, root); });
    }
    void gather(const Tensor& s, std::vector<Tensor>& r, int root) override {
        timed(s.nbytes(), [&] { inner_.gather(s, r, root); });
    }
    void barrier() override { inner_.barrier(); }
    double bytes = 0, seconds = 0;

private:
    template <class F>
    void timed(size_t n, F&& f) {
        const double t0 = now();
        f();
        seconds += now() - t0;
        bytes += double(n);
    }
    Communicator& inner_;
};

using bench::uniform;

TransformerInputs inputs_for(const HunyuanVideoConfig& c, int64_t batch) {
    TransformerInputs in;
    in.hidden_states = uniform({batch, c.in_channels, 4, 64, 64}, 1);
    in.timestep = Tensor::from_vector(std::vector<float>(size_t(batch), 900.0f), {batch});
    in.guidance = Tensor::from_vector(std::vector<float>(size_t(batch), 1000.0f), {batch});
    in.encoder_hidden_states = uniform({batch, 256, c.text_embed_dim}, 2);
    in.encoder_attention_mask = Tensor::from_vector(std::vector<float>(size_t(batch * 256), 1.0f), {batch, 256});
    in.pooled_projections = uniform({batch, c.pooled_projection_dim}, 3);
    return in;
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

// The released model's Ulysses traffic per denoising step, per rank: for each of the 60 blocks' attentions, q,
// k and v of this rank's n rows leave in one all-to-all and the output comes back in another ((P-1)/P of each
// stays remote), and the text rows' heads are gathered; bf16 on the GPU. Both guidance rows: each CFG rank
// moves its own row's share.
double ulysses_bytes_per_step(int ulysses, int64_t tokens, int64_t text, int64_t width, int blocks) {
    if (ulysses == 1) return 0;
    const SequenceShard shard{.tokens = tokens, .degree = ulysses};
    const double remote = double(ulysses - 1) / double(ulysses), bytes = 2;
    const double per_attention = (3 + 1) * double(shard.rows()) * double(width) * bytes * remote +
                                 double(text) * double(width) / ulysses * bytes * (ulysses - 1);
    return per_attention * blocks;
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"Parallel scaling of the transformer forward (run under mpirun) and the 8-GPU model"};
    int reps = 3;
    double link_gbs = 150.0;
    app.add_option("--reps", reps, "Timed forwards per mesh")->capture_default_str();
    app.add_option("--link-gbs", link_gbs, "The model's all-to-all bandwidth per GPU (A800 NVLink, GB/s)")
        ->capture_default_str();
    CLI11_PARSE(app, argc, argv);

    std::optional<MpiRuntime> mpi;
    if (MpiRuntime::launched()) mpi.emplace();
    const auto world = mpi ? MpiRuntime::world() : nullptr;
    const int P = world ? world->size() : 1, me = world ? world->rank() : 0;
    auto say = [&](const std::string& s) {
        if (me == 0) std::fprintf(stderr, "%s", s.c_str());
    };
    auto emit = [&](Json j) {
        if (me == 0) std::printf("%s\n", j.dump().c_str());
    };

    HunyuanVideoConfig c;
    c.num_attention_heads = 4, c.attention_head_dim = 128, c.num_layers = 2, c.num_single_layers = 4;
    c.text_embed_dim = 512, c.pooled_projection_dim = 768;
    const auto model = HunyuanVideoTransformer::random(c, DType::F32, 42);
    CpuBackend& cpu = cpu_backend();
    cpu.set_gemm_precision(GemmPrecision::F32);
    const TransformerInputs pair = inputs_for(c, 2);
    say(
        fmt::format("bench_parallel: medium transformer (4x128, 2 dual + 4 single, 4096 + 256 tokens), a CFG pair, "
                    "{} rank(s) x {} thread(s)\n",
                    P, n_threads()));

    auto time_forward = [&](const std::function<void()>& f) {
        f();  // warm-up: oneDNN kernels are generated on first use
        std::vector<double> t;
        for (int r = 0; r < reps; ++r) {
            if (world) world->barrier();
            const double t0 = now();
            f();
            if (world) world->barrier();
            t.push_back(now() - t0);
        }
        return median(t);
    };

    // The baseline: rank 0 alone runs the batched pair; the other ranks wait.
    double base = 0;
    if (me == 0) {
        model.forward(cpu, pair);
        std::vector<double> t;
        for (int r = 0; r < reps; ++r) {
            const double t0 = now();
            model.forward(cpu, pair);
            t.push_back(now() - t0);
        }
        base = median(t);
    }
    if (world) {
        world->barrier();
        Tensor b = Tensor::from_vector({float(base)}, {1});
        world->broadcast(b, 0);
        base = b.data<float>()[0];
    }
    say(fmt::format("  1 rank, the pair batched          {:8.3f} s per forward\n", base));
    emit({{"mesh", "one rank"}, {"ranks", 1}, {"seconds", base}, {"threads_per_rank", n_threads()}});

    auto row = [&](const TransformerInputs& in, int64_t r) {
        auto one = [&](const Tensor& t) { return t.slice(0, r, r + 1).contiguous(); };
        return TransformerInputs{one(in.hidden_states),         one(in.timestep),
                                 one(in.encoder_hidden_states), one(in.encoder_attention_mask),
                                 one(in.pooled_projections),    one(in.guidance)};
    };
    for (const MeshShape shape : {MeshShape{2, P / 2}, MeshShape{1, P}}) {
        if (!world || shape.ranks() != P || shape.ulysses < 1 || c.num_attention_heads % shape.ulysses != 0) continue;
        const ParallelMesh mesh(*world, shape);
        const ParallelGroups groups = mesh.groups();
        CountingCommunicator seq(groups.sequence ? *groups.sequence : *world), pairc(groups.cfg ? *groups.cfg : *world);
        const double seconds = time_forward([&] {
            if (shape.cfg == 2) {
                TransformerInputs in = row(pair, pairc.rank());
                in.sequence_parallel = groups.sequence ? &seq : nullptr;
                const Tensor mine = model.forward(cpu, in);
                Tensor both = Tensor::empty({2, mine.dim(1), mine.dim(2), mine.dim(3), mine.dim(4)}, DType::F32);
                pairc.all_gather(mine, both);
            } else {
                TransformerInputs in = pair;
                in.sequence_parallel = &seq;
                model.forward(cpu, in);
            }
        });
        const double forwards = reps + 1;  // the warm-up's traffic is counted too
        const double bytes = (seq.bytes + pairc.bytes) / forwards, wait = (seq.seconds + pairc.seconds) / forwards;
        say(
            fmt::format("  {} ranks, {:<22} {:8.3f} s per forward: {:.2f}x; this rank sends {:.1f} MiB per forward, "
                        "{:.3f} s in collectives\n",
                        P, shape.str(), seconds, base / seconds, bytes / 1048576.0, wait));
        emit({{"mesh", shape.str()},
              {"ranks", P},
              {"seconds", seconds},
              {"speedup", base / seconds},
              {"bytes_sent_per_forward", bytes},
              {"collective_seconds", wait}});
    }

    // The model of the released transformer on 1-8 GPUs, next to SkyReelsInfer's published numbers (8x A800:
    // 107 s for 544x960x97 with 30 steps, 7.2x its one-GPU time; 8x RTX 4090: 159 s).
    if (me == 0) {
        const double one_gpu = 107.0 * 7.2;  // s per video on one A800, from the published speedup
        const int64_t N = 25 * 34 * 60, L = 256, width = 3072, steps = 30;
        say(
            fmt::format("model: 544x960x97 ({} video + {} text tokens), 30 steps, one A800 {:.0f} s (107 s x 7.2), "
                        "all-to-all at {:.0f} GB/s per GPU\n",
                        N, L, one_gpu, link_gbs));
        for (const MeshShape m : {MeshShape{1, 1}, MeshShape{2, 1}, MeshShape{2, 2}, MeshShape{2, 4}}) {
            const SequenceShard shard{.tokens = N, .degree = m.ulysses};
            const double padded = double(shard.padded() + L) / double(N + L);
            const double compute = one_gpu / m.ranks() * padded;
            const double bytes = ulysses_bytes_per_step(m.ulysses, N, L, width, 60) * steps;
            const double comm = bytes / (link_gbs * 1e9);
            const char* published = m.ranks() == 8 ? "107 s (A800), 159 s (RTX 4090)" : "-";
            say(
                fmt::format("  {} GPU(s) {:<18} compute {:7.1f} s + all-to-all {:6.2f} GB ({:5.1f} s) = {:7.1f} s; "
                            "SkyReelsInfer: {}\n",
                            m.ranks(), m.str(), compute, bytes / 1e9, comm, compute + comm, published));
            emit({{"model", m.str()},
                  {"gpus", m.ranks()},
                  {"compute_seconds", compute},
                  {"all_to_all_bytes", bytes},
                  {"all_to_all_seconds", comm},
                  {"total_seconds", compute + comm}});
        }
    }
    return 0;
}
