// The command line as a SkyReels (video_generate.py) or sd-cli user meets it: their flags and conventions,
// the default budget and device, reproducibility (seed, metadata, --json), progress under a terminal and a
// pipe, output naming, prompt errors, flag handling, output files, Hugging Face names, control commands, the
// streaming demo, and the README's own commands. Each test drives the real binary (build/skyreels).
#include <gtest/gtest.h>
#include <pty.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <string>
#include <vector>

#include "io/json.h"
#include "support/fixtures.h"

namespace fs = std::filesystem;

namespace {

struct Result {
    int code = -1;
    std::string out, err;  // stdout, stderr
    std::string all() const { return out + err; }
};

std::string bin() {
    return std::string(SKYREELS_BINARY_DIR) + "/skyreels";
}

// Runs `skyreels <args>` through the shell (args are shell words), stdout and stderr captured apart.
Result run(const std::string& args, const std::string& env = "") {
    const fs::path err_file = fs::temp_directory_path() / ("skyreels_cli_ux_err_" + std::to_string(getpid()));
    const std::string cmd = env + " " + bin() + " " + args + " 2>'" + err_file.string() + "'";
    Result r;
    FILE* p = popen(cmd.c_str(), "r");
    if (!p) return r;
    std::array<char, 4096> buf{};
    size_t n;
    while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), n);
    const int status = pclose(p);
    r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    std::ifstream f(err_file);
    r.err.assign(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
    fs::remove(err_file);
    return r;
}

// Runs `skyreels <argv>` on a pseudo-terminal of `cols` columns; returns everything written to it.
std::string run_on_pty(const std::vector<std::string>& argv, int cols) {
    struct winsize ws {};
    ws.ws_col = static_cast<unsigned short>(cols);
    ws.ws_row = 24;
    int master = -1;
    const pid_t pid = forkpty(&master, nullptr, nullptr, &ws);
    if (pid == 0) {
        std::vector<char*> args;
        std::string b = bin();
        args.push_back(b.data());
        for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
        args.push_back(nullptr);
        execv(args[0], args.data());
        _exit(127);
    }
    std::string out;
    char buf[4096];
    for (;;) {
        const ssize_t n = read(master, buf, sizeof(buf));
        if (n <= 0) break;  // EIO once the child has exited and closed the terminal
        out.append(buf, size_t(n));
    }
    int status = 0;
    waitpid(pid, &status, 0);
    close(master);
    return out;
}

