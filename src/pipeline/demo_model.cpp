#include "pipeline/demo_model.h"

#include "core/error.h"
#include "io/json.h"

namespace sr {

namespace {

// The Llama-3 specials that DEFAULT_PROMPT_TEMPLATE and the post-processor use, plus the pad token.
constexpr const char* kLlamaSpecials[] = {"<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
                                          "<|finetune_right_pad_id|>"};

// tokenizer.json of a byte-level BPE without merges: every byte is one token (id = byte), specials after.
BpeTokenizer make_llama_tokenizer() {
    Json vocab = Json::object();
    const auto& alphabet = byte_level_alphabet();
    for (int b = 0; b < 256; ++b) vocab[alphabet[size_t(b)]] = b;
    Json added = Json::array();
    int id = 256;
    for (const char* s : kLlamaSpecials) added.push_back({{"id", id++}, {"content", s}, {"special", true}});
    Json j;
    j["version"] = "1.0";
    j["added_tokens"] = added;
    j["normalizer"] = nullptr;
    j["pre_tokenizer"] = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}};
    j["post_processor"] = {
        {"type", "TemplateProcessing"},
        {"single", Json::array({{{"SpecialToken", {{"id", "<|begin_of_text|>"}, {"type_id", 0}}}},
                                {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}})},
        {"special_tokens",
         {{"<|begin_of_text|>", {{"id", "<|begin_of_text|>"}, {"ids", {256}}, {"tokens", {"<|begin_of_text|>"}}}}}}};
    j["model"] = {{"type", "BPE"}, {"vocab", vocab}, {"merges", Json::array()}, {"ignore_merges", true}};
    return BpeTokenizer::from_json(j, Json{{"pad_token", "<|finetune_right_pad_id|>"}}, "demo tokenizer.json",
                                   "demo tokenizer_config.json");
}

// vocab.json + merges.txt of a CLIP tokenizer: byte characters, their "</w>" forms, one merge, bos, eos
// (eos last: CLIP's legacy pooling takes the position of the largest id).
ClipTokenizer make_clip_tokenizer() {
    Json vocab = Json::object();
    const auto& alphabet = byte_level_alphabet();
    int id = 0;
    for (int b = 0; b < 256; ++b) vocab[alphabet[size_t(b)]] = id++;
    for (int b = 0; b < 256; ++b) vocab[alphabet[size_t(b)] + "</w>"] = id++;
    vocab["er</w>"] = id++;
    vocab["<|startoftext|>"] = id++;
    vocab["<|endoftext|>"] = id++;
    return ClipTokenizer::from_json(vocab, "#version: 0.2\ne r</w>\n", "demo vocab.json", "demo merges.txt");
}

}  // namespace

GenerationParams demo_params(Task task) {
    GenerationParams p;
    p.task = task;
    p.height = 128;
    p.width = 128;
    p.num_frames = 17;
    p.num_inference_steps = 6;
    p.guidance_scale = 6.0;
    p.embedded_guidance_scale = 1.0;
    return p;
}

Tensor demo_image(int64_t height, int64_t width) {
    Tensor im = Tensor::empty({3, height, width}, DType::F32);
    float* x = im.data<float>();
    for (int64_t y = 0; y < height; ++y)
        for (int64_t w = 0; w < width; ++w) {
            x[(0 * height + y) * width + w] = 2.0f * float(w) / float(width) - 1.0f;
            x[(1 * height + y) * width + w] = 2.0f * float(y) / float(height) - 1.0f;
            x[(2 * height + y) * width + w] = 0.2f;
        }
    return im;
}

SkyReelsPipeline make_demo_pipeline(Task task, uint64_t seed, const DemoTransformerSize& size, LinearQuant quant) {
    // Tokenizers: built in memory (no scratch files that another user could race or redirect).
    PipelineComponents c;
    c.llama_tokenizer = std::make_shared<const BpeTokenizer>(make_llama_tokenizer());
    c.clip_tokenizer = std::make_shared<const ClipTokenizer>(make_clip_tokenizer());
    const int64_t clip_vocab = c.clip_tokenizer->vocab_size();

    // The template's system part is cropped away: crop_start = its token count (95 for the real Llama-3
    // tokenizer; more here, one token per byte).
    PromptTemplate tmpl;
    const std::string prefix = tmpl.text.substr(0, tmpl.text.find(tmpl.placeholder));
    tmpl.crop_start = int64_t(c.llama_tokenizer->encode(prefix).size());
    tmpl.max_sequence_length = 192;  // bytes here; the real model keeps 256 prompt tokens
    c.prompt_template = tmpl;

    LlamaConfig llama;
    llama.vocab_size = int64_t(c.llama_tokenizer->vocab_size());
    llama.hidden_size = 32;
    llama.intermediate_size = 64;
    llama.num_hidden_layers = 3;  // hidden_states[-3] is layer 1's output
    llama.num_attention_heads = 4;
    llama.num_key_value_heads = 2;
    llama.head_dim = 8;
    llama.max_position_embeddings = 2048;
    llama.validate("demo Llama");
    WeightBinder llama_weights = WeightBinder::random(seed + 1, DType::F32);
    c.llama = std::make_shared<const LlamaTextEncoder>(llama, llama_weights, "", quant);

    ClipTextConfig clip;
    clip.vocab_size = clip_vocab;
    clip.hidden_size = 32;
    clip.intermediate_size = 64;
    clip.num_hidden_layers = 2;
    clip.num_attention_heads = 4;
    clip.max_position_embeddings = 77;
    clip.validate("demo CLIP");
    WeightBinder clip_weights = WeightBinder::random(seed + 2, DType::F32);
    c.clip = std::make_shared<const ClipTextEncoder>(clip, clip_weights);

    HunyuanVideoVAEConfig vae;
    vae.block_out_channels = {8, 16, 16, 16};
    vae.layers_per_block = 1;
    vae.norm_num_groups = 4;
    vae.validate("demo VAE");
    c.vae = std::make_shared<const HunyuanVideoVAE>(HunyuanVideoVAE::random(vae, DType::F32, seed + 3));

    HunyuanVideoConfig dit;
    dit.in_channels = task == Task::I2V ? 32 : 16;
    dit.out_channels = 16;
    dit.num_attention_heads = size.heads;
    dit.attention_head_dim = size.head_dim;
    dit.num_layers = size.dual_blocks;
    dit.num_single_layers = size.single_blocks;
    dit.num_refiner_layers = 1;
    dit.text_embed_dim = llama.hidden_size;
    dit.pooled_projection_dim = clip.hidden_size;
    // A quarter of each head for time, the rest split between height and width ({4, 6, 6} at 16).
    const int64_t rope_t = size.head_dim / 8 * 2;
    dit.rope_axes_dim = {rope_t, (size.head_dim - rope_t) / 2, (size.head_dim - rope_t) / 2};
    dit.validate("demo transformer");
    WeightBinder transformer_weights = WeightBinder::random(seed + 4, DType::F32);
    c.transformer = std::make_shared<const HunyuanVideoTransformer>(dit, transformer_weights, quant);
    return SkyReelsPipeline(std::move(c));
}

}  // namespace sr
