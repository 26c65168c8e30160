#include "qforge/tensor.h"

#include <cstdlib>
#include <cstring>
#include <limits>
#include <new>

#include "qforge/quant.h"

namespace qforge {

int64_t shape_numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) {
    if (!(d >= 0))
      throw Error(Errc::kShapeMismatch, "shape " + shape_str(s), "has a negative dimension",
                  "dimensions >= 0");
    // No division here: the ops call numel() inside their loops.
    if (__builtin_mul_overflow(n, d, &n))
      throw Error(Errc::kShapeMismatch, "shape " + shape_str(s),
                  "has more elements than fit in 64 bits");
  }
  return n;
}

std::string shape_str(const Shape& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) {
    if (i) r += ", ";
    r += std::to_string(s[i]);
  }
  return r + "]";
}

std::shared_ptr<Storage> Storage::allocate(size_t bytes) {
  auto s = allocate_uninitialized(bytes);
  if (bytes) std::memset(s->data_, 0, (bytes + 63) / 64 * 64);
  return s;
}

std::shared_ptr<Storage> Storage::allocate_uninitialized(size_t bytes) {
  std::shared_ptr<Storage> s(new Storage());
  const size_t rounded = (bytes + 63) / 64 * 64;  // aligned_alloc needs a multiple of 64
  if (rounded > 0) {
    s->data_ = std::aligned_alloc(64, rounded);
    if (!s->data_) throw std::bad_alloc();
  }
  s->bytes_ = bytes;
  s->owned_ = true;
  return s;
}

std::shared_ptr<Storage> Storage::wrap(void* data, size_t bytes, std::shared_ptr<void> owner) {
  std::shared_ptr<Storage> s(new Storage());
  s->data_ = data;
  s->bytes_ = bytes;
  s->owner_ = std::move(owner);
  return s;
}

Storage::~Storage() {
  if (owned_) std::free(data_);
}

Tensor::Tensor(DType dtype, Shape shape) : dtype_(dtype), shape_(std::move(shape)) {
  storage_ = Storage::allocate(static_cast<size_t>(storage_bytes(dtype_, shape_numel(shape_))));
}

Tensor Tensor::view(DType dtype, Shape shape, std::shared_ptr<Storage> storage, size_t byte_offset) {
  if (!(storage != nullptr)) throw Error(Errc::kInvalidArgument, "Tensor::view", "storage is null");
  const auto need = static_cast<size_t>(storage_bytes(dtype, shape_numel(shape)));
  if (!(byte_offset <= storage->size() && need <= storage->size() - byte_offset))
    throw Error(Errc::kShapeMismatch, "Tensor::view",
                std::string(dtype_name(dtype)) + shape_str(shape) + " at offset " +
                    std::to_string(byte_offset) + " needs " + std::to_string(need) + " bytes",
                "at most " + std::to_string(storage->size()) + " bytes of storage");
  Tensor t;
  t.dtype_ = dtype;
  t.shape_ = std::move(shape);
  t.storage_ = std::move(storage);
  t.offset_ = byte_offset;
  return t;
}

int64_t Tensor::dim(int i) const {
  const int r = rank();
  const int j = i < 0 ? i + r : i;
  if (!(j >= 0 && j < r))
    throw Error(Errc::kShapeMismatch, describe(), "has no dimension " + std::to_string(i),
                "a dimension in [" + std::to_string(-r) + ", " + std::to_string(r - 1) + "]");
  return shape_[static_cast<size_t>(j)];
}

void* Tensor::raw() noexcept {
  return storage_ ? static_cast<char*>(storage_->data()) + offset_ : nullptr;
}
const void* Tensor::raw() const noexcept {
  return storage_ ? static_cast<const char*>(storage_->data()) + offset_ : nullptr;
}

void Tensor::check_type(DType want) const {
  if (!(dtype_ == want))
    throw Error(Errc::kTypeMismatch, describe(), "accessed as " + std::string(dtype_name(want)),
                std::string(dtype_name(dtype_)));
}

Tensor Tensor::reshape(Shape shape) const {
  int infer = -1;
  int64_t known = 1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == -1) {
      if (!(infer < 0))
        throw Error(Errc::kShapeMismatch, describe(),
                    "reshape to " + shape_str(shape) + " has more than one -1", "at most one -1");
      infer = static_cast<int>(i);
    } else {
      if (!(shape[i] >= 0))
        throw Error(Errc::kShapeMismatch, describe(),
                    "reshape to " + shape_str(shape) + " has a negative dimension");
      known *= shape[i];
    }
  }
  if (infer >= 0) {
    if (!(known != 0 && numel() % known == 0))
      throw Error(Errc::kShapeMismatch, describe(), "cannot infer the -1 in " + shape_str(shape));
    shape[static_cast<size_t>(infer)] = numel() / known;
  }
  if (!(shape_numel(shape) == numel()))
    throw Error(Errc::kShapeMismatch, describe(),
                "reshape to " + shape_str(shape) + " changes the element count",
                std::to_string(numel()) + " elements");
  Tensor t = *this;
  t.shape_ = std::move(shape);
  return t;
}

Tensor Tensor::clone() const {
  Tensor t = empty() ? Tensor() : Tensor(dtype_, shape_);  // an empty tensor stays empty
  if (nbytes()) std::memcpy(t.raw(), raw(), nbytes());
  if (qparams_) t.qparams_ = std::make_shared<QuantParams>(*qparams_);
  t.name_ = name_;
  return t;
}

std::string Tensor::describe() const {
  std::string r = name_.empty() ? "tensor" : "tensor '" + name_ + "'";
  return r + " " + std::string(dtype_name(dtype_)) + shape_str(shape_);
}

}  // namespace qforge
