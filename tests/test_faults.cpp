// Faults from the world around a run (issue 24): FIFOs and symlink loops named as inputs, concurrent runs
// and planted symlinks at the output, signals (SIGHUP, SIGBUS from a checkpoint cut short under its mapping,
// SIGINT ignored by whoever started us). Each is checked in the process or in a forked child that the test
// inspects from outside (exit status, stderr, files left).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <filesystem>
#include <fstream>
#include <string>

#include "core/files.h"
#include "io/json.h"
#include "io/safetensors.h"
#include "media/partial_files.h"
#include "media/video_writer.h"
#include "support/fixtures.h"

namespace fs = std::filesystem;
using namespace sr;

namespace {

struct Child {
    int status = 0;
    std::string stderr_text;
};

// Runs `body` in a forked child with stderr captured; the child exits 0 if body returns.
template <class F>
Child in_child(F&& body) {
    int pipe_fds[2];
    EXPECT_EQ(pipe(pipe_fds), 0);
    const pid_t pid = fork();
    if (pid == 0) {
        close(pipe_fds[0]);
        dup2(pipe_fds[1], STDERR_FILENO);
        body();
        _exit(0);
    }
    close(pipe_fds[1]);
    Child c;
    std::array<char, 4096> buf{};
    ssize_t n;
    while ((n = read(pipe_fds[0], buf.data(), buf.size())) > 0) c.stderr_text.append(buf.data(), size_t(n));
    close(pipe_fds[0]);
    waitpid(pid, &c.status, 0);
    return c;
}

std::string input_error(const std::function<void()>& f) {
    try {
        f();
    } catch (const InputError& e) {
        return e.what();
    }
    return "(no InputError)";
}

std::vector<fs::path> partial_files_in(const fs::path& dir) {
    std::vector<fs::path> out;
    for (const auto& e : fs::directory_iterator(dir))
        if (e.path().extension() == ".partial") out.push_back(e.path());
    return out;
}

Tensor grey_frames(int64_t frames, int64_t h, int64_t w) {
    return Tensor::zeros({3, frames, h, w}, DType::F32);
}

}  // namespace

// Item 5: a FIFO as a shard, config or tokenizer used to block for ever in open(); now refused at once.
TEST(Faults, FifoAsAnInputIsRefusedWithoutBlocking) {
    const fs::path dir = test::scratch_dir("fault_fifo");
    const fs::path fifo = dir / "model.safetensors";
    ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
    for (const auto& load : std::vector<std::function<void()>>{
             [&] { open_regular_file(fifo.string()); }, [&] { check_regular_file(fifo.string()); },
             [&] { WeightStore::open(fifo.string()); }, [&] { load_json_file(fifo.string()); }}) {
        const std::string e = input_error(load);
        EXPECT_NE(e.find("FIFO"), std::string::npos) << e;
        EXPECT_NE(e.find(fifo.string()), std::string::npos) << e;
    }
}

// Item 15: a symlink loop is an InputError saying so, not an exception from std::filesystem.
TEST(Faults, SymlinkLoopIsNamed) {
    const fs::path dir = test::scratch_dir("fault_loop");
    fs::create_symlink(dir / "b.json", dir / "a.json");
    fs::create_symlink(dir / "a.json", dir / "b.json");
    const std::string e = input_error([&] { load_json_file((dir / "a.json").string()); });
    EXPECT_NE(e.find("symbolic links"), std::string::npos) << e;
    EXPECT_NE(e.find("a.json"), std::string::npos) << e;
}

// Items 9 and 10: the temporary is unique per writer and created exclusively; a symlink planted at the old
// fixed name "<out>.partial" is neither followed nor replaced.
TEST(Faults, TemporaryFilesAreUniqueAndNeverFollowSymlinks) {
    const fs::path dir = test::scratch_dir("fault_tmp");
    const std::string target = (dir / "out.mp4").string();
    TemporaryFile a = create_temporary_file(target, ".partial");
    TemporaryFile b = create_temporary_file(target, ".partial");
    EXPECT_NE(a.path(), b.path());
    EXPECT_EQ(a.path().rfind(target + ".", 0), 0u) << a.path();
    const std::string a_path = a.path();
    a.remove();
    EXPECT_FALSE(fs::exists(a_path));
    b.commit(target);
    EXPECT_TRUE(fs::is_regular_file(target));
    EXPECT_TRUE(partial_files_in(dir).empty());
    EXPECT_NE(
        input_error([&] { create_temporary_file((dir / "missing" / "x.mp4").string(), ".partial"); }).find("missing"),
        std::string::npos);
}

