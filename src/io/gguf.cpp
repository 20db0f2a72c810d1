#include "io/gguf.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/files.h"
#include "core/log.h"
#include "io/safetensors.h"

namespace sr {

static_assert(std::endian::native == std::endian::little, "GGUF tensor data is little-endian, read in place");

namespace {

namespace fs = std::filesystem;

constexpr uint32_t kGgmlF32 = 0, kGgmlF16 = 1, kGgmlBF16 = 30;
constexpr uint64_t kMaxAlignment = uint64_t(1) << 30;

// Names of ggml's tensor types (ggml.h, 2026), for messages about the ones we do not read.
std::string ggml_type_label(uint32_t id) {
    static const char* const names[] = {
        "F32",        "F16",        "Q4_0",       "Q4_1",  "Q4_2",     "Q4_3",     "Q5_0",     "Q5_1",    "Q8_0",
        "Q8_1",       "Q2_K",       "Q3_K",       "Q4_K",  "Q5_K",     "Q6_K",     "Q8_K",     "IQ2_XXS", "IQ2_XS",
        "IQ3_XXS",    "IQ1_S",      "IQ4_NL",     "IQ3_S", "IQ2_S",    "IQ4_XS",   "I8",       "I16",     "I32",
        "I64",        "F64",        "IQ1_M",      "BF16",  "Q4_0_4_4", "Q4_0_4_8", "Q4_0_8_8", "TQ1_0",   "TQ2_0",
        "IQ4_NL_4_4", "IQ4_NL_4_8", "IQ4_NL_8_8", "MXFP4", "NVFP4",    "Q1_0",     "Q2_0"};
    if (id < std::size(names)) return fmt::format("{} ({})", id, names[id]);
    return fmt::format("{} (unknown)", id);
}

size_t scalar_bytes(GgufType t) {
    switch (t) {
        case GgufType::U8:
        case GgufType::I8:
        case GgufType::Bool:
            return 1;
        case GgufType::U16:
        case GgufType::I16:
            return 2;
        case GgufType::U32:
        case GgufType::I32:
        case GgufType::F32:
            return 4;
        case GgufType::U64:
        case GgufType::I64:
        case GgufType::F64:
            return 8;
        case GgufType::String:
        case GgufType::Array:
            return 0;
    }
    return 0;
}

bool valid_type(uint32_t t) {
    return t <= uint32_t(GgufType::F64);
}

bool is_integer(GgufType t) {
    return scalar_bytes(t) > 0 && t != GgufType::F32 && t != GgufType::F64 && t != GgufType::Bool;
}
bool is_signed(GgufType t) {
    return t == GgufType::I8 || t == GgufType::I16 || t == GgufType::I32 || t == GgufType::I64;
}

// Sign-extends the low `bytes` bytes of `bits`.
int64_t sign_extend(uint64_t bits, size_t bytes) {
    if (bytes == 8) return int64_t(bits);
    const unsigned shift = unsigned(64 - 8 * bytes);
    return int64_t(bits << shift) >> shift;
}

uint64_t load_le(const uint8_t* p, size_t n) {
    uint64_t v = 0;
    for (size_t i = 0; i < n; ++i) v |= uint64_t(p[i]) << (8 * i);
    return v;
}

std::optional<int64_t> bits_as_int(GgufType t, uint64_t bits) {
    if (t == GgufType::Bool) return int64_t(bits != 0);
    if (!is_integer(t)) return std::nullopt;
    if (is_signed(t)) return sign_extend(bits, scalar_bytes(t));
    if (bits > uint64_t(INT64_MAX)) return std::nullopt;
    return int64_t(bits);
}

std::optional<double> bits_as_float(GgufType t, uint64_t bits) {
    if (t == GgufType::F32) return double(bits_to_f32(uint32_t(bits)));
    if (t == GgufType::F64) {
        double d;
        std::memcpy(&d, &bits, 8);
        return d;
    }
    if (is_integer(t)) return is_signed(t) ? double(sign_extend(bits, scalar_bytes(t))) : double(bits);
    return std::nullopt;
}

std::string bits_str(GgufType t, uint64_t bits) {
    if (t == GgufType::Bool) return bits ? "true" : "false";
    if (t == GgufType::F32 || t == GgufType::F64) return fmt::format("{}", *bits_as_float(t, bits));
    if (is_signed(t)) return fmt::format("{}", sign_extend(bits, scalar_bytes(t)));
    return fmt::format("{}", bits);
}

// A bounds-checked reader over the file image. Every read names what it was reading when it runs out.
class Cursor {
public:
    Cursor(const uint8_t* data, size_t size, std::string_view source) : data_(data), size_(size), source_(source) {}
    size_t pos() const { return pos_; }
    size_t remaining() const { return size_ - pos_; }
    std::string_view source() const { return source_; }

