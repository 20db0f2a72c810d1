// Fuzz target: the denoising checkpoint reader (pipeline/checkpoint.h), which reads files that outlive the run
// that wrote them: `--resume FILE` from the user, and the server's data folder after a crash. Each input is a
// safetensors image written to a scratch file and read by read_checkpoint, then matched against a run's
// parameters. A rejected input must be an sr::InputError; an accepted one must hand the pipeline only what it
// can resume from: a step count in range, one row of f32 latents with finite values, text conditioning whole or
// absent, and step cache counts and replayed calls that agree with the step count and the latents' shape, so a
// checkpoint accepted here and then failing deep inside a run is a finding too.

#include <cmath>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/log.h"
#include "fuzz_target.h"
#include "pipeline/checkpoint.h"

namespace {

[[noreturn]] void broken(const std::string& what) {
    throw std::logic_error("broken reader invariant: " + what);
}

const std::string& scratch_path() {
    return sr::fuzz::scratch_path("fuzz_checkpoint", ".ckpt");
}

bool all_finite(const sr::Tensor& t) {
    const sr::Tensor c = t.contiguous();
    for (int64_t i = 0; i < c.numel(); ++i)
        if (!std::isfinite(c.data<float>()[i])) return false;
    return true;
}

void check_invariants(const sr::DenoiseCheckpoint& c) {
    if (c.steps_done < 0 || c.steps_done > 999999) broken("steps_done out of range");
    const sr::Tensor& l = c.latents;
    if (!l.defined() || l.dtype() != sr::DType::F32 || l.rank() != 5 || l.dim(0) != 1)
        broken("latents not [1,C,T,h,w]");
    if (!all_finite(l)) broken("non-finite latents accepted");
    const sr::TextConditioning& t = c.text;
    if (t.prompt_embeds.defined()) {
        if (!t.prompt_attention_mask.defined() || !t.pooled_prompt_embeds.defined())
            broken("partial text conditioning");
        if (t.prompt_embeds.dtype() != sr::DType::F32 || t.pooled_prompt_embeds.dtype() != sr::DType::F32)
            broken("text embeddings not in f32");
        if (!all_finite(t.prompt_embeds) || !all_finite(t.pooled_prompt_embeds)) broken("non-finite text accepted");
    }
    if (c.cache) {
        try {
            c.cache->counts.check(c.steps_done, "fuzz");
        } catch (const sr::InputError& e) {
            broken(std::string("accepted step cache counts fail their check: ") + e.what());
        }
        if (c.cache->calls.size() > 2) broken("more than two replayed calls");
        for (const sr::StepCacheReplay::Call& call : c.cache->calls) {
            if (call.step < 0 || call.step >= c.steps_done) broken("a replayed call outside the steps done");
            if (!(call.latents.shape() == l.shape()) || call.latents.dtype() != sr::DType::F32)
                broken("replay latents of another shape or dtype");
            if (!all_finite(call.latents)) broken("non-finite replay latents accepted");
        }
    }
}

std::optional<uint64_t> run_one(const uint8_t* data, size_t size) {
    static const bool quiet = [] {
        sr::set_log_level(sr::LogLevel::Error);
        return true;
    }();
    (void)quiet;
    sr::fuzz::write_scratch(scratch_path(), data, size);
    sr::DenoiseCheckpoint c;
    try {
        c = sr::read_checkpoint(scratch_path());
    } catch (const sr::InputError&) {
        return std::nullopt;
    }
    check_invariants(c);
    // Matching it against a run (its parameters are JSON from the file): refused or accepted, never anything else.
    try {
        c.check_matches(R"({"steps": 4, "seed": 1, "prompt": "a"})", c.model, "fuzz");
    } catch (const sr::InputError&) {
    }
    uint64_t sig = sr::fuzz::mix(sr::fuzz::kMixStart, uint64_t(c.latents.numel()));
    sig = sr::fuzz::mix(sig, c.text.prompt_embeds.defined() ? 1 : 0);
    sig = sr::fuzz::mix(sig, c.cache ? 1 + c.cache->calls.size() : 0);
    return sig;
}

// A checkpoint as write_checkpoint writes it, read back as bytes.
std::string written(const sr::DenoiseCheckpoint& c) {
    const std::string path = scratch_path() + ".seed";
    sr::write_checkpoint(path, c);
    std::ifstream in(path, std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::remove(path.c_str());
    return bytes;
}

sr::Tensor ramp(const sr::Shape& shape, float step) {
    sr::Tensor t = sr::Tensor::empty(shape, sr::DType::F32);
    for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = step * float(i % 11 - 5);
    return t;
}

std::vector<std::string> seeds() {
    const sr::Shape latents{1, 4, 2, 2, 2};
    sr::DenoiseCheckpoint plain;
    plain.steps_done = 2;
    plain.latents = ramp(latents, 0.1f);
    plain.params = R"({"steps": 4, "seed": 1, "prompt": "a"})";
    plain.model = "fnv1a64:0123456789abcdef";
    sr::DenoiseCheckpoint text = plain;
    text.text.prompt_embeds = ramp({2, 3, 4}, 0.01f);
    text.text.prompt_attention_mask = sr::Tensor::empty({2, 3}, sr::DType::I64);
    for (int64_t i = 0; i < 6; ++i) text.text.prompt_attention_mask.data<int64_t>()[i] = i == 2 ? 0 : 1;
    text.text.pooled_prompt_embeds = ramp({2, 4}, 0.02f);
    sr::DenoiseCheckpoint cached = text;
    cached.steps_done = 3;
    auto replay = std::make_shared<sr::StepCacheReplay>();
    replay->counts = {.accumulated = 0.25, .total_estimate = 0.5, .passes = 3, .skipped = 2, .skipped_steps = {1, 2}};
    replay->calls = {{0, true, ramp(latents, 0.2f)}, {2, false, ramp(latents, 0.3f)}};
    cached.cache = replay;
    return {written(plain), written(text), written(cached)};
}

std::vector<std::string> dictionary() {
    std::vector<std::string> d = sr::fuzz::edge_numbers();
    for (std::string& t : sr::fuzz::safetensors_tokens()) d.push_back(std::move(t));
    // A checkpoint's own words: its metadata keys, the step cache's JSON and tensor names.
    for (const char* t : {"\"format\"",
                          "\"skyreels.cpp denoising checkpoint 1\"",
                          "\"steps_done\"",
                          "\"params\"",
                          "\"model\"",
                          "\"step_cache_replay\"",
                          "\\\"calls\\\"",
                          "\\\"compute\\\"",
                          "\\\"step\\\"",
                          "\\\"passes\\\"",
                          "\\\"skipped\\\"",
                          "\\\"skipped_steps\\\"",
                          "\\\"accumulated\\\"",
                          "true",
                          "false",
                          "\"latents\"",
                          "\"prompt_embeds\"",
                          "\"prompt_attention_mask\"",
                          "\"pooled_prompt_embeds\"",
                          "\"step_cache.call0.latents\"",
                          "\"step_cache.call1.latents\"",
                          "\"I64\"",
                          "\"BF16\""})
        d.emplace_back(t);
    return d;
}

}  // namespace

SR_FUZZ_TARGET("fuzz_checkpoint", true)
