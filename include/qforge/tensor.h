// Tensor: a dtype, a shape, and contiguous row-major storage shared by
// reference. Copying a Tensor copies the handle, not the bytes (clone() copies
// the bytes). A tensor of quantized integers may carry its QuantParams.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "qforge/dtype.h"
#include "qforge/error.h"

namespace qforge {

struct QuantParams;  // qforge/quant.h

using Shape = std::vector<int64_t>;

int64_t shape_numel(const Shape& s);       // 1 for a scalar (rank 0)
std::string shape_str(const Shape& s);     // "[2, 3, 4]"

// A block of bytes, 64-byte aligned when qforge allocates it. It can also
// wrap memory owned elsewhere (a memory-mapped file), kept alive by `owner`.
class Storage {
 public:
  static std::shared_ptr<Storage> allocate(size_t bytes);  // zero-filled
  // Contents unspecified: for buffers the caller fills completely.
  static std::shared_ptr<Storage> allocate_uninitialized(size_t bytes);
  static std::shared_ptr<Storage> wrap(void* data, size_t bytes, std::shared_ptr<void> owner);

  void* data() noexcept { return data_; }
  const void* data() const noexcept { return data_; }
  size_t size() const noexcept { return bytes_; }

  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
  ~Storage();

 private:
  Storage() = default;
  void* data_ = nullptr;
  size_t bytes_ = 0;
  bool owned_ = false;
  std::shared_ptr<void> owner_;
};

class Tensor {
 public:
  Tensor() = default;  // empty: no storage, dtype f32, rank 0, numel() == 0 by convention
  Tensor(DType dtype, Shape shape);  // allocates zero-filled storage

  // Copies `values` into a new tensor; values.size() must equal the shape's numel.
  template <typename T>
  static Tensor from(Shape shape, const std::vector<T>& values);
  // A tensor viewing existing storage (no copy). Throws if storage is too small.
  static Tensor view(DType dtype, Shape shape, std::shared_ptr<Storage> storage,
                     size_t byte_offset = 0);

  bool empty() const noexcept { return storage_ == nullptr; }
  DType dtype() const noexcept { return dtype_; }
  const Shape& shape() const noexcept { return shape_; }
  int rank() const noexcept { return static_cast<int>(shape_.size()); }
  int64_t dim(int i) const;  // negative i counts from the end; throws if out of range
  int64_t numel() const noexcept { return empty() ? 0 : shape_numel(shape_); }
  size_t nbytes() const noexcept { return empty() ? 0 : static_cast<size_t>(storage_bytes(dtype_, numel())); }

  void* raw() noexcept;
  const void* raw() const noexcept;
  // Typed access; throws Error(kTypeMismatch) if T does not match dtype().
  template <typename T> T* data();
  template <typename T> const T* data() const;

  // Same storage, new shape with the same numel; -1 in one place is inferred.
  Tensor reshape(Shape shape) const;
  Tensor clone() const;  // deep copy of bytes (and of quantization parameters)
  const std::shared_ptr<Storage>& storage() const noexcept { return storage_; }

  // Quantization parameters of a quantized integer tensor, or nullptr.
  const std::shared_ptr<const QuantParams>& qparams() const noexcept { return qparams_; }
  void set_qparams(std::shared_ptr<const QuantParams> q) { qparams_ = std::move(q); }

  // An optional name, used in error messages ("tensor 'conv1.weight'").
  const std::string& name() const noexcept { return name_; }
  void set_name(std::string n) { name_ = std::move(n); }
  std::string describe() const;  // "tensor 'x' f32[2, 3]"

 private:
  void check_type(DType want) const;

  DType dtype_ = DType::kF32;
  Shape shape_;
  std::shared_ptr<Storage> storage_;
  size_t offset_ = 0;
  std::shared_ptr<const QuantParams> qparams_;
  std::string name_;
};

template <typename T>
Tensor Tensor::from(Shape shape, const std::vector<T>& values) {
  Tensor t(DTypeOf<T>::value, std::move(shape));
  check(static_cast<int64_t>(values.size()) == t.numel(), Errc::kShapeMismatch,
        "Tensor::from", std::to_string(values.size()) + " values for shape " + shape_str(t.shape()),
        std::to_string(t.numel()) + " values");
  T* out = t.data<T>();
  for (size_t i = 0; i < values.size(); ++i) out[i] = values[i];
  return t;
}

template <typename T>
T* Tensor::data() {
  check_type(DTypeOf<T>::value);
  return static_cast<T*>(raw());
}

template <typename T>
const T* Tensor::data() const {
  check_type(DTypeOf<T>::value);
  return static_cast<const T*>(raw());
}

}  // namespace qforge
