// A grow-only, 64-byte aligned scratch buffer: one per thread and purpose
// (thread_local), so packing allocates nothing in steady state. Shared by the
// float GEMM and the int8 GEMM.
#pragma once

#include <cstddef>
#include <new>

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

}  // namespace qforge::kernels
