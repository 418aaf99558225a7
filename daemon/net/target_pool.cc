#include "net/target_pool.h"

#include <sys/mman.h>

#include <cstdint>
#include <cstdlib>
#include <mutex>
#include <new>
#include <vector>

namespace connwatch {

namespace {

constexpr size_t kBlockBytes = 2 * 1024 * 1024;

struct Block {
  char* base = nullptr;
  size_t used = 0;     // slots handed out and not freed
  size_t carved = 0;   // slots ever carved from the block's start
  void* free = nullptr;  // freed slots (a list through their first word)
};

class Pool {
 public:
  void* Allocate(size_t size) {
    const size_t slot = (size + 63) & ~size_t{63};
    std::lock_guard<std::mutex> lock(mu_);
    if (slot_ == 0) slot_ = slot;
    if (slot != slot_ || slot > kBlockBytes) std::abort();  // one class, one size
    for (Block& b : blocks_) {
      if (b.free != nullptr) {
        void* p = b.free;
        b.free = *static_cast<void**>(p);
        ++b.used;
        return p;
      }
      if ((b.carved + 1) * slot_ <= kBlockBytes) {
        void* p = b.base + b.carved++ * slot_;
        ++b.used;
        return p;
      }
    }
    void* base = std::aligned_alloc(kBlockBytes, kBlockBytes);
    if (base == nullptr) throw std::bad_alloc();
    madvise(base, kBlockBytes, MADV_HUGEPAGE);  // best effort
    Block& b = blocks_.emplace_back();
    b.base = static_cast<char*>(base);
    b.carved = 1;
    b.used = 1;
    return b.base;
  }

  void Free(void* p) {
    std::lock_guard<std::mutex> lock(mu_);
    for (size_t i = 0; i < blocks_.size(); ++i) {
      Block& b = blocks_[i];
      if (p < b.base || p >= b.base + kBlockBytes) continue;
      *static_cast<void**>(p) = b.free;
      b.free = p;
      if (--b.used == 0 && blocks_.size() > 1) {
        // An empty block goes back (a reload that shrank the config).
        std::free(b.base);
        blocks_.erase(blocks_.begin() + static_cast<std::ptrdiff_t>(i));
      }
      return;
    }
    std::abort();  // not one of ours
  }

 private:
  std::mutex mu_;
  size_t slot_ = 0;
  std::vector<Block> blocks_;
};

Pool& ThePool() {
  static Pool* pool = new Pool();  // never destroyed: targets may outlive statics
  return *pool;
}

}  // namespace

void* AllocateTargetSlot(size_t size) { return ThePool().Allocate(size); }
void FreeTargetSlot(void* slot) { ThePool().Free(slot); }

}  // namespace connwatch
