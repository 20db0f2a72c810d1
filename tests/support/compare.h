// Tensor comparison for parity tests: max absolute error with the location of the worst element, so a
// failure says where the first divergence is.
//
//   auto d = sr::test::compare(actual, expected);
//   EXPECT_LE(d.max_abs, tol) << name << ": " << d.str();
#pragma once

#include <string>

#include "core/tensor.h"

namespace sr::test {

struct Diff {
    double max_abs = 0;
    double max_rel = 0;       // |a-e| / max(|e|, 1e-6) at the worst absolute element
    double max_expected = 0;  // max |expected|, for scale
    int64_t worst_index = -1;
    bool shape_mismatch = false;
    std::string str() const;
};

// Element-wise comparison of two tensors of any float dtypes (converted to f64), any strides.
Diff compare(const Tensor& actual, const Tensor& expected);

// Same, restricted to rows whose mask is nonzero: actual/expected [B, L, ...], mask [B, L].
Diff compare_masked_rows(const Tensor& actual, const Tensor& expected, const Tensor& mask);

// The same shape, dtype and bytes (host tensors, any strides): what "bit-identical across residency modes,
// ranks or CFG schedules" means in the tests.
bool bit_identical(const Tensor& a, const Tensor& b);

}  // namespace sr::test
