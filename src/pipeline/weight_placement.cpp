#include "pipeline/weight_placement.h"

#include <utility>

namespace sr {

const char* pipeline_model_name(PipelineModel m) {
    switch (m) {
        case PipelineModel::Llama:
            return "text encoder (Llama)";
        case PipelineModel::Clip:
            return "text encoder 2 (CLIP)";
        case PipelineModel::VaeEncoder:
            return "VAE encoder";
        case PipelineModel::Transformer:
            return "transformer";
        case PipelineModel::VaeDecoder:
            return "VAE decoder";
    }
    return "?";
}

const char* offload_mode_name(OffloadMode m) {
    switch (m) {
        case OffloadMode::None:
            return "none";
        case OffloadMode::Model:
            return "model";
        case OffloadMode::Block:
            return "block";
    }
    return "?";
}

OffloadMode parse_offload_mode(std::string_view text, std::string_view what) {
    if (text == "none") return OffloadMode::None;
    if (text == "model") return OffloadMode::Model;
    if (text == "block") return OffloadMode::Block;
    throw InputError(fmt::format("{} '{}': expected none, model or block", what, text));
}

ResidencyOptions residency_options(const MemoryOptions& options, size_t reserve) {
    ResidencyOptions o;
    o.budget_bytes = options.vram_budget;
    o.reserve_bytes = reserve;
    o.prefetch = options.prefetch;
    o.host_memory = options.host_memory;
    o.pinned_budget_bytes = options.pinned_budget;
    return o;
}

size_t ModelBlocks::bytes() const {
    size_t n = 0;
    for (const auto& b : blocks) n += device_block_bytes(b) + side_path_bytes(b);
    return n;
}

namespace {
template <class Model>
ModelBlocks blocks_of(const Model& model, const std::vector<size_t>& used) {
    ModelBlocks mb;
    for (size_t i : used) {
        mb.blocks.push_back(model.weight_block(i));
        mb.model_index.push_back(i);
    }
    return mb;
}
std::vector<size_t> all_blocks(size_t n) {
    std::vector<size_t> v(n);
    for (size_t i = 0; i < n; ++i) v[i] = i;
    return v;
}
}  // namespace

ModelBlocks pipeline_model_blocks(const PipelineComponents& c, PipelineModel model) {
    switch (model) {
        case PipelineModel::Llama:
            return blocks_of(*c.llama, c.llama->blocks_used(-(c.prompt_template.num_hidden_layers_to_skip + 1)));
        case PipelineModel::Clip:
            return blocks_of(*c.clip, c.clip->blocks_used());
        case PipelineModel::VaeEncoder:
            return blocks_of(*c.vae, HunyuanVideoVAE::blocks_used(HunyuanVideoVAE::Pass::Encode));
        case PipelineModel::Transformer:
            return blocks_of(*c.transformer, all_blocks(c.transformer->weight_block_count()));
        case PipelineModel::VaeDecoder:
            return blocks_of(*c.vae, HunyuanVideoVAE::blocks_used(HunyuanVideoVAE::Pass::Decode));
    }
    return {};
}

// A residency manager over the blocks a stage uses, addressed by the model's own block numbers.
class DevicePlacement::Placed final : public BlockWeightProvider {
public:
    Placed(Accelerator& device, ModelBlocks blocks, const ResidencyOptions& options)
        : model_index_(std::move(blocks.model_index)), manager_(device, std::move(blocks.blocks), options) {}
    void begin_pass(const std::vector<size_t>& order) override { manager_.begin_pass(positions(order)); }
    void begin_open_pass(const std::vector<size_t>& first) override { manager_.begin_open_pass(positions(first)); }
    void continue_pass(const std::vector<size_t>& rest) override { manager_.continue_pass(positions(rest)); }
    const std::vector<Tensor>& acquire(size_t block) override { return manager_.acquire(position(block)); }
    void release(size_t block) override { manager_.release(position(block)); }
    ResidencyManager& manager() { return manager_; }

private:
    std::vector<size_t> positions(const std::vector<size_t>& order) const {
        std::vector<size_t> out;
        for (size_t b : order) out.push_back(position(b));
        return out;
    }
    size_t position(size_t block) const {
        for (size_t i = 0; i < model_index_.size(); ++i)
            if (model_index_[i] == block) return i;
        SR_ASSERT(false, "block {} is not placed for this stage", block);
        return 0;
    }
    std::vector<size_t> model_index_;
    ResidencyManager manager_;
};

DevicePlacement::DevicePlacement(Accelerator& device, const PipelineComponents& components,
                                 const MemoryOptions& options, const std::array<size_t, kPipelineModels>& reserves)
    : device_(device), components_(components), options_(options), reserves_(reserves) {}

DevicePlacement::~DevicePlacement() {
    for (size_t m = 0; m < kPipelineModels; ++m) retire(PipelineModel(m));
}

std::unique_ptr<DevicePlacement::Placed> DevicePlacement::place(PipelineModel model, bool whole) const {
    ResidencyOptions o = residency_options(options_, whole ? 0 : reserves_[size_t(model)]);
    if (whole) o.budget_bytes = 0;  // whole models: the device allocator holds the budget
    SR_WITH_CONTEXT(fmt::format("placing the {} on the {} device", pipeline_model_name(model), device_.name()),
                    return std::make_unique<Placed>(device_, pipeline_model_blocks(components_, model), o));
    return nullptr;  // not reached: the line above returns or throws
}

BlockWeightProvider* DevicePlacement::enter(PipelineModel model) {
    const size_t m = size_t(model);
    if (options_.offload == OffloadMode::None) {
        // Every model resident for the whole generation, placed together at the first use.
        if (!placed_[m])
            for (size_t k = 0; k < kPipelineModels; ++k) placed_[k] = place(PipelineModel(k), true);
    } else {
        SR_ASSERT(!placed_[m], "{} entered twice", pipeline_model_name(model));
        placed_[m] = place(model, options_.offload == OffloadMode::Model);
    }
    return placed_[m].get();
}

PlacementStats DevicePlacement::take_job_stats() {
    for (size_t m = 0; m < kPipelineModels; ++m) count(m);
    return std::exchange(stats_, PlacementStats{});
}

PlacementStats DevicePlacement::finish() {
    for (size_t m = 0; m < kPipelineModels; ++m) retire(PipelineModel(m));
    return std::exchange(stats_, PlacementStats{});
}

void DevicePlacement::count(size_t m) {
    if (!placed_[m]) return;
    const ResidencyStats s = placed_[m]->manager().stats();
    PlacementStats& seen = counted_[m];
    stats_.bytes_moved += s.bytes_moved - seen.bytes_moved;
    if (PipelineModel(m) == PipelineModel::Transformer)
        stats_.transformer_streamed_bytes += s.streamed_bytes - seen.transformer_streamed_bytes;
    seen = {s.bytes_moved, s.streamed_bytes};
}

void DevicePlacement::leave(PipelineModel model) {
    if (options_.offload != OffloadMode::None) retire(model);
}

void DevicePlacement::retire(PipelineModel model) {
    auto& p = placed_[size_t(model)];
    if (!p) return;
    count(size_t(model));
    counted_[size_t(model)] = {};
    p.reset();  // its device memory goes back to the budget
}

}  // namespace sr
