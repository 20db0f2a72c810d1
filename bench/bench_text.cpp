// Text-side benchmark: tokenizer throughput (Llama-3 BPE and CLIP on the fixture vocabularies) and the Llama
// text encoder on the pipeline's 351-token prompt, at a medium size and at the real layer shape (4096 wide,
// 32 heads / 8 KV heads, 14336 MLP) with made-up bf16 weights (WeightBinder::random), with f32 and bf16 GEMMs.
//
//   build/bench/bench_text [--tokenizers DIR] [--config medium|real_layers|all] [--gemm f32|bf16|all]
//                          [--layers 2] [--reps 3] [--threads N]
//
// Per run: one warm-up, repetitions, median / min / max; GFLOP/s against LlamaTextEncoder::flops (2*M*N*K
// per linear, 4*L*L*H*hd for attention as if unmasked); for the real shape, the projected time of the full
// 32-layer encoder = 32 x the measured time per layer. Human lines go to stderr, one JSON object per run to
// stdout. The embedding table is cut to 1024 rows (a gather: its size does not change the time).
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <vector>

#include "backends/cpu/cpu_backend.h"
#include "backends/profiling_backend.h"
#include "core/memory_stats.h"
#include "core/parallel.h"
#include "io/json.h"
#include "text/bpe_tokenizer.h"
#include "text/clip_tokenizer.h"
#include "text/llama_text_encoder.h"
#include "text/prompt_encoder.h"

using namespace sr;

namespace {

double now() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

struct Stats {
    double median, min, max;
};

Stats time_reps(int reps, const std::function<void()>& fn) {
    fn();  // warm-up: oneDNN kernels are generated on first use
    std::vector<double> t;
    for (int r = 0; r < reps; ++r) {
        const double t0 = now();
        fn();
        t.push_back(now() - t0);
    }
    std::sort(t.begin(), t.end());
    return {t[t.size() / 2], t.front(), t.back()};
}

// The SkyReels default negative prompt and a typical positive prompt: the text the tokenizers really see.
const char* kPrompt =
    "FPS-24, A cat wearing sunglasses and working as a lifeguard at a pool, the sunlight glistens on the water, "
    "the cat leans back in a tall lifeguard chair, its whistle glinting, as swimmers splash below. The camera "
    "slowly pushes in, cinematic lighting, 35mm film, high detail, vivid colors.";

void bench_tokenizers(const std::string& dir, int reps) {
    namespace fs = std::filesystem;
    const PromptTemplate tmpl;
    std::string corpus;
    for (int i = 0; i < 100; ++i) corpus += std::string(kPrompt) + " ";
    if (fs::exists(fs::path(dir) / "llama3" / "tokenizer.json")) {
        const double t0 = now();
        const BpeTokenizer tok = BpeTokenizer::load((fs::path(dir) / "llama3").string());
        const double load_s = now() - t0;
        size_t n_tokens = 0;
        const Stats s = time_reps(reps, [&] { n_tokens = tok.encode(corpus).size(); });
        const Stats call = time_reps(reps, [&] { tokenize_llama_prompt(tok, tmpl, kPrompt); });
        std::fprintf(stderr, "llama3 BPE: load %.3f s | %.2f MB/s, %.0f tokens/s | pipeline call %.3f ms\n", load_s,
                     double(corpus.size()) / s.median * 1e-6, double(n_tokens) / s.median, call.median * 1e3);
        std::printf("%s\n", Json{{"bench", "tokenizer"},
                                 {"tokenizer", "llama3_bpe"},
                                 {"load_s", load_s},
                                 {"bytes", corpus.size()},
                                 {"tokens", n_tokens},
                                 {"median_s", s.median},
                                 {"mb_per_s", double(corpus.size()) / s.median * 1e-6},
                                 {"tokens_per_s", double(n_tokens) / s.median},
                                 {"pipeline_call_ms", call.median * 1e3}}
                                .dump()
                                .c_str());
    }
    if (fs::exists(fs::path(dir) / "clip" / "vocab.json")) {
        const double t0 = now();
        const ClipTokenizer tok = ClipTokenizer::load((fs::path(dir) / "clip").string());
        const double load_s = now() - t0;
        size_t n_tokens = 0;
        const Stats s = time_reps(reps, [&] { n_tokens = tok.encode(corpus).size(); });
        std::fprintf(stderr, "clip BPE:   load %.3f s | %.2f MB/s, %.0f tokens/s\n", load_s,
                     double(corpus.size()) / s.median * 1e-6, double(n_tokens) / s.median);
        std::printf("%s\n", Json{{"bench", "tokenizer"},
                                 {"tokenizer", "clip_bpe"},
                                 {"load_s", load_s},
                                 {"bytes", corpus.size()},
                                 {"tokens", n_tokens},
                                 {"median_s", s.median},
                                 {"mb_per_s", double(corpus.size()) / s.median * 1e-6},
                                 {"tokens_per_s", double(n_tokens) / s.median}}
                                .dump()
                                .c_str());
    }
}

struct NamedConfig {
    std::string name, note;
    LlamaConfig config;
    bool real_layer;  // project to the full 32-layer encoder
};

std::vector<NamedConfig> named_configs(int layers) {
    std::vector<NamedConfig> out;
    LlamaConfig m;
    m.vocab_size = 1024, m.hidden_size = 1024, m.intermediate_size = 3584, m.num_hidden_layers = 4;
    m.num_attention_heads = 8, m.num_key_value_heads = 2, m.head_dim = 128;
    out.push_back({"medium", "1024 wide (8 heads / 2 KV x 128), 3584 MLP, 4 layers", m, false});
    LlamaConfig r;  // the real layer shape
    r.vocab_size = 1024, r.num_hidden_layers = layers;
    out.push_back({"real_layers",
                   fmt::format("4096 wide (32 heads / 8 KV x 128), 14336 MLP, {} layers of the 32", layers), r, true});
    return out;
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"Text benchmark: tokenizers and the Llama text encoder on a 351-token prompt"};
    std::string tokenizers = std::string(SKYREELS_SOURCE_DIR) + "/../shared/fixtures/tokenizers";
    std::string which = "all", gemm_mode = "all";
    int reps = 3, threads = 0, layers = 2;
    app.add_option("--tokenizers", tokenizers, "Folder with llama3/ and clip/ tokenizer folders");
    app.add_option("--config", which, "medium | real_layers | all");
    app.add_option("--gemm", gemm_mode, "f32 | bf16 | all");
    app.add_option("--layers", layers, "Layers of the real shape to run (the projection scales to 32)");
    app.add_option("--reps", reps, "Timed repetitions after one warm-up");
    app.add_option("--threads", threads, "Threads (default: all)");
    CLI11_PARSE(app, argc, argv);
    if (threads > 0) set_n_threads(threads);
    reps = std::max(reps, 1);

