#include "io/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/files.h"
#include "core/log.h"
#include "core/mapped_files.h"
#include "io/json.h"

namespace sr {

namespace fs = std::filesystem;

std::shared_ptr<MappedFile> MappedFile::open(const std::string& path) {
    // A FIFO or device is refused without blocking; a symlink loop or a missing file is named.
    const FileHandle fd = open_regular_file(path);
    struct stat st {};
    SR_THROW_IF(::fstat(fd.get(), &st) != 0, "{}: cannot stat: {}", path, std::strerror(errno));
    std::shared_ptr<MappedFile> f(new MappedFile());
    f->path_ = path;
    f->size_ = size_t(st.st_size);
    if (f->size_ > 0) {
        void* p = ::mmap(nullptr, f->size_, PROT_READ, MAP_SHARED, fd.get(), 0);
        SR_THROW_IF(p == MAP_FAILED, "{}: mmap of {} bytes failed: {}", path, f->size_, std::strerror(errno));
        f->data_ = static_cast<const uint8_t*>(p);
        register_mapped_file(path, f->data_, f->size_);
    }
    return f;
}

MappedFile::~MappedFile() {
    if (data_) {
        unregister_mapped_file(data_);
        ::munmap(const_cast<uint8_t*>(data_), size_);
    }
}

namespace {

bool mul_overflows(uint64_t a, uint64_t b, uint64_t* out) {
    return __builtin_mul_overflow(a, b, out);
}

SafetensorsEntry parse_entry(const std::string& name, const Json& v, size_t data_size, std::string_view source) {
    SafetensorsEntry e;
    e.name = name;
    // Names come from the file: printed with control characters escaped.
    SR_THROW_IF(!v.is_object(), "{}: tensor '{}': header entry is not an object", source, printable(name));
    const std::string where = fmt::format("{}: tensor '{}'", source, printable(name));
    const std::string dtype = json_string(v, "dtype", where);
    auto dt = dtype_from_safetensors_name(dtype);
    SR_THROW_IF(!dt, "{}: unsupported dtype '{}' (supported: F32, BF16, F16, F8_E4M3, I32, I64, BOOL)", where, dtype);
    e.dtype = *dt;
    const auto shape = json_int_array(v, "shape", where);
    SR_THROW_IF(shape.size() > size_t(kMaxDims), "{}: rank {} exceeds {}", where, shape.size(), kMaxDims);
    // Both the element count and the product of the non-zero dimensions must fit: a zero early in the
    // shape makes the count 0, but strides are still products of the later (possibly huge) dimensions.
    uint64_t numel = 1, extent = 1;
    for (int64_t d : shape) {
        SR_THROW_IF(d < 0, "{}: negative dimension {}", where, d);
        SR_THROW_IF(mul_overflows(numel, uint64_t(d), &numel), "{}: shape overflows", where);
        if (d > 0)
            SR_THROW_IF(mul_overflows(extent, uint64_t(d), &extent) || extent > uint64_t(INT64_MAX),
                        "{}: shape overflows", where);
        e.shape.push_back(d);
    }
    uint64_t nbytes = 0;
    SR_THROW_IF(mul_overflows(numel, dtype_size(e.dtype), &nbytes), "{}: byte size overflows", where);
    const Json& off = json_require(v, "data_offsets", where);
    SR_THROW_IF(!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned(),
                "{}: data_offsets must be two non-negative integers, got {}", where, off.dump());
    const uint64_t begin = off[0].get<uint64_t>(), end = off[1].get<uint64_t>();
    SR_THROW_IF(begin > end, "{}: data_offsets [{}, {}] run backwards", where, begin, end);
    SR_THROW_IF(end > data_size, "{}: data_offsets [{}, {}] run past the end of the data ({} bytes; file truncated?)",
                where, begin, end, data_size);
    SR_THROW_IF(end - begin != nbytes, "{}: data_offsets [{}, {}] hold {} bytes but {}{} needs {}", where, begin, end,
                end - begin, dtype, e.shape.str(), nbytes);
    e.data_begin = size_t(begin);
    e.data_end = size_t(end);
    return e;
}

}  // namespace

SafetensorsHeader parse_safetensors_header(const uint8_t* bytes, size_t available, size_t file_size,
                                           std::string_view source) {
    SR_THROW_IF(file_size < 8 || available < 8, "{}: file is {} bytes, too short for a safetensors header", source,
                file_size);
    uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | bytes[i];
    SR_THROW_IF(n > kMaxSafetensorsHeaderBytes,
                "{}: header length {} exceeds the {} byte limit (not a safetensors file?)", source, n,
                kMaxSafetensorsHeaderBytes);
    SR_THROW_IF(n > file_size - 8, "{}: header length {} runs past the end of the {} byte file (truncated?)", source, n,
                file_size);
    SR_THROW_IF(n + 8 > available, "{}: header length {} exceeds the {} bytes read", source, n, available);
    const std::string_view text(reinterpret_cast<const char*>(bytes + 8), size_t(n));
    const Json j = parse_json(text, fmt::format("{} (header)", source));
    SR_THROW_IF(!j.is_object(), "{}: header is not a JSON object", source);

    SafetensorsHeader h;
    h.data_offset = size_t(8 + n);
    const size_t data_size = file_size - h.data_offset;
    for (auto it = j.begin(); it != j.end(); ++it) {
        if (it.key() == "__metadata__") {
            SR_THROW_IF(!it.value().is_object(), "{}: __metadata__ is not an object", source);
            for (auto m = it.value().begin(); m != it.value().end(); ++m)
                if (m.value().is_string()) h.metadata[m.key()] = m.value().get<std::string>();
            continue;
        }
        h.entries.push_back(parse_entry(it.key(), it.value(), data_size, source));
    }
    std::sort(h.entries.begin(), h.entries.end(), [](const auto& a, const auto& b) {
        return a.data_begin != b.data_begin ? a.data_begin < b.data_begin : a.data_end < b.data_end;
    });
    for (size_t i = 1; i < h.entries.size(); ++i) {
        const auto& a = h.entries[i - 1];
        const auto& b = h.entries[i];
        SR_THROW_IF(b.data_begin < a.data_end, "{}: tensors '{}' [{}, {}] and '{}' [{}, {}] overlap", source,
                    printable(a.name), a.data_begin, a.data_end, printable(b.name), b.data_begin, b.data_end);
    }
    return h;
}

std::shared_ptr<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
    auto f = std::make_shared<SafetensorsFile>();
    f->file_ = MappedFile::open(path);
    f->header_ = parse_safetensors_header(f->file_->data(), f->file_->size(), f->file_->size(), path);
    for (size_t i = 0; i < f->header_.entries.size(); ++i) f->by_name_[f->header_.entries[i].name] = i;
    return f;
}

