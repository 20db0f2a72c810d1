// The one place a QuantType names its block struct (core/quant_blocks.h), for code that is written once per
// block type:
//
//   sr::with_block_type(type, [&]<class Block>() { sr::qblock::dequantize(blocks[b], out); });
#pragma once

#include "core/error.h"
#include "core/quant.h"
#include "core/quant_blocks.h"

namespace sr {

// Calls fn.template operator()<Block>() with the block struct of `type`.
template <class Fn>
void with_block_type(QuantType type, Fn&& fn) {
    namespace qb = qblock;
    switch (type) {
        case QuantType::Q8_0:
            return fn.template operator()<qb::BlockQ8_0>();
        case QuantType::Q4_0:
            return fn.template operator()<qb::BlockQ4_0>();
        case QuantType::Q4_1:
            return fn.template operator()<qb::BlockQ4_1>();
        case QuantType::Q5_0:
            return fn.template operator()<qb::BlockQ5_0>();
        case QuantType::Q5_1:
            return fn.template operator()<qb::BlockQ5_1>();
        case QuantType::Q3_K:
            return fn.template operator()<qb::BlockQ3_K>();
        case QuantType::Q4_K:
            return fn.template operator()<qb::BlockQ4_K>();
        case QuantType::Q5_K:
            return fn.template operator()<qb::BlockQ5_K>();
        case QuantType::Q6_K:
            return fn.template operator()<qb::BlockQ6_K>();
    }
    SR_ASSERT(false, "unknown QuantType {}", int(type));
}

}  // namespace sr
