#include "core/tensor.h"

#include <atomic>
#include <cstring>
#include <type_traits>

#include "core/parallel.h"

namespace sr {

Shape::Shape(std::initializer_list<int64_t> dims) {
    SR_ASSERT(dims.size() <= size_t(kMaxDims), "rank {} > {}", dims.size(), kMaxDims);
    for (int64_t d : dims) dims_[size_t(rank_++)] = d;
}

Shape::Shape(const std::vector<int64_t>& dims) {
    SR_THROW_IF(dims.size() > size_t(kMaxDims), "tensor rank {} exceeds the supported {}", dims.size(), kMaxDims);
    for (int64_t d : dims) dims_[size_t(rank_++)] = d;
}

int64_t Shape::numel() const {
    int64_t n = 1;
    for (int i = 0; i < rank_; ++i) n *= dims_[size_t(i)];
    return n;
}

std::string Shape::str() const {
    std::string s = "[";
    for (int i = 0; i < rank_; ++i) s += (i ? "," : "") + std::to_string(dims_[size_t(i)]);
    return s + "]";
}

bool Shape::operator==(const Shape& o) const {
    if (rank_ != o.rank_) return false;
    for (int i = 0; i < rank_; ++i)
        if (dims_[size_t(i)] != o.dims_[size_t(i)]) return false;
    return true;
}

void Shape::push_back(int64_t d) {
    SR_ASSERT(rank_ < kMaxDims);
    dims_[size_t(rank_++)] = d;
}

Storage::~Storage() {
    if (allocator) allocator->deallocate(data, bytes);
}

std::array<int64_t, kMaxDims> contiguous_strides(const Shape& shape) {
    std::array<int64_t, kMaxDims> s{};
    int64_t acc = 1;
    for (int i = shape.rank() - 1; i >= 0; --i) {
        s[size_t(i)] = acc;
        acc *= shape[i];
    }
    return s;
}

Tensor Tensor::empty(const Shape& shape, DType dtype, Allocator& allocator, std::string_view what) {
    for (int i = 0; i < shape.rank(); ++i) SR_THROW_IF(shape[i] < 0, "negative dimension in shape {}", shape.str());
    Tensor t;
    t.storage_ = std::make_shared<Storage>();
    t.storage_->bytes = size_t(shape.numel()) * dtype_size(dtype);
    t.storage_->data = allocator.allocate(t.storage_->bytes, what);
    t.storage_->allocator = &allocator;
    t.storage_->device = allocator.device();
    t.dtype_ = dtype;
    t.shape_ = shape;
    t.strides_ = contiguous_strides(shape);
    return t;
}

Tensor Tensor::zeros(const Shape& shape, DType dtype, Allocator& allocator, std::string_view what) {
    Tensor t = empty(shape, dtype, allocator, what);
    t.fill_zero();
    return t;
}

Tensor Tensor::wrap(void* data, const Shape& shape, DType dtype, Device device, std::shared_ptr<const void> keepalive) {
    Tensor t;
    t.storage_ = std::make_shared<Storage>();
    t.storage_->data = data;
    t.storage_->bytes = size_t(shape.numel()) * dtype_size(dtype);
    t.storage_->device = device;
    t.storage_->keepalive = std::move(keepalive);
    t.dtype_ = dtype;
    t.shape_ = shape;
    t.strides_ = contiguous_strides(shape);
    return t;
}

Tensor Tensor::from_vector(const std::vector<float>& values, const Shape& shape) {
    SR_ASSERT(int64_t(values.size()) == shape.numel(), "{} values for shape {}", values.size(), shape.str());
    Tensor t = empty(shape, DType::F32);
    if (!values.empty()) std::memcpy(t.raw_data(), values.data(), values.size() * 4);
    return t;
}

int Tensor::normalize_dim(int d, int rank) const {
    const int nd = d < 0 ? d + rank : d;
    SR_ASSERT(nd >= 0 && nd < rank, "dim {} out of range for {}", d, describe());
    return nd;
}

int64_t Tensor::dim(int i) const {
    return shape_[normalize_dim(i, rank())];
}
int64_t Tensor::stride(int i) const {
    return strides_[size_t(normalize_dim(i, rank()))];
}
Device Tensor::device() const {
    return storage_ ? storage_->device : Device::cpu();
}

bool Tensor::is_contiguous() const {
    int64_t acc = 1;
    for (int i = rank() - 1; i >= 0; --i) {
        if (shape_[i] != 1 && strides_[size_t(i)] != acc) return false;
        acc *= shape_[i];
    }
    return true;
}

std::string Tensor::describe() const {
    return std::string(dtype_name(dtype_)) + shape_.str();
}

namespace {
std::atomic<int> g_device_code_depth{0};
}  // namespace

DeviceCodeScope::DeviceCodeScope() {
    g_device_code_depth.fetch_add(1, std::memory_order_relaxed);
}
DeviceCodeScope::~DeviceCodeScope() {
    g_device_code_depth.fetch_sub(1, std::memory_order_relaxed);
}
bool DeviceCodeScope::active() {
    return g_device_code_depth.load(std::memory_order_relaxed) > 0;
}

void Tensor::check_host_access() const {
    SR_ASSERT(!storage_ || storage_->device.type != DeviceType::Simulated || DeviceCodeScope::active(),
              "host code touched {} on {} outside a kernel (copy it with to_host() first)", describe(),
              storage_->device.name());
}

void Tensor::check_element_type(size_t size, bool is_float) const {
    SR_ASSERT(defined(), "access to an undefined tensor");
    check_host_access();
    const bool ok =
        is_float ? (dtype_ == DType::F32 && size == 4) : (size == dtype_size(dtype_) && !(dtype_ == DType::F32));
    SR_ASSERT(ok, "element type of size {} does not match {}", size, describe());
}

Tensor Tensor::view(const Shape& shape) const {
    SR_ASSERT(is_contiguous(), "view() of non-contiguous {}", describe());
    Shape s = shape;
    int infer = -1;
    int64_t known = 1;
    for (int i = 0; i < s.rank(); ++i) {
        if (s[i] == -1) {
            SR_ASSERT(infer < 0, "two -1 in view shape");
            infer = i;
        } else {
            known *= s[i];
        }
    }
    if (infer >= 0) s[infer] = known == 0 ? 0 : numel() / known;
    SR_ASSERT(s.numel() == numel(), "view {} of {}", s.str(), describe());
    Tensor t = *this;
    t.shape_ = s;
    t.strides_ = contiguous_strides(s);
    return t;
}

Tensor Tensor::permute(std::initializer_list<int> order) const {
    SR_ASSERT(int(order.size()) == rank(), "permute order rank {} for {}", order.size(), describe());
    Tensor t = *this;
    int i = 0;
    bool seen[kMaxDims] = {};
    for (int d : order) {
        const int nd = normalize_dim(d, rank());
        SR_ASSERT(!seen[nd], "permute repeats dim {}", d);
        seen[nd] = true;
        t.shape_[i] = shape_[nd];
        t.strides_[size_t(i)] = strides_[size_t(nd)];
        ++i;
    }
    return t;
}

Tensor Tensor::slice(int d, int64_t start, int64_t end) const {
    d = normalize_dim(d, rank());
    SR_ASSERT(start >= 0 && start <= end && end <= shape_[d], "slice [{},{}) of dim {} in {}", start, end, d,
              describe());
    Tensor t = *this;
    t.shape_[d] = end - start;
    t.offset_bytes_ += size_t(start * strides_[size_t(d)]) * dtype_size(dtype_);
    return t;
}

Tensor Tensor::select(int d, int64_t index) const {
    d = normalize_dim(d, rank());
    SR_ASSERT(index >= 0 && index < shape_[d], "select {} of dim {} in {}", index, d, describe());
    Tensor t = *this;
    t.offset_bytes_ += size_t(index * strides_[size_t(d)]) * dtype_size(dtype_);
    Shape s;
    std::array<int64_t, kMaxDims> st{};
    int j = 0;
    for (int i = 0; i < rank(); ++i) {
        if (i == d) continue;
        s.push_back(shape_[i]);
        st[size_t(j++)] = strides_[size_t(i)];
    }
    t.shape_ = s;
    t.strides_ = st;
    return t;
}

Tensor Tensor::unsqueeze(int d) const {
    const int nd = d < 0 ? d + rank() + 1 : d;
    SR_ASSERT(nd >= 0 && nd <= rank() && rank() < kMaxDims, "unsqueeze {} of {}", d, describe());
    Tensor t = *this;
    Shape s;
    std::array<int64_t, kMaxDims> st{};
    int j = 0;
    for (int i = 0; i <= rank(); ++i) {
        if (i == nd) {
            s.push_back(1);
            st[size_t(j++)] = i < rank() ? strides_[size_t(i)] * shape_[i] : 1;
        }
        if (i < rank()) {
            s.push_back(shape_[i]);
            st[size_t(j++)] = strides_[size_t(i)];
        }
    }
    t.shape_ = s;
    t.strides_ = st;
    return t;
}

Tensor Tensor::unflatten(int d, int64_t outer, int64_t inner) const {
    d = normalize_dim(d, rank());
    SR_ASSERT(outer * inner == shape_[d] && rank() < kMaxDims, "unflatten dim {} of {} into [{},{}]", d, describe(),
              outer, inner);
    Tensor t = *this;
    Shape s;
    std::array<int64_t, kMaxDims> st{};
    int j = 0;
    for (int i = 0; i < rank(); ++i) {
        if (i == d) {
            s.push_back(outer);
            st[size_t(j++)] = strides_[size_t(i)] * inner;
            s.push_back(inner);
            st[size_t(j++)] = strides_[size_t(i)];
        } else {
            s.push_back(shape_[i]);
            st[size_t(j++)] = strides_[size_t(i)];
        }
    }
    t.shape_ = s;
    t.strides_ = st;
    return t;
}

namespace {

// Copies a strided src into a strided dst of the same shape, element by element along the innermost
// dimension (memcpy when both are unit-stride and of one type). Rows are split across threads.
void strided_copy(const Tensor& src, Tensor& dst) {
    const int rank = src.rank();
    const int64_t inner = rank ? src.dim(-1) : 1;
    const int64_t rows = inner ? src.numel() / inner : 0;
    const size_t ses = dtype_size(src.dtype()), des = dtype_size(dst.dtype());
    const int64_t s_in = rank ? src.stride(-1) : 1, d_in = rank ? dst.stride(-1) : 1;
    const bool same = src.dtype() == dst.dtype();
    const char* sbase = static_cast<const char*>(src.raw_data());
    char* dbase = static_cast<char*>(dst.raw_data());
    parallel_for(
        rows,
        [&](int64_t r0, int64_t r1) {
            std::vector<char> tmp;
            for (int64_t r = r0; r < r1; ++r) {
                // Decompose the row index over the outer dimensions.
                int64_t rem = r, soff = 0, doff = 0;
                for (int i = rank - 2; i >= 0; --i) {
                    const int64_t idx = rem % src.dim(i);
                    rem /= src.dim(i);
                    soff += idx * src.stride(i);
                    doff += idx * dst.stride(i);
                }
                const char* s = sbase + soff * int64_t(ses);
                char* d = dbase + doff * int64_t(des);
                if (same && s_in == 1 && d_in == 1) {
                    std::memcpy(d, s, size_t(inner) * ses);
                } else if (same) {
                    for (int64_t j = 0; j < inner; ++j)
                        std::memcpy(d + j * d_in * int64_t(des), s + j * s_in * int64_t(ses), ses);
                } else if (s_in == 1 && d_in == 1) {
                    convert_elements(s, src.dtype(), d, dst.dtype(), size_t(inner));
                } else {
                    for (int64_t j = 0; j < inner; ++j)
                        convert_elements(s + j * s_in * int64_t(ses), src.dtype(), d + j * d_in * int64_t(des),
                                         dst.dtype(), 1);
                }
            }
        },
        std::max<int64_t>(1, 16384 / std::max<int64_t>(1, inner)));
}

}  // namespace

void Tensor::copy_from(const Tensor& src) {
    SR_ASSERT(src.shape() == shape_, "copy_from {} into {}", src.describe(), describe());
    SR_ASSERT(src.device().type != DeviceType::CUDA && device().type != DeviceType::CUDA,
              "host copy of a CUDA tensor: {} ({}) into {} ({})", src.describe(), src.device().name(), describe(),
              device().name());
    src.check_host_access();
    check_host_access();
    SR_ASSERT(src.dtype() == dtype_ || (dtype_is_float(src.dtype()) && dtype_is_float(dtype_)), "copy_from {} into {}",
              src.describe(), describe());
    if (numel() == 0) return;
    strided_copy(src, *this);
}

Tensor Tensor::contiguous() const {
    if (is_contiguous()) return *this;
    return clone();
}

Tensor Tensor::clone(Allocator& allocator) const {
    Tensor t = empty(shape_, dtype_, allocator, "tensor copy");
    t.copy_from(*this);
    return t;
}

Tensor Tensor::to(DType dtype, Allocator& allocator) const {
    Tensor t = empty(shape_, dtype, allocator, "dtype conversion");
    t.copy_from(*this);
    return t;
}

void Tensor::fill_zero() {
    SR_ASSERT(is_contiguous(), "fill_zero of non-contiguous {}", describe());
    check_host_access();
    std::memset(raw_data(), 0, nbytes());
}

float Tensor::item_as_float(int64_t flat) const {
    SR_ASSERT(flat >= 0 && flat < numel());
    check_host_access();
    int64_t off = 0, rem = flat;
    for (int i = rank() - 1; i >= 0; --i) {
        off += (rem % shape_[i]) * strides_[size_t(i)];
        rem /= shape_[i];
    }
    const char* p = static_cast<const char*>(raw_data()) + off * int64_t(dtype_size(dtype_));
    switch (dtype_) {
        case DType::I32: {
            int32_t v;
            std::memcpy(&v, p, 4);
            return float(v);
        }
        case DType::I64: {
            int64_t v;
            std::memcpy(&v, p, 8);
            return float(v);
        }
        case DType::Bool:
            return *p ? 1.f : 0.f;
        default: {
            float v;
            convert_elements(p, dtype_, &v, DType::F32, 1);
            return v;
        }
    }
}

}  // namespace sr
