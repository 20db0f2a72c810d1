// LoRA adapters once read and mapped onto a model's linear layers (by the layer's checkpoint name), and the
// two ways of applying one at load: merged into a dense weight (W += s B A, stored back in W's dtype), or kept
// as a low-rank side path of the layer (Linear::adapters: y += s B (A x)) so that a quantized, streamed or
// memory-mapped weight stays as it is stored. A model's reader of adapter files (models/*_lora.h) fills a
// LoraSet; BindWeights (nn/weight_visitor.h) applies it to every layer it binds.
//
//   sr::LoraSet set;                                       // filled by e.g. sr::read_hunyuan_video_loras
//   set.add("transformer_blocks.0.attn.to_q", {down, up, "style.safetensors"});
//   sr::BindWeights bind(binder, sr::LinearQuant::None, &set);
//   ... declare(bind, block) ...; set.unapplied();        // modules no layer took: an error upstream
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "io/weight_binder.h"
#include "nn/linear.h"

namespace sr {

// Auto: merge into dense weights the load owns (converted or quantized at load), a side path for weights that
// are quantized in the file or views of the mapped file (merging would force an owned copy of the model).
enum class LoraMode : uint8_t { Auto, Merge, Runtime };
const char* lora_mode_name(LoraMode mode);
// "auto", "merge", "runtime"; InputError naming the value otherwise.
LoraMode parse_lora_mode(const std::string& text);

// One adapter on one layer: down [rank, in] and up [out, rank], f32 on the host, with the adapter's
// strength x alpha / rank already folded into `up`.
struct LoraDelta {
    Tensor down, up;
    std::string origin;  // the adapter file, for messages
};

class LoraSet {
public:
    LoraMode mode = LoraMode::Auto;
    void add(const std::string& module, LoraDelta delta) { by_module_[module].push_back(std::move(delta)); }
    bool empty() const { return by_module_.empty(); }
    size_t module_count() const { return by_module_.size(); }
    // The deltas for the layer `module` (its checkpoint name without ".weight"), in the order added, or null;
    // marks them applied.
    const std::vector<LoraDelta>* take(const std::string& module) const;
    // The deltas for `module`, or null (a lookup at run time: marks nothing).
    const std::vector<LoraDelta>* find(const std::string& module) const;
    // Appends `other`'s deltas after this set's, module by module (a job's files, read one at a time).
    void append(const LoraSet& other);
    // This set with every delta's tensors in `backend`'s memory (the same tensors on the CPU backend): a
    // job's adapters, uploaded once for the job and dropped with the copy.
    LoraSet on_backend(Backend& backend) const;
    // Modules with deltas that no bound layer took.
    std::vector<std::string> unapplied() const;
    // Bytes of every delta's down and up.
    size_t bytes() const;

private:
    std::map<std::string, std::vector<LoraDelta>> by_module_;
    mutable std::set<std::string> applied_;
};

// Applies `deltas` to the bound layer `l` named `name`, as `mode` says (Auto resolved by the weight's storage).
// Merge into a weight that is not dense is an InputError naming the layer and its storage. A planning binder
// plans the memory (an owned merged copy, or the side path's tensors) and computes nothing.
void apply_lora(Linear& l, const std::string& name, const std::vector<LoraDelta>& deltas, LoraMode mode,
                WeightBinder& binder);

// W[out, in] (f32) += up[out, r] down[r, in], in f32 (a dot product per element, in order over r).
void add_low_rank(float* w, int64_t out, int64_t in, const Tensor& up, const Tensor& down);

}  // namespace sr
