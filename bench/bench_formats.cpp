// Weight formats side by side on one model: bytes, the error of one forward against the bf16 weights it was
// made from, and CPU forward time (the cost of dequantizing a block of rows at a time inside the GEMM path).
//
//   build/bench/bench_formats [--config real_block|medium] [--formats bf16,fp8,Q8_0,Q6_K,Q5_K,Q4_K,Q4_0]
//                             [--reps 3] [--gemm f32|bf16]
//
// The model: random bf16 weights in the named configuration (real_block: the 13B model's width, 3072 =
// 24 x 128, one dual and one single block, 1024 video + 256 text tokens), written as a diffusers folder.
// Each format is made the way a user would: bf16 as saved; fp8 as SkyReels' --quant (torchao's
// float8_weight_only at load); a GGUF block type by `skyreels convert` (city96's rules: the blocks' weights
// quantized, the rest BF16/F32). One JSON line per format on stdout; a table on stderr.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "backends/cpu/cpu_backend.h"
#include "bench_inputs.h"
#include "core/parallel.h"
#include "io/json.h"
#include "io/safetensors.h"
#include "models/hunyuan_video_convert.h"
#include "models/hunyuan_video_transformer.h"

using namespace sr;
namespace fs = std::filesystem;

namespace {

using bench::uniform;

double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"weight formats: bytes, forward error vs bf16, CPU forward time"};
    std::string config_name = "real_block", gemm = "f32";
    std::vector<std::string> formats = {"bf16", "fp8", "Q8_0", "Q6_K", "Q5_K", "Q4_K", "Q4_0"};
    int reps = 3;
    app.add_option("--config", config_name, "real_block or medium")->capture_default_str();
    app.add_option("--formats", formats, "bf16, fp8 and GGUF block types")->delimiter(',');
    app.add_option("--reps", reps, "timed forwards per format (median reported)")->capture_default_str();
    app.add_option("--gemm", gemm, "f32 or bf16 GEMM arithmetic")->capture_default_str();
    CLI11_PARSE(app, argc, argv);
    try {
        HunyuanVideoConfig c;
        ForwardShape shape{.batch = 1, .frames = 4, .height = 32, .width = 32, .text_tokens = 256};
        if (config_name == "real_block") {
            c.num_layers = 1, c.num_single_layers = 1;
        } else if (config_name == "medium") {
            c.num_attention_heads = 4, c.num_layers = 2, c.num_single_layers = 4;
            c.text_embed_dim = 512;
            shape = {.batch = 1, .frames = 4, .height = 64, .width = 64, .text_tokens = 256};
        } else {
            SR_THROW("--config {}: real_block or medium", config_name);
        }
        cpu_backend().set_gemm_precision(gemm == "bf16" ? GemmPrecision::BF16 : GemmPrecision::F32);

        // The bf16 model, saved as a diffusers folder.
        const fs::path dir = fs::temp_directory_path() / ("skyreels_bench_formats_" + std::to_string(::getpid()));
        fs::create_directories(dir / "model");
        {
            WeightBinder random = WeightBinder::random(7, DType::BF16);
            const HunyuanVideoTransformer model(c, random);
            write_safetensors((dir / "model" / "diffusion_pytorch_model.safetensors").string(), random.generated());
            Json j = c.to_json();
            std::ofstream(dir / "model" / "config.json") << j.dump();
        }
        TransformerInputs in;
        in.hidden_states = uniform({1, c.in_channels, shape.frames, shape.height, shape.width}, 1, 1.0f);
        in.timestep = Tensor::from_vector({900.0f}, {1});
        in.guidance = Tensor::from_vector({1000.0f}, {1});
        in.encoder_hidden_states = uniform({1, shape.text_tokens, c.text_embed_dim}, 2, 1.0f);
        in.encoder_attention_mask =
            Tensor::from_vector(std::vector<float>(size_t(shape.text_tokens), 1.0f), {1, shape.text_tokens});
        in.pooled_projections = uniform({1, c.pooled_projection_dim}, 3, 1.0f);

        std::fprintf(stderr, "%s (%d threads, %s GEMM): %d timed forwards per format after a warm-up\n",
                     config_name.c_str(), n_threads(), gemm.c_str(), reps);
        std::fprintf(stderr, "%-6s %12s %12s %12s %10s %10s\n", "format", "weights", "rel. L2", "median s", "min s",
                     "vs bf16");
        Tensor reference;
        double bf16_seconds = 0;
        for (const std::string& format : formats) {
            std::string model_path = (dir / "model").string();
            TransformerLoadOptions load;
            if (format == "fp8") {
                load.quant = LinearQuant::Float8WeightOnly;
            } else if (format != "bf16") {
                const auto type = quant_type_from_name(format);
                SR_THROW_IF(!type, "--formats: {} is not bf16, fp8 or a GGUF block type", format);
                model_path = (dir / (format + ".gguf")).string();
                ConvertOptions o;
                o.output = model_path;
                o.block_type = type;
                convert_transformer((dir / "model").string(), o);
            }
            const HunyuanVideoTransformer model = HunyuanVideoTransformer::load(model_path, load);
            size_t bytes = 0;
            for (const WeightBlock& b : model.weight_blocks()) bytes += b.bytes();
            Tensor out = model.forward(cpu_backend(), in);  // warm-up (primitive caches, page faults)
            std::vector<double> times;
            for (int r = 0; r < reps; ++r) {
                const auto t0 = std::chrono::steady_clock::now();
                out = model.forward(cpu_backend(), in);
                times.push_back(seconds_since(t0));
            }
            std::sort(times.begin(), times.end());
            const double median = times[times.size() / 2];
            if (!reference.defined()) reference = out.contiguous(), bf16_seconds = median;
            double diff = 0, norm = 0;
            for (int64_t i = 0; i < out.numel(); ++i) {
                const double a = out.item_as_float(i), b = reference.item_as_float(i);
                diff += (a - b) * (a - b), norm += b * b;
            }
            const double rel = std::sqrt(diff / norm);
            std::fprintf(stderr, "%-6s %12s %12.2e %12.3f %10.3f %9.2fx\n", format.c_str(),
                         format_bytes(double(bytes)).c_str(), rel, median, times.front(), median / bf16_seconds);
            Json j{{"config", config_name},
                   {"format", format},
                   {"gemm", gemm},
                   {"weight_bytes", bytes},
                   {"relative_l2_vs_bf16", rel},
                   {"median_s", median},
                   {"min_s", times.front()},
                   {"time_vs_bf16", median / bf16_seconds},
                   {"threads", n_threads()}};
            std::printf("%s\n", j.dump().c_str());
        }
        fs::remove_all(dir);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "bench_formats: %s\n", e.what());
        return 1;
    }
    return 0;
}
