// ai.qforge QLinearLookup(X, table) -> Y: a quantized unary op as a table of
// its 256 results. X is u8 or i8; table is a 1-D tensor of 256 codes of Y's
// type (u8 or i8), entry i the result for X's code whose byte is i XOR the
// sign bit (u8: code i; i8: code i - 128). passes::fuse_qdq builds the
// table for a DequantizeLinear -> f -> QuantizeLinear group, with f any
// elementwise op of one input, by running f on the 256 dequantized codes
// with qforge's own kernel and quantizing the results: the group's result
// for every code, one byte load per element at run time.
#include <cstring>

#include "ops/families.h"
#include "ops/op_util.h"
#include "qforge/error.h"
#include "qforge/thread_pool.h"

namespace qforge::ops {
namespace {

bool is_8bit(DType t) { return t == DType::kU8 || t == DType::kI8; }

void lookup_run(OpContext& ctx) {
  const ir::Node& node = ctx.node();
  const Tensor& x = ctx.input(0);
  const Tensor& table = ctx.input(1);
  if (!is_8bit(x.dtype())) bad_type(node, "input X", x.dtype(), "u8 or i8");
  if (!is_8bit(table.dtype())) bad_type(node, "input table", table.dtype(), "u8 or i8");
  check(table.rank() == 1 && table.numel() == 256, Errc::kShapeMismatch, node.describe(),
        "has a table of shape " + shape_str(table.shape()), "256 entries, one per input code");
  Tensor& y = ctx.output(0, table.dtype(), x.shape());
  const auto* in = static_cast<const uint8_t*>(x.raw());
  auto* out = static_cast<uint8_t*>(y.raw());
  uint8_t t[256];
  // Indexed by the code's byte: i8 codes -128..127 are bytes 128..255, 0..127.
  const int flip = x.dtype() == DType::kI8 ? 0x80 : 0;
  const auto* src = static_cast<const uint8_t*>(table.raw());
  for (int i = 0; i < 256; ++i) t[i ^ flip] = src[i];
  auto body = [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) out[i] = t[in[i]];
  };
  const int64_t n = x.numel();
  if (ctx.pool() && n >= (int64_t{1} << 16)) ctx.pool()->parallel_for(n, int64_t{1} << 15, body);
  else body(0, n);
}

void lookup_infer(InferContext& c) { set_output(c, 0, c.input(1).dtype, c.input(0).shape); }

}  // namespace

void register_lookup_ops(OpRegistry& r) {
  r.add({.domain = "ai.qforge", .op_type = "QLinearLookup", .min_opset = 1, .max_opset = 1,
         .infer = lookup_infer, .run = lookup_run});
}

}  // namespace qforge::ops
