// Collectives between the ranks of a parallel run (one process per device, on one or many hosts), on tensors
// in one backend's memory. The interface lives here, below the models, because the transformer's sequence
// parallel attention moves its q, k, v with it; the implementations are in the runtime: MPI on host buffers
// (the CPU backend, the simulated device, CI) and NCCL on CUDA device buffers (runtime/mpi_communicator.h,
// runtime/nccl_communicator.h).
//
//   // send [P, chunk...]: chunk p goes to rank p; recv [P, chunk...]: chunk p came from rank p
//   comm.all_to_all(send, recv);
//   comm.all_gather(mine, everyone);  // everyone [P, mine...]
//
// Every rank of the communicator must make the same calls in the same order with tensors of the same shapes
// (except gather's, which only the root holds). Errors throw VendorError naming the call; a rank that throws
// is expected to end the whole run (runtime/mpi_communicator.h's abort_world), never to leave the others
// waiting in a collective.
#pragma once

#include <string>
#include <vector>

#include "core/tensor.h"

namespace sr {

class Communicator {
public:
    virtual ~Communicator() = default;
    virtual int rank() const = 0;
    virtual int size() const = 0;
    // "mpi", "nccl", "plan": for reports and errors.
    virtual std::string kind() const = 0;
    // Whether the collectives take tensors in `device`'s memory.
    virtual bool moves(Device device) const = 0;

    // send and recv contiguous, of the same dtype, with size() * k elements each: chunk p of send (elements
    // [p*k, (p+1)*k)) goes to rank p; chunk p of recv came from rank p.
    virtual void all_to_all(const Tensor& send, Tensor& recv) = 0;
    // recv (contiguous, size() * send.numel() elements): chunk p is rank p's send.
    virtual void all_gather(const Tensor& send, Tensor& recv) = 0;
    // `t` (contiguous) on every rank becomes root's.
    virtual void broadcast(Tensor& t, int root) = 0;
    // On root, recv[p] (contiguous, preallocated with the size rank p sends) receives rank p's send; other
    // ranks pass an empty vector. recv[root] is copied from send.
    virtual void gather(const Tensor& send, std::vector<Tensor>& recv, int root) = 0;
    virtual void barrier() = 0;
};

// What memory planning runs the collectives on: the ranks' shapes and buffers, no data moved
// (pipeline/memory_plan.h plans one rank of a parallel run).
class PlanningCommunicator final : public Communicator {
public:
    PlanningCommunicator(int rank, int size) : rank_(rank), size_(size) {}
    int rank() const override { return rank_; }
    int size() const override { return size_; }
    std::string kind() const override { return "plan"; }
    bool moves(Device) const override { return true; }
    void all_to_all(const Tensor&, Tensor&) override {}
    void all_gather(const Tensor&, Tensor&) override {}
    void broadcast(Tensor&, int) override {}
    void gather(const Tensor&, std::vector<Tensor>&, int) override {}
    void barrier() override {}

private:
    int rank_, size_;
};

// The ranks a parallel run splits one job over (runtime/parallel_mesh.h makes them from MPI; the pipeline
// uses them). Every rank makes the same calls; only world's rank 0 gets frames. Null members: that dimension
// is not split.
struct ParallelGroups {
    Communicator* world = nullptr;     // every rank, host memory: the initial noise, the VAE's tiles
    Communicator* cfg = nullptr;       // two ranks per guidance pair, one row each, host memory
    Communicator* sequence = nullptr;  // Ulysses: the ranks splitting the video tokens, the backend's memory
};

// The checks every implementation makes before moving bytes (InputError-free: these are programming errors).
void check_all_to_all(const Communicator& comm, const Tensor& send, const Tensor& recv);
void check_all_gather(const Communicator& comm, const Tensor& send, const Tensor& recv);

}  // namespace sr
