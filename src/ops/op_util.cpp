#include "ops/op_util.h"

#include <algorithm>
#include <cmath>

#include "kernels/kernels.h"
#include "qforge/quant.h"

namespace qforge::ops {

int64_t normalize_axis(int64_t axis, int64_t rank, const ir::Node& node) {
  QFORGE_CHECK(axis >= -rank && axis < std::max<int64_t>(rank, 1), Errc::kInvalidArgument, node.describe(),
        "has axis " + std::to_string(axis) + " for rank " + std::to_string(rank),
        "an axis in [" + std::to_string(-rank) + ", " + std::to_string(rank) + ")");
  return axis < 0 ? axis + rank : axis;
}

Shape broadcast_shapes(const Shape& a, const Shape& b, const ir::Node& node) {
  const size_t r = std::max(a.size(), b.size());
  Shape out(r);
  for (size_t i = 0; i < r; ++i) {
    const int64_t da = i < r - a.size() ? 1 : a[i - (r - a.size())];
    const int64_t db = i < r - b.size() ? 1 : b[i - (r - b.size())];
    QFORGE_CHECK(da == db || da == 1 || db == 1, Errc::kShapeMismatch, node.describe(),
          "can't broadcast " + shape_str(a) + " with " + shape_str(b),
          "dimensions that are equal or 1 (numpy broadcasting)");
    out[i] = da == 1 ? db : da;
  }
  return out;
}

ir::SymShape broadcast_sym(const ir::SymShape& a, const ir::SymShape& b, const ir::Node& node) {
  const size_t r = std::max(a.size(), b.size());
  ir::SymShape out(r);
  for (size_t i = 0; i < r; ++i) {
    const ir::Dim da = i < r - a.size() ? ir::Dim(1) : a[i - (r - a.size())];
    const ir::Dim db = i < r - b.size() ? ir::Dim(1) : b[i - (r - b.size())];
    if (da.known() && db.known()) {
      QFORGE_CHECK(da.size == db.size || da.size == 1 || db.size == 1, Errc::kShapeMismatch,
            node.describe(),
            "can't broadcast " + ir::sym_shape_str(a) + " with " + ir::sym_shape_str(b),
            "dimensions that are equal or 1 (numpy broadcasting)");
      out[i] = da.size == 1 ? db : da;
    } else if (da.known() && da.size == 1) {
      out[i] = db;
    } else if (db.known() && db.size == 1) {
      out[i] = da;
    } else if (da.known()) {
      out[i] = da;  // the other is symbolic: it must equal da (or be 1)
    } else if (db.known()) {
      out[i] = db;
    } else if (da == db) {
      out[i] = da;
    } else {
      out[i] = ir::Dim();  // two different symbols: unknown
    }
  }
  return out;
}

std::vector<int64_t> broadcast_strides(const Shape& in, const Shape& out) {
  std::vector<int64_t> s(out.size(), 0);
  int64_t stride = 1;
  for (size_t k = 0; k < in.size(); ++k) {
    const size_t i = in.size() - 1 - k;
    const size_t o = out.size() - 1 - k;
    s[o] = in[i] == 1 ? 0 : stride;
    stride *= in[i];
  }
  return s;
}

std::vector<int64_t> to_int64s(const Tensor& t, const ir::Node& node, const char* what) {
  QFORGE_CHECK(t.rank() <= 1, Errc::kShapeMismatch, node.describe(),
        std::string(what) + " has shape " + shape_str(t.shape()), "a scalar or a 1-D tensor");
  std::vector<int64_t> r(static_cast<size_t>(t.numel()));
  if (t.dtype() == DType::kI64) {
    const int64_t* p = t.data<int64_t>();
    r.assign(p, p + t.numel());
  } else if (t.dtype() == DType::kI32) {
    const int32_t* p = t.data<int32_t>();
    for (size_t i = 0; i < r.size(); ++i) r[i] = p[i];
  } else {
    bad_type(node, what, t.dtype(), "i64 or i32");
  }
  return r;
}

double to_scalar(const Tensor& t, const ir::Node& node, const char* what) {
  QFORGE_CHECK(t.numel() == 1, Errc::kShapeMismatch, node.describe(),
        std::string(what) + " has shape " + shape_str(t.shape()), "a single value");
  double v = 0;
  dispatch_numeric(t.dtype(), node, [&](auto z) {
    using T = decltype(z);
    v = static_cast<double>(*static_cast<const T*>(t.raw()));
  });
  return v;
}

void bad_type(const ir::Node& node, const char* what, DType got, const char* expected) {
  throw Error(Errc::kTypeMismatch, node.describe(),
              std::string(what) + " is " + std::string(dtype_name(got)), expected);
}

void set_output(InferContext& ctx, int i, std::optional<DType> dt,
                std::optional<ir::SymShape> shape) {
  if (i >= ctx.num_outputs()) return;
  ir::ValueInfo& o = ctx.output(i);
  o.dtype = dt;
  o.shape = std::move(shape);
}

void infer_same_as(InferContext& ctx, int input) {
  const ir::ValueInfo& in = ctx.input(input);
  set_output(ctx, 0, in.dtype, in.shape);
}

void infer_broadcast(InferContext& ctx, std::optional<DType> out) {
  std::optional<DType> dt;
  std::optional<ir::SymShape> shape = ir::SymShape{};
  for (int i = 0; i < ctx.num_inputs(); ++i) {
    if (!ctx.has_input(i)) continue;
    const ir::ValueInfo& in = ctx.input(i);
    if (!dt) dt = in.dtype;
    if (shape && in.shape) shape = broadcast_sym(*shape, *in.shape, ctx.node());
    else shape.reset();
  }
  set_output(ctx, 0, out ? out : dt, shape);
}

std::optional<std::vector<int64_t>> constant_ints(const InferContext& ctx, int i) {
  const Tensor* t = ctx.constant(i);
  if (!t || (t->dtype() != DType::kI64 && t->dtype() != DType::kI32) || t->rank() > 1)
    return std::nullopt;
  return to_int64s(*t, ctx.node(), "input");
}

Q8 read_q8(const OpContext& ctx, int scale_in, int zp_in, DType type, const std::string& what) {
  const ir::Node& node = ctx.node();
  if (type != DType::kU8 && type != DType::kI8) bad_type(node, what.c_str(), type, "u8 or i8");
  const Tensor& s = ctx.input(scale_in);
  QFORGE_CHECK(s.dtype() == DType::kF32 && s.numel() == 1 && s.rank() <= 1, Errc::kShapeMismatch, node.describe(),
        "has " + what + "'s scale of type " + std::string(dtype_name(s.dtype())) + " and shape " + shape_str(s.shape()),
        "one f32 value (per-tensor quantization)");
  Q8 q;
  q.type = type;
  q.scale = s.data<float>()[0];
  QFORGE_CHECK(std::isfinite(q.scale) && q.scale > 0, Errc::kInvalidArgument, node.describe(),
        "has " + what + "'s scale " + std::to_string(q.scale), "a finite, positive scale");
  if (ctx.has_input(zp_in)) {
    const Tensor& z = ctx.input(zp_in);
    QFORGE_CHECK(z.dtype() == type && z.numel() == 1 && z.rank() <= 1, Errc::kTypeMismatch, node.describe(),
          "has " + what + "'s zero point of type " + std::string(dtype_name(z.dtype())) + " and shape " + shape_str(z.shape()),
          "one " + std::string(dtype_name(type)) + " value");
    q.zp = type == DType::kU8 ? z.data<uint8_t>()[0] : z.data<int8_t>()[0];
  }
  return q;
}

std::array<float, 256> dequant_table(const Q8& q) {
  std::array<float, 256> t{};
  for (int b = 0; b < 256; ++b)
    t[static_cast<size_t>(b)] =
        dequantize_value(q.type == DType::kI8 ? static_cast<int8_t>(b) : b, q.scale, q.zp);
  return t;
}

void dequantize_q8(const void* x, int64_t n, const Q8& q, float* y) {
  const auto& k = kernels::kernels();
  if (q.type == DType::kU8) k.dequantize_u8(static_cast<const uint8_t*>(x), n, q.scale, q.zp, y);
  else k.dequantize_i8(static_cast<const int8_t*>(x), n, q.scale, q.zp, y);
}

void quantize_q8(const float* x, int64_t n, const Q8& q, void* y) {
  const auto& k = kernels::kernels();
  if (q.type == DType::kU8) k.quantize_u8(x, n, q.scale, q.zp, 0, 255, static_cast<uint8_t*>(y));
  else k.quantize_i8(x, n, q.scale, q.zp, -128, 127, static_cast<int8_t*>(y));
}

}  // namespace qforge::ops
