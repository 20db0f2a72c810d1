// Which file a memory-mapped address belongs to, for the SIGBUS handler: a checkpoint truncated or rewritten
// while a run maps it makes the next read of a lost page raise SIGBUS, and the handler names the file from
// the faulting address. Fixed storage, lock-free reads: mapped_file_at() is async-signal-safe.
//
//   sr::register_mapped_file(path, data, size);   // after mmap (io/safetensors.cpp's MappedFile does this)
//   sr::unregister_mapped_file(data);             // before munmap
//   const char* path = sr::mapped_file_at(info->si_addr);   // in a signal handler; nullptr when unknown
#pragma once

#include <cstddef>
#include <string>

namespace sr {

// Paths of 4096 bytes or more, or mappings beyond the first 256 at once, are not tracked.
void register_mapped_file(const std::string& path, const void* data, size_t size);
void unregister_mapped_file(const void* data);
const char* mapped_file_at(const void* address);

}  // namespace sr
