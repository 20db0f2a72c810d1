#include "support/fixtures.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>

#include "io/json.h"

#ifndef SKYREELS_SOURCE_DIR_SUPPORT
#define SKYREELS_SOURCE_DIR_SUPPORT ""
#endif

namespace sr::test {

namespace fs = std::filesystem;

fs::path fixtures_root() {
    if (const char* env = std::getenv("SKYREELS_FIXTURES"); env && *env) return fs::path(env);
    return fs::path(SKYREELS_SOURCE_DIR_SUPPORT) / ".." / "shared" / "fixtures";
}

fs::path own_fixtures_root() {
    return fs::path(SKYREELS_SOURCE_DIR_SUPPORT) / "tests" / "fixtures";
}

std::vector<fs::path> find_fixture_dirs(const std::function<bool(const fs::path&)>& accept) {
    std::vector<fs::path> out;
    std::error_code ec;
    for (const fs::path& root : {fixtures_root(), own_fixtures_root()}) {
        if (!fs::is_directory(root, ec)) continue;
        if (accept(root)) out.push_back(root);
        for (auto it = fs::recursive_directory_iterator(root, fs::directory_options::follow_directory_symlink, ec);
             it != fs::recursive_directory_iterator(); it.increment(ec)) {
            if (ec) break;
            if (it->is_directory(ec) && accept(it->path())) out.push_back(it->path());
        }
    }
    std::sort(out.begin(), out.end());
    return out;
}

bool single_checkpoint_model(const fs::path& dir) {
    const fs::path model = dir / "model";
    std::error_code ec;
    if (!fs::is_directory(model, ec) || fs::exists(model / "config.json", ec)) return false;
    int files = 0, checkpoints = 0;
    for (const auto& e : fs::directory_iterator(model, ec)) {
        if (!e.is_regular_file(ec)) continue;
        ++files;
        const std::string ext = e.path().extension().string();
        checkpoints += ext == ".safetensors" || ext == ".gguf";
    }
    return files == 1 && checkpoints == 1;
}

namespace {

bool has_transformer_model(const fs::path& dir) {
    std::error_code ec;
    return fs::exists(dir / "inputs.safetensors", ec) && fs::exists(dir / "output.safetensors", ec) &&
           (model_config_names(dir, "_class_name", "HunyuanVideoTransformer3DModel") || single_checkpoint_model(dir));
}

}  // namespace

bool is_transformer_fixture(const fs::path& dir) {
    // A LoRA fixture's output holds the adapters: its base model alone does not give it.
    std::error_code ec;
    return has_transformer_model(dir) && !fs::exists(dir / "lora.json", ec);
}

bool is_lora_fixture(const fs::path& dir) {
    std::error_code ec;
    return has_transformer_model(dir) && fs::is_regular_file(dir / "lora.json", ec) &&
           fs::is_directory(dir / "lora", ec);
}

bool model_config_names(const fs::path& dir, const std::string& key, const std::string& name) {
    const fs::path cfg = dir / "model" / "config.json";
    std::error_code ec;
    if (!fs::is_regular_file(cfg, ec)) return false;
    try {
        const Json j = load_json_file(cfg.string());
        return j.is_object() && j.contains(key) && j[key].is_string() && j[key].get<std::string>() == name;
    } catch (...) {
        return false;
    }
}

bool partial_file_exists(const fs::path& target) {
    const std::string prefix = target.filename().string() + ".";
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(target.parent_path(), ec)) {
        const std::string name = e.path().filename().string();
        if (name.rfind(prefix, 0) == 0 && e.path().extension() == ".partial") return true;
    }
    return false;
}

fs::path scratch_dir(const std::string& name) {
    const fs::path dir = fs::temp_directory_path() / ("skyreels_test_" + std::to_string(::getpid()) + "_" + name);
    fs::remove_all(dir);
    fs::create_directories(dir);
    return dir;
}

Scratch::~Scratch() {
    std::error_code ec;
    fs::remove_all(dir, ec);
}

void write_file(const std::string& path, const std::string& bytes) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), std::streamsize(bytes.size()));
    out.close();
    EXPECT_TRUE(out.good()) << "could not write " << path;
}

}  // namespace sr::test
