// The mesh of a parallel run: cfg (the two guidance rows on two ranks) x ulysses (the video tokens split over
// the rest), as SkyReelsInfer runs 1-8 GPUs with ParaAttention. World rank w is cfg row w / ulysses and
// Ulysses rank w % ulysses; the groups are MPI sub-communicators (and NCCL ones on CUDA).
//
//   const MeshShape shape = choose_mesh(world.size(), parse_mesh_spec("ulysses=2"), do_cfg, heads);
//   ParallelMesh mesh(world, shape);
//   pipe.generate(be, req, progress, sink, {}, nullptr, mesh.groups());
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "backends/communicator.h"
#include "runtime/mpi_communicator.h"

namespace sr {

struct MeshShape {
    int cfg = 0, ulysses = 0;  // 0: not given (choose_mesh fills it in)
    int ranks() const { return cfg * ulysses; }
    std::string str() const;  // "cfg=2,ulysses=4"
    bool operator==(const MeshShape&) const = default;
};

// "cfg=2,ulysses=4", "ulysses=4", "cfg=1", or "" (all chosen). InputError naming --parallel.
MeshShape parse_mesh_spec(std::string_view spec);

// The mesh for `world` ranks: what `requested` gives, the rest as SkyReelsInfer chooses (cfg = 2 when the job
// uses guidance and the world is even, ulysses the rest: 2 ranks = cfg only, 4 = 2x2, 8 = 2x4). InputError
// when the product is not the world, cfg = 2 without guidance, or ulysses does not divide `heads`.
MeshShape choose_mesh(int world, MeshShape requested, bool do_cfg, int64_t heads);

// The groups of one mesh over the world's ranks. Collective: every rank constructs it, in the same order.
class ParallelMesh {
public:
    ParallelMesh(MpiCommunicator& world, MeshShape shape);
    ~ParallelMesh();
    const MeshShape& shape() const { return shape_; }
    // `sequence`: the Ulysses group on the backend's memory (an NCCL group on CUDA); null: this mesh's MPI one,
    // for backends whose memory is host memory.
    ParallelGroups groups(Communicator* sequence = nullptr) const;
    MpiCommunicator& ulysses() const { return *ulysses_; }

private:
    MpiCommunicator& world_;
    MeshShape shape_;
    std::unique_ptr<MpiCommunicator> cfg_, ulysses_;
};

}  // namespace sr
