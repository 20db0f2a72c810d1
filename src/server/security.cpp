#include "server/security.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cctype>
#include <filesystem>

#include "core/error.h"
#include "core/files.h"

namespace sr::server {

namespace {

std::string lower(std::string s) {
    for (char& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
    return s;
}

// "example.com:8080" -> "example.com"; "[::1]:8080" -> "[::1]".
std::string strip_port(const std::string& host) {
    if (!host.empty() && host[0] == '[') {
        const size_t close = host.find(']');
        return close == std::string::npos ? host : host.substr(0, close + 1);
    }
    const size_t colon = host.find(':');
    return colon == std::string::npos ? host : host.substr(0, colon);
}

}  // namespace

bool is_loopback_host(const std::string& host) {
    if (lower(host) == "localhost") return true;
    in_addr v4{};
    if (inet_pton(AF_INET, host.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
    in6_addr v6{};
    const std::string bare = host.size() > 2 && host.front() == '[' ? host.substr(1, host.size() - 2) : host;
    if (inet_pton(AF_INET6, bare.c_str(), &v6) == 1) return IN6_IS_ADDR_LOOPBACK(&v6);
    return false;
}

bool token_matches(std::string_view authorization, std::string_view token) {
    constexpr std::string_view kScheme = "Bearer ";
    if (token.empty()) return false;
    const bool scheme = authorization.size() >= kScheme.size() &&
                        lower(std::string(authorization.substr(0, kScheme.size()))) == lower(std::string(kScheme));
    const std::string_view given = scheme ? authorization.substr(kScheme.size()) : std::string_view();
    // Every byte of the expected token is compared (against 0 past the end of a shorter guess), and the
    // lengths are folded into the same accumulator: no early exit, no timing that depends on the contents.
    unsigned diff = unsigned(given.size() ^ token.size());
    for (size_t i = 0; i < token.size(); ++i) {
        const unsigned char g = i < given.size() ? static_cast<unsigned char>(given[i]) : 0;
        diff |= unsigned(g ^ static_cast<unsigned char>(token[i]));
    }
    return scheme && diff == 0;
}

HostAllowlist::HostAllowlist(const std::string& bind_host, std::vector<std::string> extra) {
    const bool wildcard_bind = bind_host == "0.0.0.0" || bind_host == "::" || bind_host == "[::]";
    if (is_loopback_host(bind_host) || wildcard_bind) names_ = {"localhost", "127.0.0.1", "[::1]"};
    if (!wildcard_bind)
        names_.push_back(bind_host.find(':') != std::string::npos && bind_host.front() != '['
                             ? "[" + lower(bind_host) + "]"
                             : lower(bind_host));
    for (std::string& e : extra) {
        if (e == "*") any_ = true;
        names_.push_back(lower(strip_port(e)));
    }
    // A wildcard bind without --allowed-host answers any name it is reached by: the token guards it.
    if (wildcard_bind && extra.empty()) any_ = true;
}

bool HostAllowlist::allows(const std::string& host_header) const {
    if (any_) return true;
    const std::string h = lower(strip_port(host_header));
    return std::find(names_.begin(), names_.end(), h) != names_.end();
}

std::string file_in_folder(const std::string& folder, const std::string& name) {
    namespace fs = std::filesystem;
    SR_THROW_IF(folder.empty(), "this server takes no files by name");
    SR_THROW_IF(name.empty() || name.size() > 1024, "'{}': must be a file name of 1..1024 bytes", printable(name, 100));
    SR_THROW_IF(name.find('\0') != std::string::npos || name.find('\\') != std::string::npos,
                "'{}': must be a plain file name", printable(name, 100));
    const fs::path rel(name);
    SR_THROW_IF(rel.is_absolute() || rel.has_root_name() || rel.has_root_directory(),
                "'{}': must be a name inside the server's folder, not an absolute path", printable(name, 100));
    for (const fs::path& part : rel)
        SR_THROW_IF(part == "." || part == ".." || part.empty(), "'{}': must not contain '.' or '..' parts",
                    printable(name, 100));
    std::error_code ec;
    const fs::path root = fs::canonical(folder, ec);
    SR_THROW_IF(ec, "the server's folder {} is not readable: {}", folder, ec.message());
    const fs::path real = fs::canonical(root / rel, ec);
    SR_THROW_IF(ec, "'{}': no such file in the server's folder", printable(name, 100));
    // Inside the folder: the real path starts with the folder's, part by part (a link may not lead out).
    auto r = real.begin();
    for (auto f = root.begin(); f != root.end(); ++f, ++r)
        SR_THROW_IF(r == real.end() || *r != *f, "'{}': leads outside the server's folder", printable(name, 100));
    SR_THROW_IF(!fs::is_regular_file(real, ec), "'{}': not a regular file", printable(name, 100));
    return real.string();
}

FolderListing list_files_in_folder(const std::string& folder, const std::string& extension, size_t max_names) {
    namespace fs = std::filesystem;
    // A folder of millions of entries (a mistaken --lora-dir /) answers partly rather than stall a request.
    constexpr size_t kMaxEntriesWalked = 100000;
    std::error_code ec;
    const fs::path root = fs::canonical(folder, ec);
    SR_THROW_IF(ec, "the server's folder {} is not readable: {}", folder, ec.message());
    FolderListing out;
    size_t walked = 0;
    fs::recursive_directory_iterator it(root, fs::directory_options::skip_permission_denied, ec);
    for (; !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
        if (++walked > kMaxEntriesWalked) {
            out.truncated = true;
            break;
        }
        const fs::directory_entry& e = *it;
        std::error_code entry_ec;  // an entry whose type cannot be read is passed over (ec would end the walk)
        const bool folder_entry = e.is_directory(entry_ec);  // a link to a folder: not entered (no follow option)
        if (e.path().filename().string().front() == '.') {
            if (folder_entry) it.disable_recursion_pending();
            continue;
        }
        if (folder_entry) continue;
        if (!extension.empty() && lower(e.path().extension().string()) != lower(extension)) continue;
        const std::string name = e.path().lexically_relative(root).generic_string();
        try {
            (void)file_in_folder(root.string(), name);  // the same rule as a request naming it
            out.names.push_back(name);
        } catch (const InputError&) {
            // a link leading out, a dangling link, a socket: not something a job could use
        }
    }
    std::sort(out.names.begin(), out.names.end());
    if (out.names.size() > max_names) {
        out.names.resize(max_names);
        out.truncated = true;
    }
    return out;
}

}  // namespace sr::server
