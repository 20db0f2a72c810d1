// skyreels: the command-line front end. A thin layer over the library: parse flags, call the library,
// report errors once, here, with a non-zero exit.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/build_info.h"
#include "core/error.h"
#include "core/files.h"
#include "runtime/mpi_communicator.h"
#include "tools/skyreels/commands.h"
#include "tools/skyreels/suggest.h"
#ifdef SKYREELS_HAVE_MEDIA
#include "media/partial_files.h"
#include "media/video_writer.h"
#endif

namespace {

// --device sim runs a copy-engine thread beside the OpenMP workers, and `serve` its HTTP threads. OpenMP's
// default spin-waiting between parallel regions starves them on machines with few cores (3 s instead of 0.2 s
// measured on 2 cores), and
// libgomp reads OMP_WAIT_POLICY only when it loads, before main: so set it and start again, once.
void prefer_passive_openmp(char** argv) {
    if (std::getenv("OMP_WAIT_POLICY")) return;
    // `serve` too: its HTTP threads must get a core while a job runs.
    bool sim = argv[0] && argv[1] && !std::strcmp(argv[1], "serve");
    for (char** a = argv; *a; ++a)
        if (!std::strcmp(*a, "--device=sim") || (!std::strcmp(*a, "--device") && a[1] && !std::strcmp(a[1], "sim")))
            sim = true;
    if (!sim) return;
    setenv("OMP_WAIT_POLICY", "passive", 1);
    execv("/proc/self/exe", argv);  // on failure, run on as we are: only the timing suffers
}

// --version: the version and what this build can do.
std::string version_text() {
    std::string cuda = sr::build::kCuda ? fmt::format("CUDA backend, archs {} (nvcc {})", sr::build::kCudaArchitectures,
                                                      sr::build::kCudaToolkit)
                                        : std::string("no CUDA backend");
    std::string ffmpeg = "no video output";
#ifdef SKYREELS_HAVE_MEDIA
    ffmpeg = "FFmpeg " + sr::ffmpeg_version();
#endif
    return fmt::format(
        "skyreels {}\n  build: {}, {}{}{}\n  {}\n  {}\n  log level: SKYREELS_LOG=debug|info|warn|error|quiet",
        sr::build::kVersion, sr::build::kBuildType, sr::build::kCompiler, sr::build::kNative ? ", -march=native" : "",
        sr::build::kSanitized ? ", ASan+UBSan" : "", cuda, ffmpeg);
}

// Every spelling of every option of `cmd` ("--height", "-o", ...), for "did you mean".
std::vector<std::string> option_names(const CLI::App& cmd) {
    std::vector<std::string> names;
    for (const CLI::Option* opt : cmd.get_options()) {
        for (const std::string& l : opt->get_lnames()) names.push_back("--" + l);
        for (const std::string& s : opt->get_snames()) names.push_back("-" + s);
    }
    return names;
}

// A command-line parse error in our words: what was wrong, with the nearest option or command when the user
// probably mistyped one, and where the help is.
std::string describe_parse_error(const CLI::App& app, const CLI::ParseError& e) {
    const CLI::App* cmd = &app;
    for (const CLI::App* sub : app.get_subcommands({}))
        if (sub->parsed()) cmd = sub;
    const std::string where = cmd == &app ? "skyreels" : "skyreels " + cmd->get_name();
    std::string msg;
    if (dynamic_cast<const CLI::ExtrasError*>(&e) != nullptr) {
        bool after_unknown_option = false;
        for (const std::string& arg : cmd->remaining()) {
            const bool is_option = arg.size() > 1 && arg[0] == '-';
            if (!is_option && after_unknown_option) {  // the unknown option's value
                after_unknown_option = false;
                continue;
            }
            after_unknown_option = is_option && arg.find('=') == std::string::npos;
            if (!msg.empty()) msg += "; ";
            if (is_option) {
                const std::string flag = arg.substr(0, arg.find('='));
                msg += fmt::format("unknown option '{}' for '{}'", flag, where);
                const std::string near = sr::cli::closest_name(flag, option_names(*cmd));
                if (!near.empty()) msg += fmt::format(" (did you mean '{}'?)", near);
            } else {
                msg += fmt::format("unexpected argument '{}' for '{}' (a value with no option before it?)", arg, where);
            }
        }
    }
    if (msg.empty() && cmd == &app && dynamic_cast<const CLI::RequiredError*>(&e) != nullptr) {
        std::vector<std::string> names;
        for (const CLI::App* sub : app.get_subcommands({})) names.push_back(sub->get_name());
        msg = fmt::format("a command is required: {}", fmt::join(names, ", "));
    }
    if (msg.empty()) msg = e.what();
    return fmt::format("{}\n       run '{} --help' for the options", msg, where);
}

// The first argument names the command: an unknown one is named, with the closest command.
std::string unknown_command(const CLI::App& app, int argc, char** argv) {
    if (argc < 2 || argv[1][0] == '-') return "";
    std::vector<std::string> names;
    for (const CLI::App* sub : app.get_subcommands({})) {
        if (sub->get_name() == argv[1]) return "";
        names.push_back(sub->get_name());
    }
    std::string msg = fmt::format("unknown command '{}'", argv[1]);
    const std::string near = sr::cli::closest_name(argv[1], names);
    if (!near.empty()) msg += fmt::format(" (did you mean '{}'?)", near);
    return msg + fmt::format("; the commands are: {}", fmt::join(names, ", "));
}

}  // namespace

