#include "pipeline/checkpoint.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <system_error>

#include "core/dtype.h"
#include "core/error.h"
#include "io/json.h"
#include "io/safetensors.h"

namespace fs = std::filesystem;

namespace sr {

namespace {

constexpr const char* kFormat = "skyreels.cpp denoising checkpoint 1";

struct Fnv64 {
    uint64_t h = 0xcbf29ce484222325ull;
    void add(const void* data, size_t n) {
        const auto* p = static_cast<const unsigned char*>(data);
        for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 0x100000001b3ull;
    }
    void add(const std::string& s) { add(s.data(), s.size() + 1); }  // with the terminator: "ab","c" != "a","bc"
    void add(uint64_t v) { add(&v, sizeof v); }
};

void hash_file(Fnv64& h, const fs::path& file, const std::string& name) {
    constexpr size_t kEdge = 64 * 1024;
    std::error_code ec;
    const uint64_t size = fs::file_size(file, ec);
    SR_THROW_IF(ec, "{}: cannot read its size: {}", file.string(), ec.message());
    h.add(name);
    h.add(size);
    std::ifstream in(file, std::ios::binary);
    SR_THROW_IF(!in, "{}: cannot open it to fingerprint the model", file.string());
    std::vector<char> buf(size_t(std::min<uint64_t>(size, kEdge)));
    in.read(buf.data(), std::streamsize(buf.size()));
    h.add(buf.data(), size_t(in.gcount()));
    if (size > 2 * kEdge) {
        in.seekg(std::streamoff(size - kEdge));
        in.read(buf.data(), std::streamsize(kEdge));
        h.add(buf.data(), size_t(in.gcount()));
    }
}

// What rebuilds the step cache's state (pipeline.h StepCacheReplay): its counts and its replayed calls as JSON
// in the metadata ("step_cache_replay"; older checkpoints kept the state itself under "step_cache", which is
// not read: their resumed runs start with an empty cache), each call's latents as "step_cache.call<k>.latents".
constexpr const char* kCacheKey = "step_cache_replay";

std::string call_tensor(size_t k) {
    return fmt::format("step_cache.call{}.latents", k);
}

std::string cache_json(const StepCacheReplay& c) {
    // nlohmann writes doubles in their shortest round-trip form: the sums come back bit for bit.
    Json calls = Json::array();
    for (const StepCacheReplay::Call& call : c.calls) calls.push_back({{"step", call.step}, {"compute", call.compute}});
    const StepCacheCounts& n = c.counts;
    return Json{{"accumulated", n.accumulated}, {"total_estimate", n.total_estimate}, {"passes", n.passes},
                {"skipped", n.skipped},         {"skipped_steps", n.skipped_steps},   {"calls", calls}}
        .dump();
}

// A float tensor of the checkpoint as an owned f32 copy; InputError naming it when it is not floating point
// (a damaged or made-up file: converting integers would be a bug, not an error) or holds NaN or Inf (a run
// never saves those: it stops at the first non-finite step, so they would be blamed on the model).
Tensor f32_copy(const Tensor& t, const std::string& name) {
    SR_THROW_IF(!dtype_is_float(t.dtype()), "{} {}: expected a float tensor", name, t.describe());
    Tensor c = t.to(DType::F32);  // an owned, contiguous copy (Tensor::to always copies)
    int64_t bad = 0;
    for (int64_t i = 0; i < c.numel(); ++i) bad += !std::isfinite(c.data<float>()[i]);
    SR_THROW_IF(bad > 0, "{} {}: {} non-finite values (NaN or Inf): a damaged checkpoint", name, t.describe(), bad);
    return c;
}

// The step cache's replay of a checkpoint after `steps_done` steps whose latents are `latents`; InputError
// naming what does not make sense (the pipeline checks that the calls are the ones the counts imply).
std::shared_ptr<const StepCacheReplay> read_cache_replay(const WeightStore& s, int steps_done, const Tensor& latents) {
    const std::optional<std::string> text = s.metadata(kCacheKey);
    if (!text) return nullptr;
    const std::string source = std::string(kCacheKey) + " metadata";
    const Json j = parse_json(*text, source);
    SR_THROW_IF(!j.is_object(), "{}: expected an object", source);
    auto replay = std::make_shared<StepCacheReplay>();
    StepCacheCounts& n = replay->counts;
    const int64_t passes = json_int(j, "passes", source), skipped = json_int(j, "skipped", source);
    SR_THROW_IF(passes < 0 || passes > steps_done || skipped < 0 || skipped > passes, "{}: {} skipped of {} passes",
                source, skipped, passes);
    n.passes = int(passes), n.skipped = int(skipped);
    n.accumulated = json_number(j, "accumulated", source);
    n.total_estimate = json_number(j, "total_estimate", source);
    for (const int64_t step : json_int_array(j, "skipped_steps", source)) {
        SR_THROW_IF(step < 0 || step >= steps_done, "{}: skipped step {} of {} done", source, step, steps_done);
        n.skipped_steps.push_back(int(step));
    }
    n.check(steps_done, source);
    const auto calls = j.find("calls");
    SR_THROW_IF(calls == j.end() || !calls->is_array() || calls->size() > 2,
                "{}: \"calls\" is not a list of two calls at most", source);
    for (size_t k = 0; k < calls->size(); ++k) {
        const Json& call = (*calls)[k];
        const std::string what = fmt::format("{} call {}", source, k);
        SR_THROW_IF(!call.is_object() || !call.contains("compute") || !call["compute"].is_boolean(),
                    "{}: expected {{\"step\": N, \"compute\": true|false}}", what);
        const int64_t step = json_int(call, "step", what);
        SR_THROW_IF(step < 0 || step >= steps_done, "{}: step {} of {} done", what, step, steps_done);
        Tensor t = f32_copy(s.get(call_tensor(k)), call_tensor(k));
        SR_THROW_IF(!(t.shape() == latents.shape()), "{} {}: expected the latents' shape {}", call_tensor(k),
                    t.describe(), latents.shape().str());
        replay->calls.push_back({int(step), call["compute"].get<bool>(), std::move(t)});
    }
    return replay;
}

}  // namespace

std::string checkpoint_params(const GenerationRequest& req, const Json& extra) {
    const GenerationParams& p = req.params;
    Json j = extra.is_object() ? extra : Json::object();
    j["task"] = p.task == Task::I2V ? "i2v" : "t2v";
    j["height"] = p.height;
    j["width"] = p.width;
    j["frames"] = p.num_frames;
    j["steps"] = p.num_inference_steps;
    j["guidance_scale"] = p.guidance_scale;
    j["embedded_guidance_scale"] = p.embedded_guidance_scale;
    j["seed"] = p.seed;
    // Batched rows and rows one at a time differ in the last bits (the same sums in another order).
    j["cfg_rows"] = !p.do_cfg() ? "none" : p.sequence_batch ? "one at a time" : "batched";
    j["prompt"] = req.prompt;
    j["negative_prompt"] = req.negative_prompt;
    // Step caching changes the latents (absent when off, so checkpoints of uncached runs stay valid). What
    // rebuilds the cache's state is in the checkpoint's tensors, not in its parameters.
    if (p.cache.enabled()) j["cache"] = p.cache.str();
    return j.dump();
}

void DenoiseCheckpoint::check_matches(const std::string& params_json, const std::string& model_fingerprint,
                                      const std::string& path) const {
    SR_THROW_IF(model != model_fingerprint,
                "--resume {}: the checkpoint was made with other model files (fingerprint {}, these are {})", path,
                model, model_fingerprint);
    const Json mine = parse_json(params, path), want = parse_json(params_json, "this run");
    std::string diff;
    for (const auto& [key, value] : want.items()) {
        const auto it = mine.find(key);
        const std::string had = it == mine.end() ? "nothing" : it->dump();
        if (it == mine.end() || *it != value)
            diff += fmt::format("{}{} {} (this run: {})", diff.empty() ? "" : "; ", key, had, value.dump());
    }
    for (const auto& [key, value] : mine.items())
        if (!want.contains(key))
            diff += fmt::format("{}{} {} (this run: nothing)", diff.empty() ? "" : "; ", key, value.dump());
    SR_THROW_IF(!diff.empty(), "--resume {}: the checkpoint is from a run with other parameters: {}", path, diff);
}

void write_checkpoint(const std::string& path, const DenoiseCheckpoint& c) {
    std::vector<std::pair<std::string, Tensor>> tensors = {{"latents", c.latents.to(DType::F32).contiguous()}};
    if (c.text.prompt_embeds.defined()) {
        tensors.emplace_back("prompt_embeds", c.text.prompt_embeds.to(DType::F32).contiguous());
        tensors.emplace_back("prompt_attention_mask", c.text.prompt_attention_mask.contiguous());
        tensors.emplace_back("pooled_prompt_embeds", c.text.pooled_prompt_embeds.to(DType::F32).contiguous());
    }
    std::map<std::string, std::string> metadata = {
        {"format", kFormat}, {"steps_done", std::to_string(c.steps_done)}, {"params", c.params}, {"model", c.model}};
    if (c.cache) {
        metadata[kCacheKey] = cache_json(*c.cache);
        for (size_t k = 0; k < c.cache->calls.size(); ++k)
            tensors.emplace_back(call_tensor(k), c.cache->calls[k].latents.to(DType::F32).contiguous());
    }
    // write_safetensors writes a temporary of its own and renames it into place when complete: a kill mid-write
    // leaves the previous checkpoint whole.
    write_safetensors(path, tensors, metadata);
}

DenoiseCheckpoint read_checkpoint(const std::string& path) {
    SR_THROW_IF(!fs::is_regular_file(path), "--resume {}: no such file", path);
    DenoiseCheckpoint c;
    SR_WITH_CONTEXT(fmt::format("--resume {}", path), {
        const WeightStore s = WeightStore::open(path);
        SR_THROW_IF(s.metadata("format") != std::optional<std::string>(kFormat),
                    "not a denoising checkpoint (its metadata has no format \"{}\")", kFormat);
        const std::string steps = s.metadata("steps_done").value_or("");
        SR_THROW_IF(steps.empty() || steps.size() > 6 || !std::all_of(steps.begin(), steps.end(), ::isdigit),
                    "steps_done \"{}\" is not a step number", steps);
        c.steps_done = std::stoi(steps);
        c.params = s.metadata("params").value_or("{}");
        c.model = s.metadata("model").value_or("");
        c.latents = f32_copy(s.get("latents"), "latents");
        SR_THROW_IF(c.latents.rank() != 5 || c.latents.dim(0) != 1, "latents {}: expected [1, C, T, h, w]",
                    c.latents.describe());
        if (const auto pe = s.get_optional("prompt_embeds")) {
            c.text.prompt_embeds = f32_copy(*pe, "prompt_embeds");
            c.text.prompt_attention_mask = s.get("prompt_attention_mask").clone();  // i64: checked with the text
            c.text.pooled_prompt_embeds = f32_copy(s.get("pooled_prompt_embeds"), "pooled_prompt_embeds");
        }
        c.cache = read_cache_replay(s, c.steps_done, c.latents);
    });
    return c;
}

std::string model_fingerprint(const std::vector<std::string>& paths) {
    Fnv64 h;
    for (const std::string& p : paths) {
        h.add(std::string("path"));
        std::error_code ec;
        if (fs::is_regular_file(p, ec)) {
            hash_file(h, p, fs::path(p).filename().string());
            continue;
        }
        SR_THROW_IF(!fs::is_directory(p, ec), "{}: no such model file or folder", p);
        std::vector<std::pair<std::string, fs::path>> files;
        for (const auto& e : fs::recursive_directory_iterator(p, fs::directory_options::skip_permission_denied, ec))
            if (e.is_regular_file()) files.emplace_back(fs::relative(e.path(), p).generic_string(), e.path());
        std::sort(files.begin(), files.end());
        for (const auto& [name, file] : files) hash_file(h, file, name);
    }
    return fmt::format("fnv1a64:{:016x}", h.h);
}

}  // namespace sr
