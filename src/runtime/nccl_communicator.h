// NCCL on CUDA device memory: the Ulysses group's all-to-alls between GPUs (NVLink, PCIe, InfiniBand), on the
// compute stream of the rank's CUDA backend so that they order with its kernels. Made from the MPI group it
// mirrors: rank 0 draws the unique id, MPI broadcasts it, every rank joins (ncclCommInitRank).
//
//   NcclCommunicator seq(mesh.ulysses(), cuda.device_index(), cuda.stream());
//   pipe.generate(be, req, ..., mesh.groups(&seq));
//
// Built when the CUDA toolkit has NCCL (SKYREELS_HAVE_NCCL); never yet run on a GPU.
#pragma once

#include <memory>

#include "backends/communicator.h"
#include "runtime/mpi_communicator.h"

namespace sr {

class NcclCommunicator final : public Communicator {
public:
    // Collective over `group`. `stream`: a cudaStream_t.
    NcclCommunicator(MpiCommunicator& group, int cuda_device, void* stream);
    ~NcclCommunicator() override;
    int rank() const override { return rank_; }
    int size() const override { return size_; }
    std::string kind() const override { return "nccl"; }
    bool moves(Device device) const override { return device.type == DeviceType::CUDA; }

    // ncclAlltoAll where the library has it (NCCL 2.28), else grouped ncclSend/ncclRecv.
    void all_to_all(const Tensor& send, Tensor& recv) override;
    void all_gather(const Tensor& send, Tensor& recv) override;
    void broadcast(Tensor& t, int root) override;
    void gather(const Tensor& send, std::vector<Tensor>& recv, int root) override;  // grouped send/recv
    void barrier() override;  // the stream drained, then the MPI group's barrier

private:
    struct State;
    std::unique_ptr<State> state_;
    MpiCommunicator& group_;
    int rank_ = 0, size_ = 1;
};

// Whether this build has NCCL.
bool nccl_available();

}  // namespace sr
