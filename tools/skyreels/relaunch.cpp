#include "tools/skyreels/relaunch.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "core/error.h"

namespace sr::cli {

void relaunch_under_mpirun(int ranks) {
    // This process's own arguments, as the kernel holds them, without --gpu_num and its value.
    std::ifstream f("/proc/self/cmdline", std::ios::binary);
    const std::string raw{std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
    std::vector<std::string> argv;
    for (size_t at = 0; at < raw.size();) {
        const size_t end = raw.find('\0', at);
        argv.push_back(raw.substr(at, end - at));
        at = end == std::string::npos ? raw.size() : end + 1;
    }
    SR_THROW_IF(argv.empty(), "--gpu_num: cannot read this command's arguments from /proc/self/cmdline");
    std::vector<std::string> args = {"mpirun", "-np", std::to_string(ranks)};
    // Root in a container is common; mpirun refuses it unless told. Ranks must not be pinned to one core each:
    // each runs its own thread pool.
    if (geteuid() == 0) args.push_back("--allow-run-as-root");
    for (const char* a : {"--bind-to", "none", "/proc/self/exe"}) args.emplace_back(a);
    args.back() = [] {
        char path[4096];
        const ssize_t n = readlink("/proc/self/exe", path, sizeof(path) - 1);
        return n > 0 ? std::string(path, size_t(n)) : std::string("skyreels");
    }();
    for (size_t i = 1; i < argv.size(); ++i) {
        const std::string& a = argv[i];
        if (a == "--gpu_num" || a == "--gpu-num") {
            ++i;  // and its value
            continue;
        }
        if (a.rfind("--gpu_num=", 0) == 0 || a.rfind("--gpu-num=", 0) == 0) continue;
        args.push_back(a);
    }
    std::vector<char*> cargs;
    for (std::string& a : args) cargs.push_back(a.data());
    cargs.push_back(nullptr);
    std::fflush(nullptr);
    execvp("mpirun", cargs.data());
    SR_THROW(
        "--gpu_num {}: cannot start mpirun ({}); install OpenMPI (openmpi-bin) or launch with mpirun -np {} "
        "yourself",
        ranks, std::strerror(errno), ranks);
}

}  // namespace sr::cli
