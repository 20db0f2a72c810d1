// The device the residency manager places weights on: its own budgeted memory, page-locked host memory, one
// copy engine that runs host-to-device copies in order, and a backend whose kernels run there and whose
// activations come from the device memory (so activations count against the same budget as weights).
// Two implementations: SimulatedDevice (CPU kernels, a copy thread with PCIe-like bandwidth; CI tests all
// scheduling code on it) and the CUDA device (real streams, events and cudaHostAlloc).
//
//   sr::Accelerator& dev = ...;
//   uint64_t t = dev.copy_async(dst, src, bytes, sr::CopyPath::Pinned);   // returns at once
//   dev.wait(t);                  // compute issued after this runs after the copy (an event, not a device sync)
//   uint64_t c = dev.record_compute();                                    // compute issued so far
//   dev.copy_async(dst, src2, bytes, sr::CopyPath::Pinned, c);            // overwrites dst only after it
#pragma once

#include <cstdint>
#include <string>

#include "backends/backend.h"
#include "core/allocator.h"

namespace sr {

// How a host-to-device copy reaches the device, chosen by the host memory mode:
//   Pinned:   the source is page-locked; the copy engine reads it directly at full bandwidth.
//   Pageable: ordinary memory; the driver stages it itself (on PCIe 4.0 about half the pinned rate).
//   Staged:   the accelerator copies the source (e.g. file-backed mmap pages) through its own small ring of
//             pinned chunks, overlapping that CPU copy with the transfer of the previous chunk.
enum class CopyPath : uint8_t { Pinned, Pageable, Staged };
const char* copy_path_name(CopyPath path);

struct CopyEngineStats {
    uint64_t copies = 0;
    size_t bytes = 0;
    size_t staged_bytes = 0;  // of which went through the pinned staging ring
    double busy_seconds = 0;  // time the engine spent copying
    double wait_seconds = 0;  // time compute waited for copies: copy time NOT hidden behind compute
};

class Accelerator {
public:
    virtual ~Accelerator() = default;
    virtual std::string name() const = 0;
    // Device memory: a budgeted allocator; exceeding the budget throws OutOfMemoryError naming the request.
    virtual Allocator& memory() = 0;
    // Page-locked host memory (counted: the memory report shows it).
    virtual Allocator& pinned_memory() = 0;
    // Kernels on this device; backend().allocator() is memory().
    virtual Backend& backend() = 0;
    // Queues a copy of `bytes` from host `src` to device `dst`; copies run in submission order. The copy
    // does not start before the compute marked by `after_compute` (record_compute) is done, so a buffer can be
    // refilled while compute still reads it. Returns a ticket.
    virtual uint64_t copy_async(void* dst, const void* src, size_t bytes, CopyPath path = CopyPath::Pinned,
                                uint64_t after_compute = 0) = 0;
    // Compute issued after this call runs after copy `ticket` (and every copy before it) has landed.
    virtual void wait(uint64_t ticket) = 0;
    virtual bool is_done(uint64_t ticket) = 0;
    // Blocks the host until every queued copy has landed (teardown, before freeing memory copies write to).
    virtual void drain() = 0;
    // A marker for the compute issued so far (0 where compute is synchronous with the host).
    virtual uint64_t record_compute() = 0;
    virtual CopyEngineStats stats() = 0;
    // Size of the pinned staging ring for CopyPath::Staged (allocated from pinned_memory() at the first
    // staged copy).
    virtual size_t staging_bytes() const = 0;
};

}  // namespace sr
