// The slot rule of a ring of pinned staging buffers, without CUDA (tests/test_cuda_host.cpp checks it): a copy
// is cut into chunks of at most the slot size, and chunk after chunk, copy after copy, takes the next slot
// round-robin. The cursor is kept across copies, so a small copy does not wait for the previous copy's DMA out
// of slot 0 while other slots are free: the host fills slot k+1 while slot k transfers, whichever copy each
// belongs to. A slot is refilled only after the transfer recorded on it has left (its event): used(slot) says
// whether one has been recorded.
//
//   sr::StagingRing ring(2, 32 << 20);
//   ring.for_each_chunk(bytes, [&](size_t offset, size_t len, int slot, bool wait) {
//       if (wait) cudaEventSynchronize(events[slot]);
//       memcpy(slots[slot], src + offset, len);  cudaMemcpyAsync(...);  cudaEventRecord(events[slot], s);
//   });
#pragma once

#include <cstddef>
#include <vector>

namespace sr {

class StagingRing {
public:
    StagingRing(int slots, size_t slot_bytes) : used_(size_t(slots > 0 ? slots : 1), false), slot_bytes_(slot_bytes) {}

    int slots() const { return int(used_.size()); }
    size_t slot_bytes() const { return slot_bytes_; }
    // The slot the next chunk goes to.
    int cursor() const { return cursor_; }

    // Takes the next slot; `wait` is true when a transfer out of it was recorded before (the caller must wait for
    // that transfer's event before overwriting the slot).
    int take(bool& wait) {
        const int slot = cursor_;
        wait = used_[size_t(slot)];
        used_[size_t(slot)] = true;
        cursor_ = (cursor_ + 1) % slots();
        return slot;
    }

    // f(offset, length, slot, wait) for each chunk of a copy of `bytes`, in order.
    template <class F>
    void for_each_chunk(size_t bytes, F&& f) {
        for (size_t off = 0; off < bytes; off += slot_bytes_) {
            const size_t len = bytes - off < slot_bytes_ ? bytes - off : slot_bytes_;
            bool wait = false;
            const int slot = take(wait);
            f(off, len, slot, wait);
        }
    }

private:
    std::vector<bool> used_;
    size_t slot_bytes_;
    int cursor_ = 0;
};

}  // namespace sr
