// `skyreels tokenize --tokenizer DIR "text"`: the token ids of a prompt, so a user can check it against
// the pipeline's limits before a long run. DIR is a Llama-3 tokenizer folder (tokenizer.json; the limit is
// 256 prompt tokens after the HunyuanVideo template) or a CLIP one (vocab.json + merges.txt; 77 tokens with
// <|startoftext|> and <|endoftext|>).
#include <cstdio>
#include <filesystem>
#include <string>

#include "core/error.h"
#include "text/bpe_tokenizer.h"
#include "text/clip_tokenizer.h"
#include "text/prompt_encoder.h"
#include "tools/skyreels/commands.h"

namespace sr::cli {

namespace {

struct TokenizeOptions {
    std::string tokenizer;
    std::string text;
    bool template_ids = false;
};

void print_ids(const std::vector<int32_t>& ids) {
    std::string s = "[";
    for (size_t i = 0; i < ids.size(); ++i) s += (i ? ", " : "") + std::to_string(ids[i]);
    std::printf("%s]\n", s.c_str());
}

int run_tokenize(const TokenizeOptions& o) {
    namespace fs = std::filesystem;
    std::error_code ec;
    SR_THROW_IF(!fs::is_directory(o.tokenizer, ec), "--tokenizer {}: not a folder", o.tokenizer);
    check_utf8(o.text, "the prompt");  // before the template, so the byte offset is the prompt's own
    if (fs::exists(fs::path(o.tokenizer) / "tokenizer.json", ec)) {
        const BpeTokenizer tok = BpeTokenizer::load(o.tokenizer);
        const PromptTemplate tmpl;
        const TokenizedText t = tokenize_llama_prompt(tok, tmpl, o.text);
        const std::vector<int32_t> ids = o.template_ids ? tok.encode(tmpl.fill(o.text)) : tok.encode(o.text);
        print_ids(ids);
        // Template tokens around the prompt: crop_start before it (BOS included), <|eot_id|> after it.
        const int64_t n_prompt = int64_t(t.n_tokens) - tmpl.crop_start - 1;
        std::printf("%zu ids; the prompt is %lld tokens of the %lld the pipeline keeps after its template\n",
                    ids.size(), (long long)n_prompt, (long long)tmpl.max_sequence_length);
        if (t.truncated)
            std::printf("warning: the prompt will be truncated: %lld tokens past the limit are dropped\n",
                        (long long)(n_prompt + 1 - tmpl.max_sequence_length));
        return 0;
    }
    if (fs::exists(fs::path(o.tokenizer) / "vocab.json", ec)) {
        const ClipTokenizer tok = ClipTokenizer::load(o.tokenizer);
        const std::vector<int32_t> ids = tok.encode(o.text);
        print_ids(ids);
        std::printf("%zu ids of the 77 CLIP reads (with <|startoftext|> and <|endoftext|>)\n", ids.size());
        if (ids.size() > 77)
            std::printf("warning: the prompt will be truncated: %zu tokens past the limit are dropped\n",
                        ids.size() - 77);
        return 0;
    }
    SR_THROW("--tokenizer {}: neither tokenizer.json nor vocab.json + merges.txt found", o.tokenizer);
}

}  // namespace

Command add_tokenize_command(CLI::App& app) {
    auto opts = std::make_shared<TokenizeOptions>();
    CLI::App* sub = app.add_subcommand("tokenize", "Print the token ids of a prompt and its length against the limit");
    sub->add_option("--tokenizer", opts->tokenizer, "Tokenizer folder (Llama-3 tokenizer.json or CLIP vocab.json)")
        ->required();
    sub->add_option("text", opts->text, "The prompt")->required();
    sub->add_flag("--template", opts->template_ids,
                  "Llama: print the ids of the prompt inside the HunyuanVideo template");
    return [opts] { return run_tokenize(*opts); };
}

}  // namespace sr::cli
