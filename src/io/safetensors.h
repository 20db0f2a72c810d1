// safetensors reading: a memory-mapped file, the header parser (hostile-input safe), and a WeightStore that
// opens one file, a folder, or a sharded checkpoint (`*.safetensors.index.json` with a weight_map) and hands
// out zero-copy tensor views into the mapped files. Weights stay in the page cache until they are used.
//
// Format: 8-byte little-endian header length N, N bytes of JSON {name: {dtype, shape, data_offsets:[b,e]}}
// (plus an optional "__metadata__" of strings), then the data; offsets are relative to the data start.
//
//   auto store = sr::WeightStore::open("SkyReels-V1-Hunyuan-T2V");   // folder, index or file
//   sr::Tensor w = store.get("proj_out.weight");                      // mmap view, any stored dtype
//   for (auto& name : store.unused_names()) warn(name);               // tensors no one asked for
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "core/tensor.h"
#include "io/tensor_source.h"

namespace sr {

// A read-only memory mapping of a whole file.
class MappedFile {
public:
    static std::shared_ptr<MappedFile> open(const std::string& path);
    ~MappedFile();
    MappedFile(const MappedFile&) = delete;
    MappedFile& operator=(const MappedFile&) = delete;
    const uint8_t* data() const { return data_; }
    size_t size() const { return size_; }
    const std::string& path() const { return path_; }

private:
    MappedFile() = default;
    const uint8_t* data_ = nullptr;
    size_t size_ = 0;
    std::string path_;
};

struct SafetensorsEntry {
    std::string name;
    DType dtype = DType::F32;
    Shape shape;
    size_t data_begin = 0;  // relative to the data section
    size_t data_end = 0;
};

struct SafetensorsHeader {
    size_t data_offset = 0;                 // where the data section starts in the file (8 + N)
    std::vector<SafetensorsEntry> entries;  // in file-offset order
    std::map<std::string, std::string> metadata;
};

// The largest header accepted (the safetensors reference implementation uses the same 100 MB limit).
constexpr size_t kMaxSafetensorsHeaderBytes = 100u << 20;

// Validates and parses the header of a safetensors image of `file_size` bytes, of which `bytes` (at least
// the first 8 + N) are given. Every offset and length is checked against the file size and for overflow;
// tensors may not overlap. Throws InputError naming `source` and the tensor at fault.
SafetensorsHeader parse_safetensors_header(const uint8_t* bytes, size_t available, size_t file_size,
                                           std::string_view source);

class SafetensorsFile {
public:
    static std::shared_ptr<SafetensorsFile> open(const std::string& path);
    const std::string& path() const { return file_->path(); }
    const SafetensorsHeader& header() const { return header_; }
    const SafetensorsEntry* find(std::string_view name) const;
    // A read-only view of the tensor's bytes in the mapping (copied once if the file misaligns it).
    Tensor tensor(const SafetensorsEntry& entry) const;

private:
    std::shared_ptr<MappedFile> file_;
    SafetensorsHeader header_;
    std::map<std::string, size_t, std::less<>> by_name_;
};

// All tensors of a checkpoint, across shards, by name. As a TensorSource, an F8_E4M3 weight "<x>.weight"
// with a "<x>.scale_weight" or "<x>.weight_scale" beside it is ComfyUI's scaled FP8: stored() returns the
// codes with that scale (and the scale counts as used).
class WeightStore final : public TensorSource {
public:
    // `path`: a .safetensors file, a .safetensors.index.json, or a folder holding either (the folder's
    // index wins; otherwise all its .safetensors files are opened, and a name found twice is an error).
    static WeightStore open(const std::string& path);
    // Several tensor files read as one (e.g. fixtures' inputs.safetensors).
    static WeightStore open_files(const std::vector<std::string>& files);

    bool contains(std::string_view name) const override;
    TensorInfo info(std::string_view name) const override;
    StoredTensor stored(std::string_view name) const override;
    // The tensor, or InputError naming it and the checkpoint.
    Tensor get(std::string_view name) const;
    std::optional<Tensor> get_optional(std::string_view name) const;
    const SafetensorsEntry& entry(std::string_view name) const;
    std::vector<std::string> names() const override;
    // Names never fetched with get(): extra tensors the model did not expect.
    std::vector<std::string> unused_names() const override;
    const std::string& source() const override { return source_; }
    // From the first file's __metadata__.
    std::optional<std::string> metadata(std::string_view key) const override;
    // Total bytes of tensor data per dtype.
    std::map<DType, size_t> bytes_by_dtype() const;
    size_t file_count() const { return files_.size(); }

private:
    // The scale tensor of scaled FP8 weight `name`, or "" when it has none.
    std::string scale_name(std::string_view name) const;
    struct Location {
        size_t file = 0;
        const SafetensorsEntry* entry = nullptr;
    };
    std::string source_;
    std::vector<std::shared_ptr<SafetensorsFile>> files_;
    std::map<std::string, Location, std::less<>> index_;
    mutable std::set<std::string, std::less<>> used_;
};

// Writes tensors (host, any dtype) to a safetensors file; used by tests, tools and the demo model.
void write_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace sr
