// Float ops of attention, one thread, on the shapes of transformer4
// (scripts/make_models.py: batch 32, 4 heads, 64 tokens of 64 values):
//   ./build/bench/qforge_bench --benchmark_filter='SoftmaxOp|AttentionScores|ErfGelu|AddLayerNorm'
// BM_SoftmaxOp: ONNX Softmax (opset 13, last axis) on [rows / n, n]
// (args: rows, n). BM_AttentionScores: ai.qforge TransposeMatMul as
// passes::fuse_transpose_matmul writes it for softmax(q k^T / 8), q and k
// [batch, 4, 64, 64] (arg: batch). Values/s counts the outputs.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "qforge/ir.h"
#include "qforge/op.h"

namespace {

using qforge::DType;
using qforge::Tensor;

Tensor uniform(qforge::Shape s, float lo, float hi, uint32_t seed) {
  Tensor t(DType::kF32, std::move(s));
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(lo, hi);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = u(rng);
  return t;
}

void time_op(benchmark::State& state, const std::string& domain, const std::string& op, int64_t opset,
             const std::vector<Tensor>& in, std::map<std::string, qforge::ir::Attribute> attrs) {
  qforge::ir::Node node;
  node.name = "n";
  node.domain = domain;
  node.op_type = op;
  for (size_t i = 0; i < in.size(); ++i) node.inputs.push_back("in" + std::to_string(i));
  node.outputs = {"y"};
  node.attrs = std::move(attrs);
  const qforge::ops::OpDef* def = qforge::ops::OpRegistry::global().find(domain, op, opset);
  std::vector<const Tensor*> ptrs;
  for (const auto& t : in) ptrs.push_back(&t);
  int64_t values = 0;
  for (auto _ : state) {
    qforge::ops::OpContext ctx(node, opset, ptrs, nullptr, nullptr);
    def->run(ctx);
    values = ctx.outputs()[0].numel();
    benchmark::DoNotOptimize(ctx.outputs()[0].raw());
  }
  state.counters["values/s"] = benchmark::Counter(static_cast<double>(values), benchmark::Counter::kIsIterationInvariantRate);
}

void BM_SoftmaxOp(benchmark::State& state) {
  const int64_t rows = state.range(0), n = state.range(1);
  time_op(state, "", "Softmax", 13, {uniform({rows, n}, -4.0f, 4.0f, 1)}, {});
}
BENCHMARK(BM_SoftmaxOp)->Args({8192, 64})->Args({64, 16})->Args({512, 197})->ArgNames({"rows", "n"})->UseRealTime();

void BM_AttentionScores(benchmark::State& state) {
  const int64_t b = state.range(0);
  time_op(state, "ai.qforge", "TransposeMatMul", 1,
          {uniform({b, 4, 64, 64}, -2.0f, 2.0f, 1), uniform({b, 4, 64, 64}, -2.0f, 2.0f, 2)},
          {{"perm_b", qforge::ir::Attribute::of(std::vector<int64_t>{0, 1, 3, 2})},
           {"div", qforge::ir::Attribute::of(8.0f)},
           {"softmax", qforge::ir::Attribute::of(int64_t{1})}});
}
BENCHMARK(BM_AttentionScores)->Arg(1)->Arg(32)->ArgNames({"batch"})->UseRealTime();

// ai.qforge ErfGelu as passes::fuse_erf_gelu writes PyTorch's GELU, on
// `values` floats: 16 Ki (in L1/L2) and transformer4's feed-forward
// activations at batch 32 (2048 x 1024, 8 MiB).
void BM_ErfGeluOp(benchmark::State& state) {
  time_op(state, "ai.qforge", "ErfGelu", 1, {uniform({state.range(0)}, -4.0f, 4.0f, 1)},
          {{"div", qforge::ir::Attribute::of(1.41421354f)},
           {"add", qforge::ir::Attribute::of(1.0f)},
           {"mul", qforge::ir::Attribute::of(0.5f)}});
}
BENCHMARK(BM_ErfGeluOp)->Arg(16384)->Arg(2048 * 1024)->ArgNames({"values"})->UseRealTime();

// ai.qforge AddLayerNormalization as passes::fuse_add_layernorm writes a
// post-norm residual, LayerNormalization(a + b) over rows of 256 (axis -1):
// transformer4's [rows, 256] at batch 1 (64 rows) and 32 (2048).
void BM_AddLayerNormOp(benchmark::State& state) {
  const int64_t rows = state.range(0);
  time_op(state, "ai.qforge", "AddLayerNormalization", 1,
          {uniform({rows, 256}, -2.0f, 2.0f, 1), uniform({rows, 256}, -2.0f, 2.0f, 2),
           uniform({256}, 0.5f, 1.5f, 3), uniform({256}, -0.5f, 0.5f, 4)},
          {{"axis", qforge::ir::Attribute::of(int64_t{-1})},
           {"epsilon", qforge::ir::Attribute::of(1e-5f)}});
}
BENCHMARK(BM_AddLayerNormOp)->Arg(64)->Arg(2048)->ArgNames({"rows"})->UseRealTime();

}  // namespace
