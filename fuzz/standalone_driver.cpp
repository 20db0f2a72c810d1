// A main() for the fuzz targets where libFuzzer is not available (g++ builds, the default ctest run): a
// deterministic, seeded mutation loop over the target's built-in seed inputs and any corpus given.
//
//   fuzz_safetensors_header --seconds 15 --seed 1 [corpus files or folders...]
//   fuzz_json --runs 200000                 # a fixed number of executions instead of a time limit
//   fuzz_json --seconds 0 crash-fuzz_json-* # replay inputs only (e.g. a saved finding)
//   fuzz_json --write-seeds corpus/ --write-dict json.dict   # starting points for the libFuzzer build
//   fuzz_tokenizer --timeout 5 corpus/fuzz_tokenizer/         # an input running past 5 s is a finding
//
// Mutations: bit flips, byte sets/inserts/deletes, truncation, edge-case numbers (18446744073709551615, -1,
// 1e308, ...) spliced over the numbers in the JSON, dictionary tokens, duplicated chunks and duplicated JSON
// entries, and crossover between inputs. For safetensors images the JSON header is mutated and the length
// prefix usually rewritten to match, so most mutants reach the JSON and entry checks instead of all failing
// the length check. There is no coverage feedback: an accepted mutant joins the pool when the target reports a
// structure signature not seen before (new dtypes/ranks/entry counts, new JSON shapes).
//
// A finding is anything but sr::InputError escaping the target. It is printed, saved under
// --artifact-prefix, and makes the exit status 1. A crash or sanitizer report ends the process; the input
// that caused it is saved first (crash-<target>-current). So does a hang: an input still running after
// --timeout seconds (default 10; 0: no limit) is saved as timeout-<target>-current by a watchdog thread,
// which then ends the process with status 1.
#include <cxxabi.h>
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <typeinfo>
#include <vector>

#include "fuzz_target.h"

#if defined(__SANITIZE_ADDRESS__)
#define SR_FUZZ_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(undefined_behavior_sanitizer)
#define SR_FUZZ_SANITIZED 1
#endif
#endif
#ifdef SR_FUZZ_SANITIZED
#include <sanitizer/common_interface_defs.h>
#endif

namespace {

namespace fs = std::filesystem;

struct Options {
    double seconds = 10;
    uint64_t runs = 0;  // 0: until the time is up
    uint64_t seed = 1;
    double timeout = 10;  // seconds one input may run; 0: no limit
    size_t max_len = 1 << 16;
    std::string artifact_prefix = "./";
    std::string write_seeds;
    std::string write_dict;
    std::vector<std::string> corpus;
};

// The input being run, for the crash handler: plain globals, because a signal handler may only touch those.
const char* volatile g_current_data = nullptr;
volatile size_t g_current_size = 0;
char g_crash_path[4096] = "crash-current";
char g_timeout_path[4096] = "timeout-current";
// When the input being run started (steady clock, ns); 0 between inputs. Read by the watchdog thread.
std::atomic<int64_t> g_run_started_ns{0};

int64_t now_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

// Async-signal-safe: only open/write/close.
void save_current_input_to(const char* path) {
    const int fd = ::open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
        size_t done = 0;
        while (done < g_current_size) {
            const ssize_t w = ::write(fd, g_current_data + done, g_current_size - done);
            if (w <= 0) break;
            done += size_t(w);
        }
        ::close(fd);
    }
    const char msg[] = "\nfuzz: the input being run was saved to ";
    [[maybe_unused]] ssize_t r = ::write(2, msg, sizeof(msg) - 1);
    r = ::write(2, path, std::strlen(path));
    r = ::write(2, "\n", 1);
}

void save_current_input() {
    save_current_input_to(g_crash_path);
}

// A hang is a finding too (the HDR decoder looped for ever, the tokenizer took a minute): a thread that wakes
// a few times a second ends the process when one input has run for longer than `seconds`.
void start_watchdog(double seconds, const char* target) {
    if (seconds <= 0) return;
    std::thread([seconds, target] {
        const auto limit_ns = int64_t(seconds * 1e9);
        const auto nap = std::chrono::milliseconds(std::clamp<int64_t>(int64_t(seconds * 250), 10, 250));
        for (;;) {
            std::this_thread::sleep_for(nap);
            const int64_t started = g_run_started_ns.load();
            if (started == 0 || now_ns() - started < limit_ns) continue;
            std::fprintf(stderr,
                         "%s: FAILURE: an input ran for more than the --timeout of %g s (a hang or a "
                         "quadratic path)\n",
                         target, seconds);
            save_current_input_to(g_timeout_path);
            std::_Exit(1);
        }
    }).detach();
}

