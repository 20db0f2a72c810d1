// Opening the files a user names, and creating the ones we write, without the traps of plain open():
//  - a FIFO, socket or device named as a checkpoint, config, tokenizer or image would block (or stream
//    forever): read_regular_file/open_regular_file refuse anything but a regular file, without blocking;
//  - errors (no such file, a symlink loop, no permission) are InputErrors naming the file, never an
//    std::filesystem exception;
//  - an output is written under a temporary name that no one else can have chosen or planted (created with
//    O_CREAT | O_EXCL | O_NOFOLLOW, like mkstemp, in the target's folder) and renamed when complete.
//
//   sr::FileHandle f = sr::open_regular_file(path);           // InputError "<path>: not a regular file (a FIFO)"
//   sr::check_regular_file(image_path);                        // for files another library opens
//   sr::TemporaryFile tmp = sr::create_temporary_file("out.mp4", ".partial");  // "out.mp4.k3J9aQ.partial"
//   ... write tmp.fd() ...; tmp.commit("out.mp4");              // rename; the destructor removes it otherwise
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace sr {

// An open file descriptor, closed on destruction.
class FileHandle {
public:
    FileHandle() = default;
    explicit FileHandle(int fd) : fd_(fd) {}
    FileHandle(FileHandle&& o) noexcept : fd_(o.release()) {}
    FileHandle& operator=(FileHandle&& o) noexcept;
    FileHandle(const FileHandle&) = delete;
    FileHandle& operator=(const FileHandle&) = delete;
    ~FileHandle();
    int get() const { return fd_; }
    int release() {
        const int fd = fd_;
        fd_ = -1;
        return fd;
    }
    explicit operator bool() const { return fd_ >= 0; }

private:
    int fd_ = -1;
};

// Opens `path` read-only (O_CLOEXEC). Throws InputError "<path>: ..." when it cannot be opened (the reason
// from the system: no such file, permission denied, too many levels of symbolic links) or is not a regular
// file (a folder, FIFO, socket or device: named as such). A FIFO is opened with O_NONBLOCK, so the check
// never waits for a writer.
FileHandle open_regular_file(const std::string& path);

// The same checks for a file that another library will open by name (an image decoder): returns its size.
size_t check_regular_file(const std::string& path);

// The whole file, at most `max_bytes` (InputError naming the file and both sizes when larger).
std::string read_regular_file(const std::string& path, size_t max_bytes);

// A file created for writing next to `target`, under a unique name "<target>.<6 random chars><suffix>",
// with O_CREAT | O_EXCL | O_NOFOLLOW (and mode 0666 less the umask, as the final file should have): never an
// existing file, never through a symlink planted there, never shared with another run writing the same
// target. Removed on destruction unless commit() renamed it to the target.
class TemporaryFile {
public:
    TemporaryFile() = default;
    TemporaryFile(TemporaryFile&& o) noexcept;
    TemporaryFile& operator=(TemporaryFile&& o) noexcept;
    ~TemporaryFile();
    const std::string& path() const { return path_; }
    int fd() const { return fd_.get(); }
    // Closes the descriptor (a failing close, e.g. a full disk on NFS, throws).
    void close();
    // close(), then rename to `target` (atomically replacing it). InputError naming both on failure.
    void commit(const std::string& target);
    // Removes the file now (no-op when committed or already removed).
    void remove();

private:
    friend TemporaryFile create_temporary_file(const std::string& target, std::string_view suffix);
    FileHandle fd_;
    std::string path_;
};

// Throws InputError naming the target's folder when it cannot be created (missing, not writable, ...).
TemporaryFile create_temporary_file(const std::string& target, std::string_view suffix);

// Writes all `n` bytes to `fd`, retrying short writes and EINTR; a failure (a full disk, EFBIG) is an
// InputError naming `what` and the system's reason.
void write_all(int fd, const void* data, size_t n, const std::string& what);

// A printable rendering of a name read from a file (a tensor name, a merges line, a JSON key): control
// characters, DEL and invalid UTF-8 bytes become \n, \t, \xNN escapes, and backslashes are doubled, so a
// hostile name can neither rewrite the terminal nor forge log lines. At most `max_chars` bytes are kept
// ("..." marks a cut).
std::string printable(std::string_view name, size_t max_chars = 200);
// A whole message for the terminal (errors, log lines): the same escapes, except that line breaks and tabs
// stay and backslashes are not doubled (the names inside were already made printable where they were read).
std::string terminal_safe(std::string_view message);

}  // namespace sr
