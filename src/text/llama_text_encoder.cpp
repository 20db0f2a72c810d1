// LlamaModel, in the order it runs: token embedding, then per decoder layer
//   h += o_proj(attention(rope(q_proj(rms(h))), rope(k_proj(rms(h))), v_proj(rms(h))))   causal + padding
//   h += down_proj(silu(gate_proj(rms(h))) * up_proj(rms(h)))
// and the final RMSNorm, which transformers puts in place of the last layer's raw output in hidden_states.
// ref: transformers v4.46.3 src/transformers/models/llama/modeling_llama.py
//
// Shapes: B batch, L tokens, D hidden, H query heads, G key/value heads (H % G == 0), hd head_dim,
// I intermediate (MLP) width.
#include "text/llama_text_encoder.h"

#include <cmath>
#include <filesystem>
#include <type_traits>

#include "core/log.h"
#include "io/safetensors.h"

namespace sr {

namespace fs = std::filesystem;

// ---------------------------------------------------------------------------------------------------------
// Config and loading

LlamaConfig LlamaConfig::from_json(const Json& j, std::string_view src) {
    LlamaConfig c;
    c.vocab_size = json_int(j, "vocab_size", src);
    c.hidden_size = json_int(j, "hidden_size", src);
    c.intermediate_size = json_int(j, "intermediate_size", src);
    c.num_hidden_layers = json_int(j, "num_hidden_layers", src);
    c.num_attention_heads = json_int(j, "num_attention_heads", src);
    c.num_key_value_heads = json_int_or(j, "num_key_value_heads", c.num_attention_heads, src);
    c.head_dim = c.num_attention_heads > 0 ? c.hidden_size / c.num_attention_heads : 0;
    if (j.contains("head_dim") && !j["head_dim"].is_null()) c.head_dim = json_int(j, "head_dim", src);
    c.rope_theta = json_number_or(j, "rope_theta", 10000.0, src);
    c.rms_norm_eps = json_number_or(j, "rms_norm_eps", 1e-6, src);
    c.max_position_embeddings = json_int_or(j, "max_position_embeddings", 2048, src);
    c.hidden_act = json_string_or(j, "hidden_act", "silu", src);
    c.attention_bias = json_bool_or(j, "attention_bias", false, src);
    c.mlp_bias = json_bool_or(j, "mlp_bias", false, src);
    // Llama-3.1-style rope_scaling changes the frequencies; the HunyuanVideo encoder (Llama-3) has none.
    SR_THROW_IF(j.contains("rope_scaling") && !j["rope_scaling"].is_null(),
                "{}: rope_scaling is not supported (the HunyuanVideo text encoder has none)", src);
    return c;
}

void LlamaConfig::validate(std::string_view src) const {
    auto in = [](int64_t v, int64_t lo, int64_t hi) { return v >= lo && v <= hi; };
    SR_THROW_IF(!in(vocab_size, 1, 1 << 24), "{}: vocab_size {} is not in [1, 2^24]", src, vocab_size);
    SR_THROW_IF(!in(hidden_size, 1, 1 << 16), "{}: hidden_size {} is not in [1, 65536]", src, hidden_size);
    SR_THROW_IF(!in(intermediate_size, 1, 1 << 18), "{}: intermediate_size {} is out of range", src, intermediate_size);
    SR_THROW_IF(!in(num_hidden_layers, 1, 1024), "{}: num_hidden_layers {} is not in [1, 1024]", src,
                num_hidden_layers);
    SR_THROW_IF(!in(num_attention_heads, 1, 1024) || !in(num_key_value_heads, 1, num_attention_heads) ||
                    num_attention_heads % num_key_value_heads != 0,
                "{}: num_attention_heads {} must be a positive multiple of num_key_value_heads {}", src,
                num_attention_heads, num_key_value_heads);
    SR_THROW_IF(!in(head_dim, 2, 1024) || head_dim % 2 != 0, "{}: head_dim {} must be even and in [2, 1024]", src,
                head_dim);
    SR_THROW_IF(!(rope_theta > 1 && rope_theta <= 1e12), "{}: rope_theta {} is out of range (1, 1e12]", src,
                rope_theta);
    SR_THROW_IF(!(rms_norm_eps > 0 && rms_norm_eps < 1), "{}: rms_norm_eps {} is out of range (0, 1)", src,
                rms_norm_eps);
    SR_THROW_IF(hidden_act != "silu", "{}: hidden_act '{}' is not supported (expected silu)", src, hidden_act);
    SR_THROW_IF(attention_bias || mlp_bias, "{}: attention_bias / mlp_bias are not supported", src);
}

LlamaTextEncoder LlamaTextEncoder::load(const std::string& path, std::optional<DType> weight_dtype,
                                        Allocator* planning_space, LinearQuant quant) {
    std::error_code ec;
    SR_THROW_IF(!fs::is_directory(path, ec), "{}: not a folder (expected a Llama text_encoder folder)", path);
    const std::string config_path = (fs::path(path) / "config.json").string();
    SR_THROW_IF(!fs::exists(config_path, ec), "{}: missing config.json", path);
    const Json j = load_json_file(config_path);
    const std::string type = json_string_or(j, "model_type", "llama", config_path);
    SR_THROW_IF(type != "llama", "{}: model_type is '{}', not llama", config_path, type);
    const LlamaConfig config = LlamaConfig::from_json(j, config_path);
    const WeightStore store = WeightStore::open(path);
    // LlamaForCausalLM checkpoints prefix every name with "model." (and add an unused lm_head).
    const std::string prefix = store.contains("model.embed_tokens.weight") ? "model." : "";
    WeightBinder binder(store, weight_dtype, planning_space);
    LlamaTextEncoder enc(config, binder, prefix, quant);
    std::vector<std::string> unused = binder.unused();
    std::erase(unused, "lm_head.weight");  // LlamaForCausalLM's head: not part of the encoder
    warn_unused_tensors(unused, path, "the Llama text encoder");
    return enc;
}

LlamaTextEncoder::LlamaTextEncoder(const LlamaConfig& config, WeightBinder& binder, const std::string& prefix,
                                   LinearQuant quant)
    : config_(config), prefix_(prefix) {
    config_.validate(binder.source());
    layers_.resize(size_t(config_.num_hidden_layers));
    BindWeights bind(binder, quant);
    for (size_t i = 0; i < weight_block_count(); ++i)
        with_block(*this, i, [&](auto& part, const std::string&) { declare(bind, part, i); });
    parameter_count_ = binder.parameter_count();
}

// ---------------------------------------------------------------------------------------------------------
// Weight blocks: every weight declared once per block (binding, listing, streaming and the tests walk these).

void LlamaTextEncoder::declare(WeightVisitor& v, Embeddings& e, size_t) const {
    v.tensor(prefix_ + "embed_tokens.weight", e.table, {config_.vocab_size, config_.hidden_size}, WeightKind::Matrix);
}

void LlamaTextEncoder::declare(WeightVisitor& v, Layer& l, size_t block) const {
    const auto& c = config_;
    const int64_t D = c.hidden_size, I = c.intermediate_size;
    const int64_t q_width = c.num_attention_heads * c.head_dim, kv_width = c.num_key_value_heads * c.head_dim;
    const std::string p = fmt::format("{}layers.{}.", prefix_, block - 1);
    v.small_f32(p + "input_layernorm.weight", l.input_layernorm, {D});
    v.linear(p + "self_attn.q_proj", l.q_proj, D, q_width, false);
    v.linear(p + "self_attn.k_proj", l.k_proj, D, kv_width, false);
    v.linear(p + "self_attn.v_proj", l.v_proj, D, kv_width, false);
    v.linear(p + "self_attn.o_proj", l.o_proj, q_width, D, false);
    v.small_f32(p + "post_attention_layernorm.weight", l.post_attention_layernorm, {D});
    v.linear(p + "mlp.gate_proj", l.gate_proj, D, I, false);
    v.linear(p + "mlp.up_proj", l.up_proj, D, I, false);
    v.linear(p + "mlp.down_proj", l.down_proj, I, D, false);
}

void LlamaTextEncoder::declare(WeightVisitor& v, FinalNorm& n, size_t) const {
    v.small_f32(prefix_ + "norm.weight", n.weight, {config_.hidden_size});
}

template <class Self, class F>
void LlamaTextEncoder::with_block(Self& self, size_t i, F&& f) {
    const size_t n = self.layers_.size();
    SR_ASSERT(i < n + 2, "weight block {} of {}", i, n + 2);
    if (i == 0) return f(self.embed_tokens_, std::string("llama.embeddings"));
    if (i <= n) return f(self.layers_[i - 1], fmt::format("llama.layers.{}", i - 1));
    f(self.norm_, std::string("llama.final_norm"));
}

template <class Part>
Part LlamaTextEncoder::rebind(const Part& part, const std::vector<Tensor>& tensors, size_t index) const {
    return rebind_block(part, tensors, [&](WeightVisitor& v, Part& p) { declare(v, p, index); });
}

WeightBlock LlamaTextEncoder::weight_block(size_t i) const {
    WeightBlock out;
    with_block(*this, i, [&](const auto& part, const std::string& name) {
        out = declared_block(name, part, [&](WeightVisitor& v, auto& p) { declare(v, p, i); });
    });
    return out;
}

std::vector<WeightBlock> LlamaTextEncoder::weight_blocks() const {
    return all_weight_blocks(*this);
}

int64_t LlamaTextEncoder::resolve_index(int hidden_state_index) const {
    const int64_t n = config_.num_hidden_layers;
    const int64_t index = hidden_state_index < 0 ? hidden_state_index + n + 1 : hidden_state_index;
    SR_THROW_IF(index < 0 || index > n, "hidden state {} does not exist (the model has {} layers: -{}..{})",
                hidden_state_index, n, n + 1, n);
    return index;
}

std::vector<size_t> LlamaTextEncoder::blocks_used(int hidden_state_index) const {
    const int64_t k = resolve_index(hidden_state_index);
    std::vector<size_t> used;
    for (int64_t b = 0; b <= k; ++b) used.push_back(size_t(b));              // embeddings, layers 0..k-1
    if (k == config_.num_hidden_layers) used.push_back(layers_.size() + 1);  // the final norm
    return used;
}

double LlamaTextEncoder::flops(const LlamaConfig& c, int64_t n_tokens, int64_t n_layers) {
    const double D = double(c.hidden_size), qw = double(c.num_attention_heads * c.head_dim),
                 kvw = double(c.num_key_value_heads * c.head_dim), I = double(c.intermediate_size),
                 L = double(n_tokens);
    const double gemm = 2.0 * L * (D * qw + 2.0 * D * kvw + qw * D + 3.0 * D * I);
    const double attn = 2.0 * 2.0 * L * L * qw;  // q k^T and p v over the full (unmasked) L x L
    return double(n_layers) * (gemm + attn);
}

// ---------------------------------------------------------------------------------------------------------
// Forward

std::vector<int32_t> read_mask(const Tensor& mask) {
    SR_THROW_IF(mask.rank() != 2, "attention_mask must be [B, L], got {}", mask.describe());
    std::vector<int32_t> m(size_t(mask.numel()));
    const Tensor c = mask.contiguous();
    for (int64_t i = 0; i < c.numel(); ++i) {
        double v;
        switch (c.dtype()) {
            case DType::I64:
                v = double(c.data<int64_t>()[i]);
                break;
            case DType::I32:
                v = double(c.data<int32_t>()[i]);
                break;
            case DType::Bool:
                v = double(c.data<uint8_t>()[i]);
                break;
            default:
                v = double(c.item_as_float(i));
                break;
        }
        m[size_t(i)] = v != 0.0 ? 1 : 0;
    }
    return m;
}

namespace {

// Key masking for causal attention over [B, L] tokens: right padding becomes kv_len (the fast path); any
// other pattern becomes a dense [B, L, L] key mask. The causal part is the attention op's own flag.
AttentionMask make_mask(const std::vector<int32_t>& m, int64_t B, int64_t L) {
    AttentionMask mask;
    mask.causal = true;
    if (m.empty()) return mask;
    bool right_padded = true;
    std::vector<int64_t> kv_len(static_cast<size_t>(B));
    for (int64_t b = 0; b < B; ++b) {
        int64_t n = 0;
        while (n < L && m[size_t(b * L + n)]) ++n;
        for (int64_t l = n; l < L; ++l) right_padded &= m[size_t(b * L + l)] == 0;
        kv_len[size_t(b)] = n;
    }
    if (right_padded) {
        mask.kv_len = std::move(kv_len);
        return mask;
    }
    mask.dense = Tensor::empty({B, L, L}, DType::Bool, host_allocator(), "llama attention mask");
    uint8_t* d = mask.dense.data<uint8_t>();
    for (int64_t b = 0; b < B; ++b)
        for (int64_t i = 0; i < L; ++i)
            for (int64_t j = 0; j < L; ++j) d[(b * L + i) * L + j] = uint8_t(m[size_t(b * L + j)]);
    return mask;
}

// RoPE tables [L, hd]: cat(freqs, freqs) with freqs[l, i] = l * theta^(-2i/hd), in f32 as transformers
// computes them (inv_freq and the product rounded to f32, then cos/sin).
void rope_tables(const LlamaConfig& c, int64_t L, Tensor& cos, Tensor& sin) {
    const int64_t hd = c.head_dim, half = hd / 2;
    cos = Tensor::empty({L, hd}, DType::F32);
    sin = Tensor::empty({L, hd}, DType::F32);
    std::vector<float> inv_freq(static_cast<size_t>(half));
    for (int64_t i = 0; i < half; ++i)
        inv_freq[size_t(i)] = 1.0f / std::pow(float(c.rope_theta), float(2 * i) / float(hd));
    for (int64_t l = 0; l < L; ++l)
        for (int64_t i = 0; i < half; ++i) {
            const float angle = float(l) * inv_freq[size_t(i)];
            const float cv = float(std::cos(double(angle))), sv = float(std::sin(double(angle)));
            cos.data<float>()[l * hd + i] = cos.data<float>()[l * hd + i + half] = cv;
            sin.data<float>()[l * hd + i] = sin.data<float>()[l * hd + i + half] = sv;
        }
}

}  // namespace

void LlamaTextEncoder::layer_forward(Backend& be, const Layer& ly, Tensor& h, const Tensor& cos, const Tensor& sin,
                                     const AttentionMask& mask) const {
    const auto& c = config_;
    const int64_t B = h.dim(0), L = h.dim(1), H = c.num_attention_heads, G = c.num_key_value_heads, hd = c.head_dim,
                  rep = H / G;
    const float eps = float(c.rms_norm_eps);

    Tensor x = new_activation(be, h.shape(), "llama rms norm");
    be.rms_norm(h, &ly.input_layernorm, eps, x);  // [B, L, D]
    Tensor q = ly.q_proj.apply(be, x);            // [B, L, H*hd]
    Tensor k = ly.k_proj.apply(be, x);            // [B, L, G*hd]
    Tensor v = ly.v_proj.apply(be, x);            // [B, L, G*hd]
    Tensor q4 = q.view({B, L, H, hd});
    Tensor k4 = k.view({B, L, G, hd});
    be.rope_half(q4, cos, sin);
    be.rope_half(k4, cos, sin);
    // Grouped-query attention: query head i reads key/value head i / rep, so each kv head is repeated rep times
    // (transformers' repeat_kv) into [B, L, H, hd].
    Tensor k_rep = k, v_rep = v;
    if (rep > 1) {
        k_rep = new_activation(be, {B, L, H * hd}, "llama repeated keys");
        v_rep = new_activation(be, {B, L, H * hd}, "llama repeated values");
        const Tensor v4 = v.view({B, L, G, hd});
        for (int64_t r = 0; r < rep; ++r) {
            Tensor kd = k_rep.view({B, L, G, rep, hd}).select(3, r);  // [B, L, G, hd]
            Tensor vd = v_rep.view({B, L, G, rep, hd}).select(3, r);
            be.copy(k4, kd);
            be.copy(v4, vd);
        }
    }
    Tensor attn = new_activation(be, {B, L, H * hd}, "llama attention");
    Tensor out_view = attn.view({B, L, H, hd}).permute({0, 2, 1, 3});
    be.attention(q.view({B, L, H, hd}).permute({0, 2, 1, 3}), k_rep.view({B, L, H, hd}).permute({0, 2, 1, 3}),
                 v_rep.view({B, L, H, hd}).permute({0, 2, 1, 3}), out_view, mask, float(1.0 / std::sqrt(double(hd))));
    be.add(h, ly.o_proj.apply(be, attn));

    be.rms_norm(h, &ly.post_attention_layernorm, eps, x);
    Tensor gate = ly.gate_proj.apply(be, x);  // [B, L, I]
    const Tensor up = ly.up_proj.apply(be, x);
    be.silu(gate, gate);
    be.mul(gate, up);
    be.add(h, ly.down_proj.apply(be, gate));
}

Tensor LlamaTextEncoder::forward(Backend& be, const Tensor& ids, const Tensor& attention_mask, int hidden_state_index,
                                 const TextIntermediateHook& hook, BlockWeightProvider* weights) const {
    const int64_t n = config_.num_hidden_layers;
    const int64_t index = resolve_index(hidden_state_index);
    SR_THROW_IF(ids.rank() != 2 || ids.dim(0) < 1 || ids.dim(1) < 1, "input_ids must be [B, L], got {}",
                ids.describe());
    const int64_t B = ids.dim(0), L = ids.dim(1), D = config_.hidden_size;
    std::vector<int32_t> m;
    if (attention_mask.defined()) {
        SR_THROW_IF(!(attention_mask.shape() == ids.shape()), "attention_mask {} does not match input_ids {}",
                    attention_mask.describe(), ids.describe());
        m = read_mask(to_host(be, attention_mask));
    }
    // The masks and RoPE tables are built on the host, then uploaded.
    AttentionMask mask = make_mask(m, B, L);
    if (mask.dense.defined()) mask.dense = to_device(be, mask.dense, "llama attention mask");
    Tensor cos_host, sin_host;
    rope_tables(config_, L, cos_host, sin_host);
    const Tensor cos = to_device(be, cos_host, "llama rope cos"), sin = to_device(be, sin_host, "llama rope sin");

    // Blocks as blocks_used() lists them: 0 the embeddings, 1 + i layer i, n + 1 the final norm. Inputs are
    // checked above, so a bad call throws before anything is acquired.
    Tensor h = new_activation(be, {B, L, D}, "llama hidden states");
    {
        const BlockLease lease(weights, 0);
        be.embedding(ids, (lease ? rebind(embed_tokens_, lease.tensors(), 0) : embed_tokens_).table, h);
    }
    if (hook) hook("hidden_states.0", to_host(be, h));
    for (int64_t i = 0; i < std::min(index, n); ++i) {
        {
            const BlockLease lease(weights, size_t(1 + i));
            const Layer& own = layers_[size_t(i)];
            layer_forward(be, lease ? rebind(own, lease.tensors(), size_t(1 + i)) : own, h, cos, sin, mask);
        }
        if (hook && i + 1 < n) hook(fmt::format("hidden_states.{}", i + 1), to_host(be, h));
    }
    if (index < n) return h;
    Tensor normed = new_activation(be, {B, L, D}, "llama final norm");
    {
        const BlockLease lease(weights, size_t(n + 1));
        const FinalNorm norm = lease ? rebind(norm_, lease.tensors(), size_t(n + 1)) : norm_;
        be.rms_norm(h, &norm.weight, float(config_.rms_norm_eps), normed);
    }
    if (hook) {
        const Tensor host = to_host(be, normed);
        hook(fmt::format("hidden_states.{}", n), host);
        hook("last_hidden_state", host);
    }
    return normed;
}

}  // namespace sr