sr::Json probe_format_tags(const fs::path& file) {
    FILE* p = popen(("ffprobe -v error -show_entries format_tags -of json '" + file.string() + "'").c_str(), "r");
    std::string out;
    std::array<char, 4096> buf{};
    size_t n;
    while (p && (n = fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
    if (p) pclose(p);
    return sr::parse_json(out, "ffprobe")["format"]["tags"];
}

std::string read_file(const fs::path& p) {
    std::ifstream f(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

const std::string kSmall = " --frames 5 --height 32 --width 32 --steps 1";

// Item 1: SkyReels' own 4090 command line works (on the simulated device); conflicts come in one message.
TEST(CliUx, SkyReels4090FlagsWorkAndConflictsAreReportedTogether) {
    Result r =
        run("generate --demo --device sim --quant --offload --high_cpu_memory --parameters_level --dry-run" + kSmall);
    ASSERT_EQ(r.code, 0) << r.all();
    EXPECT_NE(r.out.find("--offload block"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("--host-memory pinned"), std::string::npos) << r.out;
    EXPECT_NE(r.err.find("quant fp8"), std::string::npos) << r.err;
    // --parameters_level alone is ignored, as in SkyReels, and says so.
    r = run("generate --demo --device sim --parameters_level --dry-run" + kSmall);
    ASSERT_EQ(r.code, 0) << r.all();
    EXPECT_NE(r.err.find("acts only together with --offload"), std::string::npos) << r.err;
    EXPECT_NE(r.out.find("--offload none"), std::string::npos) << r.out;
    // Four mistakes, one run, one message naming each.
    r =
        run("generate --demo --model m --compiler_transformer --quant int4 --offload model --parameters_level "
            "--device sim" +
            kSmall);
    EXPECT_EQ(r.code, 1) << r.all();
    for (const char* piece : {"4 problems", "--demo runs the built-in model", "--compiler_transformer", "--quant int4",
                              "--parameters_level refines --offload to block"})
        EXPECT_NE(r.err.find(piece), std::string::npos) << piece << ": " << r.err;
}

// Item 2: the default budget is the device's memory less the stated margin (the simulated device's size
// here), printed in the plan header; --offload auto picks the cheapest mode that fits; --dry-run prints the
// smallest budget per mode, and the plan at that budget fits while 2 MiB less does not.
TEST(CliUx, DefaultBudgetAutoOffloadAndSmallestBudgets) {
    const size_t sim = size_t(8) << 30;
    const size_t margin = std::max<size_t>(size_t(512) << 20, sim / 20);  // runtime/gpu_probe.h's rule
    Result r = run("generate --demo --device sim --sim-memory 8G --offload block --dry-run" + kSmall);
    ASSERT_EQ(r.code, 0) << r.all();
    const double want_gib = double(sim - margin) / double(size_t(1) << 30);
    char expect[64];
    std::snprintf(expect, sizeof(expect), "--vram-budget %.2f GiB", want_gib);
    EXPECT_NE(r.out.find(expect), std::string::npos) << expect << ": " << r.out;
    EXPECT_NE(r.out.find("default: the simulated device's 8.00 GiB"), std::string::npos) << r.out;

    r = run("generate --demo --demo-size large --device sim --dry-run -q" + kSmall);
    ASSERT_EQ(r.code, 0) << r.all();
    std::smatch m;
    const std::regex block_line(R"(--offload block\s+([0-9.]+) MiB)");
    ASSERT_TRUE(std::regex_search(r.out, m, block_line)) << r.out;
    const double block_mib = std::stod(m[1]);
    for (const char* mode : {"--offload none", "--offload model"}) EXPECT_NE(r.out.find(mode), std::string::npos);
    char budget[32];
    std::snprintf(budget, sizeof(budget), "%.0fM", std::ceil(block_mib) + 1);
    r = run(std::string("generate --demo --demo-size large --device sim --offload block --dry-run -q --vram-budget ") +
            budget + kSmall);
    EXPECT_EQ(r.code, 0) << budget << ": " << r.all();
    std::snprintf(budget, sizeof(budget), "%.0fM", std::floor(block_mib) - 2);
    r = run(std::string("generate --demo --demo-size large --device sim --offload block --dry-run -q --vram-budget ") +
            budget + kSmall);
    EXPECT_EQ(r.code, 1) << budget << ": " << r.all();
    EXPECT_NE(r.out.find("does not fit"), std::string::npos) << r.out;
    // auto: everything resident when the budget allows it, streaming when only that fits.
    r = run("generate --demo --demo-size large --device sim --offload auto --dry-run -q" + kSmall);
    EXPECT_NE(r.out.find("--offload none"), std::string::npos) << r.out;
    std::snprintf(budget, sizeof(budget), "%.0fM", std::ceil(block_mib) + 1);
    r = run(std::string("generate --demo --demo-size large --device sim --offload auto --dry-run -q --vram-budget ") +
            budget + kSmall);
    EXPECT_EQ(r.code, 0) << r.all();
    EXPECT_NE(r.out.find("memory plan: device sim, --offload block"), std::string::npos) << r.out;
}

// Items 3 and 11: the default device, `skyreels devices`, --version, --threads.
TEST(CliUx, DefaultDeviceDevicesVersionAndThreads) {
    Result r = run("devices");
    EXPECT_EQ(r.code, 0) << r.all();
    EXPECT_TRUE(r.out.find("cuda:") != std::string::npos || r.out.find("no usable GPU: ") != std::string::npos)
        << r.out;
    const bool gpu = r.out.find("cuda:0") != std::string::npos;
    r = run("--version");
    EXPECT_EQ(r.code, 0) << r.all();
    EXPECT_NE(r.out.find("skyreels 0."), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("FFmpeg"), std::string::npos) << r.out;
    EXPECT_TRUE(r.out.find("CUDA backend, archs") != std::string::npos ||
                r.out.find("no CUDA backend") != std::string::npos)
        << r.out;
    // The run header says what is about to run; without a GPU the default device is the CPU.
    const fs::path dir = sr::test::scratch_dir("cli_ux_device");
    r = run("generate --demo --threads 1 --seed 7" + kSmall + " -o '" + (dir / "a.mp4").string() + "'");
    ASSERT_EQ(r.code, 0) << r.all();
    if (!gpu) {
        EXPECT_NE(r.err.find("text-to-video on cpu"), std::string::npos) << r.err;
    }
    for (const char* piece : {"model: the built-in demo", "32x32 (width x height), 5 frames at 24 fps, 1 steps",
                              "guidance 6", "seed 7", "quant none"})
        EXPECT_NE(r.err.find(piece), std::string::npos) << piece << ": " << r.err;
    EXPECT_EQ(run("generate --demo --threads -3" + kSmall).code, 1);
}

// Item 4: the seed actually used is printed (also for -1) and recorded with everything else in the MP4's
// comment and the PNGs' text chunks; --json prints a machine-readable summary.
TEST(CliUx, SeedMetadataAndJsonSummary) {
    const fs::path dir = sr::test::scratch_dir("cli_ux_meta");
    const std::string out = (dir / "v.mp4").string();
    Result r = run("generate --demo --seed -1 --json --prompt 'FPS-24, a red fox' --png-dir '" +
                   (dir / "png").string() + "'" + kSmall + " -o '" + out + "'");
    ASSERT_EQ(r.code, 0) << r.all();
    const sr::Json summary = sr::parse_json(r.out, "--json");
    ASSERT_EQ(summary["videos"].size(), 1u);
    const uint64_t seed = summary["videos"][0]["seed"].get<uint64_t>();
    EXPECT_EQ(summary["videos"][0]["file"], out);
    EXPECT_TRUE(summary.contains("stage_seconds") && summary["stage_seconds"].contains("denoising")) << r.out;
    EXPECT_GT(summary["peak_rss_bytes"].get<uint64_t>(), 0u);
    EXPECT_NE(r.err.find("seed " + std::to_string(seed)), std::string::npos) << r.err;
    const sr::Json tags = probe_format_tags(out);
    const sr::Json made = sr::parse_json(tags["comment"].get<std::string>(), "comment");
    EXPECT_EQ(made["seed"].get<uint64_t>(), seed);
    EXPECT_EQ(made["prompt"], "FPS-24, a red fox");
    EXPECT_EQ(made["steps"], 1);
    EXPECT_EQ(made["frames"], 5);
    EXPECT_EQ(made["height"], 32);
    EXPECT_TRUE(made.contains("negative_prompt") && made.contains("guidance_scale") &&
                made.contains("embedded_guidance_scale") && made.contains("model") && made.contains("engine"));
    EXPECT_EQ(tags["description"], "FPS-24, a red fox");
    const std::string png = read_file(dir / "png" / "frame_00000.png");
    EXPECT_NE(png.find("tEXt"), std::string::npos);
    EXPECT_NE(png.find("\"seed\":" + std::to_string(seed)), std::string::npos);
}

// Item 5: progress on a terminal of 80 columns: no drawn segment is wider than the terminal, warnings and the
// final line start on a clean line; under a pipe: plain lines with units and no carriage returns.
TEST(CliUx, ProgressUnderATerminalAndAPipe) {
    const fs::path dir = sr::test::scratch_dir("cli_ux_progress");
    const std::string tty =
        run_on_pty({"generate", "--demo", "--device", "sim", "--prompt", "no prefix, so a warning", "--frames", "9",
                    "--height", "32", "--width", "32", "--steps", "2", "-o", (dir / "t.mp4").string()},
                   80);
    ASSERT_NE(tty.find("wrote"), std::string::npos) << tty;
    size_t start = 0;
    while (start < tty.size()) {
        size_t end = tty.find_first_of("\r\n", start);
        if (end == std::string::npos) end = tty.size();
        std::string seg = tty.substr(start, end - start);
        if (seg.rfind("\033[K", 0) == 0) seg = seg.substr(3);
        // Only the progress line is redrawn; it must fit (headers and messages may be longer: they wrap once).
        if (seg.find(" steps |") != std::string::npos || seg.find(" frames |") != std::string::npos) {
            EXPECT_LE(seg.size(), 79u) << "progress line wider than 80 columns: " << seg;
        }
        start = end + 1;
    }
    for (const char* line_start : {"[warn]", "skyreels: wrote", "done:"}) {
        const size_t at = tty.find(line_start);
        ASSERT_NE(at, std::string::npos) << line_start << ": " << tty;
        // Preceded by a newline, or by the clear sequence that erased the progress line.
        EXPECT_TRUE(at == 0 || tty[at - 1] == '\n' || (at >= 4 && tty.compare(at - 4, 4, "\r\033[K") == 0))
            << line_start << " glued onto the progress line: " << tty.substr(at > 60 ? at - 60 : 0, 80);
    }
    const Result piped = run("generate --demo --device sim --steps 2 --frames 9 --height 32 --width 32 -o '" +
                             (dir / "p.mp4").string() + "' --video-num 2");
    ASSERT_EQ(piped.code, 0) << piped.all();
    EXPECT_EQ(piped.err.find('\r'), std::string::npos) << "carriage returns in a log";
    for (const char* piece :
         {"skyreels: video 1/2 | denoising 2/2 steps", "video 2/2 | decoding 9/9 frames", "\nskyreels: wrote"})
        EXPECT_NE(piped.err.find(piece), std::string::npos) << piece << ": " << piped.err;
}

// Item 6: --outdir like SkyReels: created; files named from the first 100 characters of the prompt (a CJK
// prompt is never cut inside a character; '/' removed, newlines and characters filesystems refuse replaced).
TEST(CliUx, OutdirNamesFilesFromTheFirst100CharactersOfAnyPrompt) {
    const fs::path dir = sr::test::scratch_dir("cli_ux_outdir") / "new" / "folder";
    std::string prompt = "FPS-24, ";
    for (int i = 0; i < 60; ++i) prompt += "猫走";  // 120 CJK characters after the prefix, 3 bytes each
    prompt.insert(20, "a/b:c\nd");
    const fs::path pf = sr::test::scratch_dir("cli_ux_outdir") / "p.txt";
    std::ofstream(pf) << "{\"prompt\": " << sr::Json(prompt).dump() << "}\n";
    const Result r =
        run("generate --demo -q --seed 5 --prompt-file '" + pf.string() + "' --outdir '" + dir.string() + "'" + kSmall);
    ASSERT_EQ(r.code, 0) << r.all();
    ASSERT_TRUE(fs::is_directory(dir));
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
    ASSERT_EQ(names.size(), 1u);
    const std::string& name = names[0];
    EXPECT_EQ(name.find('/'), std::string::npos);
    EXPECT_EQ(name.find('\n'), std::string::npos);
    EXPECT_EQ(name.find(':'), std::string::npos);
    EXPECT_EQ(name.rfind("FPS-24, 猫走猫走ab_c_d猫走", 0), 0u) << name;
    ASSERT_GT(name.size(), std::string("_5_0.mp4").size());
    EXPECT_EQ(name.substr(name.size() - 8), "_5_0.mp4") << name;
    // At most 100 code points of the prompt ('/' removed), cut at a character boundary to at most 200 bytes so
    // the name (and the writer's temporary beside it) fits the 255 bytes file systems allow.
    const std::string stem = name.substr(0, name.size() - std::string("_5_0.mp4").size());
    size_t chars = 0;
    for (unsigned char c : stem) chars += (c & 0xc0) != 0x80;
    EXPECT_LE(chars, 99u) << stem;
    EXPECT_LE(stem.size(), 200u) << stem;
    EXPECT_GT(stem.size(), 197u) << "cut more than needed: " << stem;
    EXPECT_EQ(prompt.find("d" + stem.substr(stem.find("_d") + 2)), prompt.find("d猫走")) << stem;
    EXPECT_EQ(run("generate --demo -q --outdir /proc/nope" + kSmall).code, 1);
}

// Item 7: prompt errors before any model is loaded, at their offset, naming which prompt; CLIP's 77-token
// truncation warned; a tokenizer larger than its encoder's vocabulary refused at load with both sizes.
TEST(CliUx, PromptErrorsComeFirstAndNameTheirPlace) {
    Result r = run("generate --model /nonexistent/model --prompt \"$(printf 'FPS-24, caf\\303 ok')\"" + kSmall);
    EXPECT_EQ(r.code, 1) << r.all();
    EXPECT_NE(r.err.find("--prompt is not valid UTF-8 at byte 12"), std::string::npos) << r.err;
    r = run("generate --model /nonexistent/model --negative-prompt \"$(printf '\\377')\"" + kSmall);
    EXPECT_NE(r.err.find("--negative-prompt is not valid UTF-8 at byte 0"), std::string::npos) << r.err;
    std::string long_prompt = "FPS-24,";
    for (int i = 0; i < 90; ++i) long_prompt += " word";
    r = run("generate --demo -o /dev/null.mp4 --dry-run --prompt '" + long_prompt + "'" + kSmall);
    // The plan does not tokenize; a run does: warn there.
    const fs::path dir = sr::test::scratch_dir("cli_ux_prompt");
    r = run("generate --demo --prompt '" + long_prompt + "'" + kSmall + " -o '" + (dir / "l.mp4").string() + "'");
    ASSERT_EQ(r.code, 0) << r.all();
    EXPECT_NE(r.err.find("longer than CLIP's 77 tokens"), std::string::npos) << r.err;
}

// Item 8: last value wins, -o, did you mean, unknown commands, limits named, single unreadable files named,
// --image alone implies i2v, --demo with --model refused, parse errors exit 1 with the prefix.
TEST(CliUx, FlagsBehaveAsArgparseAndSdCliUsersExpect) {
    Result r = run("generate --demo --device sim --dry-run --height 16 --height 48 --width 32 --frames 5 --steps 1");
    ASSERT_EQ(r.code, 0) << r.all();
    EXPECT_NE(r.err.find("32x48 (width x height)"), std::string::npos) << r.err;
    r = run("generate --demo --hieght 32");
    EXPECT_EQ(r.code, 1);
    EXPECT_EQ(r.err.rfind("skyreels: error: unknown option '--hieght'", 0), 0u) << r.err;
    EXPECT_NE(r.err.find("did you mean '--height'?"), std::string::npos) << r.err;
    r = run("generate --demo --num-frames 9 --dry-run");
    EXPECT_NE(r.err.find("did you mean '--num_frames'?"), std::string::npos) << r.err;
    r = run("genrate --demo");
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.err.find("unknown command 'genrate' (did you mean 'generate'?)"), std::string::npos) << r.err;
    r = run("");
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.err.find("skyreels: error: a command is required"), std::string::npos) << r.err;
    r = run("generate --demo --height 100000 --dry-run");
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.err.find("16384"), std::string::npos) << r.err;
    r = run("generate --demo --model x" + kSmall);
    EXPECT_NE(r.err.find("give --demo or --model, not both"), std::string::npos) << r.err;
    // The new flags' bad values are named.
    for (const auto& [args, piece] : std::vector<std::pair<std::string, std::string>>{
             {"--demo --demo-size huge", "--demo-size huge: expected small or large"},
             {"--model x --demo-size large", "--demo-size goes with --demo"},
             {"--demo --device sim --sim-memory 12Q", "--sim-memory"},
             {"--demo --offload fast --device sim", "--offload"},
             {"--demo --prompt a --prompt-file b", "give one of them"}}) {
        r = run("generate " + args + " --dry-run" + kSmall);
        EXPECT_EQ(r.code, 1) << args << ": " << r.all();
        EXPECT_NE(r.err.find(piece), std::string::npos) << args << ": " << r.err;
    }
    const fs::path dir = sr::test::scratch_dir("cli_ux_flags");
    std::ofstream(dir / "model.ckpt") << "\x80\x02PK pickled torch checkpoint";
    r = run("generate --model '" + (dir / "model.ckpt").string() + "' --base '" + dir.string() + "'" + kSmall);
    EXPECT_EQ(r.code, 1) << r.all();
    EXPECT_NE(r.err.find("model.ckpt"), std::string::npos) << r.err;
    EXPECT_EQ(r.err.find("internal error"), std::string::npos) << r.err;
    // --image without --task: i2v when the model takes images (the demo makes one).
    std::ofstream(dir / "img.png") << read_file(fs::path(SKYREELS_SOURCE_DIR) / "tests" / "fixtures" / "images_extra" /
                                                "png_tiny.png");
    r = run("generate --demo --image '" + (dir / "img.png").string() + "' --dry-run" + kSmall);
    EXPECT_EQ(r.code, 0) << r.all();
    EXPECT_NE(r.err.find("image-to-video"), std::string::npos) << r.err;
    // -o works like --out.
    r = run("generate --demo -q" + kSmall + " -o '" + (dir / "short").string() + "'");
    EXPECT_EQ(r.code, 0) << r.all();
    EXPECT_TRUE(fs::exists(dir / "short.mp4")) << "--out without an extension gets .mp4";
}

// Item 9: faststart (moov before mdat), upper-case extensions, --prompt-file with per-line settings,
// --no-overwrite, --crf 0 warned.
TEST(CliUx, OutputFilesPlayWhileDownloadingAndPromptFilesReuseTheModels) {
    const fs::path dir = sr::test::scratch_dir("cli_ux_output");
    Result r = run("generate --demo -q" + kSmall + " -o '" + (dir / "UP.MP4").string() + "'");
    ASSERT_EQ(r.code, 0) << r.all();
    const std::string mp4 = read_file(dir / "UP.MP4");
    const size_t moov = mp4.find("moov"), mdat = mp4.find("mdat");
    ASSERT_NE(moov, std::string::npos);
    ASSERT_NE(mdat, std::string::npos);
    EXPECT_LT(moov, mdat) << "the index must come before the frames (faststart)";
    r = run("generate --demo -q --no-overwrite" + kSmall + " -o '" + (dir / "UP.MP4").string() + "'");
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.err.find("--no-overwrite"), std::string::npos) << r.err;
    r = run("generate --demo --crf 0 --dry-run" + kSmall);
    EXPECT_NE(r.err.find("browsers"), std::string::npos) << r.err;

    std::ofstream(dir / "jobs.txt") << "# two videos, one load\n"
                                    << "FPS-24, a plain line\n"
                                    << "{\"prompt\": \"FPS-24, json\", \"seed\": 9, \"out\": \""
                                    << (dir / "second.mp4").string() << "\"}\n";
    r = run("generate --demo --json --prompt-file '" + (dir / "jobs.txt").string() + "' -o '" +
            (dir / "batch.mp4").string() + "'" + kSmall);
    ASSERT_EQ(r.code, 0) << r.all();
    const sr::Json s = sr::parse_json(r.out, "--json");
    ASSERT_EQ(s["videos"].size(), 2u);
    EXPECT_EQ(s["videos"][1]["seed"], 9);
    EXPECT_TRUE(fs::exists(dir / "batch_0.mp4"));
    EXPECT_TRUE(fs::exists(dir / "second.mp4"));
    std::ofstream(dir / "bad.txt") << "FPS-24, fine\n{\"prompt\": 3}\n";
    r = run("generate --demo --prompt-file '" + (dir / "bad.txt").string() + "'" + kSmall);
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.err.find("line 2"), std::string::npos) << r.err;
}

