#include "runtime/nccl_communicator.h"

#include <fmt/format.h>

#include "core/error.h"

#if SKYREELS_HAVE_NCCL
#include <cuda_runtime.h>
#include <nccl.h>
#endif

namespace sr {

#if SKYREELS_HAVE_NCCL

namespace {

void check(ncclResult_t rc, const char* call) {
    if (rc != ncclSuccess) throw VendorError(fmt::format("NCCL: {} failed: {}", call, ncclGetErrorString(rc)));
}

// The element type NCCL moves (bytes for the types it has no name for).
struct Elements {
    ncclDataType_t type;
    size_t count;
};

Elements elements(const Tensor& t, size_t numel) {
    switch (t.dtype()) {
        case DType::F32:
            return {ncclFloat32, numel};
        case DType::BF16:
            return {ncclBfloat16, numel};
        case DType::F16:
            return {ncclFloat16, numel};
        default:
            return {ncclUint8, numel * dtype_size(t.dtype())};
    }
}

}  // namespace

bool nccl_available() {
    return true;
}

struct NcclCommunicator::State {
    ncclComm_t comm = nullptr;
    cudaStream_t stream = nullptr;
    ~State() {
        if (comm) ncclCommDestroy(comm);
    }
};

NcclCommunicator::NcclCommunicator(MpiCommunicator& group, int cuda_device, void* stream)
    : state_(std::make_unique<State>()), group_(group), rank_(group.rank()), size_(group.size()) {
    state_->stream = static_cast<cudaStream_t>(stream);
    ncclUniqueId id{};
    if (rank_ == 0) check(ncclGetUniqueId(&id), "ncclGetUniqueId");
    Tensor bytes = Tensor::wrap(&id, {int64_t(sizeof(id))}, DType::Bool, Device::cpu(), nullptr);
    group.broadcast(bytes, 0);
    if (cudaSetDevice(cuda_device) != cudaSuccess)
        throw VendorError(fmt::format("NCCL: cannot select CUDA device {}", cuda_device));
    check(ncclCommInitRank(&state_->comm, size_, id, rank_), "ncclCommInitRank");
}

NcclCommunicator::~NcclCommunicator() = default;

void NcclCommunicator::all_to_all(const Tensor& send, Tensor& recv) {
    check_all_to_all(*this, send, recv);
    const Elements e = elements(send, size_t(send.numel()) / size_t(size_));
#if NCCL_VERSION_CODE >= NCCL_VERSION(2, 28, 0)
    check(ncclAlltoAll(send.raw_data(), recv.raw_data(), e.count, e.type, state_->comm, state_->stream),
          "ncclAlltoAll");
#else
    const size_t chunk = send.nbytes() / size_t(size_);
    check(ncclGroupStart(), "ncclGroupStart");
    for (int p = 0; p < size_; ++p) {
        check(ncclSend(static_cast<const char*>(send.raw_data()) + size_t(p) * chunk, e.count, e.type, p, state_->comm,
                       state_->stream),
              "ncclSend");
        check(ncclRecv(static_cast<char*>(recv.raw_data()) + size_t(p) * chunk, e.count, e.type, p, state_->comm,
                       state_->stream),
              "ncclRecv");
    }
    check(ncclGroupEnd(), "ncclGroupEnd");
#endif
}

void NcclCommunicator::all_gather(const Tensor& send, Tensor& recv) {
    check_all_gather(*this, send, recv);
    const Elements e = elements(send, size_t(send.numel()));
    check(ncclAllGather(send.raw_data(), recv.raw_data(), e.count, e.type, state_->comm, state_->stream),
          "ncclAllGather");
}

void NcclCommunicator::broadcast(Tensor& t, int root) {
    SR_ASSERT(t.is_contiguous() && moves(t.device()), "nccl broadcast of {}", t.describe());
    const Elements e = elements(t, size_t(t.numel()));
    check(ncclBroadcast(t.raw_data(), t.raw_data(), e.count, e.type, root, state_->comm, state_->stream),
          "ncclBroadcast");
}

void NcclCommunicator::gather(const Tensor& send, std::vector<Tensor>& recv, int root) {
    SR_ASSERT(send.is_contiguous() && moves(send.device()), "nccl gather of {}", send.describe());
    check(ncclGroupStart(), "ncclGroupStart");
    if (rank_ != root) {
        check(ncclSend(send.raw_data(), send.nbytes(), ncclUint8, root, state_->comm, state_->stream), "ncclSend");
    } else {
        SR_ASSERT(recv.size() == size_t(size_), "nccl gather into {} tensors over {} ranks", recv.size(), size_);
        for (int p = 0; p < size_; ++p) {
            Tensor& r = recv[size_t(p)];
            if (p == root) {
                if (cudaMemcpyAsync(r.raw_data(), send.raw_data(), send.nbytes(), cudaMemcpyDeviceToDevice,
                                    state_->stream) != cudaSuccess)
                    throw VendorError("NCCL gather: the root's own copy failed");
                continue;
            }
            check(ncclRecv(r.raw_data(), r.nbytes(), ncclUint8, p, state_->comm, state_->stream), "ncclRecv");
        }
    }
    check(ncclGroupEnd(), "ncclGroupEnd");
}

void NcclCommunicator::barrier() {
    if (cudaStreamSynchronize(state_->stream) != cudaSuccess) throw VendorError("NCCL barrier: the stream failed");
    group_.barrier();
}

#else  // built without NCCL

struct NcclCommunicator::State {};
bool nccl_available() {
    return false;
}
NcclCommunicator::NcclCommunicator(MpiCommunicator& group, int, void*) : group_(group) {
    throw VendorError("this build of skyreels has no NCCL (build with CUDA where the toolkit has it)");
}
NcclCommunicator::~NcclCommunicator() = default;
void NcclCommunicator::all_to_all(const Tensor&, Tensor&) {}
void NcclCommunicator::all_gather(const Tensor&, Tensor&) {}
void NcclCommunicator::broadcast(Tensor&, int) {}
void NcclCommunicator::gather(const Tensor&, std::vector<Tensor>&, int) {}
void NcclCommunicator::barrier() {}

#endif

}  // namespace sr
