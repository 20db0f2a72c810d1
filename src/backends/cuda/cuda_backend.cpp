// The CUDA backend's plumbing: device and stream setup, availability, host <-> device transfers, and copy
// (strided views, dtype conversion, host <-> device). The ops live in one file per family (cuda_ops.cpp,
// cuda_vae_ops.cpp, cuda_gemm.cpp, cuda_attention.cpp) over the kernels of kernels.h.
#include "backends/cuda/cuda_backend.h"

#include <cuda_runtime.h>

#include <cstdlib>
#include <cstring>
#include <mutex>
#include <vector>

#include "backends/cuda/cuda_check.h"
#include "backends/cuda/cuda_gemm.h"
#include "backends/cuda/kernels.h"
#include "backends/cuda/staging_ring.h"

namespace sr {

static_assert(int(cuda::KType::F32) == int(DType::F32) && int(cuda::KType::BF16) == int(DType::BF16) &&
                  int(cuda::KType::F16) == int(DType::F16) && int(cuda::KType::F8_E4M3) == int(DType::F8_E4M3) &&
                  int(cuda::KType::I32) == int(DType::I32) && int(cuda::KType::I64) == int(DType::I64) &&
                  int(cuda::KType::Bool) == int(DType::Bool),
              "cuda::KType mirrors sr::DType");
static_assert(cuda::kMaxRank == kMaxDims);

void throw_cuda_error(cudaError_t error, const char* expr, const char* file, int line) {
    cudaGetLastError();  // clear a non-sticky error so the next call starts clean
    throw VendorError(fmt::format("CUDA error {} ({}) in {} at {}:{}", cudaGetErrorName(error),
                                  cudaGetErrorString(error), expr, file, line));
}

void throw_cublas_error(cublasStatus_t status, const char* expr, const char* file, int line) {
    throw VendorError(fmt::format("cuBLASLt error {} ({}) in {} at {}:{}", cublasLtGetStatusName(status),
                                  cublasLtGetStatusString(status), expr, file, line));
}

namespace {

cudaStream_t create_stream(int device) {
    SR_CUDA_CHECK(cudaSetDevice(device));
    cudaStream_t s = nullptr;
    // Non-blocking: no implicit ordering with the legacy default stream, which other libraries may use.
    SR_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    return s;
}

cuda::KType ktype(DType t) {
    return static_cast<cuda::KType>(static_cast<int>(t));
}

// Merges dimensions that are contiguous with each other in both tensors and drops size-1 dimensions, so the
// strided-copy kernel does as little index arithmetic as the views allow.
cuda::StridedLayout coalesce(const Tensor& src, const Tensor& dst) {
    cuda::StridedLayout l;
    for (int i = 0; i < src.rank(); ++i) {
        if (src.dim(i) == 1) continue;
        if (l.rank > 0) {
            const int p = l.rank - 1;
            if (l.src_stride[p] == src.stride(i) * src.dim(i) && l.dst_stride[p] == dst.stride(i) * src.dim(i)) {
                l.shape[p] *= src.dim(i);
                l.src_stride[p] = src.stride(i);
                l.dst_stride[p] = dst.stride(i);
                continue;
            }
        }
        l.shape[l.rank] = src.dim(i);
        l.src_stride[l.rank] = src.stride(i);
        l.dst_stride[l.rank] = dst.stride(i);
        ++l.rank;
    }
    if (l.rank == 0) {  // a single element
        l.rank = 1;
        l.shape[0] = 1;
        l.src_stride[0] = l.dst_stride[0] = 1;
    }
    return l;
}

}  // namespace

static_assert(implements_every_op<CudaBackend>(), "every op has a CUDA kernel");

struct CudaBackend::Bounce {
    std::mutex mutex;
    char* buffer = nullptr;  // kBounceSlots x kBounceSlotBytes, page-locked
    cudaEvent_t events[kBounceSlots] = {};
    StagingRing ring{kBounceSlots, kBounceSlotBytes};
};

CudaBackend::CudaBackend(const CudaBackendOptions& options)
    : device_(options.device),
      stream_(create_stream(options.device)),
      memory_(fmt::format("cuda:{}", options.device), options.memory_budget, options.device, stream_),
      gemm_(std::make_unique<Gemm>(*this)),
      cudnn_(make_cudnn()) {
    if (const char* env = std::getenv("SKYREELS_CUDA_ATTENTION"); env && *env)
        SR_THROW_IF(!parse_cuda_impl(env, attention_impl_), "SKYREELS_CUDA_ATTENTION='{}': expected cudnn or kernel",
                    env);
    if (const char* env = std::getenv("SKYREELS_CUDA_CONV"); env && *env)
        SR_THROW_IF(!parse_cuda_impl(env, conv_impl_), "SKYREELS_CUDA_CONV='{}': expected cudnn or kernel", env);
}

CudaBackend::~CudaBackend() {
    cudaSetDevice(device_);
    cudaStreamSynchronize(stream_);
    gemm_.reset();
    cudnn_.reset();
    if (bounce_) {
        for (cudaEvent_t e : bounce_->events)
            if (e) cudaEventDestroy(e);
        if (bounce_->buffer) cudaFreeHost(bounce_->buffer);
    }
    cudaStreamDestroy(stream_);
    cudaGetLastError();
}

std::string CudaBackend::name() const {
    return fmt::format("cuda:{}", device_);
}

void CudaBackend::make_current() const {
    int current = -1;
    if (cudaGetDevice(&current) != cudaSuccess || current != device_) SR_CUDA_CHECK(cudaSetDevice(device_));
}

void CudaBackend::check_here(const Tensor& t, const char* what) const {
    SR_ASSERT(t.defined() && t.device() == device(), "{}: {} is on {}, the op runs on {}", what, t.describe(),
              t.defined() ? t.device().name() : "nothing", device().name());
}

void CudaBackend::synchronize() {
    make_current();
    SR_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

void CudaBackend::upload_bytes(void* dst, const void* src, size_t bytes) {
    if (!bounce_) bounce_ = std::make_unique<Bounce>();
    Bounce& b = *bounce_;
    std::lock_guard<std::mutex> lock(b.mutex);
    if (!b.buffer) {
        void* p = nullptr;
        SR_CUDA_CHECK(cudaHostAlloc(&p, kBounceSlotBytes * kBounceSlots, cudaHostAllocPortable));
        b.buffer = static_cast<char*>(p);
        for (cudaEvent_t& e : b.events) SR_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
    }
    b.ring.for_each_chunk(bytes, [&](size_t off, size_t len, int slot, bool wait) {
        char* staged = b.buffer + size_t(slot) * kBounceSlotBytes;
        // Only the slot's previous DMA is waited for (a small copy: none while the other slot is free), never
        // the compute stream as a whole.
        if (wait) SR_CUDA_CHECK(cudaEventSynchronize(b.events[slot]));
        std::memcpy(staged, static_cast<const char*>(src) + off, len);
        SR_CUDA_CHECK(cudaMemcpyAsync(static_cast<char*>(dst) + off, staged, len, cudaMemcpyHostToDevice, stream_));
        SR_CUDA_CHECK(cudaEventRecord(b.events[slot], stream_));
    });
}

Tensor CudaBackend::upload(const Tensor& host) {
    Tensor t = Tensor::empty(host.shape(), host.dtype(), memory_, "upload");
    copy(host, t);
    return t;
}

Tensor CudaBackend::download(const Tensor& t) {
    Tensor host = Tensor::empty(t.shape(), t.dtype());
    copy(t, host);
    return host;
}

Tensor CudaBackend::f32_vector(const Tensor& t, int64_t n, const char* what) {
    SR_ASSERT(t.numel() == n && dtype_is_float(t.dtype()), "{}: {} for {} elements", what, t.describe(), n);
    Tensor v = Tensor::empty({n}, DType::F32, memory_, what);
    copy(t.rank() == 1 ? t : t.contiguous().view({n}), v);
    return v;
}

void CudaBackend::exec(const CopyOp& op) {
    const auto& [src, dst] = op;
    SR_ASSERT(src.shape() == dst.shape(), "copy {} into {}", src.describe(), dst.describe());
    SR_ASSERT(src.dtype() == dst.dtype() || (dtype_is_float(src.dtype()) && dtype_is_float(dst.dtype())),
              "copy {} into {}", src.describe(), dst.describe());
    if (src.numel() == 0) return;
    make_current();
    const bool src_here = src.device() == device(), dst_here = dst.device() == device();
    SR_ASSERT((src_here || src.device() == Device::cpu()) && (dst_here || dst.device() == Device::cpu()),
              "copy {} ({}) into {} ({}) on {}", src.describe(), src.device().name(), dst.describe(),
              dst.device().name(), name());
    if (!src_here && !dst_here) {
        dst.copy_from(src);
        return;
    }
    if (!src_here) {
        // Host -> device: bytes as they are (contiguous, same dtype), then convert/scatter on the device.
        if (src.is_contiguous() && dst.is_contiguous() && src.dtype() == dst.dtype()) {
            // Through the pinned bounce ring: the caller may free `src` as soon as this returns (its bytes are in
            // the ring), and kernels queued later on the compute stream see the data.
            upload_bytes(dst.raw_data(), src.raw_data(), src.nbytes());
            return;
        }
        const Tensor packed = src.contiguous();
        const Tensor staged = upload(packed);
        copy(staged, dst);
        return;
    }
    if (!dst_here) {
        // Device -> host: gather/convert on the device into dst's dtype, then one transfer.
        if (src.is_contiguous() && dst.is_contiguous() && src.dtype() == dst.dtype()) {
            SR_CUDA_CHECK(
                cudaMemcpyAsync(dst.raw_data(), src.raw_data(), src.nbytes(), cudaMemcpyDeviceToHost, stream_));
            SR_CUDA_CHECK(cudaStreamSynchronize(stream_));
            return;
        }
        Tensor packed = Tensor::empty(src.shape(), dst.dtype(), memory_, "download staging");
        copy(src, packed);
        if (dst.is_contiguous()) {
            copy(packed, dst);
        } else {
            Tensor host = Tensor::empty(src.shape(), dst.dtype());
            copy(packed, host);
            dst.copy_from(host);
        }
        return;
    }
    const cuda::StridedLayout layout = coalesce(src, dst);
    if (layout.rank == 1 && layout.src_stride[0] == 1 && layout.dst_stride[0] == 1) {
        cuda::convert(src.raw_data(), ktype(src.dtype()), dst.raw_data(), ktype(dst.dtype()), layout.shape[0], stream_);
    } else {
        cuda::strided_copy(src.raw_data(), ktype(src.dtype()), dst.raw_data(), ktype(dst.dtype()), layout, stream_);
    }
    SR_CUDA_CHECK_LAUNCH();
}

std::string cuda_unavailable_reason() {
    static const std::string reason = [] {
        int n = 0;
        const cudaError_t e = cudaGetDeviceCount(&n);
        if (e != cudaSuccess) {
            cudaGetLastError();
            return fmt::format("{} ({})", cudaGetErrorString(e), cudaGetErrorName(e));
        }
        if (n == 0) return std::string("the CUDA runtime sees no device");
        cudaDeviceProp prop{};
        if (cudaGetDeviceProperties(&prop, 0) != cudaSuccess) {
            cudaGetLastError();
            return std::string("cudaGetDeviceProperties failed for device 0");
        }
        // The kernels are built for sm_80, sm_89 and sm_90a (cmake/Cuda.cmake): mma.sync bf16 and cp.async
        // need sm_80.
        if (prop.major < 8)
            return fmt::format("device 0 ({}) has compute capability {}.{}; this build needs 8.0 or newer", prop.name,
                               prop.major, prop.minor);
        return std::string();
    }();
    return reason;
}

CudaBackend& cuda_backend() {
    static CudaBackend* backend = [] {
        const std::string why = cuda_unavailable_reason();
        if (!why.empty()) throw VendorError("no CUDA device: " + why);
        return new CudaBackend(CudaBackendOptions{});
    }();
    return *backend;
}

}  // namespace sr