int main(int argc, char** argv) {
    prefer_passive_openmp(argv);
#ifdef SKYREELS_HAVE_MEDIA
    // Ctrl-C, SIGTERM and SIGHUP leave no half-written video behind; a checkpoint cut short under a running
    // command (SIGBUS) is named.
    sr::remove_partial_files_on_signal();
#endif
    CLI::App app{"skyreels: SkyReels-V1 / HunyuanVideo video generation in one native binary"};
    app.require_subcommand(1);
    // A repeated option takes its last value, as argparse (SkyReels' video_generate.py) and sd-cli do, so a
    // script's defaults can be overridden by appending flags. Subcommands inherit this when created.
    app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
    app.set_version_flag("--version", version_text());
    // Each add_*_command registers one subcommand and returns what runs it.
    std::vector<std::pair<CLI::App*, sr::cli::Command>> commands;
    for (auto add : {sr::cli::add_info_command, sr::cli::add_tokenize_command, sr::cli::add_generate_command,
                     sr::cli::add_convert_command, sr::cli::add_devices_command, sr::cli::add_serve_command}) {
        sr::cli::Command run = add(app);
        commands.emplace_back(app.get_subcommands({}).back(), std::move(run));
    }
    if (const std::string bad = unknown_command(app, argc, argv); !bad.empty()) {
        std::fprintf(stderr, "skyreels: error: %s\n", bad.c_str());
        return 1;
    }
    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp& e) {
        return app.exit(e);
    } catch (const CLI::CallForAllHelp& e) {
        return app.exit(e);
    } catch (const CLI::CallForVersion& e) {
        return app.exit(e);
    } catch (const CLI::ParseError& e) {
        // Exit code 1 like every other input error (README: exit codes), with our prefix.
        std::fprintf(stderr, "skyreels: error: %s\n", describe_parse_error(app, e).c_str());
        return 1;
    }
    // Under an MPI launcher (mpirun, srun --mpi=pmix) this process is one rank of a parallel run.
    std::optional<sr::MpiRuntime> mpi;
    // An error ends this process, and in a parallel run every rank at once (no rank is left waiting in a
    // collective for this one), naming the rank that failed.
    auto fail = [&](int code, const char* kind, const std::string& message) {
        std::string where;
        int ranks = 1;
        if (mpi && sr::MpiRuntime::active()) {
            const auto world = sr::MpiRuntime::world();
            ranks = world->size();
            if (ranks > 1)
                where = "rank " + std::to_string(world->rank()) + " of " + std::to_string(ranks) + " (" +
                        sr::MpiRuntime::host_name() + "): ";
        }
        // Messages carry names read from files: escaped, so a hostile name cannot drive the terminal.
        std::fprintf(stderr, "skyreels: %s: %s%s\n", kind, where.c_str(), sr::terminal_safe(message).c_str());
        if (ranks > 1) sr::MpiRuntime::abort_world(code);
        return code;
    };
    try {
        if (sr::MpiRuntime::launched()) mpi.emplace();
        for (auto& [sub, run] : commands)
            if (sub->parsed()) return run();
    } catch (const sr::InputError& e) {
        return fail(1, "error", e.what());
    } catch (const sr::Error& e) {
        return fail(2, "error", e.what());
    } catch (const std::bad_alloc&) {
        return fail(2, "error", "out of host memory");
    } catch (const std::filesystem::filesystem_error& e) {
        // A file system call the checks did not foresee (a symlink loop, a vanished folder): the user's input.
        return fail(1, "error", e.what());
    } catch (const std::exception& e) {
        return fail(3, "internal error", e.what());
    }
    return 0;
}
