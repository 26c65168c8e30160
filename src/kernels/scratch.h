// A grow-only, 64-byte aligned scratch buffer: one per thread and purpose
// (thread_local), so packing allocates nothing in steady state. Shared by the
// float GEMM and the int8 GEMM. And CacheLineVector, a std::vector whose
// data starts on a cache line.
#pragma once

#include <cstddef>
#include <new>
#include <vector>

namespace qforge::kernels {

inline constexpr std::align_val_t kScratchAlign{64};

class Scratch {
 public:
  Scratch() = default;
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  ~Scratch() { release(); }

  // At least `count` elements of T; the contents are not kept across growth.
  template <typename T>
  T* get(size_t count) {
    const size_t bytes = count * sizeof(T);
    if (bytes > cap_) {
      release();
      data_ = ::operator new(bytes, kScratchAlign);
      cap_ = bytes;
    }
    return static_cast<T*>(data_);
  }

 private:
  void release() {
    if (data_ != nullptr) ::operator delete(data_, kScratchAlign);
    data_ = nullptr;
    cap_ = 0;
  }
  void* data_ = nullptr;
  size_t cap_ = 0;
};

// An allocator whose blocks start on a 64-byte boundary (a cache line on
// x86-64 and the Arm cores qforge targets). For buffers that threads split
// by rows and write at once: where each thread's rows start on a line of
// their own, no line holds two threads' rows, and no write of one thread
// takes the line away from the other (false sharing). And vector loads of
// rows that start on a line don't straddle two.
template <typename T>
struct CacheLineAllocator {
  using value_type = T;
  CacheLineAllocator() = default;
  template <typename U>
  CacheLineAllocator(const CacheLineAllocator<U>&) noexcept {}
  T* allocate(size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), kScratchAlign)); }
  void deallocate(T* p, size_t) noexcept { ::operator delete(p, kScratchAlign); }
  template <typename U>
  bool operator==(const CacheLineAllocator<U>&) const noexcept {
    return true;
  }
};

template <typename T>
using CacheLineVector = std::vector<T, CacheLineAllocator<T>>;

}  // namespace qforge::kernels