extern "C" void on_fatal_signal(int sig) {
    save_current_input();
    ::signal(sig, SIG_DFL);
    ::raise(sig);
}

void install_crash_handlers() {
#ifdef SR_FUZZ_SANITIZED
    // The sanitizers own SIGSEGV and friends and print the useful report; ask them to call us before dying.
    __sanitizer_set_death_callback(save_current_input);
#else
    for (int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT}) ::signal(sig, on_fatal_signal);
#endif
}

[[noreturn]] void usage(const char* argv0, const std::string& problem) {
    if (!problem.empty()) std::fprintf(stderr, "%s: %s\n", argv0, problem.c_str());
    std::fprintf(stderr,
                 "usage: %s [--seconds N] [--runs N] [--seed S] [--timeout SECONDS] [--max-len BYTES]\n"
                 "          [--artifact-prefix P]\n"
                 "          [--write-seeds DIR] [--write-dict FILE] [corpus files or folders...]\n",
                 argv0);
    std::exit(2);
}

Options parse_args(int argc, char** argv) {
    Options o;
    const auto value = [&](int& i) -> std::string {
        if (i + 1 >= argc) usage(argv[0], std::string(argv[i]) + " needs a value");
        return argv[++i];
    };
    const auto seconds = [&](int& i) -> double {
        const std::string flag = argv[i], text = value(i);
        char* end = nullptr;
        const double v = std::strtod(text.c_str(), &end);
        if (text.empty() || *end != '\0' || !(v >= 0) || v > 1e9)
            usage(argv[0], flag + ": '" + text + "' is not a time");
        return v;
    };
    const auto count = [&](int& i) -> uint64_t {
        const std::string flag = argv[i], text = value(i);
        char* end = nullptr;
        errno = 0;
        const unsigned long long v = std::strtoull(text.c_str(), &end, 10);
        if (text.empty() || text[0] == '-' || *end != '\0' || errno == ERANGE)
            usage(argv[0], flag + ": '" + text + "' is not a count");
        return v;
    };
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--seconds")
            o.seconds = seconds(i);
        else if (a == "--runs")
            o.runs = count(i);
        else if (a == "--seed")
            o.seed = count(i);
        else if (a == "--timeout")
            o.timeout = seconds(i);
        else if (a == "--max-len")
            o.max_len = size_t(std::clamp<uint64_t>(count(i), 16, uint64_t(1) << 30));
        else if (a == "--artifact-prefix")
            o.artifact_prefix = value(i);
        else if (a == "--write-seeds")
            o.write_seeds = value(i);
        else if (a == "--write-dict")
            o.write_dict = value(i);
        else if (a == "-h" || a == "--help")
            usage(argv[0], "");
        else if (a.rfind("--", 0) == 0)
            usage(argv[0], "unknown option " + a);
        else
            o.corpus.push_back(a);
    }
    return o;
}

std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// Corpus arguments: files, or folders whose regular files are all read (in name order, for determinism).
std::vector<std::string> load_corpus(const std::vector<std::string>& args, const char* argv0) {
    std::vector<std::string> out;
    for (const auto& a : args) {
        std::error_code ec;
        if (fs::is_directory(a, ec)) {
            std::vector<std::string> files;
            for (const auto& de : fs::directory_iterator(a, ec))
                if (de.is_regular_file(ec)) files.push_back(de.path().string());
            std::sort(files.begin(), files.end());
            for (const auto& f : files) out.push_back(read_file(f));
        } else if (fs::is_regular_file(a, ec)) {
            out.push_back(read_file(a));
        } else {
            usage(argv0, "corpus path '" + a + "' is not a file or folder");
        }
    }
    return out;
}

// Printable preview of an input for the log.
std::string preview(const std::string& s, size_t limit = 240) {
    std::string out;
    for (size_t i = 0; i < s.size() && i < limit; ++i) {
        const unsigned char c = static_cast<unsigned char>(s[i]);
        if (c == '\\')
            out += "\\\\";
        else if (c >= 32 && c < 127)
            out += char(c);
        else {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\x%02x", c);
            out += buf;
        }
    }
    if (s.size() > limit) out += "...";
    return out;
}

uint64_t fnv1a(const std::string& s) {
    uint64_t h = 1469598103934665603ull;
    for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
    return h;
}

