// `skyreels info MODEL_DIR`: what a downloaded checkpoint is and what running it costs, without reading
// its weights (they stay memory-mapped; binding checks every name, shape and dtype).
#include <cstdio>
#include <map>

#include "core/allocator.h"
#include "core/error.h"
#include "core/files.h"
#include "models/hunyuan_video_checkpoint.h"
#include "models/hunyuan_video_transformer.h"
#include "pipeline/pipeline.h"
#include "tools/skyreels/commands.h"

namespace sr::cli {

namespace {

struct InfoOptions {
    std::string model;
    int64_t frames = 97, height = 544, width = 960, text_tokens = 256, batch = 2;
    bool json = false;
};

// Pixel-space video shape -> latent shape, as the pipeline maps it (causal VAE: 4x time, 8x space).
ForwardShape latent_shape(const InfoOptions& o, const HunyuanVideoConfig& cfg) {
    // The limits generate applies (pipeline.h): past them the token and FLOP counts would overflow int64.
    SR_THROW_IF(o.frames < 1 || o.frames > kMaxVideoFrames || (o.frames - 1) % 4 != 0,
                "--frames {}: must be 4k+1 (e.g. 97, 129) up to {}", o.frames, kMaxVideoFrames);
    const int64_t spatial = 8 * cfg.patch_size;
    SR_THROW_IF(o.height < spatial || o.height > kMaxVideoSide || o.height % spatial != 0,
                "--height {}: must be a positive multiple of {} up to {}", o.height, spatial, kMaxVideoSide);
    SR_THROW_IF(o.width < spatial || o.width > kMaxVideoSide || o.width % spatial != 0,
                "--width {}: must be a positive multiple of {} up to {}", o.width, spatial, kMaxVideoSide);
    SR_THROW_IF(o.text_tokens < 1 || o.text_tokens > 4096, "--text-tokens {}: must be in 1..4096", o.text_tokens);
    SR_THROW_IF(o.batch < 1 || o.batch > 64, "--batch {}: must be in 1..64", o.batch);
    return {o.batch, (o.frames - 1) / 4 + 1, o.height / 8, o.width / 8, o.text_tokens};
}

std::string si(double v, const char* unit) {
    const char* prefixes[] = {"", "K", "M", "G", "T", "P"};
    int i = 0;
    while (v >= 1000.0 && i < 5) v /= 1000.0, ++i;
    return fmt::format("{:.2f} {}{}", v, prefixes[i], unit);
}

int run_info(const InfoOptions& o) {
    const auto model = HunyuanVideoTransformer::load(o.model);
    const HunyuanVideoConfig& c = model.config();
    const ForwardShape shape = latent_shape(o, c);
    const ForwardCost cost = estimate_forward_cost(c, shape);
    // The checkpoint's bytes by storage type, as stored (quantized tensors count their quantized bytes).
    const TransformerCheckpoint ckpt = open_transformer_checkpoint(o.model);
    std::map<std::string, size_t> bytes;
    size_t total = 0;
    for (const std::string& name : ckpt.source->names()) {
        const TensorInfo info = ckpt.source->info(name);
        const size_t n = stored_bytes(info);
        if (n == 0) continue;  // markers (ComfyUI's empty scaled_fp8)
        bytes[info.type_name()] += n;
        total += n;
    }
    size_t largest_block = 0;
    for (const auto& b : model.weight_blocks()) largest_block = std::max(largest_block, b.bytes());

    if (o.json) {
        Json j;
        j["model"] = o.model;
        j["layout"] = ckpt.layout;
        j["config_inferred"] = ckpt.config_inferred;
        j["config"] = c.to_json();
        j["parameters"] = model.parameter_count();
        j["bytes_by_dtype"] = bytes;
        j["weight_bytes"] = total;
        j["largest_block_bytes"] = largest_block;
        j["unused_tensors"] = model.unused_tensors();
        j["forward"] = {{"frames", o.frames},
                        {"height", o.height},
                        {"width", o.width},
                        {"batch", o.batch},
                        {"text_tokens", o.text_tokens},
                        {"video_tokens", cost.video_tokens},
                        {"linear_flops", cost.linear_flops},
                        {"attention_flops", cost.attention_flops},
                        {"total_flops", cost.total_flops()},
                        {"activation_bytes", cost.activation_bytes}};
        std::printf("%s\n", j.dump(2).c_str());
        return 0;
    }
    std::printf("model      %s (%s layout%s)\n", ckpt.source->source().c_str(), ckpt.layout.c_str(),
                ckpt.config_inferred ? ", config inferred from the tensor shapes" : "");
    std::printf("class      HunyuanVideoTransformer3DModel (%s)\n", c.in_channels == 16 ? "text-to-video"
                                                                    : c.in_channels == 32
                                                                        ? "image-to-video: noise + image latents"
                                                                        : "custom input channels");
    std::printf("config     %s\n", c.to_json().dump().c_str());
    std::printf("blocks     %ld dual-stream + %ld single-stream + %ld refiner, width %ld (%ld heads x %ld), MLP %ld\n",
                long(c.num_layers), long(c.num_single_layers), long(c.num_refiner_layers), long(c.inner_dim()),
                long(c.num_attention_heads), long(c.attention_head_dim), long(c.mlp_dim()));
    std::printf("parameters %s (%ld)\n", si(double(model.parameter_count()), "").c_str(),
                long(model.parameter_count()));
    std::printf("weights    %s:", format_bytes(double(total)).c_str());
    for (const auto& [dt, n] : bytes) std::printf(" %s %s", dt.c_str(), format_bytes(double(n)).c_str());
    std::printf("\n           largest block %s (the unit a streamed run moves at once)\n",
                format_bytes(double(largest_block)).c_str());
    if (!model.unused_tensors().empty())
        std::printf("unused     %zu tensor(s) not used by the model (first: '%s')\n", model.unused_tensors().size(),
                    printable(model.unused_tensors()[0]).c_str());  // a name from the file: escaped
    std::printf("forward    %ldx%ldx%ld video (latent %ldx%ldx%ld), batch %ld, %ld text tokens -> %ld video tokens\n",
                long(o.width), long(o.height), long(o.frames), long(shape.frames), long(shape.height),
                long(shape.width), long(o.batch), long(o.text_tokens), long(cost.video_tokens));
    std::printf("           %s (linear %s, attention %s)\n", si(cost.total_flops(), "FLOP").c_str(),
                si(cost.linear_flops, "FLOP").c_str(), si(cost.attention_flops, "FLOP").c_str());
    std::printf("           f32 activations at peak ~%s (one single-stream block)\n",
                format_bytes(cost.activation_bytes).c_str());
    return 0;
}

}  // namespace

Command add_info_command(CLI::App& app) {
    auto o = std::make_shared<InfoOptions>();
    CLI::App* cmd =
        app.add_subcommand("info", "Inspect a transformer checkpoint: config, parameters, bytes, forward cost");
    cmd->add_option("model", o->model,
                    "Transformer folder, diffusers pipeline folder, or one checkpoint file (safetensors in "
                    "diffusers or original HunyuanVideo names, FP8, GGUF)")
        ->required();
    cmd->add_option("--frames", o->frames, "Video frames for the cost estimate (4k+1)")->capture_default_str();
    cmd->add_option("--height", o->height, "Video height in pixels")->capture_default_str();
    cmd->add_option("--width", o->width, "Video width in pixels")->capture_default_str();
    cmd->add_option("--text-tokens", o->text_tokens, "Text tokens")->capture_default_str();
    cmd->add_option("--batch", o->batch, "Batch (2 = true CFG with a negative prompt)")->capture_default_str();
    cmd->add_flag("--json", o->json, "Machine-readable output");
    return [o] { return run_info(*o); };
}

}  // namespace sr::cli
