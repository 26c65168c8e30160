// Internal: how per-axis and per-group parameters map onto a tensor's elements.
#pragma once

#include <algorithm>
#include <string>

#include "qforge/error.h"
#include "qforge/tensor.h"

namespace qforge::detail {

// The layout of per-axis and per-group parameters over a tensor of `shape`:
// outer = product of dims before axis, inner = product after, groups = number
// of scales along axis.
struct ParamLayout {
  int64_t outer = 1, axis_dim = 1, inner = 1, groups = 1, block = 1;
};

inline ParamLayout layout_of(const Shape& shape, int axis, int64_t block_size) {
  ParamLayout l;
  if (axis < 0) {
    l.axis_dim = shape_numel(shape);
    l.block = std::max<int64_t>(l.axis_dim, 1);
    return l;
  }
  for (int i = 0; i < axis; ++i) l.outer *= shape[static_cast<size_t>(i)];
  l.axis_dim = shape[static_cast<size_t>(axis)];
  for (size_t i = static_cast<size_t>(axis) + 1; i < shape.size(); ++i) l.inner *= shape[i];
  l.block = block_size > 0 ? block_size : 1;
  l.groups = block_size > 0 ? (l.axis_dim + block_size - 1) / block_size : l.axis_dim;
  return l;
}

// Index of the parameter that governs element (o, a, i).
inline int64_t param_index(const ParamLayout& l, int axis, bool blocked, int64_t o, int64_t a,
                           int64_t i) {
  if (axis < 0) return 0;
  if (!blocked) return a;
  return (o * l.groups + a / l.block) * l.inner + i;
}

inline void check_axis(const Shape& shape, int axis, int64_t block_size, const std::string& subject) {
  if (axis < 0) {
    check(block_size == 0, Errc::kInvalidArgument, subject,
          "block_size " + std::to_string(block_size) + " without an axis",
          "an axis for per-group quantization");
    return;
  }
  check(axis < static_cast<int>(shape.size()), Errc::kShapeMismatch, subject,
        "quantization axis " + std::to_string(axis) + " is out of range for shape " +
            shape_str(shape),
        "an axis in [0, " + std::to_string(shape.size()) + ")");
  check(block_size >= 0, Errc::kInvalidArgument, subject,
        "block_size " + std::to_string(block_size) + " is negative", "a block size >= 0");
}


// Calls fn(flat_index, param_index) for every element of a tensor with this
// layout, in row-major order.
template <typename Fn>
void for_each_element(const ParamLayout& l, int axis, int64_t block_size, Fn&& fn) {
  const bool blocked = axis >= 0 && block_size > 0;
  int64_t idx = 0;
  for (int64_t o = 0; o < l.outer; ++o)
    for (int64_t a = 0; a < l.axis_dim; ++a)
      for (int64_t i = 0; i < l.inner; ++i, ++idx) fn(idx, param_index(l, axis, blocked, o, a, i));
}

}  // namespace qforge::detail