    void need(uint64_t n, std::string_view what) const {
        SR_THROW_IF(n > remaining(), "{}: {} at byte {} needs {} bytes, but the file ends {} bytes later (truncated?)",
                    source_, what, pos_, n, remaining());
    }
    uint64_t uint(size_t bytes, std::string_view what) {
        need(bytes, what);
        const uint64_t v = load_le(data_ + pos_, bytes);
        pos_ += bytes;
        return v;
    }
    uint32_t u32(std::string_view what) { return uint32_t(uint(4, what)); }
    uint64_t u64(std::string_view what) { return uint(8, what); }
    const uint8_t* take(uint64_t n, std::string_view what) {
        need(n, what);
        const uint8_t* p = data_ + pos_;
        pos_ += size_t(n);
        return p;
    }
    // A string: u64 length, then the bytes. `limit` caps names; values are capped by the file alone.
    std::string_view string(std::string_view what, uint64_t limit) {
        const uint64_t n = u64(what);
        SR_THROW_IF(n > limit, "{}: {} is {} bytes long, over the {} byte limit", source_, what, n, limit);
        SR_THROW_IF(n > remaining(), "{}: {} is {} bytes long, but the file ends {} bytes later (truncated?)", source_,
                    what, n, remaining());
        return {reinterpret_cast<const char*>(take(n, what)), size_t(n)};
    }

private:
    const uint8_t* data_;
    size_t size_;
    size_t pos_ = 0;
    std::string_view source_;
};

GgufValue read_value(Cursor& c, GgufType type, const std::string& where) {
    if (type == GgufType::String) return GgufValue::string(std::string(c.string(where, UINT64_MAX)));
    if (type != GgufType::Array) {
        const uint64_t bits = c.uint(scalar_bytes(type), where);
        SR_THROW_IF(type == GgufType::Bool && bits > 1, "{}: {}: bool value {} is neither 0 nor 1", c.source(), where,
                    bits);
        return GgufValueCodec::make_scalar(type, bits);
    }
    const uint32_t elem_id = c.u32(where + " (array element type)");
    SR_THROW_IF(!valid_type(elem_id), "{}: {}: unknown array element type {}", c.source(), where, elem_id);
    const GgufType elem = GgufType(elem_id);
    SR_THROW_IF(elem == GgufType::Array, "{}: {}: arrays of arrays are not supported", c.source(), where);
    const uint64_t count = c.u64(where + " (array length)");
    // Each element takes at least this many bytes, so a lying count is caught before anything is allocated.
    const uint64_t min_bytes = elem == GgufType::String ? 8 : scalar_bytes(elem);
    SR_THROW_IF(count > c.remaining() / min_bytes,
                "{}: {}: array of {} {} elements needs at least {} bytes each, but the file ends {} bytes later "
                "(truncated?)",
                c.source(), where, count, gguf_type_name(elem), min_bytes, c.remaining());
    if (elem != GgufType::String) {
        const uint8_t* p = c.take(count * min_bytes, where);
        if (elem == GgufType::Bool)
            for (uint64_t i = 0; i < count; ++i)
                SR_THROW_IF(p[i] > 1, "{}: {}: bool element {} is {}, neither 0 nor 1", c.source(), where, i, p[i]);
        return GgufValueCodec::make_array(elem, count,
                                          std::string(reinterpret_cast<const char*>(p), size_t(count * min_bytes)));
    }
    // Strings: one blob and an end offset per element, both bounded by the bytes the file spends on them.
    std::string texts;
    std::vector<uint64_t> ends;
    ends.reserve(size_t(count));
    for (uint64_t i = 0; i < count; ++i) {
        const uint64_t n = c.u64(where);
        SR_THROW_IF(n > c.remaining(),
                    "{}: {}: string element {} is {} bytes long, but the file ends {} bytes later (truncated?)",
                    c.source(), where, i, n, c.remaining());
        texts.append(reinterpret_cast<const char*>(c.take(n, where)), size_t(n));
        ends.push_back(texts.size());
    }
    return GgufValueCodec::make_string_array(std::move(texts), std::move(ends));
}

// Reads the tensor info at the cursor; offsets and sizes are checked against the data section later.
GgufTensorInfo read_tensor_info(Cursor& c, uint64_t index) {
    GgufTensorInfo t;
    const std::string what = fmt::format("tensor #{} name", index);
    t.name = std::string(c.string(what, kMaxGgufNameBytes));
    const std::string where = fmt::format("{}: tensor '{}'", c.source(), printable(t.name));
    const uint32_t n_dims = c.u32(fmt::format("tensor '{}' rank", printable(t.name)));
    SR_THROW_IF(n_dims == 0, "{}: has 0 dimensions (a GGUF tensor has 1 to {})", where, kMaxGgufDims);
    SR_THROW_IF(n_dims > uint32_t(kMaxGgufDims), "{}: has {} dimensions, more than the {} supported", where, n_dims,
                kMaxGgufDims);
    int64_t ne[kMaxGgufDims] = {};
    uint64_t numel = 1, extent = 1;
    for (uint32_t i = 0; i < n_dims; ++i) {
        const uint64_t d = c.u64(fmt::format("tensor '{}' dimension {}", printable(t.name), i));
        SR_THROW_IF(d > uint64_t(INT64_MAX), "{}: dimension {} is {}, over the limit {}", where, i, d, INT64_MAX);
        // Both the element count and the product of the non-zero dimensions must fit an int64 (strides are
        // products of the outer dimensions even when another one is 0).
        SR_THROW_IF(__builtin_mul_overflow(numel, d, &numel) || numel > uint64_t(INT64_MAX),
                    "{}: dimensions overflow (their product passes {})", where, INT64_MAX);
        if (d > 0)
            SR_THROW_IF(__builtin_mul_overflow(extent, d, &extent) || extent > uint64_t(INT64_MAX),
                        "{}: dimensions overflow (their product passes {})", where, INT64_MAX);
        ne[i] = int64_t(d);
    }
    for (int i = int(n_dims) - 1; i >= 0; --i) t.shape.push_back(ne[i]);  // outermost first
    t.ggml_type = c.u32(fmt::format("tensor '{}' type", printable(t.name)));
    t.quant = quant_type_from_ggml(t.ggml_type);
    if (t.quant) {
        const QuantInfo& q = quant_info(*t.quant);
        SR_THROW_IF(!quant_row_fits(*t.quant, ne[0]),
                    "{}: row length {} is not a positive multiple of the {} block size {}", where, ne[0], q.name,
                    q.block_elems);
        const uint64_t rows = numel / uint64_t(ne[0]);
        SR_THROW_IF(__builtin_mul_overflow(rows, uint64_t(quant_row_bytes(*t.quant, ne[0])), &t.bytes),
                    "{}: byte size overflows", where);
        t.dtype = DType::Bool;
    } else {
        if (t.ggml_type == kGgmlF32)
            t.dtype = DType::F32;
        else if (t.ggml_type == kGgmlF16)
            t.dtype = DType::F16;
        else if (t.ggml_type == kGgmlBF16)
            t.dtype = DType::BF16;
        else
            SR_THROW(
                "{}: unsupported tensor type {} (supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q3_K, "
                "Q4_K, Q5_K, Q6_K)",
                where, ggml_type_label(t.ggml_type));
        SR_THROW_IF(__builtin_mul_overflow(numel, uint64_t(dtype_size(t.dtype)), &t.bytes), "{}: byte size overflows",
                    where);
    }
    t.offset = c.u64(fmt::format("tensor '{}' offset", printable(t.name)));
    return t;
}

}  // namespace

// ---------------------------------------------------------------------------------------------------------
// GgufValue

std::string_view gguf_type_name(GgufType type) {
    switch (type) {
        case GgufType::U8:
            return "u8";
        case GgufType::I8:
            return "i8";
        case GgufType::U16:
            return "u16";
        case GgufType::I16:
            return "i16";
        case GgufType::U32:
            return "u32";
        case GgufType::I32:
            return "i32";
        case GgufType::F32:
            return "f32";
        case GgufType::Bool:
            return "bool";
        case GgufType::String:
            return "string";
        case GgufType::Array:
            return "array";
        case GgufType::U64:
            return "u64";
        case GgufType::I64:
            return "i64";
        case GgufType::F64:
            return "f64";
    }
    return "?";
}

GgufValue GgufValueCodec::make_scalar(GgufType type, uint64_t bits) {
    GgufValue v;
    v.type_ = type;
    v.bits_ = bits;
    return v;
}

GgufValue GgufValueCodec::make_array(GgufType elem, uint64_t count, std::string bytes) {
    GgufValue v;
    v.type_ = GgufType::Array;
    v.elem_ = elem;
    v.count_ = count;
    v.bytes_ = std::move(bytes);
    return v;
}

GgufValue GgufValueCodec::make_string_array(std::string texts, std::vector<uint64_t> ends) {
    GgufValue v;
    v.type_ = GgufType::Array;
    v.elem_ = GgufType::String;
    v.count_ = ends.size();
    v.bytes_ = std::move(texts);
    v.ends_ = std::move(ends);
    return v;
}

GgufValue GgufValue::string(std::string text) {
    GgufValue v;
    v.type_ = GgufType::String;
    v.bytes_ = std::move(text);
    return v;
}

GgufValue GgufValue::string_array(const std::vector<std::string>& values) {
    std::string texts;
    std::vector<uint64_t> ends;
    ends.reserve(values.size());
    for (const auto& s : values) {
        texts += s;
        ends.push_back(texts.size());
    }
    return GgufValueCodec::make_string_array(std::move(texts), std::move(ends));
}

std::optional<int64_t> GgufValue::as_int() const {
    return bits_as_int(type_, bits_);
}
std::optional<uint64_t> GgufValue::as_uint() const {
    if (type_ == GgufType::Bool) return bits_;
    if (!is_integer(type_)) return std::nullopt;
    if (is_signed(type_)) {
        const int64_t v = sign_extend(bits_, scalar_bytes(type_));
        if (v < 0) return std::nullopt;
        return uint64_t(v);
    }
    return bits_;
}
std::optional<double> GgufValue::as_float() const {
    return bits_as_float(type_, bits_);
}
std::optional<bool> GgufValue::as_bool() const {
    if (type_ != GgufType::Bool) return std::nullopt;
    return bits_ != 0;
}
std::optional<std::string_view> GgufValue::as_string() const {
    if (type_ != GgufType::String) return std::nullopt;
    return std::string_view(bytes_);
}

std::optional<int64_t> GgufValue::array_int(size_t i) const {
    if (type_ != GgufType::Array || elem_ == GgufType::String || i >= count_) return std::nullopt;
    const size_t n = scalar_bytes(elem_);
    return bits_as_int(elem_, load_le(reinterpret_cast<const uint8_t*>(bytes_.data()) + i * n, n));
}
std::optional<double> GgufValue::array_float(size_t i) const {
    if (type_ != GgufType::Array || elem_ == GgufType::String || i >= count_) return std::nullopt;
    const size_t n = scalar_bytes(elem_);
    return bits_as_float(elem_, load_le(reinterpret_cast<const uint8_t*>(bytes_.data()) + i * n, n));
}
std::optional<std::string_view> GgufValue::array_string(size_t i) const {
    if (type_ != GgufType::Array || elem_ != GgufType::String || i >= count_) return std::nullopt;
    const size_t begin = i == 0 ? 0 : size_t(ends_[i - 1]);
    return std::string_view(bytes_).substr(begin, size_t(ends_[i]) - begin);
}

std::string GgufValue::str() const {
    if (type_ == GgufType::String) return bytes_.size() <= 120 ? bytes_ : bytes_.substr(0, 117) + "...";
    if (type_ != GgufType::Array) return bits_str(type_, bits_);
    std::string out = fmt::format("{}[{}]", gguf_type_name(elem_), count_);
    if (count_ > 8) return out;
    out += " = [";
    for (size_t i = 0; i < count_; ++i) {
        if (i) out += ", ";
        if (elem_ == GgufType::String)
            out += fmt::format("\"{}\"", *array_string(i));
        else
            out += bits_str(elem_, load_le(reinterpret_cast<const uint8_t*>(bytes_.data()) + i * scalar_bytes(elem_),
                                           scalar_bytes(elem_)));
    }
    return out + "]";
}

// ---------------------------------------------------------------------------------------------------------
// Reading

const GgufValue* GgufHeader::find_metadata(std::string_view key) const {
    for (const auto& [k, v] : metadata)
        if (k == key) return &v;
    return nullptr;
}

GgufHeader parse_gguf(const uint8_t* data, size_t size, std::string_view source) {
    SR_THROW_IF(size >= 4 && std::memcmp(data, "GGUF", 4) != 0,
                "{}: not a GGUF file (magic {:02x} {:02x} {:02x} {:02x}, expected 'GGUF')", source, data[0], data[1],
                data[2], data[3]);
    SR_THROW_IF(size < 24, "{}: file is {} bytes, too short for a GGUF header (24; truncated?)", source, size);
    Cursor c(data, size, source);
    c.take(4, "magic");
    GgufHeader h;
    h.version = c.u32("version");
    const uint32_t swapped = __builtin_bswap32(h.version);
    SR_THROW_IF(h.version == 1, "{}: GGUF version 1 is not supported (32-bit counts; supported: 2, 3)", source);
    SR_THROW_IF(swapped == 2 || swapped == 3, "{}: a big-endian GGUF file (version {} byte-swapped) is not supported",
                source, swapped);
    SR_THROW_IF(h.version != 2 && h.version != 3, "{}: unsupported GGUF version {} (supported: 2, 3)", source,
                h.version);
    const uint64_t n_tensors = c.u64("tensor count"), n_kv = c.u64("key-value count");
    SR_THROW_IF(n_kv > kMaxGgufKeyValues, "{}: key-value count {} exceeds the limit of {}", source, n_kv,
                kMaxGgufKeyValues);
    SR_THROW_IF(n_tensors > kMaxGgufTensors, "{}: tensor count {} exceeds the limit of {}", source, n_tensors,
                kMaxGgufTensors);
    // The smallest key-value is 13 bytes (empty key, type, one byte), the smallest tensor info 32.
    SR_THROW_IF(n_kv > c.remaining() / 13,
                "{}: key-value count {} cannot fit in the {} bytes that follow (at least 13 bytes each; truncated or "
                "not GGUF?)",
                source, n_kv, c.remaining());
    SR_THROW_IF(n_tensors > c.remaining() / 32,
                "{}: tensor count {} cannot fit in the {} bytes that follow (at least 32 bytes each; truncated or "
                "not GGUF?)",
                source, n_tensors, c.remaining());

    std::map<std::string, size_t, std::less<>> keys;
    for (uint64_t i = 0; i < n_kv; ++i) {
        std::string key(c.string(fmt::format("key #{}", i), kMaxGgufNameBytes));
        const std::string where = fmt::format("key '{}'", printable(key));
        const uint32_t type = c.u32(where + " type");
        SR_THROW_IF(!valid_type(type), "{}: {}: unknown value type {}", source, where, type);
        GgufValue v = read_value(c, GgufType(type), where);
        SR_THROW_IF(!keys.emplace(key, i).second, "{}: {} appears twice", source, where);
        h.metadata.emplace_back(std::move(key), std::move(v));
    }
    if (const GgufValue* a = h.find_metadata("general.alignment")) {
        const std::optional<uint64_t> align = a->type() == GgufType::Bool ? std::nullopt : a->as_uint();
        SR_THROW_IF(!align || *align == 0 || *align > kMaxAlignment || (*align & (*align - 1)) != 0,
                    "{}: general.alignment must be a power of two from 1 to {}, got {} ({})", source, kMaxAlignment,
                    a->str(), gguf_type_name(a->type()));
        h.alignment = *align;
    }

    SR_THROW_IF(n_tensors > c.remaining() / 32,
                "{}: tensor count {} cannot fit in the {} bytes after the metadata (at least 32 bytes each; "
                "truncated?)",
                source, n_tensors, c.remaining());
    std::map<std::string_view, size_t> names;
    for (uint64_t i = 0; i < n_tensors; ++i) {
        h.tensors.push_back(read_tensor_info(c, i));
        const GgufTensorInfo& t = h.tensors.back();
        SR_THROW_IF(t.offset % h.alignment != 0, "{}: tensor '{}': offset {} is not a multiple of the alignment {}",
                    source, printable(t.name), t.offset, h.alignment);
    }
    for (size_t i = 0; i < h.tensors.size(); ++i)
        SR_THROW_IF(!names.emplace(h.tensors[i].name, i).second, "{}: tensor '{}' appears twice", source,
                    printable(h.tensors[i].name));

    // The data section starts at the next multiple of the alignment (a file without tensor data may end first).
    const uint64_t end = c.pos();
    h.data_offset = (end + h.alignment - 1) / h.alignment * h.alignment;  // no overflow: end < 2^63, align <= 2^30
    const uint64_t available = size > h.data_offset ? size - h.data_offset : 0;
    std::vector<const GgufTensorInfo*> by_offset;
    for (const GgufTensorInfo& t : h.tensors) {
        SR_THROW_IF(t.offset > available || t.bytes > available - t.offset,
                    "{}: tensor '{}': data [{}, {}) runs past the end of the data section ({} bytes from file offset "
                    "{}; truncated?)",
                    source, printable(t.name), t.offset, uint64_t(t.offset + std::min(t.bytes, UINT64_MAX - t.offset)),
                    available, h.data_offset);
        if (t.bytes > 0) by_offset.push_back(&t);
    }
    std::sort(by_offset.begin(), by_offset.end(),
              [](const GgufTensorInfo* a, const GgufTensorInfo* b) { return a->offset < b->offset; });
    for (size_t i = 1; i < by_offset.size(); ++i) {
        const GgufTensorInfo& a = *by_offset[i - 1];
        const GgufTensorInfo& b = *by_offset[i];
        SR_THROW_IF(b.offset < a.offset + a.bytes, "{}: tensors '{}' [{}, {}) and '{}' [{}, {}) overlap", source,
                    printable(a.name), a.offset, a.offset + a.bytes, printable(b.name), b.offset, b.offset + b.bytes);
    }
    return h;
}

std::shared_ptr<GgufFile> GgufFile::open(const std::string& path) {
    auto f = std::make_shared<GgufFile>();
    f->path_ = path;
    f->file_ = MappedFile::open(path);
    f->header_ = parse_gguf(f->file_->data(), f->file_->size(), path);
    for (size_t i = 0; i < f->header_.tensors.size(); ++i) f->by_name_[f->header_.tensors[i].name] = i;
    return f;
}

std::string GgufFile::architecture() const {
    const GgufValue* v = find_metadata("general.architecture");
    SR_THROW_IF(!v, "{}: no general.architecture in the metadata", path_);
    SR_THROW_IF(!v->as_string(), "{}: general.architecture is a {}, not a string", path_, gguf_type_name(v->type()));
    return std::string(*v->as_string());
}

const GgufTensorInfo* GgufFile::find(std::string_view name) const {
    auto it = by_name_.find(name);
    return it == by_name_.end() ? nullptr : &header_.tensors[it->second];
}

GgufTensor GgufFile::tensor(std::string_view name) const {
    const GgufTensorInfo* t = find(name);
    SR_THROW_IF(!t, "{}: missing tensor '{}'", path_, name);
    return tensor(*t);
}

GgufTensor GgufFile::tensor(const GgufTensorInfo& info) const {
    GgufTensor out;
    out.quant = info.quant;
    out.shape = info.shape;
    Shape view = info.shape;
    if (info.quant) {
        const int64_t cols = info.shape[info.shape.rank() - 1];
        view = Shape{info.shape.numel() / cols, int64_t(quant_row_bytes(*info.quant, cols))};
    }
    if (info.bytes == 0) {  // nothing to map (the data section may even lie past the end of the file)
        out.data = Tensor::empty(view, info.dtype, host_allocator(), info.name);
        return out;
    }
    const uint8_t* p = file_->data() + header_.data_offset + info.offset;
    if (reinterpret_cast<uintptr_t>(p) % dtype_size(info.dtype) != 0) {
        // Only an alignment below the dtype's size (general.alignment 1) gets here: copy this one tensor.
        SR_LOG_DEBUG("{}: tensor '{}' is misaligned in the file; copying it", path_, info.name);
        out.data = Tensor::empty(view, info.dtype, host_allocator(), info.name);
        std::memcpy(out.data.raw_data(), p, size_t(info.bytes));
        return out;
    }
    // The mapping is read-only: weights are never written through these views.
    out.data = Tensor::wrap(const_cast<uint8_t*>(p), view, info.dtype, Device::cpu(), file_);
    return out;
}

Tensor gguf_tensor_to_f32(const GgufTensor& t, Allocator& allocator) {
    Tensor out = Tensor::empty(t.shape, DType::F32, allocator);
    if (!t.quant) {
        out.copy_from(t.data);
        return out;
    }
    const QuantInfo& q = quant_info(*t.quant);
    const Tensor bytes = t.data.contiguous();
    const int64_t cols = t.shape[t.shape.rank() - 1], rows = t.shape.numel() / cols;
    SR_ASSERT(bytes.numel() == rows * int64_t(quant_row_bytes(*t.quant, cols)), "block tensor of {} bytes for {}{}",
              bytes.numel(), q.name, t.shape.str());
    dequantize_blocks(*t.quant, bytes.raw_data(), out.data<float>(), rows * (cols / q.block_elems));
    return out;
}

GgufTensor quantize_tensor(const Tensor& values, QuantType type) {
    const QuantInfo& q = quant_info(type);
    SR_THROW_IF(values.rank() < 1, "cannot quantize a scalar to {}", q.name);
    const int64_t cols = values.dim(-1);
    SR_THROW_IF(!quant_row_fits(type, cols),
                "cannot quantize {}: the innermost dimension {} is not a positive "
                "multiple of the {} block size {}",
                values.describe(), cols, q.name, q.block_elems);
    const Tensor f = values.to(DType::F32).contiguous();
    const int64_t rows = values.numel() / cols;
    const size_t row_bytes = quant_row_bytes(type, cols);
    GgufTensor out;
    out.quant = type;
    out.shape = values.shape();
    out.data = Tensor::empty({rows, int64_t(row_bytes)}, DType::Bool);
    auto* dst = out.data.data<uint8_t>();
    const float* src = f.data<float>();
    for (int64_t r = 0; r < rows; ++r) quantize_row(type, src + r * cols, dst + size_t(r) * row_bytes, cols);
    return out;
}

// ---------------------------------------------------------------------------------------------------------
// Writing

namespace {

void put_le(std::string& out, uint64_t v, size_t bytes) {
    for (size_t i = 0; i < bytes; ++i) out.push_back(char(uint8_t(v >> (8 * i))));
}
void put_string(std::string& out, std::string_view s) {
    put_le(out, s.size(), 8);
    out.append(s);
}

}  // namespace

struct GgufValueWriter {
    static void put(std::string& out, const GgufValue& v) {
        put_le(out, uint32_t(v.type_), 4);
        if (v.type_ == GgufType::String) {
            put_string(out, v.bytes_);
        } else if (v.type_ == GgufType::Array) {
            put_le(out, uint32_t(v.elem_), 4);
            put_le(out, v.count_, 8);
            if (v.elem_ == GgufType::String)
                for (size_t i = 0; i < v.count_; ++i) put_string(out, *v.array_string(i));
            else
                out.append(v.bytes_);
        } else {
            put_le(out, v.bits_, scalar_bytes(v.type_));
        }
    }
};

void write_gguf(const std::string& path, const GgufMetadata& metadata,
                const std::vector<std::pair<std::string, GgufTensor>>& tensors) {
    uint64_t alignment = 32;
    std::map<std::string_view, int> seen;
    for (const auto& [key, value] : metadata) {
        SR_THROW_IF(key.size() > kMaxGgufNameBytes, "{}: metadata key '{}...' is {} bytes, over the {} byte limit",
                    path, key.substr(0, 64), key.size(), kMaxGgufNameBytes);
        SR_THROW_IF(!seen.emplace(key, 0).second, "{}: metadata key '{}' given twice", path, key);
        if (key == "general.alignment") {
            const std::optional<uint64_t> a = value.type() == GgufType::Bool ? std::nullopt : value.as_uint();
            SR_THROW_IF(!a || *a == 0 || *a > kMaxAlignment || (*a & (*a - 1)) != 0,
                        "{}: general.alignment must be a power of two from 1 to {}, got {}", path, kMaxAlignment,
                        value.str());
            alignment = *a;
        }
    }

    std::string header("GGUF", 4);
    put_le(header, 3, 4);
    put_le(header, tensors.size(), 8);
    put_le(header, metadata.size(), 8);
    for (const auto& [key, value] : metadata) {
        put_string(header, key);
        GgufValueWriter::put(header, value);
    }
    std::vector<Tensor> data;
    std::map<std::string_view, int> names;
    uint64_t offset = 0;
    for (const auto& [name, t] : tensors) {
        const std::string where = fmt::format("{}: tensor '{}'", path, name);
        SR_THROW_IF(name.size() > kMaxGgufNameBytes, "{}: name of {} bytes, over the {} byte limit", where, name.size(),
                    kMaxGgufNameBytes);
        SR_THROW_IF(!names.emplace(name, 0).second, "{}: given twice", where);
        SR_THROW_IF(t.shape.rank() < 1 || t.shape.rank() > kMaxGgufDims, "{}: rank {} (GGUF tensors have 1 to {})",
                    where, t.shape.rank(), kMaxGgufDims);
        uint32_t type = 0;
        if (t.quant) {
            const int64_t cols = t.shape[t.shape.rank() - 1];
            SR_THROW_IF(!quant_row_fits(*t.quant, cols), "{}: row length {} is not a multiple of the {} block size",
                        where, cols, quant_info(*t.quant).name);
            const int64_t rows = t.shape.numel() / cols;
            const Shape expected{rows, int64_t(quant_row_bytes(*t.quant, cols))};
            SR_THROW_IF(t.data.dtype() != DType::Bool || !(t.data.shape() == expected),
                        "{}: {} blocks for {} must be bool{}, got {}", where, quant_info(*t.quant).name, t.shape.str(),
                        expected.str(), t.data.describe());
            type = quant_info(*t.quant).ggml_type;
        } else {
            const DType dt = t.data.dtype();
            SR_THROW_IF(dt != DType::F32 && dt != DType::F16 && dt != DType::BF16,
                        "{}: dtype {} (GGUF holds f32, f16, bf16 or block types)", where, dtype_name(dt));
            SR_THROW_IF(!(t.data.shape() == t.shape), "{}: shape {} but data {}", where, t.shape.str(),
                        t.data.describe());
            type = dt == DType::F32 ? kGgmlF32 : dt == DType::F16 ? kGgmlF16 : kGgmlBF16;
        }
        put_string(header, name);
        put_le(header, uint32_t(t.shape.rank()), 4);
        for (int i = t.shape.rank() - 1; i >= 0; --i) put_le(header, uint64_t(t.shape[i]), 8);  // innermost first
        put_le(header, type, 4);
        offset = (offset + alignment - 1) / alignment * alignment;
        put_le(header, offset, 8);
        data.push_back(t.data.contiguous());
        offset += data.back().nbytes();
    }

    // A temporary of our own beside the target (O_EXCL | O_NOFOLLOW: never a planted symlink, never shared
    // with another run), every write checked (a full disk is an error), renamed into place when complete; on
    // an error the temporary is removed, so no half file is left.
    TemporaryFile tmp = create_temporary_file(path, ".partial");
    const auto pad = [&](uint64_t written) {
        const uint64_t n = (alignment - written % alignment) % alignment;
        static const char zeros[4096] = {};
        for (uint64_t left = n; left > 0;) {
            const uint64_t k = std::min<uint64_t>(left, sizeof zeros);
            write_all(tmp.fd(), zeros, size_t(k), tmp.path());
            left -= k;
        }
        return written + n;
    };
    write_all(tmp.fd(), header.data(), header.size(), tmp.path());
    pad(header.size());
    uint64_t at = 0;
    for (const Tensor& d : data) {
        at = pad(at);
        write_all(tmp.fd(), d.raw_data(), d.nbytes(), tmp.path());
        at += d.nbytes();
    }
    tmp.commit(path);
}

GgufStore GgufStore::open(const std::string& path) {
    GgufStore s;
    s.file_ = GgufFile::open(path);
    return s;
}

const GgufTensorInfo& GgufStore::entry(std::string_view name) const {
    const GgufTensorInfo* e = file_->find(name);
    SR_THROW_IF(!e, "{}: missing tensor '{}'", source(), name);
    return *e;
}

TensorInfo GgufStore::info(std::string_view name) const {
    const GgufTensorInfo& e = entry(name);
    return {e.shape, e.dtype, e.quant, false};
}

StoredTensor GgufStore::stored(std::string_view name) const {
    const GgufTensorInfo& e = entry(name);
    used_.insert(std::string(name));
    GgufTensor t = file_->tensor(e);
    return {{t.shape, t.data.dtype(), t.quant, false}, std::move(t.data), Tensor()};
}

std::vector<std::string> GgufStore::names() const {
    std::vector<std::string> out;
    for (const GgufTensorInfo& e : file_->tensors()) out.push_back(e.name);
    return out;
}

std::optional<std::string> GgufStore::metadata(std::string_view key) const {
    const GgufValue* v = file_->find_metadata(key);
    if (!v || !v->as_string()) return std::nullopt;
    return std::string(*v->as_string());
}

std::vector<std::string> GgufStore::unused_names() const {
    std::vector<std::string> out;
    for (const GgufTensorInfo& e : file_->tensors())
        if (!used_.count(e.name)) out.push_back(e.name);
    return out;
}

}  // namespace sr
