// Fuzz target: the GGUF parser, which reads untrusted checkpoint files before anything else. A rejected input
// must be an sr::InputError; an accepted one must keep every promise the parser makes to its callers (tensor
// data inside the file, aligned, sized as its type and shape say, no overlaps; ranks, names and alignment
// within their limits), which is checked here, and its metadata accessors and block tensors are exercised
// (every block type dequantized straight from the input bytes).
#include <algorithm>
#include <cstring>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"
#include "core/quant.h"
#include "fuzz_target.h"
#include "io/gguf.h"

namespace {

[[noreturn]] void broken(const std::string& what) {
    throw std::logic_error("broken parser invariant: " + what);
}

void check_invariants(const sr::GgufHeader& h, size_t size) {
    if (h.version != 2 && h.version != 3) broken("version");
    if (h.alignment == 0 || (h.alignment & (h.alignment - 1)) != 0 || h.alignment > (uint64_t(1) << 30))
        broken("alignment is not a power of two up to 2^30");
    if (h.data_offset % h.alignment != 0) broken("data section misaligned");
    std::set<std::string> keys, names;
    for (const auto& [k, v] : h.metadata) {
        if (k.size() > sr::kMaxGgufNameBytes) broken("key over the length limit");
        if (!keys.insert(k).second) broken("duplicate key '" + k + "'");
    }
    std::vector<std::pair<uint64_t, uint64_t>> ranges;
    for (const sr::GgufTensorInfo& t : h.tensors) {
        const std::string n = "'" + t.name + "'";
        if (t.name.size() > sr::kMaxGgufNameBytes) broken(n + " name over the length limit");
        if (!names.insert(t.name).second) broken(n + " twice");
        if (t.shape.rank() < 1 || t.shape.rank() > sr::kMaxGgufDims) broken(n + " rank");
        unsigned __int128 numel = 1, extent = 1;
        for (int d = 0; d < t.shape.rank(); ++d) {
            if (t.shape[d] < 0) broken(n + " negative dimension");
            numel *= uint64_t(t.shape[d]);
            if (t.shape[d] > 0) extent *= uint64_t(t.shape[d]);
            if (numel > uint64_t(INT64_MAX) || extent > uint64_t(INT64_MAX)) broken(n + " dimensions overflow int64");
        }
        unsigned __int128 bytes = 0;
        if (t.quant) {
            if (t.dtype != sr::DType::Bool || sr::quant_info(*t.quant).ggml_type != t.ggml_type)
                broken(n + " block type mismatch");
            const int64_t cols = t.shape[t.shape.rank() - 1];
            if (!sr::quant_row_fits(*t.quant, cols)) broken(n + " row not a multiple of the block");
            bytes = numel / uint64_t(cols) * sr::quant_row_bytes(*t.quant, cols);
        } else {
            const bool ok = (t.ggml_type == 0 && t.dtype == sr::DType::F32) ||
                            (t.ggml_type == 1 && t.dtype == sr::DType::F16) ||
                            (t.ggml_type == 30 && t.dtype == sr::DType::BF16);
            if (!ok) broken(n + " dense type mismatch");
            bytes = numel * sr::dtype_size(t.dtype);
        }
        if (bytes != t.bytes) broken(n + " byte count differs from type x shape");
        if (t.offset % h.alignment != 0) broken(n + " offset misaligned");
        if (t.bytes > 0) {
            if (h.data_offset > size || t.offset > size - h.data_offset || t.bytes > size - h.data_offset - t.offset)
                broken(n + " runs past the end of the file");
            ranges.emplace_back(t.offset, t.offset + t.bytes);
        }
    }
    std::sort(ranges.begin(), ranges.end());
    for (size_t i = 1; i < ranges.size(); ++i)
        if (ranges[i].first < ranges[i - 1].second) broken("tensors overlap");
}

// Touches what a caller would: every metadata accessor, the first elements of arrays, the first blocks of
// every block tensor and the first values of every dense one, read from the input bytes.
uint64_t exercise(const sr::GgufHeader& h, const uint8_t* data) {
    uint64_t acc = 0;
    for (const auto& [k, v] : h.metadata) {
        acc += v.str().size() + v.as_int().value_or(0) + uint64_t(v.as_float().value_or(0) != 0);
        acc += v.as_string().value_or("").size() + v.as_bool().value_or(false) + v.as_uint().value_or(0);
        for (size_t i = 0; i < std::min<size_t>(v.array_size(), 8); ++i)
            acc += v.array_int(i).value_or(0) + v.array_string(i).value_or("").size() +
                   uint64_t(v.array_float(i).value_or(0) != 0);
    }
    std::vector<float> out;
    for (const sr::GgufTensorInfo& t : h.tensors) {
        if (t.bytes == 0) continue;
        const uint8_t* p = data + h.data_offset + t.offset;
        if (t.quant) {
            const sr::QuantInfo& q = sr::quant_info(*t.quant);
            const int64_t n_blocks = std::min<int64_t>(int64_t(t.bytes / q.block_bytes), 16);
            out.resize(size_t(n_blocks * q.block_elems));
            sr::dequantize_blocks(*t.quant, p, out.data(), n_blocks);
            for (float f : out) acc += f != 0;
        } else {
            const size_t n = std::min<size_t>(size_t(t.bytes / sr::dtype_size(t.dtype)), 64);
            for (size_t i = 0; i < n; ++i) {
                uint32_t u = 0;
                std::memcpy(&u, p + i * sr::dtype_size(t.dtype), sr::dtype_size(t.dtype));
                const float f = t.dtype == sr::DType::F32   ? sr::bits_to_f32(u)
                                : t.dtype == sr::DType::F16 ? sr::f16_to_f32(uint16_t(u))
                                                            : sr::bf16_to_f32(uint16_t(u));
                acc += f != 0;
            }
        }
    }
    return acc;
}

std::optional<uint64_t> run_one(const uint8_t* data, size_t size) {
    sr::GgufHeader h;
    try {
        h = sr::parse_gguf(data, size, "fuzz");
    } catch (const sr::InputError&) {
        return std::nullopt;
    }
    check_invariants(h, size);
    const uint64_t touched = exercise(h, data);
    // Signature: the counts, each key's type, each tensor's type and rank.
    uint64_t sig = sr::fuzz::mix(sr::fuzz::kMixStart, std::min<size_t>(h.tensors.size(), 16));
    sig = sr::fuzz::mix(sig, std::min<size_t>(h.metadata.size(), 16) * 4 + h.version + (touched == 0));
    for (size_t i = 0; i < h.metadata.size() && i < 16; ++i)
        sig = sr::fuzz::mix(sig,
                            uint64_t(h.metadata[i].second.type()) * 16 + uint64_t(h.metadata[i].second.array_type()));
    for (size_t i = 0; i < h.tensors.size() && i < 16; ++i)
        sig = sr::fuzz::mix(sig, uint64_t(h.tensors[i].ggml_type) * 16 + uint64_t(h.tensors[i].shape.rank()));
    return sig;
}

// Little-endian GGUF image building, for the seeds.
struct Image {
    std::string s;
    Image& le(uint64_t v, int n) {
        for (int i = 0; i < n; ++i) s.push_back(char(uint8_t(v >> (8 * i))));
        return *this;
    }
    Image& str(const std::string& t) {
        le(t.size(), 8);
        s += t;
        return *this;
    }
    Image& header(uint32_t version, uint64_t n_tensors, uint64_t n_kv) {
        s += "GGUF";
        return le(version, 4).le(n_tensors, 8).le(n_kv, 8);
    }
    Image& kv(const std::string& key, uint32_t type, const std::string& encoded_value) {
        str(key).le(type, 4);
        s += encoded_value;
        return *this;
    }
    Image& tensor(const std::string& name, const std::vector<uint64_t>& ne, uint32_t type, uint64_t offset) {
        str(name).le(ne.size(), 4);
        for (uint64_t d : ne) le(d, 8);
        return le(type, 4).le(offset, 8);
    }
    // Pads to `align`, then `bytes` of data (a repeating pattern, so dequantized blocks are not all zero).
    Image& data(size_t align, size_t bytes) {
        while (s.size() % align) s.push_back('\0');
        for (size_t i = 0; i < bytes; ++i) s.push_back(char(uint8_t(i * 37 + 11)));
        return *this;
    }
};

std::string le_bytes(uint64_t v, int n) {
    return Image().le(v, n).s;
}

std::vector<std::string> seeds() {
    std::vector<std::string> out;
    {  // metadata of every kind, dense tensors of every dtype, a 5-D one
        Image b;
        b.header(3, 3, 6);
        b.kv("general.architecture", 8, le_bytes(5, 8) + "hyvid");
        b.kv("general.file_type", 4, le_bytes(7, 4));
        b.kv("f", 6, le_bytes(0x3f800000, 4));
        b.kv("flag", 7, std::string(1, '\1'));
        b.kv("ids", 9, le_bytes(5, 4) + le_bytes(2, 8) + le_bytes(1, 4) + le_bytes(uint32_t(-2), 4));
        b.kv("tokens", 9, le_bytes(8, 4) + le_bytes(2, 8) + le_bytes(1, 8) + "a" + le_bytes(0, 8));
        b.tensor("img_in.proj.weight", {2, 2, 1, 2, 4}, 0, 0);  // 32 f32
        b.tensor("w.f16", {4, 2}, 1, 128);
        b.tensor("w.bf16", {8}, 30, 160);
        b.data(32, 176);
        out.push_back(b.s);
    }
    {  // one tensor of each block type, one block each
        struct Block {
            uint32_t type;
            uint64_t elems, bytes;
        };
        const Block blocks[] = {{8, 32, 34},    {2, 32, 18},    {3, 32, 20},    {6, 32, 22},   {7, 32, 24},
                                {11, 256, 110}, {12, 256, 144}, {13, 256, 176}, {14, 256, 210}};
        Image b;
        b.header(3, std::size(blocks), 1);
        b.kv("general.architecture", 8, le_bytes(5, 8) + "hyvid");
        uint64_t offset = 0;
        for (const auto& k : blocks) {
            b.tensor("blocks.t" + std::to_string(k.type), {k.elems, 1}, k.type, offset);
            offset += (k.bytes + 31) / 32 * 32;
        }
        b.data(32, size_t(offset));
        out.push_back(b.s);
    }
    {  // alignment 1, version 2, a 66-character name
        Image b;
        b.header(2, 2, 1);
        b.kv("general.alignment", 4, le_bytes(1, 4));
        b.tensor("txt_in.individual_token_refiner.blocks.0.adaLN_modulation.1.weight", {3}, 1, 0);
        b.tensor("odd", {2}, 0, 6);
        b.data(1, 14);
        out.push_back(b.s);
    }
    {  // no tensors, no metadata
        Image b;
        b.header(3, 0, 0);
        out.push_back(b.s);
    }
    return out;
}

std::vector<std::string> dictionary() {
    std::vector<std::string> d = {"GGUF", "general.alignment", "general.architecture", "hyvid"};
    for (uint64_t v : {uint64_t(0), uint64_t(1), uint64_t(2), uint64_t(3), uint64_t(8), uint64_t(9), uint64_t(12),
                       uint64_t(30), uint64_t(32), uint64_t(256), uint64_t(4096), uint64_t(1) << 31, uint64_t(1) << 32,
                       uint64_t(1) << 62, uint64_t(1) << 63, UINT64_MAX}) {
        d.push_back(le_bytes(v, 4));
        d.push_back(le_bytes(v, 8));
    }
    return d;
}

}  // namespace

SR_FUZZ_TARGET("fuzz_gguf", false)
