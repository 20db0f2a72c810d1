// MPI: the processes of a parallel run and the collectives between them on host memory (the CPU backend and
// the simulated device; CI runs every parallel mode this way under `mpirun --oversubscribe`). OpenMPI's
// `mpirun` or Slurm's `srun --mpi=pmix` starts one process per device, on one host or many.
//
//   if (sr::MpiRuntime::launched()) {
//       sr::MpiRuntime mpi;                          // MPI_Init_thread ... MPI_Finalize
//       auto world = sr::MpiRuntime::world();       // every rank
//       auto host = world->split_by_host();          // the ranks sharing this host's memory
//   }
//
// Built without MPI (SKYREELS_HAVE_MPI=0), launched() is false and MpiRuntime throws.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "backends/communicator.h"

namespace sr {

class MpiCommunicator final : public Communicator {
public:
    ~MpiCommunicator() override;
    int rank() const override { return rank_; }
    int size() const override { return size_; }
    std::string kind() const override { return "mpi"; }
    bool moves(Device device) const override;  // host memory: CPU and the simulated device

    void all_to_all(const Tensor& send, Tensor& recv) override;
    void all_gather(const Tensor& send, Tensor& recv) override;
    void broadcast(Tensor& t, int root) override;
    void gather(const Tensor& send, std::vector<Tensor>& recv, int root) override;
    void barrier() override;

    // Sub-communicators: ranks with the same `color` (ordered by `key`), and the ranks on this host.
    std::unique_ptr<MpiCommunicator> split(int color, int key) const;
    std::unique_ptr<MpiCommunicator> split_by_host() const;
    // Small host values every rank contributes: the sum, the maximum, and each rank's value (on every rank).
    int64_t sum(int64_t value) const;
    int64_t max(int64_t value) const;
    std::vector<int64_t> all_values(int64_t value) const;
    std::vector<std::string> all_strings(const std::string& value) const;

private:
    friend class MpiRuntime;
    struct Handle;  // the MPI_Comm, kept out of this header so users need no mpi.h
    explicit MpiCommunicator(std::unique_ptr<Handle> handle);
    std::unique_ptr<Handle> handle_;
    int rank_ = 0, size_ = 1;
};

class MpiRuntime {
public:
    // Whether this process was started by an MPI launcher (mpirun, srun --mpi=pmix): its environment says so.
    static bool launched();
    // Whether this build has MPI.
    static bool available();
    MpiRuntime();  // MPI_Init_thread (funneled); VendorError when MPI is missing or fails
    ~MpiRuntime();
    MpiRuntime(const MpiRuntime&) = delete;
    MpiRuntime& operator=(const MpiRuntime&) = delete;

    // Whether MPI is initialized (by an MpiRuntime) and not yet finalized in this process.
    static bool active();
    // Every rank of the run (MPI_COMM_WORLD); MpiRuntime must be active.
    static std::unique_ptr<MpiCommunicator> world();
    // This process's host name as MPI knows it.
    static std::string host_name();
    // Ends every rank of the run at once (MPI_Abort): after this rank printed its error, so that no other rank
    // waits forever in a collective for it.
    [[noreturn]] static void abort_world(int exit_code);
};

}  // namespace sr
