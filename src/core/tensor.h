// Tensors: up to 8 dimensions (video is [B,C,F,H,W] and is never folded into 4-D), any DType, strided views
// over shared storage that lives on a Device.
//
// Shapes are written outermost first, PyTorch-style. Strides are in elements. A view (permute, slice,
// select, view) shares storage; contiguous() copies only when needed. Storage is either owned (allocated
// from an Allocator, returned on destruction) or external (e.g. a memory-mapped safetensors file, kept
// alive by a shared handle).
//
//   auto x = sr::Tensor::empty({2, 16, 3, 8, 12}, sr::DType::F32);   // [B,C,F,H,W]
//   auto frame0 = x.select(2, 0);                                      // [B,C,H,W] view
//   auto tokens = x.permute({0, 2, 3, 4, 1}).contiguous();             // [B,F,H,W,C] copy
#pragma once

#include <array>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "core/allocator.h"
#include "core/dtype.h"
#include "core/error.h"

namespace sr {

constexpr int kMaxDims = 8;

// Host code reads and writes elements through data<T>(), copy_from(), fill_zero() and item_as_float(), which
// is valid for host memory only. Tensors on the simulated device (DeviceType::Simulated) may be touched only
// by kernels, which run inside a DeviceCodeScope; host code touching one elsewhere gets a LogicError naming
// the tensor, where on a GPU it would crash or read garbage. Models and the pipeline move data across with
// to_device()/to_host() (backends/backend.h). CUDA tensors are not checked here: their data<T>() is the
// device pointer a kernel launch takes. raw_data() is an address (for copies) and is never checked.
class DeviceCodeScope {
public:
    DeviceCodeScope();
    ~DeviceCodeScope();
    DeviceCodeScope(const DeviceCodeScope&) = delete;
    DeviceCodeScope& operator=(const DeviceCodeScope&) = delete;
    // True while any thread runs a kernel: the simulated device computes synchronously, and a kernel's
    // worker threads must pass too, so the scope is process-wide.
    static bool active();
};

class Shape {
public:
    Shape() = default;
    Shape(std::initializer_list<int64_t> dims);
    explicit Shape(const std::vector<int64_t>& dims);

    int rank() const { return rank_; }
    int64_t operator[](int i) const { return dims_[size_t(i)]; }
    int64_t& operator[](int i) { return dims_[size_t(i)]; }
    int64_t numel() const;
    std::vector<int64_t> to_vector() const { return {dims_.begin(), dims_.begin() + rank_}; }
    std::string str() const;  // "[2,16,3,8,12]"
    bool operator==(const Shape& o) const;
    void push_back(int64_t d);

private:
    std::array<int64_t, kMaxDims> dims_{};
    int rank_ = 0;
};

struct Storage {
    void* data = nullptr;
    size_t bytes = 0;
    Device device;
    Allocator* allocator = nullptr;         // owned storage: returned here
    std::shared_ptr<const void> keepalive;  // external storage: e.g. the mmap it lives in
    Storage() = default;
    Storage(const Storage&) = delete;
    Storage& operator=(const Storage&) = delete;
    ~Storage();
};

class Tensor {
public:
    Tensor() = default;

    // Uninitialized tensor from `allocator` (host by default). `what` names it in out-of-memory errors.
    static Tensor empty(const Shape& shape, DType dtype, Allocator& allocator = host_allocator(),
                        std::string_view what = "");
    static Tensor zeros(const Shape& shape, DType dtype, Allocator& allocator = host_allocator(),
                        std::string_view what = "");
    // A view of memory owned elsewhere; `keepalive` is held as long as any view exists.
    static Tensor wrap(void* data, const Shape& shape, DType dtype, Device device,
                       std::shared_ptr<const void> keepalive);
    // Host f32 tensor holding a copy of `values`.
    static Tensor from_vector(const std::vector<float>& values, const Shape& shape);

    bool defined() const { return storage_ != nullptr; }
    DType dtype() const { return dtype_; }
    const Shape& shape() const { return shape_; }
    int rank() const { return shape_.rank(); }
    // Size of dimension i; negative i counts from the end.
    int64_t dim(int i) const;
    int64_t stride(int i) const;
    int64_t numel() const { return shape_.numel(); }
    size_t nbytes() const { return size_t(numel()) * dtype_size(dtype_); }
    Device device() const;
    bool is_contiguous() const;
    std::string describe() const;  // "f32[2,16,3,8,12]"

    // The allocator owning this tensor's memory; nullptr for views of external memory (Tensor::wrap, e.g. a
    // memory-mapped checkpoint).
    const Allocator* owner() const { return storage_ ? storage_->allocator : nullptr; }
    // True for views of memory owned elsewhere that keep it alive (a mapped file), as opposed to wrap()s
    // without a keepalive (memory the caller manages).
    bool is_external_view() const { return storage_ && !storage_->allocator && storage_->keepalive; }
    void* raw_data() { return static_cast<char*>(storage_->data) + offset_bytes_; }
    const void* raw_data() const { return static_cast<const char*>(storage_->data) + offset_bytes_; }
    // Typed pointer to the first element; asserts that T matches the dtype's element size class.
    template <class T>
    T* data() {
        check_element_type(sizeof(T), is_float_type<T>());
        return static_cast<T*>(raw_data());
    }
    template <class T>
    const T* data() const {
        check_element_type(sizeof(T), is_float_type<T>());
        return static_cast<const T*>(raw_data());
    }

    // Views (share storage).
    Tensor view(const Shape& shape) const;  // requires contiguous; one dim may be -1
    Tensor permute(std::initializer_list<int> order) const;
    Tensor slice(int dim, int64_t start, int64_t end) const;
    Tensor select(int dim, int64_t index) const;
    Tensor unsqueeze(int dim) const;
    // Splits dimension `dim` (of size outer*inner, any stride) into [outer, inner]; valid on any view.
    Tensor unflatten(int dim, int64_t outer, int64_t inner) const;

    // Copies (host).
    Tensor contiguous() const;  // itself when already contiguous
    Tensor clone(Allocator& allocator = host_allocator()) const;
    Tensor to(DType dtype, Allocator& allocator = host_allocator()) const;  // float types only
    // Copies `src` (same shape, any strides, float types converted) into this tensor's elements.
    void copy_from(const Tensor& src);
    void fill_zero();

    // Reads element i (row-major logical index) as float; for tests and diagnostics, not hot loops.
    float item_as_float(int64_t flat_index) const;

private:
    template <class T>
    static constexpr bool is_float_type() {
        return std::is_floating_point_v<T>;
    }
    void check_element_type(size_t size, bool is_float) const;
    void check_host_access() const;
    int normalize_dim(int d, int rank) const;

    std::shared_ptr<Storage> storage_;
    size_t offset_bytes_ = 0;
    DType dtype_ = DType::F32;
    Shape shape_;
    std::array<int64_t, kMaxDims> strides_{};
};

// Row-major contiguous strides for `shape`.
std::array<int64_t, kMaxDims> contiguous_strides(const Shape& shape);

}  // namespace sr