const SafetensorsEntry* SafetensorsFile::find(std::string_view name) const {
    auto it = by_name_.find(name);
    return it == by_name_.end() ? nullptr : &header_.entries[it->second];
}

Tensor SafetensorsFile::tensor(const SafetensorsEntry& e) const {
    const uint8_t* p = file_->data() + header_.data_offset + e.data_begin;
    const size_t align = dtype_size(e.dtype);
    if (reinterpret_cast<uintptr_t>(p) % align != 0) {
        // The format does not promise alignment; typed loads need it, so copy this one tensor.
        SR_LOG_DEBUG("{}: tensor '{}' is misaligned in the file; copying it", path(), e.name);
        Tensor t = Tensor::empty(e.shape, e.dtype, host_allocator(), e.name);
        std::memcpy(t.raw_data(), p, e.data_end - e.data_begin);
        return t;
    }
    // The mapping is read-only: weights are never written through these views.
    return Tensor::wrap(const_cast<uint8_t*>(p), e.shape, e.dtype, Device::cpu(), file_);
}

namespace {

bool ends_with(std::string_view s, std::string_view suffix) {
    return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

}  // namespace

WeightStore WeightStore::open_files(const std::vector<std::string>& files) {
    WeightStore store;
    store.source_ =
        files.size() == 1 ? files[0] : fmt::format("{} (+{} files)", files.empty() ? "" : files[0], files.size() - 1);
    for (const auto& path : files) {
        auto f = SafetensorsFile::open(path);
        const size_t idx = store.files_.size();
        store.files_.push_back(f);
        for (const auto& e : f->header().entries) {
            auto [it, inserted] = store.index_.emplace(e.name, Location{idx, &e});
            SR_THROW_IF(!inserted, "tensor '{}' appears in both {} and {}", printable(e.name),
                        store.files_[it->second.file]->path(), path);
        }
    }
    return store;
}

WeightStore WeightStore::open(const std::string& path) {
    std::error_code ec;
    SR_THROW_IF(!fs::exists(path, ec), "{}: no such file or folder", path);
    std::string index_path;
    if (fs::is_directory(path, ec)) {
        std::vector<std::string> indexes, files;
        for (const auto& de : fs::directory_iterator(path, ec)) {
            const std::string name = de.path().filename().string();
            if (ends_with(name, ".safetensors.index.json"))
                indexes.push_back(de.path().string());
            else if (ends_with(name, ".safetensors") && de.is_regular_file())
                files.push_back(de.path().string());
        }
        std::sort(indexes.begin(), indexes.end());
        std::sort(files.begin(), files.end());
        SR_THROW_IF(indexes.size() > 1, "{}: more than one *.safetensors.index.json ({} and {})", path, indexes[0],
                    indexes[1]);
        if (indexes.empty()) {
            SR_THROW_IF(files.empty(), "{}: no .safetensors files in this folder", path);
            WeightStore s = open_files(files);
            s.source_ = path;
            return s;
        }
        index_path = indexes[0];
    } else if (ends_with(path, ".json")) {
        index_path = path;
    } else {
        return open_files({path});
    }

    // Sharded: the index names a shard for every tensor.
    const Json index = load_json_file(index_path);
    const Json& map = json_require(index, "weight_map", index_path);
    SR_THROW_IF(!map.is_object(), "{}: weight_map is not an object", index_path);
    const fs::path dir = fs::path(index_path).parent_path();
    std::map<std::string, size_t> shard_index;
    WeightStore store;
    store.source_ = index_path;
    for (auto it = map.begin(); it != map.end(); ++it) {
        SR_THROW_IF(!it.value().is_string(), "{}: weight_map['{}'] is not a file name", index_path,
                    printable(it.key()));
        const std::string shard = it.value().get<std::string>();
        SR_THROW_IF(shard.empty() || shard.find('/') != std::string::npos || shard.find('\\') != std::string::npos ||
                        shard == "." || shard == "..",
                    "{}: weight_map['{}'] = '{}' is not a file name in the checkpoint folder", index_path,
                    printable(it.key()), printable(shard));
        if (!shard_index.count(shard)) {
            const std::string shard_path = (dir / shard).string();
            SR_THROW_IF(!fs::exists(shard_path, ec), "{}: shard '{}' (holding '{}') is missing", index_path, shard,
                        printable(it.key()));
            shard_index[shard] = store.files_.size();
            store.files_.push_back(SafetensorsFile::open(shard_path));
        }
        const size_t fi = shard_index[shard];
        const SafetensorsEntry* e = store.files_[fi]->find(it.key());
        SR_THROW_IF(!e, "{}: tensor '{}' is mapped to shard '{}', which does not hold it", index_path,
                    printable(it.key()), shard);
        store.index_.emplace(it.key(), Location{fi, e});
    }
    // One warning for all the tensors the index leaves out (a hostile shard may hold millions).
    std::vector<std::string> unlisted;
    for (size_t fi = 0; fi < store.files_.size(); ++fi)
        for (const auto& e : store.files_[fi]->header().entries)
            if (!store.index_.count(e.name)) unlisted.push_back(e.name);
    if (!unlisted.empty()) {
        std::string list;
        for (size_t i = 0; i < std::min<size_t>(unlisted.size(), 5); ++i)
            list += fmt::format("{}'{}'", i ? ", " : "", printable(unlisted[i]));
        if (unlisted.size() > 5) list += fmt::format(" and {} more", unlisted.size() - 5);
        SR_LOG_WARN("{}: the shards hold {} tensor(s) that the index does not list, ignored: {}", index_path,
                    unlisted.size(), list);
    }
    return store;
}

bool WeightStore::contains(std::string_view name) const {
    return index_.find(name) != index_.end();
}

const SafetensorsEntry& WeightStore::entry(std::string_view name) const {
    auto it = index_.find(name);
    SR_THROW_IF(it == index_.end(), "{}: missing tensor '{}'", source_, name);
    return *it->second.entry;
}

Tensor WeightStore::get(std::string_view name) const {
    auto it = index_.find(name);
    SR_THROW_IF(it == index_.end(), "{}: missing tensor '{}'", source_, name);
    used_.insert(std::string(name));
    return files_[it->second.file]->tensor(*it->second.entry);
}

std::optional<std::string> WeightStore::metadata(std::string_view key) const {
    if (files_.empty()) return std::nullopt;
    const auto& m = files_[0]->header().metadata;
    const auto it = m.find(std::string(key));
    if (it == m.end()) return std::nullopt;
    return it->second;
}

std::string WeightStore::scale_name(std::string_view name) const {
    if (entry(name).dtype != DType::F8_E4M3 || !name.ends_with(".weight")) return {};
    const std::string base(name.substr(0, name.size() - 7));
    for (const char* suffix : {".scale_weight", ".weight_scale"})
        if (contains(base + suffix)) return base + suffix;
    return {};
}

TensorInfo WeightStore::info(std::string_view name) const {
    const SafetensorsEntry& e = entry(name);
    return {e.shape, e.dtype, std::nullopt, !scale_name(name).empty()};
}

StoredTensor WeightStore::stored(std::string_view name) const {
    StoredTensor t{info(name), get(name), Tensor()};
    if (t.info.scaled) {
        const std::string s = scale_name(name);
        t.scale = get(s);
        const int64_t rows = t.info.shape.rank()
                                 ? t.info.shape.numel() / std::max<int64_t>(t.info.shape[t.info.shape.rank() - 1], 1)
                                 : 1;
        SR_THROW_IF(!dtype_is_float(t.scale.dtype()) || (t.scale.numel() != 1 && t.scale.numel() != rows),
                    "{}: scale '{}' of FP8 tensor '{}' is {}; expected one float or one per row ({})", source_, s, name,
                    t.scale.describe(), rows);
    }
    return t;
}

std::optional<Tensor> WeightStore::get_optional(std::string_view name) const {
    if (!contains(name)) return std::nullopt;
    return get(name);
}

std::vector<std::string> WeightStore::names() const {
    std::vector<std::string> out;
    for (const auto& [k, v] : index_) out.push_back(k);
    return out;
}

std::vector<std::string> WeightStore::unused_names() const {
    std::vector<std::string> out;
    for (const auto& [k, v] : index_)
        // ComfyUI's scaled FP8 carries a format marker and, per layer, an activation scale for FP8 matmuls,
        // which weight-only dequantization does not use.
        if (!used_.count(k) && k != "scaled_fp8" && !k.ends_with(".scale_input")) out.push_back(k);
    return out;
}

std::map<DType, size_t> WeightStore::bytes_by_dtype() const {
    std::map<DType, size_t> out;
    for (const auto& [k, v] : index_) out[v.entry->dtype] += v.entry->data_end - v.entry->data_begin;
    return out;
}

void write_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata) {
    Json header = Json::object();
    if (!metadata.empty()) header["__metadata__"] = metadata;
    size_t offset = 0;
    std::vector<Tensor> contiguous;
    for (const auto& [name, t] : tensors) {
        Tensor c = t.contiguous();
        header[name] = {{"dtype", std::string(dtype_safetensors_name(c.dtype()))},
                        {"shape", c.shape().to_vector()},
                        {"data_offsets", {offset, offset + c.nbytes()}}};
        offset += c.nbytes();
        contiguous.push_back(c);
    }
    std::string text = header.dump();
    while ((text.size() + 8) % 8 != 0) text.push_back(' ');  // keep the data section 8-byte aligned
    // A temporary of our own beside the target (O_EXCL | O_NOFOLLOW: never a planted symlink, never shared
    // with another run), every write checked, renamed into place only when complete.
    TemporaryFile tmp = create_temporary_file(path, ".partial");
    uint64_t n = text.size();
    uint8_t len[8];
    for (int i = 0; i < 8; ++i) len[i] = uint8_t(n >> (8 * i));
    write_all(tmp.fd(), len, 8, tmp.path());
    write_all(tmp.fd(), text.data(), text.size(), tmp.path());
    for (const auto& c : contiguous) write_all(tmp.fd(), c.raw_data(), c.nbytes(), tmp.path());
    tmp.commit(path);
}

}  // namespace sr
