#pragma once
// Where Target objects live: 2 MiB blocks of the address space, each asked
// to be backed by a transparent huge page, handed out slot by slot.
//
// NOTE: at 18,000 targets a periodic check was mostly the stall of its first
// touch of its Target (perf: 74% of the scheduler's time on one store, with
// the Target prefetched): the targets, 888 bytes each, spread over thousands
// of 4 KiB pages, and every check missed the TLB; in a VM such a miss is a
// two-level page walk. In huge pages 18,000 targets take 8 TLB entries.
// Without huge pages (THP "never") the blocks still keep targets together.
//
// Thread-safe (a mutex; targets are made and freed rarely: start, reload).

#include <cstddef>

namespace connwatch {

void* AllocateTargetSlot(size_t size);
void FreeTargetSlot(void* slot);

}  // namespace connwatch
