// CLIPTextTransformer, in the order it runs: token + position embeddings, per encoder layer
//   h += out_proj(causal_attention(q_proj(ln1(h)), k_proj(ln1(h)), v_proj(ln1(h))))
//   h += fc2(quick_gelu(fc1(ln2(h))))
// then final_layer_norm and the pooled row.
// ref: transformers v4.46.3 src/transformers/models/clip/modeling_clip.py
//
// Shapes: B batch, L tokens (<= 77), D hidden, H heads, hd = D / H, I intermediate width.
#include "text/clip_text_encoder.h"

#include <cmath>
#include <filesystem>
#include <type_traits>

#include "core/log.h"
#include "io/safetensors.h"

namespace sr {

namespace fs = std::filesystem;

ClipTextConfig ClipTextConfig::from_json(const Json& j, std::string_view src) {
    ClipTextConfig c;
    c.vocab_size = json_int(j, "vocab_size", src);
    c.hidden_size = json_int(j, "hidden_size", src);
    c.intermediate_size = json_int(j, "intermediate_size", src);
    c.num_hidden_layers = json_int(j, "num_hidden_layers", src);
    c.num_attention_heads = json_int(j, "num_attention_heads", src);
    c.max_position_embeddings = json_int_or(j, "max_position_embeddings", 77, src);
    c.hidden_act = json_string_or(j, "hidden_act", "quick_gelu", src);
    c.layer_norm_eps = json_number_or(j, "layer_norm_eps", 1e-5, src);
    c.eos_token_id = json_int_or(j, "eos_token_id", 2, src);
    return c;
}

void ClipTextConfig::validate(std::string_view src) const {
    auto in = [](int64_t v, int64_t lo, int64_t hi) { return v >= lo && v <= hi; };
    SR_THROW_IF(!in(vocab_size, 1, 1 << 24), "{}: vocab_size {} is not in [1, 2^24]", src, vocab_size);
    SR_THROW_IF(
        !in(hidden_size, 1, 1 << 16) || !in(num_attention_heads, 1, 1024) || hidden_size % num_attention_heads != 0,
        "{}: hidden_size {} must be a positive multiple of num_attention_heads {}", src, hidden_size,
        num_attention_heads);
    SR_THROW_IF(!in(intermediate_size, 1, 1 << 18), "{}: intermediate_size {} is out of range", src, intermediate_size);
    SR_THROW_IF(!in(num_hidden_layers, 1, 1024), "{}: num_hidden_layers {} is not in [1, 1024]", src,
                num_hidden_layers);
    SR_THROW_IF(!in(max_position_embeddings, 1, 1 << 16), "{}: max_position_embeddings {} is out of range", src,
                max_position_embeddings);
    SR_THROW_IF(!(layer_norm_eps > 0 && layer_norm_eps < 1), "{}: layer_norm_eps {} is out of range (0, 1)", src,
                layer_norm_eps);
    SR_THROW_IF(hidden_act != "quick_gelu", "{}: hidden_act '{}' is not supported (expected quick_gelu)", src,
                hidden_act);
}

ClipTextEncoder ClipTextEncoder::load(const std::string& path, std::optional<DType> weight_dtype,
                                      Allocator* planning_space) {
    std::error_code ec;
    SR_THROW_IF(!fs::is_directory(path, ec), "{}: not a folder (expected a CLIP text_encoder_2 folder)", path);
    const std::string config_path = (fs::path(path) / "config.json").string();
    SR_THROW_IF(!fs::exists(config_path, ec), "{}: missing config.json", path);
    const Json j = load_json_file(config_path);
    const std::string type = json_string_or(j, "model_type", "clip_text_model", config_path);
    SR_THROW_IF(type != "clip_text_model", "{}: model_type is '{}', not clip_text_model", config_path, type);
    const ClipTextConfig config = ClipTextConfig::from_json(j, config_path);
    const WeightStore store = WeightStore::open(path);
    WeightBinder binder(store, weight_dtype, planning_space);
    ClipTextEncoder enc(config, binder);
    std::vector<std::string> unused = binder.unused();
    std::erase(unused, "text_model.embeddings.position_ids");  // a buffer some checkpoints carry
    warn_unused_tensors(unused, path, "the CLIP text encoder");
    return enc;
}

ClipTextEncoder::ClipTextEncoder(const ClipTextConfig& config, WeightBinder& binder) : config_(config) {
    config_.validate(binder.source());
    layers_.resize(size_t(config_.num_hidden_layers));
    BindWeights bind(binder);
    for (size_t i = 0; i < weight_block_count(); ++i)
        with_block(*this, i, [&](auto& part, const std::string&) { declare(bind, part, i); });
    parameter_count_ = binder.parameter_count();
}

// ---------------------------------------------------------------------------------------------------------
// Weight blocks: every weight declared once per block (binding, listing, streaming and the tests walk these).

void ClipTextEncoder::declare(WeightVisitor& v, Embeddings& e, size_t) const {
    const int64_t D = config_.hidden_size;
    v.tensor("text_model.embeddings.token_embedding.weight", e.token_embedding, {config_.vocab_size, D},
             WeightKind::Matrix);
    v.tensor("text_model.embeddings.position_embedding.weight", e.position_embedding,
             {config_.max_position_embeddings, D}, WeightKind::Matrix);
}

void ClipTextEncoder::declare(WeightVisitor& v, Layer& l, size_t block) const {
    const int64_t D = config_.hidden_size, I = config_.intermediate_size;
    const std::string p = fmt::format("text_model.encoder.layers.{}.", block - 1);
    v.small_f32(p + "layer_norm1.weight", l.layer_norm1_weight, {D});
    v.small_f32(p + "layer_norm1.bias", l.layer_norm1_bias, {D});
    v.linear(p + "self_attn.q_proj", l.q_proj, D, D);
    v.linear(p + "self_attn.k_proj", l.k_proj, D, D);
    v.linear(p + "self_attn.v_proj", l.v_proj, D, D);
    v.linear(p + "self_attn.out_proj", l.out_proj, D, D);
    v.small_f32(p + "layer_norm2.weight", l.layer_norm2_weight, {D});
    v.small_f32(p + "layer_norm2.bias", l.layer_norm2_bias, {D});
    v.linear(p + "mlp.fc1", l.fc1, D, I);
    v.linear(p + "mlp.fc2", l.fc2, I, D);
}

void ClipTextEncoder::declare(WeightVisitor& v, FinalNorm& n, size_t) const {
    v.small_f32("text_model.final_layer_norm.weight", n.weight, {config_.hidden_size});
    v.small_f32("text_model.final_layer_norm.bias", n.bias, {config_.hidden_size});
}

template <class Self, class F>
void ClipTextEncoder::with_block(Self& self, size_t i, F&& f) {
    const size_t n = self.layers_.size();
    SR_ASSERT(i < n + 2, "weight block {} of {}", i, n + 2);
    if (i == 0) return f(self.embeddings_, std::string("clip.embeddings"));
    if (i <= n) return f(self.layers_[i - 1], fmt::format("clip.layers.{}", i - 1));
    f(self.final_norm_, std::string("clip.final_layer_norm"));
}

template <class Block>
Block ClipTextEncoder::rebind(const Block& block, const std::vector<Tensor>& tensors, size_t index) const {
    return rebind_block(block, tensors, [&](WeightVisitor& v, Block& b) { declare(v, b, index); });
}

WeightBlock ClipTextEncoder::weight_block(size_t i) const {
    WeightBlock out;
    with_block(*this, i, [&](const auto& part, const std::string& name) {
        out = declared_block(name, part, [&](WeightVisitor& v, auto& b) { declare(v, b, i); });
    });
    return out;
}

std::vector<WeightBlock> ClipTextEncoder::weight_blocks() const {
    return all_weight_blocks(*this);
}

std::vector<size_t> ClipTextEncoder::blocks_used() const {
    std::vector<size_t> used(weight_block_count());
    for (size_t i = 0; i < used.size(); ++i) used[i] = i;
    return used;
}

namespace {

int64_t id_at(const Tensor& ids, int64_t i) {
    return ids.dtype() == DType::I64 ? ids.data<int64_t>()[i] : ids.data<int32_t>()[i];
}

}  // namespace

ClipTextOutput ClipTextEncoder::forward(Backend& be, const Tensor& ids_in, const TextIntermediateHook& hook,
                                        BlockWeightProvider* weights) const {
    const auto& c = config_;
    SR_THROW_IF(ids_in.rank() != 2 || ids_in.dim(0) < 1 || ids_in.dim(1) < 1 ||
                    (ids_in.dtype() != DType::I64 && ids_in.dtype() != DType::I32),
                "CLIP input_ids must be I32/I64 [B, L], got {}", ids_in.describe());
    const Tensor ids = to_host(be, ids_in);  // read on the host for pooling; the gather takes them too
    const int64_t B = ids.dim(0), L = ids.dim(1), D = c.hidden_size, H = c.num_attention_heads, hd = D / H;
    SR_THROW_IF(L > c.max_position_embeddings, "CLIP input of {} tokens is longer than max_position_embeddings {}", L,
                c.max_position_embeddings);
    const float eps = float(c.layer_norm_eps);

    // Blocks in order (blocks_used): 0 the embeddings, 1 + i layer i, n + 1 the final layer norm.
    Tensor h = new_activation(be, {B, L, D}, "clip hidden states");
    {
        const BlockLease lease(weights, 0);
        const Embeddings emb = lease ? rebind(embeddings_, lease.tensors(), 0) : embeddings_;
        be.embedding(ids, emb.token_embedding, h);
        Tensor positions = Tensor::empty({B, L}, DType::I64);
        for (int64_t i = 0; i < B * L; ++i) positions.data<int64_t>()[i] = i % L;
        Tensor pos = new_activation(be, {B, L, D}, "clip position embeddings");
        be.embedding(positions, emb.position_embedding, pos);
        be.add(h, pos);
    }
    if (hook) hook("hidden_states.0", to_host(be, h));

    AttentionMask mask;
    mask.causal = true;  // the pipeline passes no attention mask: padding positions are seen (causally)
    Tensor x = new_activation(be, {B, L, D}, "clip layer norm");
    for (size_t i = 0; i < layers_.size(); ++i) {
        const BlockLease lease(weights, 1 + i);
        const Layer ly = lease ? rebind(layers_[i], lease.tensors(), 1 + i) : layers_[i];
        be.layer_norm(h, &ly.layer_norm1_weight, &ly.layer_norm1_bias, eps, x);
        const Tensor q = ly.q_proj.apply(be, x), k = ly.k_proj.apply(be, x), v = ly.v_proj.apply(be, x);  // [B, L, D]
        Tensor attn = new_activation(be, {B, L, D}, "clip attention");
        Tensor out_view = attn.view({B, L, H, hd}).permute({0, 2, 1, 3});
        be.attention(q.view({B, L, H, hd}).permute({0, 2, 1, 3}), k.view({B, L, H, hd}).permute({0, 2, 1, 3}),
                     v.view({B, L, H, hd}).permute({0, 2, 1, 3}), out_view, mask, float(1.0 / std::sqrt(double(hd))));
        be.add(h, ly.out_proj.apply(be, attn));
        be.layer_norm(h, &ly.layer_norm2_weight, &ly.layer_norm2_bias, eps, x);
        Tensor m = ly.fc1.apply(be, x);  // [B, L, I]
        be.quick_gelu(m, m);
        be.add(h, ly.fc2.apply(be, m));
        if (hook) hook(fmt::format("hidden_states.{}", i + 1), to_host(be, h));
    }

    ClipTextOutput out;
    out.last_hidden_state = new_activation(be, {B, L, D}, "clip last hidden state");
    {
        const BlockLease lease(weights, layers_.size() + 1);
        const FinalNorm fn = lease ? rebind(final_norm_, lease.tensors(), layers_.size() + 1) : final_norm_;
        be.layer_norm(h, &fn.weight, &fn.bias, eps, out.last_hidden_state);
    }
    // Pooling as transformers 4.46.3 picks the row: with eos_token_id == 2 (the released CLIP configs) the
    // legacy rule, the first position of the highest id (<|endoftext|> is the highest id of the vocabulary);
    // otherwise the first position holding eos_token_id (0 when there is none, as argmax of all zeros).
    out.pooler_output = new_activation(be, {B, D}, "clip pooler output");
    for (int64_t b = 0; b < B; ++b) {
        int64_t best = 0;
        if (c.eos_token_id == 2) {
            for (int64_t l = 1; l < L; ++l)
                if (id_at(ids, b * L + l) > id_at(ids, b * L + best)) best = l;
        } else {
            for (int64_t l = 0; l < L; ++l)
                if (id_at(ids, b * L + l) == c.eos_token_id) {
                    best = l;
                    break;
                }
        }
        out.pooled_positions.push_back(best);
        Tensor dst = out.pooler_output.select(0, b);
        be.copy(out.last_hidden_state.select(0, b).select(0, best), dst);
    }
    if (hook) {
        hook("last_hidden_state", to_host(be, out.last_hidden_state));
        hook("pooler_output", to_host(be, out.pooler_output));
    }
    return out;
}

}  // namespace sr
