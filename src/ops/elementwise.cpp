#include "ops/families.h"
#include "ops/op_util.h"

namespace qforge::ops {
namespace {

void relu_run(OpContext& ctx) {
  const Tensor& x = ctx.input(0);
  if (x.dtype() != DType::kF32) bad_type(ctx.node(), "input 0", x.dtype(), "f32");
  Tensor& y = ctx.output(0, x.dtype(), x.shape());
  const float* px = x.data<float>();
  float* py = y.data<float>();
  for (int64_t i = 0; i < x.numel(); ++i) py[i] = px[i] > 0 ? px[i] : 0.0f;
}

}  // namespace

void register_elementwise_ops(OpRegistry& r) {
  r.add({.domain = "", .op_type = "Relu", .min_opset = 1, .max_opset = 21,
         .infer = [](InferContext& c) { infer_same_as(c); }, .run = relu_run});
}

}  // namespace qforge::ops
