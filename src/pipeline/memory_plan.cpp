#include "pipeline/memory_plan.h"

#include <algorithm>

#include "backends/null_backend.h"
#include "core/block_cache.h"
#include "core/virtual_allocator.h"
#ifdef SKYREELS_HAVE_CUDA
#include "runtime/cuda_accelerator.h"
#endif

namespace sr {

size_t MemoryPlan::device_peak() const {
    size_t peak = 0;
    for (const auto& s : stages) peak = std::max(peak, s.device_peak());
    return peak;
}

namespace {

// Runs one stage's real code on a NullBackend over its own address-space allocator. Model scopes
// (WeightPlacement::enter/leave) split the stage: the activation peak while each model runs, and the peak
// outside every model (when, with offload, no weights are on the device). Earlier stages' outputs that are
// still alive count too: they stay allocated on the device in a real run.
class StageProbe final : public WeightPlacement {
public:
    StageProbe(Device device, size_t (*block_bytes)(size_t)) : device_(device), block_bytes_(block_bytes) {}
    struct Peaks {
        std::array<size_t, kPipelineModels> model{};  // per model used in the stage
        size_t outside = 0;                           // outside every model scope
        size_t overall() const { return std::max(outside, *std::max_element(model.begin(), model.end())); }
    };
    template <class F>
    Peaks run(F&& stage) {
        carried_ = 0;
        for (const auto& s : spaces_) carried_ += s->in_use_bytes();
        spaces_.push_back(std::make_unique<VirtualAllocator>("plan", 0, device_, block_bytes_));
        NullBackend be(*spaces_.back());
        peaks_ = Peaks{};
        const size_t host_before = host_space_.in_use_bytes();
        host_space_.reset_peak();
        {
            // Host tensors in address space only, host arithmetic skipped: seconds and little memory at any size.
            HostPlanningScope host(host_space_);
            stage(be, static_cast<WeightPlacement*>(this));
        }
        peaks_.outside = std::max(peaks_.outside, now());
        host_peak_ = std::max(host_peak_, host_space_.peak_bytes() - std::min(host_before, host_space_.peak_bytes()));
        return peaks_;
    }
    size_t host_peak() const { return host_peak_; }

