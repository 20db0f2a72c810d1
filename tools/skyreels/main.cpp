// skyreels: the command-line front end. A thin layer over the library: parse flags, call the library,
// report errors once, here, with a non-zero exit.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>

#include "core/error.h"
#include "core/files.h"
#include "tools/skyreels/commands.h"
#ifdef SKYREELS_HAVE_MEDIA
#include "media/partial_files.h"
#endif

namespace {

// --device sim runs a copy-engine thread beside the OpenMP workers. OpenMP's default spin-waiting between
// parallel regions starves it on machines with few cores (3 s instead of 0.2 s measured on 2 cores), and
// libgomp reads OMP_WAIT_POLICY only when it loads, before main: so set it and start again, once.
void prefer_passive_openmp_for_sim(char** argv) {
    if (std::getenv("OMP_WAIT_POLICY")) return;
    bool sim = false;
    for (char** a = argv; *a; ++a)
        if (!std::strcmp(*a, "--device=sim") || (!std::strcmp(*a, "--device") && a[1] && !std::strcmp(a[1], "sim")))
            sim = true;
    if (!sim) return;
    setenv("OMP_WAIT_POLICY", "passive", 1);
    execv("/proc/self/exe", argv);  // on failure, run on as we are: only the timing suffers
}

}  // namespace

int main(int argc, char** argv) {
    prefer_passive_openmp_for_sim(argv);
#ifdef SKYREELS_HAVE_MEDIA
    // Ctrl-C, SIGTERM and SIGHUP leave no half-written video behind; a checkpoint cut short under a running
    // command (SIGBUS) is named.
    sr::remove_partial_files_on_signal();
#endif
    CLI::App app{"skyreels: SkyReels-V1 / HunyuanVideo video generation in one native binary"};
    app.require_subcommand(1);
    app.set_version_flag("--version", "skyreels 0.1.0");
    // Each add_*_command registers one subcommand and returns what runs it.
    std::vector<std::pair<CLI::App*, sr::cli::Command>> commands;
    for (auto add : {sr::cli::add_info_command, sr::cli::add_tokenize_command, sr::cli::add_generate_command,
                     sr::cli::add_convert_command}) {
        sr::cli::Command run = add(app);
        commands.emplace_back(app.get_subcommands({}).back(), std::move(run));
    }
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return app.exit(e);
    }
    try {
        for (auto& [sub, run] : commands)
            if (sub->parsed()) return run();
    } catch (const sr::InputError& e) {
        // Messages carry names read from files: escaped, so a hostile name cannot drive the terminal.
        std::fprintf(stderr, "skyreels: error: %s\n", sr::terminal_safe(e.what()).c_str());
        return 1;
    } catch (const sr::Error& e) {
        std::fprintf(stderr, "skyreels: error: %s\n", sr::terminal_safe(e.what()).c_str());
        return 2;
    } catch (const std::bad_alloc&) {
        std::fprintf(stderr, "skyreels: error: out of host memory\n");
        return 2;
    } catch (const std::filesystem::filesystem_error& e) {
        // A file system call the checks did not foresee (a symlink loop, a vanished folder): the user's input.
        std::fprintf(stderr, "skyreels: error: %s\n", sr::terminal_safe(e.what()).c_str());
        return 1;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "skyreels: internal error: %s\n", sr::terminal_safe(e.what()).c_str());
        return 3;
    }
    return 0;
}
