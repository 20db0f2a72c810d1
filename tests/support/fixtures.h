// Fixture discovery for parity tests: fixtures are found by content under $SKYREELS_FIXTURES or
// ../shared/fixtures (relative to the source tree), never by a hard-coded list, so a new folder of the same
// layout is tested without code changes.
//
//   for (auto& dir : sr::test::find_fixture_dirs([](const fs::path& d) { return is_transformer(d); })) ...
#pragma once

#include <filesystem>
#include <functional>
#include <string>
#include <vector>

namespace sr::test {

// The fixtures root: $SKYREELS_FIXTURES when set, else <source>/../shared/fixtures.
std::filesystem::path fixtures_root();

// The fixtures this repository makes itself (tests/fixtures: see scripts/fixtures/), searched as well.
std::filesystem::path own_fixtures_root();

// Every folder under the roots (recursively, sorted) for which `accept` returns true.
std::vector<std::filesystem::path> find_fixture_dirs(const std::function<bool(const std::filesystem::path&)>& accept);

// True when dir/model/config.json exists and its "_class_name" (or "model_type") equals `name`.
bool model_config_names(const std::filesystem::path& dir, const std::string& key, const std::string& name);

// dir/model holds exactly one checkpoint file (.safetensors or .gguf) and no config.json: a transformer in one
// of the single-file layouts.
bool single_checkpoint_model(const std::filesystem::path& dir);

// A transformer parity folder: inputs.safetensors, output.safetensors and a model/ holding a transformer in
// any supported layout (a diffusers folder with its config, or one checkpoint file).
bool is_transformer_fixture(const std::filesystem::path& dir);
// A LoRA fixture: a transformer fixture with lora/ (adapter files) and lora.json (a list of {"file": ...,
// "strength": ...} applied in order); its output is the base model's with every adapter merged.
bool is_lora_fixture(const std::filesystem::path& dir);

// A scratch folder for one test, emptied on creation.
std::filesystem::path scratch_dir(const std::string& name);

// scratch_dir(name) for the life of the object, removed with what is in it at the end.
struct Scratch {
    std::filesystem::path dir;
    explicit Scratch(const std::string& name) : dir(scratch_dir(name)) {}
    ~Scratch();
    Scratch(const Scratch&) = delete;
    Scratch& operator=(const Scratch&) = delete;
    std::string operator/(const std::string& file) const { return (dir / file).string(); }
};

// Writes `bytes` as the whole file at `path` (a test failure when it cannot).
void write_file(const std::string& path, const std::string& bytes);

// Whether a writer's temporary for `target` exists: "<target>.XXXXXX.partial" in its folder (core/files.h).
bool partial_file_exists(const std::filesystem::path& target);

}  // namespace sr::test
