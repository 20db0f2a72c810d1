// `skyreels convert MODEL --out FILE --type Q4_K`: a transformer checkpoint in any layout the engine reads,
// written as a GGUF file (for ComfyUI-GGUF and this engine) or as ComfyUI's scaled FP8 safetensors
// (models/hunyuan_video_convert.h). The file appears only when complete.
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <string>

#include "core/allocator.h"
#include "core/error.h"
#include "core/log.h"
#include "models/hunyuan_video_convert.h"
#include "tools/skyreels/commands.h"

namespace sr::cli {

namespace {

struct ConvertCliOptions {
    std::string model, out, type = "Q8_0";
    bool qkv_higher = false, quiet = false;
};

int run_convert(const ConvertCliOptions& c) {
    ConvertOptions o;
    o.output = c.out;
    o.qkv_one_higher = c.qkv_higher;
    std::string type = c.type;
    for (char& ch : type) ch = char(std::toupper(static_cast<unsigned char>(ch)));
    const std::string ext = std::filesystem::path(c.out).extension().string();
    if (type == "FP8") {
        o.format = ConvertFormat::ScaledFp8;
        SR_THROW_IF(ext != ".safetensors", "--out {}: an FP8 checkpoint is a .safetensors file", c.out);
        SR_THROW_IF(c.qkv_higher, "--qkv-higher is for GGUF block types, not fp8");
    } else {
        o.format = ConvertFormat::Gguf;
        SR_THROW_IF(ext != ".gguf", "--out {}: a GGUF file's name must end in .gguf", c.out);
        if (type != "BF16") {
            o.block_type = quant_type_from_name(type);
            SR_THROW_IF(!o.block_type,
                        "--type {}: expected Q8_0, Q6_K, Q5_K, Q4_K, Q4_0 (or Q5_0, Q5_1, Q4_1, Q3_K), "
                        "BF16 or fp8",
                        c.type);
        }
    }
    const bool live = !c.quiet && ::isatty(STDERR_FILENO);
    const ConvertReport r = convert_transformer(c.model, o, [&](int done, int total) {
        if (live) std::fprintf(stderr, "\rconverting: %d/%d tensors", done, total);
    });
    if (live) std::fprintf(stderr, "\n");
    if (!c.quiet) {
        std::string types;
        for (const auto& [t, n] : r.by_type) types += fmt::format("{}{} {}", types.empty() ? "" : ", ", n, t);
        std::fprintf(stderr, "skyreels: wrote %s: %d tensors (%s), %s from %s stored\n", c.out.c_str(), r.tensors,
                     types.c_str(), format_bytes(double(r.bytes_out)).c_str(),
                     format_bytes(double(r.bytes_in)).c_str());
    }
    std::printf("%s\n", c.out.c_str());
    return 0;
}

}  // namespace

Command add_convert_command(CLI::App& app) {
    auto o = std::make_shared<ConvertCliOptions>();
    CLI::App* cmd = app.add_subcommand(
        "convert", "Write a transformer checkpoint as GGUF (Q8_0, Q6_K, Q5_K, Q4_K, Q4_0, BF16, ...) or scaled FP8");
    cmd->add_option("model", o->model,
                    "The transformer: a folder, a pipeline folder, or one checkpoint file in any layout `info` reads")
        ->required();
    cmd->add_option("--out", o->out, "The output: a .gguf file, or a .safetensors file for fp8")->required();
    cmd->add_option("--type", o->type,
                    "Q8_0, Q6_K, Q5_K, Q4_K, Q4_0 (also Q5_1, Q5_0, Q4_1, Q3_K) or BF16 for GGUF; fp8 for ComfyUI's "
                    "scaled FP8 safetensors. Only the double and single blocks' weights take it (city96's rules)")
        ->capture_default_str();
    cmd->add_flag("--qkv-higher", o->qkv_higher, "GGUF: the fused q,k,v weights one type better (the _M variants)");
    cmd->add_flag("--quiet,-q", o->quiet, "No progress line and no summary");
    return [o] { return run_convert(*o); };
}

}  // namespace sr::cli
