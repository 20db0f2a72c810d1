#include "runtime/parallel_mesh.h"

#include <fmt/format.h>
#include <charconv>

#include "core/error.h"

namespace sr {

std::string MeshShape::str() const {
    return fmt::format("cfg={},ulysses={}", cfg, ulysses);
}

MeshShape parse_mesh_spec(std::string_view spec) {
    MeshShape out;
    while (!spec.empty()) {
        const size_t comma = spec.find(',');
        const std::string_view item = spec.substr(0, comma);
        spec = comma == std::string_view::npos ? std::string_view() : spec.substr(comma + 1);
        const size_t eq = item.find('=');
        const std::string_view key = item.substr(0, eq),
                               value = eq == std::string_view::npos ? "" : item.substr(eq + 1);
        int n = 0;
        const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
        SR_THROW_IF(value.empty() || ec != std::errc() || end != value.data() + value.size() || n < 1 || n > 4096,
                    "--parallel '{}': expected cfg=N and/or ulysses=N with N a positive whole number", item);
        if (key == "cfg")
            out.cfg = n;
        else if (key == "ulysses")
            out.ulysses = n;
        else
            SR_THROW("--parallel '{}': unknown dimension '{}' (cfg or ulysses)", item, key);
    }
    return out;
}

MeshShape choose_mesh(int world, MeshShape requested, bool do_cfg, int64_t heads) {
    MeshShape m = requested;
    if (m.cfg == 0 && m.ulysses != 0) m.cfg = world % m.ulysses == 0 ? world / m.ulysses : 0;
    if (m.cfg == 0) m.cfg = do_cfg && world % 2 == 0 ? 2 : 1;
    if (m.ulysses == 0) m.ulysses = world % m.cfg == 0 ? world / m.cfg : 0;
    SR_THROW_IF(m.ulysses == 0 || m.ranks() != world, "--parallel {}: the mesh needs {} ranks, the run has {}",
                requested.cfg || requested.ulysses ? requested.str() : "(default)", m.ulysses ? m.ranks() : -1, world);
    SR_THROW_IF(m.cfg > 2, "--parallel cfg={}: the guidance has two rows (cfg=1 or cfg=2)", m.cfg);
    SR_THROW_IF(m.cfg == 2 && !do_cfg, "--parallel cfg=2: this job has no guidance rows to split (--guidance <= 1)");
    SR_THROW_IF(heads % m.ulysses != 0,
                "--parallel ulysses={}: the model's {} attention heads do not divide among {} ranks (world of {}: "
                "try another mesh with --parallel)",
                m.ulysses, heads, m.ulysses, world);
    return m;
}

ParallelMesh::ParallelMesh(MpiCommunicator& world, MeshShape shape) : world_(world), shape_(shape) {
    SR_ASSERT(shape.ranks() == world.size(), "mesh {} over {} ranks", shape.str(), world.size());
    const int row = world.rank() / shape.ulysses, seq = world.rank() % shape.ulysses;
    ulysses_ = world.split(row, seq);
    cfg_ = world.split(seq, row);
}

ParallelMesh::~ParallelMesh() = default;

ParallelGroups ParallelMesh::groups(Communicator* sequence) const {
    ParallelGroups g;
    g.world = &world_;
    g.cfg = shape_.cfg > 1 ? cfg_.get() : nullptr;
    g.sequence = shape_.ulysses > 1 ? (sequence ? sequence : ulysses_.get()) : nullptr;
    return g;
}

}  // namespace sr
