// The server's access rules, as functions the HTTP layer applies before any route runs:
//  - a bind address that is not loopback requires a Bearer token (`--token` or SKYREELS_SERVER_TOKEN),
//    compared in constant time;
//  - the Host header must name this server (DNS rebinding: a page on evil.example resolving to 127.0.0.1
//    sends "Host: evil.example");
//  - CORS headers only for the one origin given with --cors-origin;
//  - a request names server-side files (a job's LoRA adapters) only as plain names inside the one folder the
//    operator gave (--lora-dir): never an absolute path, "..", or a link that leads out of it.
//
//   if (!sr::server::token_matches(header, options.token)) -> 401
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace sr::server {

// 127.0.0.0/8, ::1, "localhost".
bool is_loopback_host(const std::string& host);

// `authorization` is the Authorization header's value; true when it is "Bearer <token>" with this token.
// The comparison takes the same time wherever the first difference is (and whatever the length).
bool token_matches(std::string_view authorization, std::string_view token);

// The host names a request's Host header may carry (the port is ignored): localhost, 127.0.0.1 and [::1] on a
// loopback bind, the bind address itself, and `extra` (--allowed-host; "*" allows any).
class HostAllowlist {
public:
    HostAllowlist(const std::string& bind_host, std::vector<std::string> extra);
    bool allows(const std::string& host_header) const;

private:
    std::vector<std::string> names_;
    bool any_ = false;
};

// The regular file `name` in `folder`, as a path to open: `name` is relative, has no "." or ".." part, and its
// real path (links followed) lies inside the folder's real path. InputError saying which rule it breaks.
std::string file_in_folder(const std::string& folder, const std::string& name);

// What a client may name in `folder`: the relative names ("a.safetensors", "styles/b.safetensors") of the files
// file_in_folder accepts, so a link leading out of the folder is never listed, whose extension is `extension`
// in any case (".safetensors"; "": any); sorted, at most `max_names`
// (`truncated` when more were found or the walk stopped at its limit of entries). Hidden entries (".name") and
// what lies under hidden folders (.git, .cache) are left out; links to folders are not followed. InputError
// when the folder cannot be read.
struct FolderListing {
    std::vector<std::string> names;
    bool truncated = false;
};
FolderListing list_files_in_folder(const std::string& folder, const std::string& extension, size_t max_names);

}  // namespace sr::server
