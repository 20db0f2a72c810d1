// The flags that choose the models and where jobs run (model, base, demo, device, precision, quant, offload,
// budgets, host memory, threads), shared by the commands that make a Session: `generate` and `serve`. One
// definition, one check and one mapping onto sr::SessionOptions, so the two commands cannot drift apart.
//
//   struct ServeOptions : SessionFlags { int port = 8080; };
//   add_model_flags(cmd, o); add_device_flags(cmd, o);              // registers --model ... --gpu_num
//   const std::string device = choose_device(o, false, false);      // "auto" resolved
//   throw_problems(session_flag_problems(o, device));               // every conflict at once
//   resolve_models(o);                                              // Hugging Face names -> folders
//   sr::SessionOptions s = session_options(o, device, sr::Task::T2V, false);
#pragma once

#include <CLI/CLI.hpp>

#include <string>
#include <vector>

#include "pipeline/session.h"

namespace sr::cli {

struct SessionFlags {
    std::string model, base;
    bool demo = false;
    std::string demo_size = "small";
    std::string quant;  // "" (not given), "fp8" (also the bare --quant, as SkyReels spells it) or "none"
    std::string device = "auto", offload, host_memory, vram_budget, pinned_budget, precision, sim_memory = "24G";
    int prefetch = 1, gpu_num = 1, threads = 0;
    double sim_bandwidth_gbs = 25.0;
    bool high_cpu_memory = false, parameters_level = false, compiler_transformer = false;
    std::vector<std::string> loras;  // --lora FILE[:STRENGTH], in order
    std::string lora_mode = "auto";
    bool lora_ignore_unmatched = false;
    CLI::App* cmd = nullptr;  // the command the flags were registered on
    bool given(const char* name) const { return cmd->count(name) > 0; }
};

// --model, --base, --demo, --demo-size, --lora, --lora-mode, --lora-ignore-unmatched.
void add_model_flags(CLI::App* cmd, SessionFlags& f);
// --threads, --quant, --device, --precision, --offload, --vram-budget, --host-memory, --pinned-budget,
// --prefetch, --sim-bandwidth, --sim-memory, and SkyReels' --high_cpu_memory, --parameters_level,
// --compiler_transformer (generate adds --gpu_num and --parallel).
void add_device_flags(CLI::App* cmd, SessionFlags& f);

// --device auto: cuda when a usable GPU is present, else the cpu (with a line saying what that means unless
// `quiet` or the demo); a dry run plans for cuda when memory flags are given.
std::string choose_device(const SessionFlags& f, bool dry_run, bool quiet);
// Every conflict and bad value among these flags, as messages naming them.
std::vector<std::string> session_flag_problems(const SessionFlags& f, const std::string& device);
// One problem: InputError with it; several: one InputError listing them all.
void throw_problems(const std::vector<std::string>& problems);
// --model and --base as folders on disk: Hugging Face names resolve to the local cache; a transformer without
// --base takes the cached HunyuanVideo.
void resolve_models(SessionFlags& f);
// --quant as given: SkyReels' bare --quant means fp8; "" when absent.
std::string quant_value(const SessionFlags& f);
// The Session's options for `task` (the demo's task; a loaded model has its own), checked (Session::check).
SessionOptions session_options(const SessionFlags& f, const std::string& device, Task task, bool planning_only);

}  // namespace sr::cli
