// `skyreels generate` as the ranks of an MPI job: the same video as one process, frame for frame, and a rank
// given a bad input ends every rank with an error naming it (no hang, no file).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include "core/allocator.h"
#include "support/fixtures.h"
#include "support/run_command.h"

namespace fs = std::filesystem;
using sr::test::run_command;

namespace {

const std::string kBin = std::string(SKYREELS_BINARY_DIR) + "/skyreels";
// One OpenMP thread per rank, idle threads asleep: the ranks share this machine's cores. A run that leaves a
// rank waiting is cut off (exit 124) instead of hanging the test.
const std::string kMpirun = std::string("OMP_NUM_THREADS=1 OMP_WAIT_POLICY=passive timeout 120 ") + SKYREELS_MPIEXEC +
                            " --oversubscribe --bind-to none ";
const std::string kJob = " generate --demo -q --frames 9 --height 64 --width 64 --steps 2";

std::string read_file(const fs::path& p) {
    std::ifstream f(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

// Every frame PNG of a --png-dir folder, in order.
std::vector<std::string> frames(const fs::path& dir) {
    std::vector<fs::path> files;
    for (const auto& e : fs::directory_iterator(dir)) files.push_back(e.path());
    std::sort(files.begin(), files.end());
    std::vector<std::string> out;
    for (const fs::path& f : files) out.push_back(read_file(f));
    return out;
}

}  // namespace

TEST(ParallelCli, RanksWriteTheSameVideoAsOneProcess) {
    const fs::path dir = sr::test::scratch_dir("parallel_cli");
    const auto one =
        run_command(kBin + kJob + " --png-dir " + (dir / "one").string() + " -o " + (dir / "one.mp4").string());
    ASSERT_EQ(one.code, 0) << one.output;
    const std::vector<std::string> expected = frames(dir / "one");
    ASSERT_FALSE(expected.empty());
    for (const char* mesh : {"2 --parallel cfg=2", "2 --parallel ulysses=2", "4"}) {
        const std::string ranks = std::string(mesh).substr(0, 1), flags = std::string(mesh).substr(1);
        const fs::path out = dir / ("ranks" + ranks + std::to_string(flags.size()));
        const auto r = run_command(kMpirun + "-np " + ranks + " " + kBin + kJob + flags + " --png-dir " + out.string() +
                                   " -o " + out.string() + ".mp4");
        ASSERT_EQ(r.code, 0) << mesh << ": " << r.output;
        EXPECT_EQ(frames(out), expected) << mesh << ": the frames differ from one process's";
        EXPECT_EQ(read_file(out.string() + ".mp4"), read_file(dir / "one.mp4")) << mesh;
    }
}

// --preview under mpirun (rank 0 writes; every rank holds the whole latents, Ulysses included): the preview is the
// one-process run's byte for byte (the last step's contact sheet), and a folder of frames is left with nothing
// beside it.
TEST(ParallelCli, RankZeroWritesTheOneProcessPreview) {
    const fs::path dir = sr::test::scratch_dir("parallel_cli_preview");
    const std::string job = kJob + " --preview-every 1";
    const auto one =
        run_command(kBin + job + " --preview " + (dir / "one.png").string() + " -o " + (dir / "one.mp4").string());
    ASSERT_EQ(one.code, 0) << one.output;
    const std::string expected = read_file(dir / "one.png");
    ASSERT_FALSE(expected.empty());
    for (const char* mesh : {"--parallel cfg=2", "--parallel ulysses=2"}) {
        const std::string name = std::string(mesh).substr(11, 3);
        const auto r = run_command(kMpirun + "-np 2 " + kBin + job + " " + mesh + " --preview " +
                                   (dir / (name + ".png")).string() + " -o " + (dir / (name + ".mp4")).string());
        ASSERT_EQ(r.code, 0) << mesh << ": " << r.output;
        EXPECT_EQ(r.output.find("without previews"), std::string::npos) << r.output;
        EXPECT_EQ(read_file(dir / (name + ".png")), expected) << mesh << ": the preview differs from one process's";
    }
    const auto folder = run_command(kMpirun + "-np 2 " + kBin + job + " --parallel cfg=2 --preview " +
                                    (dir / "frames").string() + " -o " + (dir / "frames.mp4").string());
    ASSERT_EQ(folder.code, 0) << folder.output;
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    EXPECT_EQ(names, (std::vector<std::string>{"cfg.mp4", "cfg.png", "frames", "frames.mp4", "one.mp4", "one.png",
                                               "uly.mp4", "uly.png"}))
        << "a temporary preview folder was left behind";
    EXPECT_EQ(frames(dir / "frames").size(), 3u);  // 9 frames: 3 latent frames
}

TEST(ParallelCli, OneRanksBadInputEndsEveryRankNamingIt) {
    const fs::path dir = sr::test::scratch_dir("parallel_cli_bad");
    const std::string out = (dir / "bad.mp4").string();
    // MPMD: rank 0 as usual, rank 1 with an image that does not exist.
    const auto r = run_command(kMpirun + "-np 1 " + kBin + kJob + " -o " + out + " : -np 1 " + kBin + kJob +
                               " --task i2v --image " + (dir / "missing.png").string() + " -o " + out);
    EXPECT_NE(r.code, 0) << r.output;
    EXPECT_NE(r.code, 124) << "timed out: a rank was left waiting";
    EXPECT_NE(r.output.find("rank 1 of 2"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("missing.png"), std::string::npos) << r.output;
    EXPECT_FALSE(fs::exists(out)) << "no video from a failed run";
    EXPECT_FALSE(sr::test::partial_file_exists(out));
    // A mesh the world cannot make, and --parallel without a launcher: clear errors, exit 1.
    const auto mesh = run_command(kMpirun + "-np 2 " + kBin + kJob + " --parallel cfg=2,ulysses=2 -o " + out);
    EXPECT_EQ(mesh.code, 1) << mesh.output;
    EXPECT_NE(mesh.output.find("the mesh needs 4 ranks, the run has 2"), std::string::npos) << mesh.output;
    const auto alone = run_command(kBin + kJob + " --parallel ulysses=2 -o " + out);
    EXPECT_EQ(alone.code, 1) << alone.output;
    EXPECT_NE(alone.output.find("MPI launcher"), std::string::npos) << alone.output;
}

// --dry-run under mpirun: rank 0's plan (its guidance row and quarter of the tokens: less denoising memory than
// one process's), then every rank's device peak and the host's total.
TEST(ParallelCli, DryRunPlansEachRank) {
    const std::string job = " generate --demo --dry-run --device sim --frames 17 --height 256 --width 256";
    const auto one = run_command(kBin + job);
    ASSERT_EQ(one.code, 0) << one.output;
    const auto four = run_command(kMpirun + "-np 4 " + kBin + job);
    ASSERT_EQ(four.code, 0) << four.output;
    for (const char* piece : {"parallel run over 4 ranks", "rank 3 on ", "4 ranks, non-reclaimable host memory"})
        EXPECT_NE(four.output.find(piece), std::string::npos) << piece << ": " << four.output;
    // The denoising stage's device peak: the line's last figure ("  denoising  <weights>  <acts>  <peak>").
    auto denoising_peak = [](const std::string& out) {
        const size_t at = out.find("  denoising ");
        const std::string line = out.substr(at, out.find('\n', at) - at);
        const size_t unit = line.rfind(' '), number = line.rfind(' ', unit - 1);
        return sr::parse_bytes(line.substr(number + 1, unit - number - 1) + line.substr(unit + 1), "plan");
    };
    EXPECT_LT(denoising_peak(four.output), denoising_peak(one.output)) << four.output << one.output;
}
