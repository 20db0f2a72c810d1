#include "core/files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <random>

#include "core/error.h"

namespace sr {

namespace {

const char* file_type_name(mode_t mode) {
    if (S_ISDIR(mode)) return "a folder";
    if (S_ISFIFO(mode)) return "a FIFO";
    if (S_ISSOCK(mode)) return "a socket";
    if (S_ISCHR(mode)) return "a character device";
    if (S_ISBLK(mode)) return "a block device";
    return "not a plain file";
}

std::string system_reason(int err) {
    if (err == ELOOP) return "too many levels of symbolic links (a symlink loop?)";
    return std::strerror(err);
}

}  // namespace

FileHandle& FileHandle::operator=(FileHandle&& o) noexcept {
    if (this != &o) {
        if (fd_ >= 0) ::close(fd_);
        fd_ = o.release();
    }
    return *this;
}

FileHandle::~FileHandle() {
    if (fd_ >= 0) ::close(fd_);
}

FileHandle open_regular_file(const std::string& path) {
    SR_THROW_IF(path.empty(), "an empty file name");
    // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer before fstat could refuse it.
    FileHandle f(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY));
    if (!f) {
        const int err = errno;
        SR_THROW("{}: cannot open: {}", path, system_reason(err));
    }
    struct stat st {};
    SR_THROW_IF(::fstat(f.get(), &st) != 0, "{}: cannot stat: {}", path, system_reason(errno));
    SR_THROW_IF(!S_ISREG(st.st_mode), "{}: not a regular file ({})", path, file_type_name(st.st_mode));
    // A regular file: reads never block anyway, but clear the flag so later users see an ordinary descriptor.
    const int flags = ::fcntl(f.get(), F_GETFL);
    if (flags >= 0) ::fcntl(f.get(), F_SETFL, flags & ~O_NONBLOCK);
    return f;
}

size_t check_regular_file(const std::string& path) {
    const FileHandle f = open_regular_file(path);
    struct stat st {};
    SR_THROW_IF(::fstat(f.get(), &st) != 0, "{}: cannot stat: {}", path, system_reason(errno));
    return size_t(st.st_size);
}

std::string read_regular_file(const std::string& path, size_t max_bytes) {
    const FileHandle f = open_regular_file(path);
    struct stat st {};
    SR_THROW_IF(::fstat(f.get(), &st) != 0, "{}: cannot stat: {}", path, system_reason(errno));
    const size_t size = size_t(st.st_size);
    SR_THROW_IF(size > max_bytes, "{}: file is {} bytes, more than the {} accepted", path, size, max_bytes);
    std::string text(size, '\0');
    size_t done = 0;
    while (done < size) {
        const ssize_t n = ::read(f.get(), text.data() + done, size - done);
        if (n < 0 && errno == EINTR) continue;
        SR_THROW_IF(n < 0, "{}: read failed: {}", path, system_reason(errno));
        if (n == 0) break;  // the file shrank while we read it: take what is there
        done += size_t(n);
    }
    text.resize(done);
    return text;
}

// ---------------------------------------------------------------------------------------------------------
// Temporary files

TemporaryFile::TemporaryFile(TemporaryFile&& o) noexcept : fd_(std::move(o.fd_)), path_(std::move(o.path_)) {
    o.path_.clear();
}

TemporaryFile& TemporaryFile::operator=(TemporaryFile&& o) noexcept {
    if (this != &o) {
        remove();
        fd_ = std::move(o.fd_);
        path_ = std::move(o.path_);
        o.path_.clear();
    }
    return *this;
}

TemporaryFile::~TemporaryFile() {
    remove();
}

void TemporaryFile::close() {
    if (!fd_) return;
    const int fd = fd_.release();
    SR_THROW_IF(::close(fd) != 0, "{}: cannot close: {}", path_, system_reason(errno));
}

void TemporaryFile::commit(const std::string& target) {
    SR_ASSERT(!path_.empty(), "commit() of a temporary file that is gone");
    close();
    SR_THROW_IF(std::rename(path_.c_str(), target.c_str()) != 0, "cannot rename '{}' to '{}': {}", path_, target,
                system_reason(errno));
    path_.clear();
}

void TemporaryFile::remove() {
    fd_ = FileHandle();
    if (!path_.empty()) ::unlink(path_.c_str());
    path_.clear();
}

TemporaryFile create_temporary_file(const std::string& target, std::string_view suffix) {
    SR_THROW_IF(target.empty(), "an empty output file name");
    static constexpr char kChars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    // Unpredictable names: a random device seeds a per-thread generator once.
    thread_local std::mt19937_64 rng{(uint64_t(std::random_device{}()) << 32) ^ std::random_device{}()};
    int err = 0;
    for (int attempt = 0; attempt < 100; ++attempt) {
        std::string path = target + '.';
        for (int i = 0; i < 6; ++i) path += kChars[rng() % (sizeof(kChars) - 1)];
        path += suffix;
        // O_EXCL: fails if anything exists under that name, a symlink included (O_NOFOLLOW says so twice).
        const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
        if (fd >= 0) {
            TemporaryFile t;
            t.fd_ = FileHandle(fd);
            t.path_ = std::move(path);
            return t;
        }
        err = errno;
        if (err != EEXIST) break;
    }
    SR_THROW("cannot create a temporary file next to '{}': {}", target, system_reason(err));
}

// ---------------------------------------------------------------------------------------------------------
// Printing names from files

namespace {

// Escapes what a terminal would act on. `name`: also backslashes and line breaks, and cut at max_chars.
std::string escape_controls(std::string_view name, size_t max_chars, bool name_mode) {
    std::string out;
    out.reserve(std::min(name.size(), max_chars) + 8);
    size_t i = 0;
    while (i < name.size()) {
        if (out.size() >= max_chars && name_mode) {
            out += "...";
            break;
        }
        const auto c = uint8_t(name[i]);
        // Valid multi-byte UTF-8 passes through whole; a stray byte is escaped.
        size_t len = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
        bool valid = len > 0 && i + len <= name.size();
        for (size_t k = 1; valid && k < len; ++k) valid = (uint8_t(name[i + k]) & 0xC0) == 0x80;
        // C1 controls (U+0080..U+009F, encoded C2 80..C2 9F) act like escapes on some terminals.
        if (valid && len == 2 && c == 0xC2 && uint8_t(name[i + 1]) < 0xA0) valid = false;
        if (valid && len > 1) {
            out.append(name.substr(i, len));
            i += len;
            continue;
        }
        if (!name_mode && (c == '\n' || c == '\t')) {
            out += char(c);
        } else if (c == '\\' && name_mode) {
            out += "\\\\";
        } else if (c == '\n') {
            out += "\\n";
        } else if (c == '\t') {
            out += "\\t";
        } else if (c == '\r') {
            out += "\\r";
        } else if (c < 0x20 || c >= 0x7F) {
            out += fmt::format("\\x{:02x}", c);
        } else {
            out += char(c);
        }
        ++i;
    }
    return out;
}

}  // namespace

std::string printable(std::string_view name, size_t max_chars) {
    return escape_controls(name, max_chars, true);
}

std::string terminal_safe(std::string_view message) {
    return escape_controls(message, std::string_view::npos, false);
}

void write_all(int fd, const void* data, size_t n, const std::string& what) {
    const char* p = static_cast<const char*>(data);
    while (n > 0) {
        const ssize_t w = ::write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        SR_THROW_IF(w < 0, "{}: cannot write: {}", what, std::strerror(errno));
        SR_THROW_IF(w == 0, "{}: cannot write: no space left", what);
        p += w;
        n -= size_t(w);
    }
}

}  // namespace sr
