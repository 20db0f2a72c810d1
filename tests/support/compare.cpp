#include "support/compare.h"

#include <cmath>
#include <cstring>

namespace sr::test {

std::string Diff::str() const {
    if (shape_mismatch) return "shape mismatch";
    return fmt::format("max_abs={:.3g} (at flat index {}), rel={:.3g}, max|expected|={:.3g}", max_abs, worst_index,
                       max_rel, max_expected);
}

namespace {

Diff compare_impl(const Tensor& a, const Tensor& e, const Tensor* mask) {
    Diff d;
    if (!(a.shape() == e.shape())) {
        d.shape_mismatch = true;
        d.max_abs = INFINITY;
        return d;
    }
    const int64_t n = a.numel();
    int64_t per_row = 1;
    if (mask) {
        per_row = n / std::max<int64_t>(1, mask->numel());
    }
    for (int64_t i = 0; i < n; ++i) {
        if (mask && mask->item_as_float(i / per_row) == 0.0f) continue;
        const double av = a.item_as_float(i), ev = e.item_as_float(i);
        const double diff = std::isnan(av) != std::isnan(ev) ? INFINITY : std::fabs(av - ev);
        d.max_expected = std::max(d.max_expected, std::fabs(ev));
        if (diff > d.max_abs || (std::isnan(diff) && d.worst_index < 0)) {
            d.max_abs = std::isnan(diff) ? INFINITY : diff;
            d.worst_index = i;
            d.max_rel = diff / std::max(std::fabs(ev), 1e-6);
        }
    }
    return d;
}

}  // namespace

Diff compare(const Tensor& actual, const Tensor& expected) {
    return compare_impl(actual, expected, nullptr);
}

Diff compare_masked_rows(const Tensor& actual, const Tensor& expected, const Tensor& mask) {
    return compare_impl(actual, expected, &mask);
}

bool bit_identical(const Tensor& a, const Tensor& b) {
    return a.shape() == b.shape() && a.dtype() == b.dtype() &&
           std::memcmp(a.contiguous().raw_data(), b.contiguous().raw_data(), a.nbytes()) == 0;
}

}  // namespace sr::test