    bench_tokenizers(tokenizers, std::max(reps, 5));

    CpuBackend& cpu = cpu_backend();
    const int64_t L = 351;  // 95 template tokens + 256 prompt tokens
    for (const NamedConfig& nc : named_configs(std::max(layers, 1))) {
        if (which != "all" && which != nc.name) continue;
        WeightBinder binder = WeightBinder::random(42, DType::BF16);
        const LlamaTextEncoder enc(nc.config, binder);
        Tensor ids = Tensor::empty({1, L}, DType::I64), mask = Tensor::empty({1, L}, DType::I64);
        for (int64_t l = 0; l < L; ++l) {
            ids.data<int64_t>()[l] = (l * 37) % nc.config.vocab_size;
            mask.data<int64_t>()[l] = l < 200 ? 1 : 0;  // a 105-token prompt, padded: the usual case
        }
        const double flops = LlamaTextEncoder::flops(nc.config, L, nc.config.num_hidden_layers);
        for (const std::string g : {"f32", "bf16"}) {
            if (gemm_mode != "all" && gemm_mode != g) continue;
            cpu.set_gemm_precision(g == "f32" ? GemmPrecision::F32 : GemmPrecision::BF16);
            const Stats s = time_reps(reps, [&] { enc.forward(cpu, ids, mask, -1); });
            const double per_layer = s.median / double(nc.config.num_hidden_layers);
            const double projected = nc.real_layer ? 32.0 * per_layer : 0.0;
            std::fprintf(stderr,
                         "llama %-11s %s | gemm %-4s | %d threads | median %.3f s (min %.3f, max %.3f) | %.1f GFLOP/s",
                         nc.name.c_str(), nc.note.c_str(), g.c_str(), n_threads(), s.median, s.min, s.max,
                         flops / s.median * 1e-9);
            if (nc.real_layer) std::fprintf(stderr, " | projected 32 layers: %.1f s", projected);
            std::fprintf(stderr, "\n");
            Json j{{"bench", "llama_encoder"},
                   {"config", nc.name},
                   {"note", nc.note},
                   {"tokens", L},
                   {"layers", nc.config.num_hidden_layers},
                   {"weights", "bf16"},
                   {"gemm", g},
                   {"threads", n_threads()},
                   {"reps", reps},
                   {"median_s", s.median},
                   {"min_s", s.min},
                   {"max_s", s.max},
                   {"gflop", flops * 1e-9},
                   {"gflop_per_s", flops / s.median * 1e-9},
                   {"per_layer_s", per_layer},
                   {"peak_rss_bytes", double(read_host_memory().peak_rss)}};
            if (nc.real_layer) j["projected_32_layers_s"] = projected;
            // Where the time goes: one more run through the profiling backend.
            ProfilingBackend prof(cpu);
            enc.forward(prof, ids, mask, -1);
            std::string line;
            for (const auto& [op, st] : prof.stats()) {
                j["profile"][op] = {
                    {"calls", st.calls}, {"s", st.seconds}, {"gflop_per_s", st.flops / st.seconds * 1e-9}};
                line += fmt::format(" {} {:.0f}%", op, 100.0 * st.seconds / prof.total_seconds());
            }
            std::fprintf(stderr, "  profile:%s\n", line.c_str());
            std::printf("%s\n", j.dump().c_str());
            std::fflush(stdout);
        }
    }
    return 0;
}