class Mutator {
public:
    Mutator(uint64_t seed, std::vector<std::string> dictionary, bool length_prefixed, size_t max_len)
        : rng_(seed),
          dict_(std::move(dictionary)),
          numbers_(sr::fuzz::edge_numbers()),
          length_prefixed_(length_prefixed),
          max_len_(max_len) {}

    std::string mutate(const std::string& base, const std::vector<std::string>& pool) {
        std::string out;
        if (length_prefixed_ && base.size() >= 8) {
            uint64_t n = 0;
            for (int i = 7; i >= 0; --i) n = (n << 8) | uint8_t(base[size_t(i)]);
            const size_t json_len = size_t(std::min<uint64_t>(n, base.size() - 8));
            std::string prefix = base.substr(0, 8), json = base.substr(8, json_len), data = base.substr(8 + json_len);
            const size_t where = below(100);
            if (where < 75) {
                for (size_t k = 1 + below(4); k > 0; --k) mutate_once(json, pool);
            } else if (where < 88) {
                // The data section: only its length matters to the header parser.
                if (below(2) && !data.empty())
                    data.resize(below(data.size()));
                else
                    data.append(1 + below(64), '\0');
            } else {
                mutate_once(prefix, pool);
            }
            prefix.resize(8, '\0');
            static const uint64_t lengths[] = {0, 1, 7, 8, 100ull << 20, (100ull << 20) + 1, ~0ull, 1ull << 63};
            const size_t fix = below(100);
            if (where < 88) {
                // Usually keep the length consistent so the JSON gets parsed; sometimes make it absurd or stale.
                if (fix < 90)
                    set_le64(prefix, json.size());
                else if (fix < 95)
                    set_le64(prefix, lengths[below(std::size(lengths))]);
            } else if (fix < 50) {
                set_le64(prefix, lengths[below(std::size(lengths))]);
            }
            out = prefix + json + data;
        } else {
            out = base;
            for (size_t k = 1 + below(4); k > 0; --k) mutate_once(out, pool);
        }
        if (out.size() > max_len_) out.resize(max_len_);
        return out;
    }

    size_t below(size_t n) { return n ? size_t(rng_() % n) : 0; }

private:
    static void set_le64(std::string& prefix, uint64_t v) {
        for (int i = 0; i < 8; ++i) prefix[size_t(i)] = char(uint8_t(v >> (8 * i)));
    }

    void mutate_once(std::string& s, const std::vector<std::string>& pool) {
        static const char interesting[] = {'\0', '\xff', '"', '\\', '[', ']', '{', '}',
                                           ',',  ':',    '-', '0',  '9', 'e', ' '};
        switch (below(11)) {
            case 0:  // flip a bit
                if (!s.empty()) s[below(s.size())] ^= char(1u << below(8));
                break;
            case 1:  // set a byte, often to JSON punctuation
                if (!s.empty())
                    s[below(s.size())] = below(2) ? interesting[below(sizeof interesting)] : char(below(256));
                break;
            case 2: {  // insert random bytes
                std::string bytes(1 + below(8), '\0');
                for (auto& c : bytes) c = char(below(256));
                s.insert(below(s.size() + 1), bytes);
                break;
            }
            case 3:  // delete a range
                if (!s.empty()) {
                    const size_t at = below(s.size());
                    s.erase(at, 1 + below(std::min<size_t>(16, s.size() - at)));
                }
                break;
            case 4:  // truncate
                s.resize(below(s.size() + 1));
                break;
            case 5:  // insert a dictionary token
                s.insert(below(s.size() + 1), dict_[below(dict_.size())]);
                break;
            case 6:
            case 7:  // splice an edge-case number over a number in the text (twice as likely: offsets, dims)
                replace_number(s);
                break;
            case 8: {  // duplicate a chunk
                if (s.empty()) break;
                const size_t at = below(s.size());
                const std::string chunk = s.substr(at, 1 + below(std::min<size_t>(64, s.size() - at)));
                s.insert(below(s.size() + 1), chunk);
                break;
            }
            case 9:  // duplicate a JSON entry, under its own name or a new one
                duplicate_entry(s);
                break;
            default: {  // crossover: a chunk of another input
                const std::string& other = pool[below(pool.size())];
                if (other.empty()) break;
                const size_t at = below(other.size());
                s.insert(below(s.size() + 1), other.substr(at, 1 + below(std::min<size_t>(128, other.size() - at))));
                break;
            }
        }
    }

