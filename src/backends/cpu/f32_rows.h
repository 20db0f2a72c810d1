// Rows of an f32 or bf16 activation as f32, for the CPU's row kernels that take bf16 activations
// (ops.h, kTakesBf16Activations): an f32 row is the tensor's own memory; a bf16 row is widened into a
// buffer of the caller's (one row, per task) when read, and rounded once from it when stored. The kernel
// computes in f32 either way, so its bf16 results are those of its f32 op rounded, as bf16_activations.cpp
// promises, without an f32 copy of the whole tensor each way.
//
//   F32Rows x(op.x, D, "layer_norm x");  std::vector<float> buf(D);
//   const float* xr = x.read(r, buf.data());  float* yr = y.out(r, out.data());  ...;  y.store(r, yr);
//
// And a kernel's [n] parameter (a bias, a norm weight) as f32 (F32Vector).
//
//   const F32Vector w(op.weight, D, "rms_norm weight");   // w.get(): nullptr without a weight
#pragma once

#include <vector>

#include "core/tensor.h"

namespace sr {

class F32Rows {
public:
    // `t`: contiguous, f32 or bf16, rows of D.
    F32Rows(const Tensor& t, int64_t D, const char* what) : D_(D), dtype_(t.dtype()) {
        SR_ASSERT((t.dtype() == DType::F32 || t.dtype() == DType::BF16) && t.is_contiguous() &&
                      (D == 0 || t.numel() % D == 0),
                  "{}: contiguous f32 or bf16 rows of {}, got {}", what, D, t.describe());
        data_ = static_cast<char*>(const_cast<void*>(t.raw_data()));
    }
    bool is_f32() const { return dtype_ == DType::F32; }
    // Row r as f32: the tensor's own row, or `buf` holding it widened.
    const float* read(int64_t r, float* buf) const {
        if (is_f32()) return reinterpret_cast<const float*>(data_) + r * D_;
        convert_elements(data_ + size_t(r * D_) * 2, DType::BF16, buf, DType::F32, size_t(D_));
        return buf;
    }
    // Where to compute row r: the tensor's own row, or `buf` (then store(r, buf) writes it).
    float* out(int64_t r, float* buf) { return is_f32() ? reinterpret_cast<float*>(data_) + r * D_ : buf; }
    // Rounds row r from `row` into a bf16 tensor; nothing for f32 (out() gave the row itself).
    void store(int64_t r, const float* row) {
        if (!is_f32()) convert_elements(row, DType::F32, data_ + size_t(r * D_) * 2, DType::BF16, size_t(D_));
    }

private:
    int64_t D_;
    DType dtype_;
    char* data_;
};

// A [n] parameter in any float dtype as f32: the tensor's own data when it is contiguous f32, else a copy
// widened once per call. get() is nullptr when there is no tensor. Movable, not copyable (get() may point
// into the object's own copy).
class F32Vector {
public:
    F32Vector() = default;
    F32Vector(const Tensor* t, int64_t n, const char* what) {
        if (!t) return;
        SR_ASSERT(t->numel() == n, "{} has {} elements, rows have {}", what, t->numel(), n);
        if (t->dtype() == DType::F32 && t->is_contiguous()) {
            data_ = t->data<float>();
            return;
        }
        widened_.resize(size_t(n));
        Tensor::wrap(widened_.data(), {n}, DType::F32, Device::cpu(), nullptr).copy_from(t->view({n}));
        data_ = widened_.data();
    }
    F32Vector(const F32Vector&) = delete;
    F32Vector& operator=(const F32Vector&) = delete;
    F32Vector(F32Vector&&) = default;  // a moved vector keeps its heap buffer, so data_ stays valid
    F32Vector& operator=(F32Vector&&) = default;
    const float* get() const { return data_; }

private:
    std::vector<float> widened_;
    const float* data_ = nullptr;
};

}  // namespace sr