// Item 10: Hugging Face names resolve in a (fake) local cache, never downloaded; a missing one says how.
TEST(CliUx, HuggingFaceNamesResolveInTheLocalCache) {
    const fs::path cache = sr::test::scratch_dir("cli_ux_hf");
    const fs::path snap = cache / "models--Skywork--Tiny-T2V" / "snapshots" / "0123abc";
    fs::create_directories(snap);
    fs::create_directories(cache / "models--Skywork--Tiny-T2V" / "refs");
    std::ofstream(cache / "models--Skywork--Tiny-T2V" / "refs" / "main") << "0123abc";
    // The snapshot: a transformer folder copied from a fixture, with its config.
    fs::path transformer;
    for (const fs::path& d : sr::test::find_fixture_dirs([](const fs::path& d) {
             return sr::test::model_config_names(d, "_class_name", "HunyuanVideoTransformer3DModel");
         }))
        if (transformer.empty()) transformer = d / "model";
    if (transformer.empty()) GTEST_SKIP() << "no transformer fixture";
    fs::copy(transformer, snap, fs::copy_options::recursive);
    const std::string env = "HF_HUB_CACHE='" + cache.string() + "'";
    Result r = run("generate --model Skywork/Tiny-T2V --base nowhere/HunyuanVideo" + kSmall, env);
    EXPECT_EQ(r.code, 1) << r.all();
    // The model resolved (the error is about the base), and the base's message says how to get it.
    EXPECT_NE(r.err.find("--base nowhere/HunyuanVideo"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("huggingface-cli download nowhere/HunyuanVideo"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find(cache.string()), std::string::npos) << r.err;
    r = run("generate --model Skywork/Tiny-T2V" + kSmall, env);
    EXPECT_EQ(r.code, 1) << r.all();
    EXPECT_NE(r.err.find("huggingface-cli download hunyuanvideo-community/HunyuanVideo"), std::string::npos) << r.err;
    r = run("generate --model Skywork/Not-Here" + kSmall, env);
    EXPECT_NE(r.err.find("huggingface-cli download Skywork/Not-Here"), std::string::npos) << r.err;
}

// Item 12: the README's streaming demo really streams weights every step.
TEST(CliUx, TheStreamingDemoMovesWeightsEveryStep) {
    const fs::path dir = sr::test::scratch_dir("cli_ux_stream");
    const Result r =
        run("generate --demo --demo-size large --device sim --offload block --vram-budget 72M "
            "--host-memory mmap --memory-report --steps 2 -q -o '" +
            (dir / "s.mp4").string() + "'");
    ASSERT_EQ(r.code, 0) << r.all();
    std::smatch m;
    const std::regex per_step(R"(([0-9.]+) MiB per denoising step)");
    ASSERT_TRUE(std::regex_search(r.err, m, per_step)) << r.err;
    EXPECT_GT(std::stod(m[1]), 1.0) << r.err;
}

}  // namespace

namespace {

// Item 13: every command in the README's code blocks that needs no real weights (the demo, --help, devices,
// --version) runs as written and succeeds, so the README stays true to the binary.
TEST(CliUx, TheReadmesCommandsThatNeedNoWeightsRun) {
    std::ifstream f(fs::path(SKYREELS_SOURCE_DIR) / "README.md");
    ASSERT_TRUE(f) << "README.md";
    std::vector<std::string> commands;
    std::string line, pending;
    bool in_block = false;
    while (std::getline(f, line)) {
        if (line.rfind("```", 0) == 0) {
            in_block = !in_block && line == "```sh";
            continue;
        }
        if (!in_block) continue;
        if (!pending.empty() || line.rfind("build/skyreels ", 0) == 0) {
            const bool continued = !line.empty() && line.back() == '\\';
            pending += continued ? line.substr(0, line.size() - 1) : line;
            if (continued) continue;
            const size_t comment = pending.find(" #");
            if (comment != std::string::npos) pending.resize(comment);
            const bool no_weights =
                pending.find("--demo") != std::string::npos || pending.find("--help") != std::string::npos ||
                pending.find(" devices") != std::string::npos || pending.find("--version") != std::string::npos;
            if (no_weights) commands.push_back(pending);
            pending.clear();
        }
    }
    ASSERT_GE(commands.size(), 5u) << "the README lost its runnable commands";
    const fs::path dir = sr::test::scratch_dir("cli_ux_readme");
    for (const std::string& c : commands) {
        SCOPED_TRACE(c);
        const std::string args = c.substr(std::string("build/skyreels ").size());
        const std::string cmd = "cd '" + dir.string() + "' && " + bin() + " " + args + " > /dev/null 2>&1";
        EXPECT_EQ(std::system(cmd.c_str()), 0) << c;
    }
    std::printf("README: %zu commands run\n", commands.size());
}

}  // namespace

namespace {

// Item 7 (continued): a tokenizer whose ids go past its text encoder's embedding table is refused when the
// models load, naming both sizes (the fixtures' real Llama-3 and CLIP tokenizers beside the tiny encoders).
TEST(CliUx, ATokenizerLargerThanItsEncodersVocabularyIsRefusedAtLoad) {
    const auto pipelines = sr::test::find_fixture_dirs([](const fs::path& d) {
        return fs::exists(d / "model_index.json") && fs::exists(d / "params.json") &&
               fs::exists(d / "transformer" / "config.json");
    });
    const auto tokenizers = sr::test::find_fixture_dirs(
        [](const fs::path& d) { return fs::exists(d / "llama3_goldens.json") && fs::is_directory(d / "llama3"); });
    if (pipelines.empty() || tokenizers.empty()) GTEST_SKIP() << "no pipeline or tokenizer fixture";
    const fs::path model = sr::test::scratch_dir("cli_ux_vocab") / "pipeline";
    fs::create_directories(model);
    for (const char* part : {"model_index.json", "transformer", "vae", "text_encoder", "text_encoder_2", "scheduler"})
        if (fs::exists(pipelines[0] / part)) fs::create_symlink(pipelines[0] / part, model / part);
    fs::create_symlink(tokenizers[0] / "llama3", model / "tokenizer");
    const sr::Json enc = sr::load_json_file((pipelines[0] / "text_encoder" / "config.json").string());
    const int64_t vocab = enc["vocab_size"].get<int64_t>();
    const Result r = run("generate --model '" + model.string() + "' --dry-run" + kSmall);
    EXPECT_EQ(r.code, 1) << r.all();
    EXPECT_NE(r.err.find("but the Llama text encoder's vocabulary has " + std::to_string(vocab)), std::string::npos)
        << r.err;
    EXPECT_NE(r.err.find("the tokenizer has "), std::string::npos) << r.err;
}

}  // namespace
