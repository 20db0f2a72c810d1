#include "runtime/residency.h"

#include <algorithm>
#include <cstring>
#include <utility>

#ifdef __linux__
#include <sys/mman.h>
#include <unistd.h>
#endif

namespace sr {

namespace {
constexpr size_t kAlign = 64;
size_t round_up(size_t n) {
    return (n + kAlign - 1) / kAlign * kAlign;
}
}  // namespace

size_t device_block_bytes(const WeightBlock& block) {
    size_t bytes = 0;
    for (size_t i = 0; i < block.tensors.size(); ++i)
        if (block.tensors[i].defined() && !block.is_side_path(i)) bytes += round_up(block.tensors[i].nbytes());
    return bytes;
}

size_t side_path_bytes(const WeightBlock& block) {
    size_t bytes = 0;
    for (size_t i = 0; i < block.tensors.size(); ++i)
        if (block.tensors[i].defined() && block.is_side_path(i)) bytes += round_up(block.tensors[i].nbytes());
    return bytes;
}

const char* host_memory_mode_name(HostMemoryMode mode) {
    switch (mode) {
        case HostMemoryMode::Pinned:
            return "pinned";
        case HostMemoryMode::Pageable:
            return "pageable";
        case HostMemoryMode::Mmap:
            return "mmap";
    }
    return "?";
}

HostMemoryMode parse_host_memory_mode(std::string_view text, std::string_view what) {
    if (text == "pinned") return HostMemoryMode::Pinned;
    if (text == "pageable") return HostMemoryMode::Pageable;
    if (text == "mmap") return HostMemoryMode::Mmap;
    throw InputError(fmt::format("{} '{}': expected pinned, pageable or mmap", what, text));
}

void drop_mapped_pages(const Tensor& t) {
#ifdef __linux__
    if (!t.defined() || !t.is_external_view()) return;
    const uintptr_t page = uintptr_t(sysconf(_SC_PAGESIZE));
    const uintptr_t begin = (uintptr_t(t.raw_data()) + page - 1) / page * page;  // whole pages inside the tensor:
    const uintptr_t end = (uintptr_t(t.raw_data()) + t.nbytes()) / page * page;  // neighbours keep theirs
    if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
#else
    (void)t;
#endif
}

int ResidencyPlan::streamed_blocks() const {
    return int(std::count(resident.begin(), resident.end(), false));
}

ResidencyPlan plan_residency(const std::vector<std::pair<std::string, size_t>>& blocks, const ResidencyOptions& options,
                             size_t side_path) {
    SR_THROW_IF(options.prefetch < 0 || options.prefetch > 64, "prefetch {} is out of range (0..64)", options.prefetch);
    ResidencyPlan plan;
    plan.reserve_bytes = options.reserve_bytes;
    plan.side_path_bytes = side_path;
    plan.resident.assign(blocks.size(), true);
    size_t total = 0;
    for (const auto& [name, bytes] : blocks) total += bytes;
    if (options.budget_bytes == 0 || total + side_path + options.reserve_bytes <= options.budget_bytes) {
        plan.resident_bytes = total;
        return plan;
    }
    // The side paths stay resident: what streams shares the budget left after them.
    const size_t fixed = options.reserve_bytes + side_path;
    if (fixed >= options.budget_bytes)
        throw OutOfMemoryError(fmt::format(
            "device budget {} is too small: activations and workspace{} alone need {}, with no room for weights "
            "(short by more than {})",
            format_bytes(double(options.budget_bytes)),
            side_path ? fmt::format(" and the LoRA side paths ({})", format_bytes(double(side_path))) : "",
            format_bytes(double(fixed)), format_bytes(double(fixed - options.budget_bytes))));
    const size_t avail = options.budget_bytes - fixed;
    const int want_slots = options.prefetch + 1;

    // Try each block size as the ring's slot size: blocks larger than it must stay resident; among the
    // others keep the largest resident while they fit (fewest bytes streamed), stream the rest.
    std::vector<size_t> order(blocks.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::stable_sort(order.begin(), order.end(),
                     [&](size_t a, size_t b) { return blocks[a].second > blocks[b].second; });
    bool found = false;
    ResidencyPlan best;
    for (size_t candidate : order) {
        const size_t slot = blocks[candidate].second;
        std::vector<bool> resident(blocks.size(), false);
        size_t resident_bytes = 0;
        bool ok = true;
        for (size_t i = 0; i < blocks.size(); ++i)
            if (blocks[i].second > slot) resident[i] = true, resident_bytes += blocks[i].second;
        // Ring size depends on how many blocks stream; fill greedily, then check the whole fits.
        for (size_t i : order) {
            if (resident[i]) continue;
            const int streamed_after = int(std::count(resident.begin(), resident.end(), false)) - 1;
            const size_t ring = slot * size_t(std::min(want_slots, std::max(streamed_after, 1)));
            if (resident_bytes + blocks[i].second + ring <= avail)
                resident[i] = true, resident_bytes += blocks[i].second;
        }
        const int streamed = int(std::count(resident.begin(), resident.end(), false));
        const int slots = std::min(want_slots, streamed);
        if (streamed == 0 || resident_bytes + slot * size_t(slots) > avail) ok = false;
        if (!ok) continue;
        ResidencyPlan p;
        p.side_path_bytes = side_path;
        p.resident = resident;
        p.resident_bytes = resident_bytes;
        p.slot_bytes = slot;
        p.slots = slots;
        p.streamed_bytes_per_pass = total - resident_bytes;
        p.reserve_bytes = options.reserve_bytes;
        if (!found || p.streamed_bytes_per_pass < best.streamed_bytes_per_pass ||
            (p.streamed_bytes_per_pass == best.streamed_bytes_per_pass && p.device_bytes() < best.device_bytes()))
            best = p, found = true;
    }
    if (!found) {
        // The least memory any plan needs: everything streamed through a ring sized for the largest block.
        const auto largest = *std::max_element(blocks.begin(), blocks.end(),
                                               [](const auto& x, const auto& y) { return x.second < y.second; });
        const size_t ring = largest.second * size_t(std::min<size_t>(size_t(want_slots), blocks.size()));
        const size_t need = ring + fixed;
        throw OutOfMemoryError(fmt::format(
            "device budget {} is too small: streaming needs {} ring buffer(s) of the largest block '{}' ({}) "
            "plus {} for activations and workspace{}, {} in all (short by {})",
            format_bytes(double(options.budget_bytes)), std::min<size_t>(size_t(want_slots), blocks.size()),
            largest.first, format_bytes(double(largest.second)), format_bytes(double(options.reserve_bytes)),
            side_path ? fmt::format(" and {} of LoRA side paths", format_bytes(double(side_path))) : "",
            format_bytes(double(need)), format_bytes(double(need - std::min(need, options.budget_bytes)))));
    }
    return best;
}

std::vector<bool> pinned_blocks(const std::vector<std::pair<std::string, size_t>>& blocks, const ResidencyPlan& plan,
                                const ResidencyOptions& options) {
    std::vector<bool> pinned(blocks.size(), false);
    if (options.host_memory != HostMemoryMode::Pinned) return pinned;
    const size_t budget = options.pinned_budget_bytes;
    // The staging ring is page-locked too: what the budget promises bounds both.
    SR_THROW_IF(budget && budget < options.staging_bytes,
                "--pinned-budget {}: the device's pinned staging ring alone takes {}", format_bytes(double(budget)),
                format_bytes(double(options.staging_bytes)));
    size_t bytes = options.staging_bytes;  // streamed blocks in execution order, each while it fits the budget
    for (size_t i = 0; i < blocks.size(); ++i) {
        if (plan.resident[i]) continue;
        if (budget == 0 || bytes + blocks[i].second <= budget) pinned[i] = true, bytes += blocks[i].second;
    }
    return pinned;
}

size_t planned_pinned_bytes(const std::vector<std::pair<std::string, size_t>>& blocks, const ResidencyPlan& plan,
                            const ResidencyOptions& options) {
    const std::vector<bool> pinned = pinned_blocks(blocks, plan, options);
    size_t bytes = 0;
    for (size_t i = 0; i < blocks.size(); ++i)
        if (pinned[i]) bytes += blocks[i].second;
    return bytes;
}

ResidencyManager::ResidencyManager(Accelerator& device, std::vector<WeightBlock> blocks,
                                   const ResidencyOptions& options)
    : device_(device), blocks_(std::move(blocks)) {
    // Copies read the host tensors asynchronously: they must be contiguous and outlive the copy, so any
    // strided view is made contiguous here, once, and kept.
    for (auto& b : blocks_)
        for (Tensor& t : b.tensors)
            if (t.defined() && !t.is_contiguous()) t = t.contiguous();
    std::vector<std::pair<std::string, size_t>> sizes;
    size_t side_bytes = 0;
    for (const auto& b : blocks_) {
        // The device allocator's rounding counted (a CUDA block is rounded to 2 MiB): the plan holds what the
        // budget will be charged.
        block_bytes_.push_back(device_block_bytes(b));
        sizes.emplace_back(b.name, device_.memory().block_bytes(block_bytes_.back()));
        side_bytes += side_path_bytes(b);
    }
    plan_ = plan_residency(sizes, options, side_bytes ? device_.memory().block_bytes(side_bytes) : 0);
    const CopyPath default_path =
        options.host_memory == HostMemoryMode::Pageable ? CopyPath::Pageable : CopyPath::Staged;
    sources_.assign(blocks_.size(), Source{default_path, Tensor()});
    resident_views_.resize(blocks_.size());
    resident_ticket_.assign(blocks_.size(), 0);
    resident_memory_.resize(blocks_.size());
    host_pages_dropped_.assign(blocks_.size(), false);
    side_views_.resize(blocks_.size());
    try {
        if (side_bytes) {
            // Every side path in one allocation, uploaded before any block: resident for the manager's life.
            side_memory_ = Tensor::empty({int64_t(side_bytes)}, DType::Bool, device_.memory(), "LoRA side paths");
            char* dst = static_cast<char*>(side_memory_.raw_data());
            size_t offset = 0;
            for (size_t b = 0; b < blocks_.size(); ++b) {
                side_views_[b].resize(blocks_[b].tensors.size());
                for (size_t k = 0; k < blocks_[b].tensors.size(); ++k) {
                    const Tensor& host = blocks_[b].tensors[k];
                    if (!host.defined() || !blocks_[b].is_side_path(k)) continue;
                    side_ticket_ = device_.copy_async(dst + offset, host.raw_data(), host.nbytes(), default_path);
                    side_views_[b][k] =
                        Tensor::wrap(dst + offset, host.shape(), host.dtype(), device_.memory().device(), nullptr);
                    offset += round_up(host.nbytes());
                    bytes_moved_ += host.nbytes();
                }
            }
        }
        for (size_t i = 0; i < blocks_.size(); ++i) {
            if (!plan_.resident[i]) {
                streamed_order_.push_back(i);
                continue;
            }
            resident_memory_[i] = Tensor::empty({int64_t(std::max<size_t>(sizes[i].second, 1))}, DType::Bool,
                                                device_.memory(), blocks_[i].name);
            resident_ticket_[i] = upload(i, static_cast<char*>(resident_memory_[i].raw_data()), resident_views_[i], 0);
        }
        ResidencyOptions pinning = options;
        pinning.staging_bytes = device_.staging_bytes();  // the ring counts against the pinned budget
        pin_blocks(pinned_blocks(sizes, plan_, pinning));
        for (int s = 0; s < plan_.slots; ++s) {
            Slot slot;
            slot.memory =
                Tensor::empty({int64_t(plan_.slot_bytes)}, DType::Bool, device_.memory(), "weight ring buffer");
            slots_.push_back(std::move(slot));
        }
        pump();
    } catch (...) {
        // Copies already queued write into memory this failed constructor is about to free.
        device_.drain();
        throw;
    }
}

ResidencyManager::~ResidencyManager() {
    // Copies in flight write into our memory: let them land before it goes.
    device_.drain();
}

void ResidencyManager::pin_blocks(const std::vector<bool>& pinned) {
    // Packed in the device layout, so each streamed block travels as one copy at the pinned rate.
    for (size_t i = 0; i < blocks_.size(); ++i) {
        if (!pinned[i]) continue;
        const size_t bytes = device_block_bytes(blocks_[i]);
        Tensor packed = Tensor::empty({int64_t(std::max<size_t>(bytes, 1))}, DType::Bool, device_.pinned_memory(),
                                      blocks_[i].name + " (pinned)");
        char* dst = static_cast<char*>(packed.raw_data());
        size_t offset = 0;
        for (size_t k = 0; k < blocks_[i].tensors.size(); ++k) {
            const Tensor& t = blocks_[i].tensors[k];
            if (!t.defined() || blocks_[i].is_side_path(k)) continue;  // side paths are resident already
            std::memcpy(dst + offset, t.raw_data(), t.nbytes());
            offset += round_up(t.nbytes());
            drop_mapped_pages(t);  // the pinned copy is now the host copy
        }
        sources_[i] = Source{CopyPath::Pinned, std::move(packed)};
        pinned_bytes_ += bytes;
    }
}

uint64_t ResidencyManager::upload(size_t block, char* dst, std::vector<Tensor>& views, uint64_t after_compute) {
    views.clear();
    const Source& source = sources_[block];
    uint64_t ticket = 0;
    size_t offset = 0;
    for (size_t k = 0; k < blocks_[block].tensors.size(); ++k) {
        const Tensor& host = blocks_[block].tensors[k];
        if (!host.defined()) {  // an absent optional tensor (e.g. no guidance embedder) stays absent
            views.emplace_back();
            continue;
        }
        if (blocks_[block].is_side_path(k)) {  // resident since construction: not moved with the block
            views.push_back(side_views_[block][k]);
            continue;
        }
        if (!source.packed.defined())
            ticket = device_.copy_async(dst + offset, host.raw_data(), host.nbytes(), source.path, after_compute);
        // The view's storage belongs to this manager (resident memory or a ring slot); it lives as long.
        views.push_back(Tensor::wrap(dst + offset, host.shape(), host.dtype(), device_.memory().device(), nullptr));
        offset += round_up(host.nbytes());
        bytes_moved_ += host.nbytes();
    }
    if (source.packed.defined())
        ticket = device_.copy_async(dst, source.packed.raw_data(), offset, CopyPath::Pinned, after_compute);
    copy_log_.push_back(blocks_[block].name);
    return ticket;
}

void ResidencyManager::pump() {
    if (streamed_order_.empty()) return;
    for (size_t s = 0; s < slots_.size(); ++s) {
        Slot& slot = slots_[s];
        const bool queued = std::find(in_flight_.begin(), in_flight_.end(), s) != in_flight_.end();
        if (slot.busy || queued) continue;
        if (open_ && next_streamed_ >= streamed_order_.size()) return;  // the rest of the pass is not known yet
        // A pass stated in two parts: the next pass, too, decides after its first part.
        if (split_ && wrapped_ && next_streamed_ >= first_part_) return;
        const size_t block = streamed_order_[next_streamed_];
        next_streamed_ = next_streamed_ + 1;
        if (!open_ && next_streamed_ == streamed_order_.size()) next_streamed_ = 0, wrapped_ = true;
        slot.block = int64_t(block);
        slot.ticket = upload(block, static_cast<char*>(slot.memory.raw_data()), slot.views, slot.freed_after);
        in_flight_.push_back(s);
    }
}

void ResidencyManager::begin(const std::vector<size_t>& order, bool open) {
    std::vector<size_t> streamed;
    for (size_t b : order) {
        SR_ASSERT(b < blocks_.size(), "pass order names block {} of {}", b, blocks_.size());
        if (!plan_.resident[b]) streamed.push_back(b);
    }
    for (const Slot& s : slots_) SR_ASSERT(!s.busy, "a pass begins while block {} is still acquired", s.block);
    // The copies in flight are the next blocks of the old order: keep the ones the new order wants first, in
    // that order; let the others land (they write into their slots) and forget them.
    size_t keep = 0;
    while (keep < in_flight_.size() && keep < streamed.size() &&
           slots_[in_flight_[keep]].block == int64_t(streamed[keep]))
        ++keep;
    while (in_flight_.size() > keep) {
        Slot& slot = slots_[in_flight_.back()];
        device_.wait(slot.ticket);
        slot.block = -1;
        in_flight_.pop_back();
    }
    streamed_order_ = std::move(streamed);
    open_ = open;
    split_ = wrapped_ = false;
    next_streamed_ = streamed_order_.empty() ? 0 : open ? keep : keep % streamed_order_.size();
    pump();
}

void ResidencyManager::continue_pass(const std::vector<size_t>& rest) {
    SR_ASSERT(open_, "continue_pass without an open pass");
    for (const Slot& s : slots_) SR_ASSERT(!s.busy, "a pass continues while block {} is still acquired", s.block);
    // The open part never copied past its end, and its blocks have all been handed out: nothing is in flight.
    SR_ASSERT(in_flight_.empty(), "continue_pass before the pass's first part was acquired");
    const size_t done = streamed_order_.size();
    for (size_t b : rest) {
        SR_ASSERT(b < blocks_.size(), "pass order names block {} of {}", b, blocks_.size());
        if (!plan_.resident[b]) streamed_order_.push_back(b);
    }
    open_ = false;
    // The next copy is the rest's first; after the pass's last, the prefetch wraps to its start (the next pass)
    // and stops at the end of its first part, where the next pass decides.
    split_ = true, wrapped_ = false, first_part_ = done;
    next_streamed_ = streamed_order_.empty() ? 0 : done % streamed_order_.size();
    if (!streamed_order_.empty() && next_streamed_ == 0 && done > 0) wrapped_ = true;
    pump();
}

const std::vector<Tensor>& ResidencyManager::acquire(size_t i) {
    SR_ASSERT(i < blocks_.size(), "acquire of block {} of {}", i, blocks_.size());
    if (side_ticket_) device_.wait(std::exchange(side_ticket_, 0));  // compute from here on sees the side paths
    if (plan_.resident[i]) {
        if (resident_ticket_[i]) device_.wait(resident_ticket_[i]);
        // Once the upload has landed (on a GPU the wait above is an event wait that does not block the host,
        // so ask), the host copy of a resident block is not needed by this process any more.
        if (!host_pages_dropped_[i] && device_.is_done(resident_ticket_[i])) {
            for (const Tensor& t : blocks_[i].tensors) drop_mapped_pages(t);
            host_pages_dropped_[i] = true;
        }
        return resident_views_[i];
    }
    SR_ASSERT(!in_flight_.empty() && slots_[in_flight_.front()].block == int64_t(i),
              "block '{}' acquired out of the pass's announced order", blocks_[i].name);
    Slot& slot = slots_[in_flight_.front()];
    in_flight_.pop_front();
    device_.wait(slot.ticket);
    slot.busy = true;
    streamed_bytes_ += block_bytes_[i];
    return slot.views;
}

void ResidencyManager::release(size_t i) {
    if (plan_.resident[i]) return;
    for (Slot& s : slots_)
        if (s.block == int64_t(i) && s.busy) s.busy = false, s.freed_after = device_.record_compute();
    pump();  // the freed buffer receives the next block in line
}

ResidencyStats ResidencyManager::stats() {
    const CopyEngineStats c = device_.stats();
    ResidencyStats s;
    s.bytes_moved = bytes_moved_;
    s.streamed_bytes = streamed_bytes_;
    s.pinned_bytes = pinned_bytes_;
    s.copies = c.copies;
    s.copy_seconds = c.busy_seconds;
    s.exposed_seconds = c.wait_seconds;
    return s;
}

}  // namespace sr
