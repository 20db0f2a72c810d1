#include "io/hf_cache.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "core/error.h"

namespace fs = std::filesystem;

namespace sr {

std::string hf_hub_cache_dir() {
    auto env = [](const char* name) -> std::string {
        const char* v = std::getenv(name);
        return v && *v ? v : "";
    };
    if (const std::string v = env("HF_HUB_CACHE"); !v.empty()) return v;
    if (const std::string v = env("HF_HOME"); !v.empty()) return (fs::path(v) / "hub").string();
    if (const std::string v = env("XDG_CACHE_HOME"); !v.empty()) return (fs::path(v) / "huggingface" / "hub").string();
    return (fs::path(env("HOME")) / ".cache" / "huggingface" / "hub").string();
}

bool looks_like_hf_repo_id(const std::string& t) {
    const size_t slash = t.find('/');
    if (slash == std::string::npos || slash == 0 || slash + 1 == t.size() ||
        t.find('/', slash + 1) != std::string::npos)
        return false;
    if (t[0] == '.' || t[0] == '~' || t.find("..") != std::string::npos) return false;
    return std::all_of(t.begin(), t.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.' || c == '/';
    });
}

std::optional<std::string> hf_cached_snapshot(const std::string& repo_id) {
    if (!looks_like_hf_repo_id(repo_id)) return std::nullopt;
    std::string folder = "models--" + repo_id;
    const size_t slash = folder.find('/');
    folder.replace(slash, 1, "--");
    const fs::path repo = fs::path(hf_hub_cache_dir()) / folder;
    std::error_code ec;
    const fs::path snapshots = repo / "snapshots";
    if (!fs::is_directory(snapshots, ec)) return std::nullopt;
    std::ifstream ref(repo / "refs" / "main");
    std::string revision;
    if (ref && std::getline(ref, revision) && !revision.empty() && fs::is_directory(snapshots / revision, ec))
        return (snapshots / revision).string();
    // No refs/main (a download of a pinned revision): the newest snapshot.
    std::optional<fs::path> newest;
    fs::file_time_type newest_time{};
    for (const auto& e : fs::directory_iterator(snapshots, ec)) {
        if (!e.is_directory(ec)) continue;
        const auto t = fs::last_write_time(e.path(), ec);
        if (!newest || t > newest_time) newest = e.path(), newest_time = t;
    }
    if (newest) return newest->string();
    return std::nullopt;
}

std::string resolve_model_path(const std::string& given, const char* flag) {
    std::error_code ec;
    if (given.empty() || fs::exists(given, ec) || !looks_like_hf_repo_id(given)) return given;
    if (auto snapshot = hf_cached_snapshot(given)) return *snapshot;
    SR_THROW(
        "{} {}: no such file or folder, and not in the Hugging Face cache ({}); skyreels never downloads: get it "
        "with\n    huggingface-cli download {}\n  (or give the folder's path)",
        flag, given, hf_hub_cache_dir(), given);
}

}  // namespace sr