    static bool is_number_char(char c) {
        return (c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E';
    }

    void replace_number(std::string& s) {
        std::vector<std::pair<size_t, size_t>> spans;  // [begin, end) of number tokens
        for (size_t i = 0; i < s.size();) {
            const bool starts = (s[i] == '-' || (s[i] >= '0' && s[i] <= '9')) &&
                                (i == 0 || !(std::isalnum(static_cast<unsigned char>(s[i - 1])) || s[i - 1] == '.' ||
                                             s[i - 1] == '"' || s[i - 1] == '_'));
            if (!starts) {
                ++i;
                continue;
            }
            size_t j = i + 1;
            while (j < s.size() && is_number_char(s[j])) ++j;
            spans.emplace_back(i, j);
            i = j;
        }
        const std::string& number = numbers_[below(numbers_.size())];
        if (spans.empty()) {
            s.insert(below(s.size() + 1), number);
            return;
        }
        const auto [b, e] = spans[below(spans.size())];
        s.replace(b, e - b, number);
    }

    // End of the JSON value starting at `i` (a best effort on broken text: stops at the end).
    static size_t value_end(const std::string& s, size_t i) {
        int depth = 0;
        bool in_string = false, escaped = false;
        for (; i < s.size(); ++i) {
            const char c = s[i];
            if (in_string) {
                if (escaped)
                    escaped = false;
                else if (c == '\\')
                    escaped = true;
                else if (c == '"') {
                    in_string = false;
                    if (depth == 0) return i + 1;
                }
                continue;
            }
            if (c == '"')
                in_string = true;
            else if (c == '{' || c == '[')
                ++depth;
            else if (c == '}' || c == ']') {
                if (depth == 0) return i;
                if (--depth == 0) return i + 1;
            } else if (c == ',' && depth == 0)
                return i;
        }
        return s.size();
    }

    void duplicate_entry(std::string& s) {
        // Candidate keys: a string followed by ':'.
        std::vector<std::pair<size_t, size_t>> keys;  // [opening quote, closing quote]
        for (size_t i = 0; i < s.size() && keys.size() < 256; ++i) {
            if (s[i] != '"') continue;
            size_t j = i + 1;
            while (j < s.size() && s[j] != '"') j += s[j] == '\\' ? 2 : 1;
            if (j >= s.size()) break;
            size_t k = j + 1;
            while (k < s.size() && s[k] == ' ') ++k;
            if (k < s.size() && s[k] == ':') keys.emplace_back(i, j);
            i = j;
        }
        if (keys.empty()) return;
        const auto [open, close] = keys[below(keys.size())];
        size_t v = close + 1;
        while (v < s.size() && (s[v] == ' ' || s[v] == ':')) ++v;
        const size_t end = value_end(s, v);
        std::string entry = s.substr(open, end - open);
        if (below(2)) entry.insert(close - open, "_dup");  // a new name over the same offsets: an overlap
        s.insert(end, "," + entry);
    }

    std::mt19937_64 rng_;
    std::vector<std::string> dict_;
    std::vector<std::string> numbers_;
    bool length_prefixed_;
    size_t max_len_;
};

struct Stats {
    uint64_t executions = 0, accepted = 0, rejected = 0, failures = 0;
};

// Runs one input; a finding is reported, saved and counted, and the loop goes on (up to a limit).
std::optional<uint64_t> run_input(const sr::fuzz::Target& t, const Options& o, const std::string& input, Stats& stats) {
    g_current_data = input.data();
    g_current_size = input.size();
    ++stats.executions;
    std::string problem;
    // Marks the input as running for the watchdog, also when the target throws.
    struct Running {
        Running() { g_run_started_ns.store(now_ns()); }
        ~Running() { g_run_started_ns.store(0); }
    };
    try {
        const Running running;
        const auto signature = t.run(reinterpret_cast<const uint8_t*>(input.data()), input.size());
        ++(signature ? stats.accepted : stats.rejected);
        return signature;
    } catch (const std::exception& e) {
        int status = 0;
        char* type = abi::__cxa_demangle(typeid(e).name(), nullptr, nullptr, &status);
        problem = std::string(status == 0 && type ? type : typeid(e).name()) + ": " + e.what();
        std::free(type);
    } catch (...) {
        problem = "an exception that is not a std::exception";
    }
    ++stats.failures;
    char hash[17];
    std::snprintf(hash, sizeof hash, "%016llx", static_cast<unsigned long long>(fnv1a(input)));
    const std::string path = o.artifact_prefix + "crash-" + t.name + "-" + hash;
    std::ofstream(path, std::ios::binary).write(input.data(), std::streamsize(input.size()));
    std::fprintf(stderr, "%s: FAILURE %llu: %s\n  input (%zu bytes): %s\n  saved to %s\n", t.name,
                 static_cast<unsigned long long>(stats.failures), problem.c_str(), input.size(), preview(input).c_str(),
                 path.c_str());
    return std::nullopt;
}

void write_outputs(const sr::fuzz::Target& t, const Options& o) {
    if (!o.write_seeds.empty()) {
        fs::create_directories(o.write_seeds);
        const auto seeds = t.seeds();
        for (size_t i = 0; i < seeds.size(); ++i) {
            const fs::path p = fs::path(o.write_seeds) / ("seed-" + std::to_string(i));
            std::ofstream(p, std::ios::binary).write(seeds[i].data(), std::streamsize(seeds[i].size()));
        }
        std::printf("%s: wrote %zu seed inputs to %s\n", t.name, seeds.size(), o.write_seeds.c_str());
    }
    if (!o.write_dict.empty()) {
        // libFuzzer's -dict format: one quoted token per line, non-printable bytes as \xNN.
        std::ofstream out(o.write_dict);
        size_t n = 0;
        for (const auto& tok : t.dictionary()) {
            out << "kw" << n++ << "=\"";
            for (unsigned char c : tok) {
                if (c == '"' || c == '\\')
                    out << '\\' << char(c);
                else if (c >= 32 && c < 127)
                    out << char(c);
                else {
                    char buf[8];
                    std::snprintf(buf, sizeof buf, "\\x%02x", c);
                    out << buf;
                }
            }
            out << "\"\n";
        }
        std::printf("%s: wrote %zu dictionary tokens to %s\n", t.name, n, o.write_dict.c_str());
    }
}

}  // namespace

