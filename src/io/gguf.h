// GGUF files (versions 2 and 3): a hostile-input-safe reader over a memory mapping, and a writer.
//
// Layout: "GGUF", u32 version, u64 tensor count, u64 key-value count; the key-values (string key, u32 value
// type, value); the tensor infos (string name, u32 rank, u64 dimensions innermost first, u32 ggml type, u64
// offset from the data section); padding to general.alignment (32 when absent); the data section. All
// little-endian. GGUF lists dimensions innermost first; here shapes are outermost first, like the rest of the
// engine (a Linear weight [out, in] is stored as ne = {in, out}).
//
// Tensor types: F32, F16, BF16 (viewed as tensors of that dtype), and the block types of core/quant.h, which
// stay quantized: their view is the raw bytes, DType::Bool [rows, row_bytes] (the engine has no u8 dtype; Bool
// is its 1-byte type), with the QuantType and the logical shape beside it.
//
//   auto f = sr::GgufFile::open("hunyuan_video_Q4_K.gguf");
//   f->architecture();                                  // "hyvid"
//   sr::GgufTensor w = f->tensor("double_blocks.0.img_attn_qkv.weight");
//   w.quant;                                            // QuantType::Q4_K
//   w.shape;                                            // [9216, 3072], outermost first
//   w.data;                                             // bool[9216, 1728]: the mapped blocks, 12 per row
//   sr::Tensor dense = sr::gguf_tensor_to_f32(w);       // f32[9216, 3072], dequantized as ggml does
#pragma once

#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "core/quant.h"
#include "core/tensor.h"
#include "io/tensor_source.h"

namespace sr {

class MappedFile;

// GGUF metadata value types (gguf_type in ggml's gguf.h).
enum class GgufType : uint32_t {
    U8 = 0,
    I8 = 1,
    U16 = 2,
    I16 = 3,
    U32 = 4,
    I32 = 5,
    F32 = 6,
    Bool = 7,
    String = 8,
    Array = 9,
    U64 = 10,
    I64 = 11,
    F64 = 12,
};
std::string_view gguf_type_name(GgufType type);  // "u32", "string", ...

// A metadata value: a scalar, a string, or an array of one scalar type or of strings (arrays of arrays are
// not supported). An array keeps its elements as the file encodes them, so it never takes more memory than
// its bytes in the file.
class GgufValue {
public:
    GgufValue() = default;
    // Scalars: uint8_t .. int64_t, float, double, bool pick the matching GGUF type.
    template <class T>
    static GgufValue scalar(T value);
    static GgufValue string(std::string text);
    template <class T>
    static GgufValue array(const std::vector<T>& values);
    static GgufValue string_array(const std::vector<std::string>& values);

    GgufType type() const { return type_; }
    GgufType array_type() const { return elem_; }  // for arrays
    size_t array_size() const { return size_t(count_); }

    // The value when it has that kind: as_int for integer types (and bool) whose value fits int64; as_uint
    // for non-negative integers; as_float for F32, F64 and integers; as_string for strings.
    std::optional<int64_t> as_int() const;
    std::optional<uint64_t> as_uint() const;
    std::optional<double> as_float() const;
    std::optional<bool> as_bool() const;
    std::optional<std::string_view> as_string() const;
    // Element i (< array_size()) of an array, with the same conversions.
    std::optional<int64_t> array_int(size_t i) const;
    std::optional<double> array_float(size_t i) const;
    std::optional<std::string_view> array_string(size_t i) const;