    BlockWeightProvider* enter(PipelineModel) override {
        peaks_.outside = std::max(peaks_.outside, now());
        spaces_.back()->reset_peak();
        return nullptr;  // the weights stay where they are: nothing is read
    }
    void leave(PipelineModel m) override {
        peaks_.model[size_t(m)] = std::max(peaks_.model[size_t(m)], now());
        spaces_.back()->reset_peak();
    }

private:
    size_t now() const { return carried_ + spaces_.back()->peak_bytes(); }
    Device device_;
    size_t (*block_bytes_)(size_t);
    VirtualAllocator host_space_{"plan host tensors"};  // outlives every tensor a stage hands to the next
    std::vector<std::unique_ptr<VirtualAllocator>> spaces_;
    size_t carried_ = 0;
    Peaks peaks_;
    size_t host_peak_ = 0;
};

size_t owned_bytes(const ModelBlocks& mb) {
    size_t n = 0;
    for (const auto& s : mb.blocks)
        for (const Tensor& t : s.tensors)
            if (t.defined() && !t.is_external_view()) n += t.nbytes();
    return n;
}

std::vector<std::pair<std::string, size_t>> sizes_of(const ModelBlocks& mb, size_t (*block_bytes)(size_t)) {
    std::vector<std::pair<std::string, size_t>> v;
    for (const auto& s : mb.blocks) {
        const size_t bytes = device_block_bytes(s);
        v.emplace_back(s.name, block_bytes ? block_bytes(bytes) : bytes);
    }
    return v;
}

}  // namespace

PlanTarget PlanTarget::of(Accelerator& accelerator) {
    // The CUDA caching allocator rounds every block (block_cache.h); the simulated device's arena does not.
    const Device d = accelerator.memory().device();
    return {accelerator.staging_bytes(), d, accelerator.backend().workspace_bytes(),
            d.type == DeviceType::CUDA ? &BlockCache::round_size : nullptr};
}

#ifdef SKYREELS_HAVE_CUDA
PlanTarget PlanTarget::of_cuda(const CudaAcceleratorOptions& options) {
    return {CudaAccelerator::staging_bytes(options), Device{DeviceType::CUDA, options.device},
            CudaBackend::kWorkspaceBytes, &BlockCache::round_size};
}
#endif

MemoryPlan plan_memory(const SkyReelsPipeline& pipe, const GenerationRequest& req, const MemoryOptions& options,
                       const PlanTarget& target, bool require_fit, const ParallelGroups& parallel) {
    const PipelineComponents& c = pipe.components();
    const GenerationParams& p = req.params;
    p.validate();
    MemoryPlan plan;

    // Activations, stage by stage, on the real code paths. Token ids only steer values, not sizes: without
    // given tokens the plan uses zeros of the template's fixed shapes (and needs no tokenizer).
    GenerationRequest planned = req;
    if (!planned.tokens && !planned.text) {
        const PromptTemplate& t = c.prompt_template;
        const int64_t B = p.do_cfg() ? 2 : 1;
        TextTokens tok;
        tok.llama_ids = Tensor::zeros({B, t.crop_start + t.max_sequence_length}, DType::I64);
        tok.llama_mask = Tensor::zeros({B, t.crop_start + t.max_sequence_length}, DType::I64);
        for (int64_t i = 0; i < tok.llama_mask.numel(); ++i) tok.llama_mask.data<int64_t>()[i] = 1;
        tok.clip_ids = Tensor::zeros({B, t.clip_max_length}, DType::I64);
        planned.tokens = tok;
    }
    StageProbe probe(target.device, target.block_bytes);
    TextConditioning text;
    auto text_act = probe.run([&](Backend& be, WeightPlacement* wp) { text = pipe.encode_text(be, planned, {}, wp); });
    Tensor image_latents;
    StageProbe::Peaks image_act{};
    if (p.task == Task::I2V)
        image_act = probe.run(
            [&](Backend& be, WeightPlacement* wp) { image_latents = pipe.encode_image(be, planned, {}, wp); });
    GenerationRequest one_step = planned;
    one_step.params.num_inference_steps = 1;
    one_step.start_step = 0;
    one_step.after_step = {};  // a plan writes nothing
    Tensor latents;
    auto denoise_act = probe.run([&](Backend& be, WeightPlacement* wp) {
        latents = pipe.denoise(be, one_step, text, image_latents, {}, {}, wp, parallel);
    });
    auto decode_act = probe.run([&](Backend& be, WeightPlacement* wp) {
        pipe.decode(
            be, latents, p.vae_tiling, [](const Tensor&, int64_t) {}, {}, wp);
    });
    plan.host_tensor_bytes = probe.host_peak();
    // The backend's own scratch comes on top of the activations wherever a model computes.
    for (StageProbe::Peaks* peaks : {&text_act, &image_act, &denoise_act, &decode_act})
        for (size_t& m : peaks->model)
            if (m) m += target.workspace_bytes;

    std::array<ModelBlocks, kPipelineModels> blocks;
    size_t all_weights = 0;
    for (size_t m = 0; m < kPipelineModels; ++m) {
        blocks[m] = pipeline_model_blocks(c, PipelineModel(m));
        plan.model_bytes[m] = blocks[m].bytes();
        all_weights += plan.model_bytes[m];
        plan.owned_weight_bytes += owned_bytes(blocks[m]);  // the VAE's two blocks are disjoint
    }
    using PM = PipelineModel;
    for (const StageProbe::Peaks* peaks :
         std::initializer_list<const StageProbe::Peaks*>{&text_act, &image_act, &denoise_act, &decode_act})
        for (size_t m = 0; m < kPipelineModels; ++m) plan.reserves[m] = std::max(plan.reserves[m], peaks->model[m]);
    plan.transformer_blocks = int(blocks[size_t(PM::Transformer)].blocks.size());
    for (const WeightBlock& b : blocks[size_t(PM::Transformer)].blocks) plan.side_path_bytes += side_path_bytes(b);
    // Row by row inside each resident block is one pass; only whole passes per row move the weights twice.
    plan.transformer_passes_per_step =
        p.do_cfg() && p.sequence_batch && p.cfg_whole_passes && !p.cache.enabled() ? 2 : 1;

    // Weights on the device per model while it runs.
    size_t pinned = 0;
    auto model_weights = [&](PM m) -> size_t {
        const size_t i = size_t(m);
        if (options.offload != OffloadMode::Block) return plan.model_bytes[i];
        ResidencyOptions o = residency_options(options, plan.reserves[i]);
        o.staging_bytes = target.staging_bytes;  // counted against --pinned-budget
        const auto sizes = sizes_of(blocks[i], target.block_bytes);
        size_t side = 0;  // the side paths: one resident allocation, as the residency manager makes it
        for (const WeightBlock& b : blocks[i].blocks) side += side_path_bytes(b);
        if (side && target.block_bytes) side = target.block_bytes(side);
        ResidencyPlan rp;
        try {
            SR_WITH_CONTEXT(fmt::format("planning the {} under --vram-budget {}", pipeline_model_name(m),
                                        format_bytes(double(options.vram_budget))),
                            rp = plan_residency(sizes, o, side));
        } catch (const OutOfMemoryError& e) {
            if (require_fit) throw;
            // Not even streaming fits: plan the least it needs (every block streamed) and say so.
            plan.shortfalls.push_back(e.what());
            o.budget_bytes = 0;
            rp = plan_residency(sizes, o, side);
            size_t largest = 0, all = 0;
            for (const auto& [name, bytes] : sizes) largest = std::max(largest, bytes), all += bytes;
            const size_t slots = std::min<size_t>(size_t(options.prefetch) + 1, sizes.size());
            rp.resident.assign(sizes.size(), false);
            rp.resident_bytes = 0, rp.slot_bytes = largest, rp.slots = int(slots);
            rp.streamed_bytes_per_pass = all;
        }
        pinned = std::max(pinned, planned_pinned_bytes(sizes, rp, o));  // one model placed at a time
        if (m == PM::Transformer) {
            plan.streamed_bytes_per_step = rp.streamed_bytes_per_pass * size_t(plan.transformer_passes_per_step);
            plan.streamed_blocks = rp.streamed_blocks();
        }
        return rp.weight_bytes();
    };
    // A stage's device peak: everything resident plus the stage's activation peak without offload; with it,
    // the worst of each model's turn (its weights plus its activations) and the time between models.
    auto stage = [&](Stage name, const StageProbe::Peaks& act, std::initializer_list<PM> models) {
        if (options.offload == OffloadMode::None) return StagePlan{name, all_weights, act.overall()};
        StagePlan worst{name, 0, act.outside};
        for (PM m : models) {
            const StagePlan turn{name, model_weights(m), act.model[size_t(m)]};
            if (turn.device_peak() > worst.device_peak()) worst = turn;
        }
        return worst;
    };
    // Batched CFG holds both rows' activations: when the denoising does not fit, say what halves them.
    const std::string cfg_hint =
        p.do_cfg() && !p.sequence_batch
            ? "; --sequence-batch runs the two guidance rows one after the other through each block, with the "
              "activations of one row"
            : "";
    plan.stages.push_back(stage(Stage::TextEncoding, text_act, {PM::Llama, PM::Clip}));
    if (p.task == Task::I2V) plan.stages.push_back(stage(Stage::ImageEncoding, image_act, {PM::VaeEncoder}));
    try {
        plan.stages.push_back(stage(Stage::Denoising, denoise_act, {PM::Transformer}));
    } catch (const OutOfMemoryError& e) {
        if (cfg_hint.empty()) throw;
        throw OutOfMemoryError(e.what() + cfg_hint);
    }
    plan.stages.push_back(stage(Stage::Decoding, decode_act, {PM::VaeDecoder}));
    plan.pinned_weight_bytes = pinned;
    plan.staging_bytes = options.host_memory == HostMemoryMode::Pageable ? 0 : target.staging_bytes;
    plan.pinned_bytes = plan.pinned_weight_bytes + plan.staging_bytes;

    if (options.vram_budget)
        for (const auto& s : plan.stages)
            if (s.device_peak() > options.vram_budget)
                plan.shortfalls.push_back(fmt::format(
                    "--vram-budget {}: {} needs {} of device memory ({} of weights with --offload {}, {} of "
                    "activations); short by {}{}{}",
                    format_bytes(double(options.vram_budget)), stage_name(s.name),
                    format_bytes(double(s.device_peak())), format_bytes(double(s.weight_bytes)),
                    offload_mode_name(options.offload), format_bytes(double(s.activation_bytes)),
                    format_bytes(double(s.device_peak() - options.vram_budget)),
                    options.offload == OffloadMode::Block ? "" : " (--offload block streams weights within the budget)",
                    s.name == Stage::Denoising ? cfg_hint : ""));
    if (require_fit && !plan.fits()) throw OutOfMemoryError(plan.shortfalls.front());
    return plan;
}

std::string MemoryPlan::format(const MemoryOptions& o, const std::string& device,
                               const std::string& budget_note) const {
    auto b = [](size_t n) { return format_bytes(double(n)); };
    std::string s =
        fmt::format("memory plan: device {}, --offload {}, --vram-budget {}, --host-memory {}{}, --prefetch {}\n",
                    device, offload_mode_name(o.offload), o.vram_budget ? b(o.vram_budget) : "unlimited",
                    host_memory_mode_name(o.host_memory),
                    o.pinned_budget ? ", --pinned-budget " + b(o.pinned_budget) : "", o.prefetch);
    if (!budget_note.empty()) s += fmt::format("  --vram-budget {}\n", budget_note);
    s += fmt::format("  {:<16} {:>12} {:>12} {:>12}\n", "stage", "weights", "activations", "device peak");
    for (const auto& st : stages)
        s += fmt::format("  {:<16} {:>12} {:>12} {:>12}\n", stage_name(st.name), b(st.weight_bytes),
                         b(st.activation_bytes), b(st.device_peak()));
    s += fmt::format("  peak device memory {}\n", b(device_peak()));
    if (streamed_blocks > 0)
        s += fmt::format("  denoising streams {} of {} transformer blocks: {} per step\n", streamed_blocks,
                         transformer_blocks, b(streamed_bytes_per_step));
    else
        s += "  denoising streams nothing: every weight stays resident\n";
    if (side_path_bytes > 0)
        s += fmt::format("  LoRA side paths: {} resident on the device while the transformer runs (never streamed)\n",
                         b(side_path_bytes));
    s += fmt::format(
        "  non-reclaimable host memory above the baseline: {} (pinned {}, owned weights {}, host tensors {})\n",
        b(host_nonreclaimable()), b(pinned_bytes), b(owned_weight_bytes), b(host_tensor_bytes));
    for (const std::string& why : shortfalls) s += "  does not fit: " + why + "\n";
    return s;
}

}  // namespace sr
