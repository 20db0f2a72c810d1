#include "core/quant.h"

#include <array>
#include <cctype>

#include "core/error.h"
#include "core/quant_blocks.h"
#include "core/quant_dispatch.h"

namespace sr {

namespace {

namespace qb = qblock;

// In QuantType order; ggml_type ids from ggml.h (GGML_TYPE_Q4_0 = 2, ...), which GGUF uses as tensor types.
constexpr std::array<QuantInfo, kQuantTypeCount> kInfo = {{
    {"Q8_0", qb::BlockQ8_0::kElems, sizeof(qb::BlockQ8_0), 8},
    {"Q4_0", qb::BlockQ4_0::kElems, sizeof(qb::BlockQ4_0), 2},
    {"Q4_1", qb::BlockQ4_1::kElems, sizeof(qb::BlockQ4_1), 3},
    {"Q5_0", qb::BlockQ5_0::kElems, sizeof(qb::BlockQ5_0), 6},
    {"Q5_1", qb::BlockQ5_1::kElems, sizeof(qb::BlockQ5_1), 7},
    {"Q3_K", qb::BlockQ3_K::kElems, sizeof(qb::BlockQ3_K), 11},
    {"Q4_K", qb::BlockQ4_K::kElems, sizeof(qb::BlockQ4_K), 12},
    {"Q5_K", qb::BlockQ5_K::kElems, sizeof(qb::BlockQ5_K), 13},
    {"Q6_K", qb::BlockQ6_K::kElems, sizeof(qb::BlockQ6_K), 14},
}};

template <class Block>
void dequantize_run(const void* src, float* dst, int64_t n_blocks) {
    const auto* blocks = static_cast<const Block*>(src);
    for (int64_t b = 0; b < n_blocks; ++b) qb::dequantize(blocks[b], dst + b * Block::kElems);
}

template <class Block>
void quantize_run(const float* src, void* dst, int64_t n_blocks) {
    auto* blocks = static_cast<Block*>(dst);
    for (int64_t b = 0; b < n_blocks; ++b) qb::quantize(src + b * Block::kElems, blocks[b]);
}

}  // namespace

const QuantInfo& quant_info(QuantType type) {
    SR_ASSERT(size_t(type) < kInfo.size(), "unknown QuantType {}", int(type));
    return kInfo[size_t(type)];
}

std::optional<QuantType> quant_type_from_ggml(uint32_t ggml_type) {
    for (size_t i = 0; i < kInfo.size(); ++i)
        if (kInfo[i].ggml_type == ggml_type) return QuantType(i);
    return std::nullopt;
}

std::optional<QuantType> quant_type_from_name(std::string_view name) {
    for (size_t i = 0; i < kInfo.size(); ++i) {
        const std::string_view n = kInfo[i].name;
        if (n.size() != name.size()) continue;
        bool same = true;
        for (size_t c = 0; c < n.size() && same; ++c)
            same = std::toupper(static_cast<unsigned char>(name[c])) == static_cast<unsigned char>(n[c]);
        if (same) return QuantType(i);
    }
    return std::nullopt;
}

bool quant_row_fits(QuantType type, int64_t cols) {
    const QuantInfo& q = quant_info(type);
    return cols > 0 && cols % q.block_elems == 0;  // cols / 32 * 34 cannot overflow: cols <= INT64_MAX
}

size_t quant_row_bytes(QuantType type, int64_t cols) {
    const QuantInfo& q = quant_info(type);
    SR_ASSERT(quant_row_fits(type, cols), "{} row of {} values: not a positive multiple of {}", q.name, cols,
              q.block_elems);
    return size_t(cols / q.block_elems) * q.block_bytes;
}

void dequantize_blocks(QuantType type, const void* src, float* dst, int64_t n_blocks) {
    SR_ASSERT(n_blocks >= 0, "negative block count {}", n_blocks);
    with_block_type(type, [&]<class Block>() { dequantize_run<Block>(src, dst, n_blocks); });
}

void quantize_row(QuantType type, const float* src, void* dst, int64_t cols) {
    const QuantInfo& q = quant_info(type);
    SR_ASSERT(quant_row_fits(type, cols), "{} row of {} values: not a positive multiple of {}", q.name, cols,
              q.block_elems);
    with_block_type(type, [&]<class Block>() { quantize_run<Block>(src, dst, cols / q.block_elems); });
}

}  // namespace sr