    // Short text for messages and `info`: "hyvid", "7", "u32[3] = [1, 2, 3]", "string[128256]".
    std::string str() const;
    bool operator==(const GgufValue& other) const = default;

private:
    friend struct GgufValueCodec;
    friend struct GgufValueWriter;
    GgufType type_ = GgufType::U32;
    GgufType elem_ = GgufType::U8;  // arrays: the element type
    uint64_t count_ = 0;            // arrays: the element count
    uint64_t bits_ = 0;             // scalars: the little-endian value, zero-extended (floats: their bits)
    std::string bytes_;             // String: the text; arrays of numbers: their bytes; of strings: the texts
    std::vector<uint64_t> ends_;    // arrays of strings: where each text ends in bytes_
};

// Key-values in file order.
using GgufMetadata = std::vector<std::pair<std::string, GgufValue>>;

struct GgufTensorInfo {
    std::string name;
    Shape shape;                     // outermost first
    uint32_t ggml_type = 0;          // GGUF tensor type id
    std::optional<QuantType> quant;  // set for block types
    DType dtype = DType::F32;        // F32, F16, BF16; Bool (raw bytes) for block types
    uint64_t offset = 0;             // from the start of the data section
    uint64_t bytes = 0;
};

struct GgufHeader {
    uint32_t version = 3;
    uint64_t alignment = 32;
    uint64_t data_offset = 0;             // file offset of the data section
    GgufMetadata metadata;                // file order
    std::vector<GgufTensorInfo> tensors;  // file order
    const GgufValue* find_metadata(std::string_view key) const;
};

// The longest tensor name or metadata key accepted. ggml's own 64-byte limit rejects real HunyuanVideo files
// (txt_in.individual_token_refiner.blocks.0.adaLN_modulation.1.weight has 66).
constexpr size_t kMaxGgufNameBytes = 4096;
// The most dimensions a tensor may have (img_in.proj.weight is 5-D); the engine's tensors hold 8.
constexpr int kMaxGgufDims = kMaxDims;
// The most key-values and tensors a file may declare. Real files hold tens of keys and a few thousand
// tensors; the caps bound the memory a hostile file can make the parser use (each parsed entry takes a few
// times its smallest size on disk).
constexpr uint64_t kMaxGgufKeyValues = uint64_t(1) << 20;
constexpr uint64_t kMaxGgufTensors = uint64_t(1) << 20;

// Validates and parses the GGUF image `data` of `size` bytes (the whole file). Every count, length, offset,
// dimension and type is checked against the bytes that remain and for overflow before anything is allocated;
// tensor data must lie inside the file, aligned, without overlaps. Throws InputError naming `source` and the
// key or tensor at fault.
GgufHeader parse_gguf(const uint8_t* data, size_t size, std::string_view source);

// A tensor as the engine holds it. Dense (F32/F16/BF16): `data` is the values, shape outermost first, and
// `shape` equals data.shape(). Block types: `data` is DType::Bool [rows, row_bytes], rows = the product of
// all dimensions but the innermost, and `shape` is the logical shape.
struct GgufTensor {
    Tensor data;
    std::optional<QuantType> quant;
    Shape shape;
    bool quantized() const { return quant.has_value(); }
};

class GgufFile {
public:
    static std::shared_ptr<GgufFile> open(const std::string& path);
    const std::string& path() const { return path_; }
    const GgufHeader& header() const { return header_; }
    const GgufMetadata& metadata() const { return header_.metadata; }
    const GgufValue* find_metadata(std::string_view key) const { return header_.find_metadata(key); }
    // general.architecture ("hyvid"), or InputError when it is missing or not a string.
    std::string architecture() const;
    const std::vector<GgufTensorInfo>& tensors() const { return header_.tensors; }
    const GgufTensorInfo* find(std::string_view name) const;
    // A zero-copy view of the mapped bytes (copied once if alignment 1 misaligns a dense tensor).
    GgufTensor tensor(const GgufTensorInfo& info) const;
    // The named tensor, or InputError naming it and the file.
    GgufTensor tensor(std::string_view name) const;

private:
    std::string path_;
    std::shared_ptr<MappedFile> file_;
    GgufHeader header_;
    std::map<std::string, size_t, std::less<>> by_name_;
};

// A GGUF file as a TensorSource (io/tensor_source.h): block types stay quantized (their rows' bytes), dense
// types are views of the mapping.
class GgufStore final : public TensorSource {
public:
    static GgufStore open(const std::string& path);
    const GgufFile& file() const { return *file_; }
    const std::string& source() const override { return file_->path(); }
    bool contains(std::string_view name) const override { return file_->find(name) != nullptr; }
    TensorInfo info(std::string_view name) const override;
    StoredTensor stored(std::string_view name) const override;
    std::vector<std::string> names() const override;
    std::vector<std::string> unused_names() const override;
    std::optional<std::string> metadata(std::string_view key) const override;

private:
    const GgufTensorInfo& entry(std::string_view name) const;
    std::shared_ptr<GgufFile> file_;
    mutable std::set<std::string, std::less<>> used_;
};

// The values of `t` as a new f32 tensor of its logical shape: dense types converted, block types dequantized.
Tensor gguf_tensor_to_f32(const GgufTensor& t, Allocator& allocator = host_allocator());

// `values` (any float dtype; the innermost dimension a multiple of the block size) quantized with ggml's
// reference quantizer into a block tensor for write_gguf.
GgufTensor quantize_tensor(const Tensor& values, QuantType type);

// Writes a GGUF v3 file: `metadata` in order (general.alignment, when given, sets the alignment; else 32),
// then `tensors` in order, each dense (F32, F16, BF16) or quantized. Written to `path`.tmp and renamed when
// complete. Throws InputError for what the format cannot hold (a duplicate or over-long name, a rank outside
// 1..8, another dtype, block bytes that do not match the logical shape).
void write_gguf(const std::string& path, const GgufMetadata& metadata,
                const std::vector<std::pair<std::string, GgufTensor>>& tensors);

// ---------------------------------------------------------------------------------------------------------

namespace gguf_detail {
template <class T>
constexpr GgufType type_of() {
    if constexpr (std::is_same_v<T, bool>)
        return GgufType::Bool;
    else if constexpr (std::is_same_v<T, uint8_t>)
        return GgufType::U8;
    else if constexpr (std::is_same_v<T, int8_t>)
        return GgufType::I8;
    else if constexpr (std::is_same_v<T, uint16_t>)
        return GgufType::U16;
    else if constexpr (std::is_same_v<T, int16_t>)
        return GgufType::I16;
    else if constexpr (std::is_same_v<T, uint32_t>)
        return GgufType::U32;
    else if constexpr (std::is_same_v<T, int32_t>)
        return GgufType::I32;
    else if constexpr (std::is_same_v<T, uint64_t>)
        return GgufType::U64;
    else if constexpr (std::is_same_v<T, int64_t>)
        return GgufType::I64;
    else if constexpr (std::is_same_v<T, float>)
        return GgufType::F32;
    else {
        static_assert(std::is_same_v<T, double>, "GGUF scalars: u8..i64, float, double, bool");
        return GgufType::F64;
    }
}
}  // namespace gguf_detail

struct GgufValueCodec {
    static GgufValue make_scalar(GgufType type, uint64_t bits);
    static GgufValue make_array(GgufType elem, uint64_t count, std::string bytes);
    static GgufValue make_string_array(std::string texts, std::vector<uint64_t> ends);
};

template <class T>
GgufValue GgufValue::scalar(T value) {
    uint64_t bits = 0;
    if constexpr (std::is_same_v<T, bool>) {
        bits = value ? 1 : 0;
    } else {
        std::make_unsigned_t<
            std::conditional_t<std::is_floating_point_v<T>, std::conditional_t<sizeof(T) == 4, int32_t, int64_t>, T>>
            u;
        static_assert(sizeof(u) == sizeof(T));
        std::memcpy(&u, &value, sizeof(T));
        bits = u;
    }
    return GgufValueCodec::make_scalar(gguf_detail::type_of<T>(), bits);
}

template <class T>
GgufValue GgufValue::array(const std::vector<T>& values) {
    constexpr GgufType type = gguf_detail::type_of<T>();
    std::string bytes;
    bytes.reserve(values.size() * sizeof(T));
    for (const T& v : values) {
        const GgufValue s = scalar(v);
        for (size_t b = 0; b < sizeof(T); ++b) bytes.push_back(char(uint8_t(s.bits_ >> (8 * b))));
    }
    return GgufValueCodec::make_array(type, values.size(), std::move(bytes));
}

}  // namespace sr