int main(int argc, char** argv) {
    const sr::fuzz::Target& t = sr::fuzz::target();
    const Options o = parse_args(argc, argv);
    if (!o.write_seeds.empty() || !o.write_dict.empty()) {
        write_outputs(t, o);
        return 0;
    }
    std::snprintf(g_crash_path, sizeof g_crash_path, "%scrash-%s-current", o.artifact_prefix.c_str(), t.name);
    std::snprintf(g_timeout_path, sizeof g_timeout_path, "%stimeout-%s-current", o.artifact_prefix.c_str(), t.name);
    install_crash_handlers();
    start_watchdog(o.timeout, t.name);

    std::vector<std::string> pool = t.seeds();
    for (auto& c : load_corpus(o.corpus, argv[0])) pool.push_back(std::move(c));
    const size_t n_given = pool.size();
    constexpr size_t kMaxPool = 4096;
    constexpr uint64_t kMaxFailures = 20;

    Stats stats;
    const auto start = std::chrono::steady_clock::now();
    const auto elapsed = [&] {
        return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    };

    // Every given input once, as is: a regression check for saved findings.
    std::set<uint64_t> seen;
    for (size_t i = 0; i < n_given && stats.failures < kMaxFailures; ++i)
        if (const auto sig = run_input(t, o, pool[i], stats)) seen.insert(*sig);

    Mutator mutator(o.seed, t.dictionary(), t.length_prefixed, o.max_len);
    const bool replay_only = o.runs == 0 && o.seconds <= 0;
    while (!replay_only && stats.failures < kMaxFailures) {
        if (o.runs ? stats.executions >= o.runs : ((stats.executions & 63) == 0 && elapsed() >= o.seconds)) break;
        const std::string input = mutator.mutate(pool[mutator.below(pool.size())], pool);
        const auto sig = run_input(t, o, input, stats);
        if (sig && pool.size() < kMaxPool && seen.insert(*sig).second) pool.push_back(input);
    }

    std::printf(
        "%s: %llu executions in %.1f s (%llu accepted, %llu rejected with InputError; %zu given inputs, "
        "pool of %zu; seed %llu), %llu failures\n",
        t.name, static_cast<unsigned long long>(stats.executions), elapsed(),
        static_cast<unsigned long long>(stats.accepted), static_cast<unsigned long long>(stats.rejected), n_given,
        pool.size(), static_cast<unsigned long long>(o.seed), static_cast<unsigned long long>(stats.failures));
    return stats.failures == 0 ? 0 : 1;
}
