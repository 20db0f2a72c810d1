#include "runtime/mpi_communicator.h"

#include <fmt/format.h>
#include <climits>
#include <cstdlib>
#include <cstring>

#include "core/error.h"

#if SKYREELS_HAVE_MPI
#include <mpi.h>
#endif

namespace sr {

bool MpiRuntime::launched() {
    // OpenMPI's mpirun, PMIx launchers (srun --mpi=pmix, prterun) and PMI-1/2 launchers (MPICH, srun --mpi=pmi2).
    for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE"})
        if (std::getenv(var)) return available();
    return false;
}

#if SKYREELS_HAVE_MPI

namespace {

void check(int rc, const char* call) {
    if (rc == MPI_SUCCESS) return;
    char text[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, text, &len);
    throw VendorError(fmt::format("MPI: {} failed: {}", call, std::string(text, size_t(len))));
}

// Counts in units of the element size (MPI takes int counts: 8 GiB per chunk of f32, far past any chunk here).
struct Units {
    MPI_Datatype type;
    int count;
};

Units units(size_t bytes, size_t element_bytes) {
    const MPI_Datatype type = element_bytes == 8   ? MPI_UINT64_T
                              : element_bytes == 4 ? MPI_UINT32_T
                              : element_bytes == 2 ? MPI_UINT16_T
                                                   : MPI_BYTE;
    const size_t unit = element_bytes == 8 || element_bytes == 4 || element_bytes == 2 ? element_bytes : 1;
    const size_t count = bytes / unit;
    if (count > size_t(INT_MAX))
        throw VendorError(fmt::format("MPI: a message of {} bytes is larger than one call can move", bytes));
    return {type, int(count)};
}

}  // namespace

struct MpiCommunicator::Handle {
    MPI_Comm comm = MPI_COMM_NULL;
    bool owned = false;
    ~Handle() {
        int finalized = 0;
        MPI_Finalized(&finalized);
        if (owned && !finalized) MPI_Comm_free(&comm);
    }
};

MpiCommunicator::MpiCommunicator(std::unique_ptr<Handle> handle) : handle_(std::move(handle)) {
    check(MPI_Comm_rank(handle_->comm, &rank_), "MPI_Comm_rank");
    check(MPI_Comm_size(handle_->comm, &size_), "MPI_Comm_size");
}

MpiCommunicator::~MpiCommunicator() = default;

bool MpiCommunicator::moves(Device device) const {
    return device.type == DeviceType::CPU || device.type == DeviceType::Simulated;
}

void MpiCommunicator::all_to_all(const Tensor& send, Tensor& recv) {
    check_all_to_all(*this, send, recv);
    const Units u = units(send.nbytes() / size_t(size_), dtype_size(send.dtype()));
    check(MPI_Alltoall(send.raw_data(), u.count, u.type, recv.raw_data(), u.count, u.type, handle_->comm),
          "MPI_Alltoall");
}

void MpiCommunicator::all_gather(const Tensor& send, Tensor& recv) {
    check_all_gather(*this, send, recv);
    const Units u = units(send.nbytes(), dtype_size(send.dtype()));
    check(MPI_Allgather(send.raw_data(), u.count, u.type, recv.raw_data(), u.count, u.type, handle_->comm),
          "MPI_Allgather");
}

void MpiCommunicator::broadcast(Tensor& t, int root) {
    SR_ASSERT(t.is_contiguous() && moves(t.device()), "mpi broadcast of {}", t.describe());
    const Units u = units(t.nbytes(), dtype_size(t.dtype()));
    check(MPI_Bcast(t.raw_data(), u.count, u.type, root, handle_->comm), "MPI_Bcast");
}

void MpiCommunicator::gather(const Tensor& send, std::vector<Tensor>& recv, int root) {
    SR_ASSERT(send.is_contiguous() && moves(send.device()), "mpi gather of {}", send.describe());
    // Point to point: each rank's tensor has its own size, and the root receives straight into its tensors.
    constexpr int kTag = 7001;
    if (rank_ != root) {
        const Units u = units(send.nbytes(), 1);
        check(MPI_Send(send.raw_data(), u.count, u.type, root, kTag, handle_->comm), "MPI_Send");
        return;
    }
    SR_ASSERT(recv.size() == size_t(size_), "mpi gather into {} tensors over {} ranks", recv.size(), size_);
    std::vector<MPI_Request> requests;
    for (int p = 0; p < size_; ++p) {
        Tensor& r = recv[size_t(p)];
        SR_ASSERT(r.is_contiguous() && moves(r.device()), "mpi gather into {}", r.describe());
        if (p == root) {
            SR_ASSERT(r.nbytes() == send.nbytes(), "mpi gather: root's {} into {}", send.describe(), r.describe());
            std::memcpy(r.raw_data(), send.raw_data(), send.nbytes());
            continue;
        }
        const Units u = units(r.nbytes(), 1);
        requests.emplace_back();
        check(MPI_Irecv(r.raw_data(), u.count, u.type, p, kTag, handle_->comm, &requests.back()), "MPI_Irecv");
    }
    check(MPI_Waitall(int(requests.size()), requests.data(), MPI_STATUSES_IGNORE), "MPI_Waitall");
}

void MpiCommunicator::barrier() {
    check(MPI_Barrier(handle_->comm), "MPI_Barrier");
}

std::unique_ptr<MpiCommunicator> MpiCommunicator::split(int color, int key) const {
    auto h = std::make_unique<Handle>();
    check(MPI_Comm_split(handle_->comm, color, key, &h->comm), "MPI_Comm_split");
    h->owned = true;
    return std::unique_ptr<MpiCommunicator>(new MpiCommunicator(std::move(h)));
}

std::unique_ptr<MpiCommunicator> MpiCommunicator::split_by_host() const {
    auto h = std::make_unique<Handle>();
    check(MPI_Comm_split_type(handle_->comm, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &h->comm),
          "MPI_Comm_split_type");
    h->owned = true;
    return std::unique_ptr<MpiCommunicator>(new MpiCommunicator(std::move(h)));
}

int64_t MpiCommunicator::sum(int64_t value) const {
    int64_t out = 0;
    check(MPI_Allreduce(&value, &out, 1, MPI_INT64_T, MPI_SUM, handle_->comm), "MPI_Allreduce");
    return out;
}

int64_t MpiCommunicator::max(int64_t value) const {
    int64_t out = 0;
    check(MPI_Allreduce(&value, &out, 1, MPI_INT64_T, MPI_MAX, handle_->comm), "MPI_Allreduce");
    return out;
}

std::vector<int64_t> MpiCommunicator::all_values(int64_t value) const {
    std::vector<int64_t> out(static_cast<size_t>(size_));
    check(MPI_Allgather(&value, 1, MPI_INT64_T, out.data(), 1, MPI_INT64_T, handle_->comm), "MPI_Allgather");
    return out;
}

std::vector<std::string> MpiCommunicator::all_strings(const std::string& value) const {
    const std::vector<int64_t> lengths = all_values(int64_t(value.size()));
    std::vector<int> counts, offsets;
    int total = 0;
    for (int64_t n : lengths) {
        offsets.push_back(total);
        counts.push_back(int(n));
        total += int(n);
    }
    std::string joined(size_t(total), '\0');
    check(MPI_Allgatherv(value.data(), int(value.size()), MPI_CHAR, joined.data(), counts.data(), offsets.data(),
                         MPI_CHAR, handle_->comm),
          "MPI_Allgatherv");
    std::vector<std::string> out;
    for (size_t p = 0; p < lengths.size(); ++p) out.push_back(joined.substr(size_t(offsets[p]), size_t(counts[p])));
    return out;
}

bool MpiRuntime::available() {
    return true;
}

MpiRuntime::MpiRuntime() {
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (initialized) return;
    int provided = 0;
    // Funneled: only the main thread calls MPI (OpenMP workers never do).
    check(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
    // Errors come back as return codes (and become VendorErrors) instead of aborting inside the library.
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
}

MpiRuntime::~MpiRuntime() {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Finalize();
}

bool MpiRuntime::active() {
    int initialized = 0, finalized = 0;
    MPI_Initialized(&initialized);
    MPI_Finalized(&finalized);
    return initialized && !finalized;
}

std::unique_ptr<MpiCommunicator> MpiRuntime::world() {
    auto h = std::make_unique<MpiCommunicator::Handle>();
    h->comm = MPI_COMM_WORLD;
    return std::unique_ptr<MpiCommunicator>(new MpiCommunicator(std::move(h)));
}

std::string MpiRuntime::host_name() {
    char name[MPI_MAX_PROCESSOR_NAME];
    int len = 0;
    MPI_Get_processor_name(name, &len);
    return std::string(name, size_t(len));
}

void MpiRuntime::abort_world(int exit_code) {
    MPI_Abort(MPI_COMM_WORLD, exit_code);
    std::_Exit(exit_code);
}

#else  // built without MPI

struct MpiCommunicator::Handle {};
MpiCommunicator::MpiCommunicator(std::unique_ptr<Handle> handle) : handle_(std::move(handle)) {}
MpiCommunicator::~MpiCommunicator() = default;
bool MpiCommunicator::moves(Device) const {
    return false;
}
[[noreturn]] static void no_mpi() {
    throw VendorError("this build of skyreels has no MPI (install libopenmpi-dev)");
}
void MpiCommunicator::all_to_all(const Tensor&, Tensor&) {
    no_mpi();
}
void MpiCommunicator::all_gather(const Tensor&, Tensor&) {
    no_mpi();
}
void MpiCommunicator::broadcast(Tensor&, int) {
    no_mpi();
}
void MpiCommunicator::gather(const Tensor&, std::vector<Tensor>&, int) {
    no_mpi();
}
void MpiCommunicator::barrier() {
    no_mpi();
}
std::unique_ptr<MpiCommunicator> MpiCommunicator::split(int, int) const {
    no_mpi();
}
std::unique_ptr<MpiCommunicator> MpiCommunicator::split_by_host() const {
    no_mpi();
}
int64_t MpiCommunicator::sum(int64_t) const {
    no_mpi();
}
int64_t MpiCommunicator::max(int64_t) const {
    no_mpi();
}
std::vector<int64_t> MpiCommunicator::all_values(int64_t) const {
    no_mpi();
}
std::vector<std::string> MpiCommunicator::all_strings(const std::string&) const {
    no_mpi();
}
bool MpiRuntime::available() {
    return false;
}
MpiRuntime::MpiRuntime() {
    no_mpi();
}
MpiRuntime::~MpiRuntime() = default;
bool MpiRuntime::active() {
    return false;
}
std::unique_ptr<MpiCommunicator> MpiRuntime::world() {
    no_mpi();
}
std::string MpiRuntime::host_name() {
    return {};
}
void MpiRuntime::abort_world(int exit_code) {
    std::_Exit(exit_code);
}

#endif

}  // namespace sr