TEST(Faults, VideoWriterIgnoresAPlantedSymlinkAndConcurrentWriters) {
    const fs::path dir = test::scratch_dir("fault_video");
    const fs::path out = dir / "clip.mp4", victim = dir / "victim.txt";
    std::ofstream(victim) << "precious";
    fs::create_symlink(victim, out.string() + ".partial");
    const int64_t h = 32, w = 48;
    {
        // Two runs writing the same --out at once: each has its own temporary; the last to finish wins whole.
        VideoWriter first(out.string(), w, h, {.fps = 8, .crf = 30, .png_dir = "", .metadata = {}});
        VideoWriter second(out.string(), w, h, {.fps = 8, .crf = 30, .png_dir = "", .metadata = {}});
        first.write(grey_frames(3, h, w));
        second.write(grey_frames(5, h, w));
        first.write(grey_frames(3, h, w));
        EXPECT_EQ(partial_files_in(dir).size(), 3u);  // two temporaries and the planted link
        first.finish();
        second.finish();
        EXPECT_EQ(second.frames_written(), 5);
    }
    std::ifstream v(victim);
    std::string text;
    v >> text;
    EXPECT_EQ(text, "precious");
    EXPECT_TRUE(fs::is_regular_file(fs::symlink_status(out))) << "the output must be a file, not a link";
    EXPECT_TRUE(fs::is_symlink(out.string() + ".partial")) << "the planted link is left alone";
}

// Item 13: a checkpoint truncated while mapped raises SIGBUS at the next read of a lost page. The run dies by
// that signal, removes its temporaries and says which file changed.
TEST(Faults, SigbusNamesTheMappedFileAndRemovesTemporaries) {
    const fs::path dir = test::scratch_dir("fault_sigbus");
    const fs::path file = dir / "shard.safetensors", partial = dir / "out.mp4.abc123.partial";
    const size_t page = size_t(sysconf(_SC_PAGESIZE));
    std::ofstream(file, std::ios::binary) << std::string(4 * page, 'x');
    std::ofstream(partial) << "half a video";
    const Child c = in_child([&] {
        remove_partial_files_on_signal();
        register_partial_file(partial.string());
        const std::shared_ptr<MappedFile> m = MappedFile::open(file.string());
        truncate(file.c_str(), 0);  // another program rewrites the checkpoint
        volatile uint8_t sink = m->data()[3 * page];
        (void)sink;
    });
    ASSERT_TRUE(WIFSIGNALED(c.status) && WTERMSIG(c.status) == SIGBUS) << "status " << c.status << c.stderr_text;
    EXPECT_NE(c.stderr_text.find(file.string()), std::string::npos) << c.stderr_text;
    EXPECT_NE(c.stderr_text.find("changed while it was being read"), std::string::npos) << c.stderr_text;
    EXPECT_FALSE(fs::exists(partial));
}

TEST(Faults, SighupRemovesTemporaries) {
    const fs::path partial = test::scratch_dir("fault_sighup") / "out.mp4.abc123.partial";
    std::ofstream(partial) << "half a video";
    const Child c = in_child([&] {
        remove_partial_files_on_signal();
        register_partial_file(partial.string());
        raise(SIGHUP);
    });
    EXPECT_TRUE(WIFSIGNALED(c.status) && WTERMSIG(c.status) == SIGHUP) << "status " << c.status;
    EXPECT_FALSE(fs::exists(partial));
}

// Started with SIGINT ignored (nohup, `cmd &` in a script): Ctrl-C at the terminal must not stop us.
TEST(Faults, IgnoredSigintStaysIgnored) {
    const fs::path partial = test::scratch_dir("fault_sigint_ign") / "out.mp4.abc123.partial";
    std::ofstream(partial) << "half a video";
    const Child c = in_child([&] {
        signal(SIGINT, SIG_IGN);
        remove_partial_files_on_signal();
        register_partial_file(partial.string());
        raise(SIGINT);
        struct sigaction now {};
        sigaction(SIGINT, nullptr, &now);
        _exit(now.sa_handler == SIG_IGN ? 0 : 3);
    });
    EXPECT_TRUE(WIFEXITED(c.status) && WEXITSTATUS(c.status) == 0) << "status " << c.status;
    EXPECT_TRUE(fs::exists(partial));
}
