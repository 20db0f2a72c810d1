// main() of the tests that run as the ranks of an MPI job (mpirun -np N test_mpi): every rank runs every
// test, rank 0 prints the results, the other ranks only their failures, and every rank exits with the worst
// verdict of all, so that a failure on any rank fails the ctest test and no rank is left running.
#include <gtest/gtest.h>

#include <cstdio>

#include "runtime/mpi_communicator.h"

namespace {

// Other ranks: failed assertions only, each line naming the rank.
class FailuresOnly : public testing::EmptyTestEventListener {
public:
    explicit FailuresOnly(int rank) : rank_(rank) {}
    void OnTestPartResult(const testing::TestPartResult& r) override {
        if (r.failed())
            std::fprintf(stderr, "rank %d: %s:%d: %s\n", rank_, r.file_name() ? r.file_name() : "?", r.line_number(),
                         r.summary());
    }

private:
    int rank_;
};

}  // namespace

int main(int argc, char** argv) {
    testing::InitGoogleTest(&argc, argv);
    sr::MpiRuntime mpi;
    const auto world = sr::MpiRuntime::world();
    if (world->rank() != 0) {
        testing::TestEventListeners& listeners = testing::UnitTest::GetInstance()->listeners();
        delete listeners.Release(listeners.default_result_printer());
        listeners.Append(new FailuresOnly(world->rank()));
    }
    const int mine = RUN_ALL_TESTS();
    const int verdict = int(world->max(mine));
    if (world->rank() == 0 && verdict != mine) std::fprintf(stderr, "test_mpi: another rank failed\n");
    return verdict;
}
