// What a fuzz target gives the drivers that run it: libFuzzer (which calls LLVMFuzzerTestOneInput and brings
// its own main) or standalone_driver.cpp (a seeded mutation loop for builds without libFuzzer, e.g. g++).
//
// Each fuzz_*.cpp defines run_one, seeds and dictionary (Target's members below) and ends with one line,
// SR_FUZZ_TARGET("fuzz_json", false), which defines LLVMFuzzerTestOneInput and sr::fuzz::target() from them.
#pragma once

#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace sr::fuzz {

struct Target {
    const char* name;
    // Runs one input. Returns std::nullopt when the parser refused it with sr::InputError, else a signature of
    // the accepted structure (dtypes and ranks of the entries, the JSON node types): the standalone driver has
    // no coverage feedback, so an input whose signature it has not seen yet is what joins its mutation pool.
    // Anything else (another exception, a broken invariant, a crash, a sanitizer report) is a finding and
    // must escape.
    std::optional<uint64_t> (*run)(const uint8_t* data, size_t size);
    // Valid inputs to start mutating from.
    std::vector<std::string> (*seeds)();
    // Tokens the mutator splices in: edge-case numbers, JSON punctuation, the format's own keywords.
    std::vector<std::string> (*dictionary)();
    // True for safetensors images (8-byte little-endian length, that much JSON, then data): the mutator then
    // works on the JSON and usually keeps the length prefix consistent, so mutants get past the first check.
    bool length_prefixed;
};

const Target& target();

}  // namespace sr::fuzz

// The two entry points of a target file whose run_one, seeds and dictionary are in scope.
#define SR_FUZZ_TARGET(NAME, LENGTH_PREFIXED)                                     \
    extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {     \
        run_one(data, size);                                                      \
        return 0;                                                                 \
    }                                                                             \
    const sr::fuzz::Target& sr::fuzz::target() {                                  \
        static const Target t{NAME, run_one, seeds, dictionary, LENGTH_PREFIXED}; \
        return t;                                                                 \
    }

namespace sr::fuzz {

// Numbers at the edges of the types a parser converts to (uint64, int64, int32, double) and of the limits it
// enforces; spliced into JSON in place of the numbers already there.
inline std::vector<std::string> edge_numbers() {
    return {"18446744073709551615",
            "18446744073709551616",
            "9223372036854775807",
            "9223372036854775808",
            "-9223372036854775808",
            "-9223372036854775809",
            "4294967295",
            "4294967296",
            "2147483648",
            "-1",
            "0",
            "-0",
            "1",
            "2",
            "7",
            "8",
            "1e308",
            "1e309",
            "-1e308",
            "1e-320",
            "0.5",
            "1.0",
            "4e0",
            "104857600",
            "104857601",
            "4611686018427387904",
            "65536",
            "99999999999999999999999"};
}

// The tokens of a safetensors header: dtype names (the ones we read and F64, which we refuse), the keys of an
// entry and of __metadata__, shapes and offsets at their edges, JSON literals, escapes a name may hold, and
// JSON punctuation. For every target whose input is a safetensors image (the header parser, LoRA files).
inline std::vector<std::string> safetensors_tokens() {
    return {"\"F32\"",
            "\"BF16\"",
            "\"F16\"",
            "\"F8_E4M3\"",
            "\"I32\"",
            "\"I64\"",
            "\"BOOL\"",
            "\"F64\"",
            "\"dtype\"",
            "\"shape\"",
            "\"data_offsets\"",
            "\"__metadata__\"",
            "\"format\"",
            "[]",
            "{}",
            "[0,0]",
            "[-1]",
            "null",
            "true",
            "\"\\u0000\"",
            "\"\\ud800\"",
            ",",
            ":",
            "\"",
            "[",
            "]",
            "{",
            "}",
            " "};
}

// For targets whose reader opens files by path: this process's scratch file (under $TMPDIR, else /tmp, named
// for the target and the process; removed at exit), and one input written into it.
inline const std::string& scratch_path(const char* target, const char* suffix) {
    struct Scratch {
        std::string path;
        ~Scratch() { std::remove(path.c_str()); }
    };
    static const Scratch scratch{[&] {
        const char* dir = std::getenv("TMPDIR");
        return std::string(dir && *dir ? dir : "/tmp") + "/" + target + "-" + std::to_string(getpid()) + suffix;
    }()};
    return scratch.path;
}
inline void write_scratch(const std::string& path, const uint8_t* data, size_t size) {
    std::FILE* f = std::fopen(path.c_str(), "wb");
    if (!f) throw std::runtime_error("cannot write " + path);
    const bool whole = size == 0 || std::fwrite(data, 1, size, f) == size;
    std::fclose(f);
    if (!whole) throw std::runtime_error("short write to " + path);
}

// FNV-1a, for building signatures.
inline uint64_t mix(uint64_t h, uint64_t v) {
    for (int i = 0; i < 8; ++i) h = (h ^ ((v >> (8 * i)) & 0xff)) * 1099511628211ull;
    return h;
}
constexpr uint64_t kMixStart = 1469598103934665603ull;

}  // namespace sr::fuzz
