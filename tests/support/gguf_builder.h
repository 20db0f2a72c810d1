// Byte-level GGUF images for tests and fuzz seeds, written field by field (not through write_gguf), so a
// test can state exactly which count, length, offset or type lies.
//
//   sr::test::GgufBuilder b;
//   b.header(3, /*tensors*/ 1, /*kvs*/ 1).kv_string("general.architecture", "hyvid");
//   b.tensor_info("w", {64, 2}, 0, 0);      // dims innermost first, as GGUF stores them; type F32; offset 0
//   b.pad(32).zeros(512);
//   std::string image = b.bytes();
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace sr::test {

class GgufBuilder {
public:
    GgufBuilder& raw(const std::string& s) {
        out_ += s;
        return *this;
    }
    GgufBuilder& u8(uint8_t v) { return le(v, 1); }
    GgufBuilder& u32(uint32_t v) { return le(v, 4); }
    GgufBuilder& u64(uint64_t v) { return le(v, 8); }
    GgufBuilder& str(const std::string& s) {
        u64(s.size());
        return raw(s);
    }
    GgufBuilder& header(uint32_t version, uint64_t n_tensors, uint64_t n_kv) {
        raw("GGUF");
        u32(version);
        u64(n_tensors);
        return u64(n_kv);
    }
    GgufBuilder& kv_string(const std::string& key, const std::string& value) {
        str(key);
        u32(8);
        return str(value);
    }
    GgufBuilder& kv_u32(const std::string& key, uint32_t value) {
        str(key);
        u32(4);
        return u32(value);
    }
    // Dimensions innermost first; type 0 F32, 1 F16, 30 BF16, 8 Q8_0, ...
    GgufBuilder& tensor_info(const std::string& name, const std::vector<uint64_t>& ne, uint32_t type, uint64_t offset) {
        str(name);
        u32(uint32_t(ne.size()));
        for (uint64_t d : ne) u64(d);
        u32(type);
        return u64(offset);
    }
    GgufBuilder& pad(size_t alignment) {
        while (out_.size() % alignment) out_.push_back('\0');
        return *this;
    }
    GgufBuilder& zeros(size_t n) {
        out_.append(n, '\0');
        return *this;
    }
    size_t size() const { return out_.size(); }
    const std::string& bytes() const { return out_; }

private:
    GgufBuilder& le(uint64_t v, int n) {
        for (int i = 0; i < n; ++i) out_.push_back(char(uint8_t(v >> (8 * i))));
        return *this;
    }
    std::string out_;
};

}  // namespace sr::test
