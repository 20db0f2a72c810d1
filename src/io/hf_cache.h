// Hugging Face repository names (Skywork/SkyReels-V1-Hunyuan-T2V) resolved to the local Hugging Face cache,
// where `huggingface-cli download` and the reference's from_pretrained put them. Never downloads: a
// repository that is not in the cache is an InputError saying how to get it.
//
// The cache is $HF_HUB_CACHE, else $HF_HOME/hub, else $XDG_CACHE_HOME/huggingface/hub, else
// ~/.cache/huggingface/hub; a repository lives in models--ORG--NAME/snapshots/REVISION/, the revision named
// by refs/main (else the only, or the newest, snapshot).
//
//   std::string dir = sr::resolve_model_path("Skywork/SkyReels-V1-Hunyuan-T2V", "--model");
#pragma once

#include <optional>
#include <string>

namespace sr {

// The hub cache folder the environment names (it need not exist).
std::string hf_hub_cache_dir();

// True for "ORG/NAME" (one '/', no leading '/' or '.', characters Hugging Face allows in repository names).
bool looks_like_hf_repo_id(const std::string& text);

// The snapshot folder of `repo_id` in the cache, or nullopt.
std::optional<std::string> hf_cached_snapshot(const std::string& repo_id);

// `given` when it exists on disk; else, when it looks like a repository name, its cached snapshot; else
// `given` unchanged (the loader then names it as missing). InputError, naming `flag`, the cache folder and
// the download command, when a repository name is not in the cache.
std::string resolve_model_path(const std::string& given, const char* flag);

}  // namespace sr
