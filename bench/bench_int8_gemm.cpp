// The int8 GEMM (kernels/qgemm.h) on the transformer shapes of bench_gemm.cpp,
// B (weights) packed once, A u8 (zero point 128) by B s8:
//   ./build/bench/qforge_bench --benchmark_filter=Int8Gemm
// Arguments: M, N, K, threads, kernel (index into kKernels below: 0 the
// scalar reference, 1 AVX2 vpmaddwd, 2 AVX2 vpmaddubsw, 3 AVX-VNNI, 4 AVX-512
// VNNI; kernels the CPU lacks are skipped; -1 the kernel the process chose,
// kernels().qgemm, on issue 5's shapes M x K x N = 1 x 768 x 768,
// 32 x 768 x 768, 128 x 768 x 3072, 512 x 1024 x 1024 and 1 x 4096 x 4096,
// which scripts/bench_int8.sh times next to ONNX Runtime and PyTorch), bits of the s8 weights (8: full
// range, where the vpmaddubsw kernel falls back to vpmaddwd, as the label
// says; 7: [-64, 63], reduce_range's, where it runs itself). GOPS counts
// 2*M*N*K operations per call over wall-clock time,
// as bench_gemm.cpp's GFLOPS does for the float GEMM on the same shapes.
// BM_Int8Gemm writes the raw int32 sums; BM_Int8GemmRequant also
// requantizes them to u8 in the epilogue (QLinearMatMul's float64 rule).
// BM_QLinearMatMulOp / BM_QLinearConvOp / BM_QLinearConvMaxPoolOp time
// whole ops (u8 x s8, weights packed in prepare) on the process's kernels,
// path 1, against the reference implementation they must equal (quant.cpp),
// path 0; one thread.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "kernels/kernels.h"
#include "kernels/qgemm.h"
#include "ops/quant_gemm.h"
#include "qforge/ir.h"
#include "qforge/op.h"
#include "qforge/thread_pool.h"

namespace {

namespace k = qforge::kernels;

// Kernel names after their "__", in the order of the benchmarks' index.
constexpr const char* kKernels[] = {"ref", "avx2", "avx2_maddubs", "avxvnni", "avx512vnni"};

const k::QGemmKernel* find_kernel(int64_t index) {
  if (index == -1) return k::kernels().qgemm;
  if (index < 0 || index >= static_cast<int64_t>(std::size(kKernels))) return nullptr;
  const std::string want = std::string("__") + kKernels[index];
  for (const k::QGemmKernel* kr : k::qgemm_kernels()) {
    const std::string name = kr->name;
    if (name.size() >= want.size() && name.compare(name.size() - want.size(), want.size(), want) == 0)
      return kr;
  }
  return nullptr;
}

std::vector<uint8_t> random_bytes(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> d(0, 255);
  std::vector<uint8_t> v(static_cast<size_t>(n));
  for (auto& x : v) x = static_cast<uint8_t>(d(rng));
  return v;
}

void run(benchmark::State& state, k::QOutput out) {
  const int64_t M = state.range(0), N = state.range(1), K = state.range(2);
  const auto threads = static_cast<int>(state.range(3));
  const k::QGemmKernel* found = find_kernel(state.range(4));
  if (found == nullptr) {
    state.SkipWithError("this CPU lacks the kernel");
    return;
  }
  const k::QGemmKernel& kernel = *found;
  std::unique_ptr<qforge::ThreadPool> pool;
  if (threads > 1) pool = std::make_unique<qforge::ThreadPool>(threads);
  const std::vector<uint8_t> A = random_bytes(M * K, 1);
  std::vector<uint8_t> B = random_bytes(K * N, 2);
  if (state.range(5) == 7)
    for (auto& v : B) v = static_cast<uint8_t>(v % 128 - 64);  // s8 [-64, 63]
  const k::QPackedB pb = k::qpack_b(true, false, K, N, B.data(), N);
  const std::vector<int32_t> b_zp(static_cast<size_t>(N), 0);
  const std::vector<float> scale(static_cast<size_t>(N), 1e-4f);
  std::vector<int32_t> C(static_cast<size_t>(M * N));
  k::QGemmArgs a;
  a.M = M;
  a.A = A.data();
  a.lda = K;
  a.a_zp = 128;
  a.B = &pb;
  a.b_zp = b_zp.data();
  a.out = out;
  a.scale = scale.data();
  a.y_zp = 128;
  a.C = C.data();
  a.ldc = N;
  for (auto _ : state) {
    k::qgemm_with(kernel, a, pool.get());
    benchmark::DoNotOptimize(C.data());
    benchmark::ClobberMemory();
  }
  state.counters["GOPS"] = benchmark::Counter(
      2e-9 * static_cast<double>(M * N * K) * static_cast<double>(state.iterations()),
      benchmark::Counter::kIsRate);
  const bool fallback = kernel.exact != nullptr && !pb.maddubs_exact();
  state.SetLabel(fallback ? std::string(kernel.exact->name) + " (fallback: pairs could saturate)"
                          : std::string(kernel.name));
}

void BM_Int8Gemm(benchmark::State& state) {
  run(state, k::QOutput::kS32);
}
void BM_Int8GemmRequant(benchmark::State& state) {
  run(state, k::QOutput::kQ8Double);
}

constexpr std::array<std::array<int64_t, 3>, 5> kIssueShapes = {
    {{1, 768, 768}, {32, 768, 768}, {128, 3072, 768}, {512, 1024, 1024}, {1, 4096, 4096}}};

void shapes(benchmark::internal::Benchmark* b) {
  for (int64_t threads : {1, 2})
    for (auto [m, n, kk] : kIssueShapes) b->Args({m, n, kk, threads, -1, 8});
  for (int64_t kernel : {0, 1, 2, 3, 4})
    for (int64_t threads : {1, 2})
      for (auto [m, n, kk] :
           {std::array<int64_t, 3>{1, 768, 768}, {32, 768, 768}, {128, 3072, 768}})
        for (int64_t bits : {8, 7})
          if (bits == 8 || kernel == 2) b->Args({m, n, kk, threads, kernel, bits});
  b->ArgNames({"M", "N", "K", "threads", "kernel", "bits"})->UseRealTime();
}
// The dynamic Transformer's (models/transformer4.onnx) GEMMs, float out: at
// batch 1 (64 tokens x d 256: qkv, proj, ff1, ff2) and at batch 32 (M = 2048).
void transformer_shapes(benchmark::internal::Benchmark* b) {
  for (int64_t threads : {1, 2})
    for (int64_t m : {64, 2048})
      for (auto [n, kk] : {std::array<int64_t, 2>{768, 256}, {256, 256}, {1024, 256}, {256, 1024}})
        b->Args({m, n, kk, threads, -1, 8});
  b->ArgNames({"M", "N", "K", "threads", "kernel", "bits"})->UseRealTime();
}
// The Fashion-MNIST LSTM's step product (models/fmnist/lstm.onnx: hidden
// 128, 4 gates) at batch 32 on one thread: the whole batch (M = 32), and one
// of the two parts of rows that two threads take (M = 16). Then its input
// projection (28 pixels a row): all 28 steps ahead (M = 896), and a part's
// rows of one step (M = 16).
void lstm_shapes(benchmark::internal::Benchmark* b) {
  for (int64_t m : {16, 32}) b->Args({m, 512, 128, 1, -1, 8});
  for (int64_t m : {16, 896}) b->Args({m, 512, 28, 1, -1, 8});
  b->ArgNames({"M", "N", "K", "threads", "kernel", "bits"})->UseRealTime();
}
// cnn_bn's fc1 (models/fmnist/cnn_bn.onnx: 64 x 7 x 7 = 3136 inputs, 128
// outputs) at batch 1 and 32, u8 out.
void cnn_fc_shapes(benchmark::internal::Benchmark* b) {
  for (int64_t threads : {1, 2})
    for (int64_t m : {1, 32}) b->Args({m, 128, 3136, threads, -1, 8});
  b->ArgNames({"M", "N", "K", "threads", "kernel", "bits"})->UseRealTime();
}
void chosen_shapes(benchmark::internal::Benchmark* b) {
  for (int64_t threads : {1, 2})
    for (auto [m, n, kk] : kIssueShapes) b->Args({m, n, kk, threads, -1, 8});
  b->ArgNames({"M", "N", "K", "threads", "kernel", "bits"})->UseRealTime();
}

BENCHMARK(BM_Int8Gemm)->Apply(shapes);
BENCHMARK(BM_Int8GemmRequant)->Apply(chosen_shapes);
void BM_Int8GemmTransformer(benchmark::State& state) { run(state, k::QOutput::kF32); }
BENCHMARK(BM_Int8GemmTransformer)->Apply(transformer_shapes);
void BM_Int8GemmLstmStep(benchmark::State& state) { run(state, k::QOutput::kF32); }
BENCHMARK(BM_Int8GemmLstmStep)->Apply(lstm_shapes);
void BM_Int8GemmCnnFc(benchmark::State& state) { run(state, k::QOutput::kQ8Double); }
BENCHMARK(BM_Int8GemmCnnFc)->Apply(cnn_fc_shapes);

// ---- whole ops: the fast path against the reference ----

qforge::Tensor codes(qforge::DType t, qforge::Shape s, uint32_t seed) {
  qforge::Tensor x(t, std::move(s));
  const auto v = random_bytes(x.numel(), seed);
  std::copy(v.begin(), v.end(), static_cast<uint8_t*>(x.raw()));
  return x;
}
qforge::Tensor scalar(float v) {
  return qforge::Tensor::from<float>({}, {v});
}

// Runs node `op` on `in` (input w_index packed in prepare) with the
// registered kernel (path 1) or the reference (path 0).
void run_op(benchmark::State& state, const std::string& op, std::vector<qforge::Tensor> in,
            int w_index, void (*reference)(qforge::ops::OpContext&), int64_t macs,
            std::map<std::string, qforge::ir::Attribute> attrs = {}, const std::string& domain = "") {
  qforge::ir::Node node;
  node.name = "n";
  node.op_type = op;
  for (size_t i = 0; i < in.size(); ++i) node.inputs.push_back("in" + std::to_string(i));
  node.outputs = {"y"};
  node.attrs = std::move(attrs);
  node.domain = domain;
  const int64_t opset = domain.empty() ? 13 : 1;  // com.microsoft ops are version 1
  const qforge::ops::OpDef* def = qforge::ops::OpRegistry::global().find(domain, op, opset);
  std::vector<const qforge::Tensor*> ptrs, consts(in.size(), nullptr);
  for (const auto& t : in) ptrs.push_back(&t);
  consts[static_cast<size_t>(w_index)] = &in[static_cast<size_t>(w_index)];
  if (!domain.empty())  // com.microsoft: B's scales, zero points and bias are constants too
    for (size_t i = static_cast<size_t>(w_index); i < in.size(); ++i) consts[i] = &in[i];
  const bool fast = state.range(3) != 0;
  const auto st = def->prepare(qforge::ops::PrepareContext{node, opset, consts, nullptr});
  for (auto _ : state) {
    qforge::ops::OpContext ctx(node, opset, ptrs, st.get(), nullptr);
    if (fast)
      def->run(ctx);
    else
      reference(ctx);
    benchmark::DoNotOptimize(ctx.outputs()[0].raw());
  }
  state.counters["GOPS"] =
      benchmark::Counter(2e-9 * static_cast<double>(macs) * static_cast<double>(state.iterations()),
                         benchmark::Counter::kIsRate);
  state.SetLabel(fast ? qforge::kernels::kernels().qgemm->name : "reference (quant.cpp)");
}

// Args: M, N, K, path.
void BM_QLinearMatMulOp(benchmark::State& state) {
  using qforge::DType;
  const int64_t M = state.range(0), N = state.range(1), K = state.range(2);
  run_op(state, "QLinearMatMul",
         {codes(DType::kU8, {M, K}, 1), scalar(0.02f), codes(DType::kU8, {}, 2),
          codes(DType::kI8, {K, N}, 3), scalar(0.01f), qforge::Tensor::from<int8_t>({}, {0}),
          scalar(0.5f), codes(DType::kU8, {}, 4)},
         3, qforge::ops::reference::qlinear_matmul, M * N * K);
}
BENCHMARK(BM_QLinearMatMulOp)
    ->Args({32, 768, 768, 0})
    ->Args({32, 768, 768, 1})
    ->ArgNames({"M", "N", "K", "fast"})
    ->UseRealTime();

// com.microsoft DynamicQuantizeMatMul as the dynamic Transformer has it
// (models/transformer4.onnx quantized by qforge: W s8 [K, N], per-column
// scales, zero points and bias): A's range, its quantization, the int8 GEMM
// and the per-call set-up, against BM_Int8GemmTransformer's GEMM alone on
// the same shapes. Args: M, N, K, path.
void BM_DynamicQuantizeMatMulOp(benchmark::State& state) {
  using qforge::DType;
  const int64_t M = state.range(0), N = state.range(1), K = state.range(2);
  std::mt19937 rng(5);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(M * K)), ws(static_cast<size_t>(N)), bias(static_cast<size_t>(N));
  for (auto& v : x) v = nd(rng);
  for (auto& v : ws) v = 0.01f + 0.001f * std::abs(nd(rng));
  for (auto& v : bias) v = 0.1f * nd(rng);
  run_op(state, "DynamicQuantizeMatMul",
         {qforge::Tensor::from<float>({M, K}, x), codes(DType::kI8, {K, N}, 3),
          qforge::Tensor::from<float>({N}, ws),
          qforge::Tensor::from<int8_t>({N}, std::vector<int8_t>(static_cast<size_t>(N), 0)),
          qforge::Tensor::from<float>({N}, bias)},
         1, qforge::ops::reference::dynamic_quantize_matmul, M * N * K, {}, "com.microsoft");
}
BENCHMARK(BM_DynamicQuantizeMatMulOp)
    ->Args({64, 768, 256, 1})
    ->Args({64, 256, 256, 1})
    ->Args({64, 1024, 256, 1})
    ->Args({64, 256, 1024, 1})
    ->ArgNames({"M", "N", "K", "fast"})
    ->UseRealTime();

// Args: channels in, image size, channels out, path, batch; 3x3, padding 1.
void BM_QLinearConvOp(benchmark::State& state) {
  using qforge::DType;
  const int64_t C = state.range(0), HW = state.range(1), M = state.range(2), N = state.range(4);
  run_op(state, "QLinearConv",
         {codes(DType::kU8, {N, C, HW, HW}, 1), scalar(0.02f), codes(DType::kU8, {}, 2),
          codes(DType::kI8, {M, C, 3, 3}, 3), scalar(0.01f), qforge::Tensor::from<int8_t>({}, {0}),
          scalar(0.5f), codes(DType::kU8, {}, 4)},
         3, qforge::ops::reference::qlinear_conv, N * M * C * 9 * HW * HW,
         {{"pads", qforge::ir::Attribute::of(std::vector<int64_t>{1, 1, 1, 1})}});
}
BENCHMARK(BM_QLinearConvOp)
    ->Args({32, 28, 32, 0, 1})
    ->Args({32, 28, 32, 1, 1})
    ->Args({64, 56, 64, 1, 1})
    ->Args({1, 28, 32, 1, 32})  // a grayscale first layer (the Fashion-MNIST CNNs) at batch 32
    ->ArgNames({"C", "HW", "M", "fast", "N"})
    ->UseRealTime();

// ai.qforge QLinearConvMaxPool, channels-last, with a bias, as
// passes::fuse_conv_maxpool writes cnn_bn's two convolutions (3x3, padding
// 1, then MaxPool 2x2): what a batch-1 image spends in them. Args as
// BM_QLinearConvOp's.
void BM_QLinearConvMaxPoolOp(benchmark::State& state) {
  using qforge::DType;
  const int64_t C = state.range(0), HW = state.range(1), M = state.range(2), N = state.range(4);
  std::vector<int32_t> bias(static_cast<size_t>(M));
  for (size_t i = 0; i < bias.size(); ++i) bias[i] = static_cast<int32_t>(i * 37 % 200) - 100;
  run_op(state, "QLinearConvMaxPool",
         {codes(DType::kU8, {N, HW, HW, C}, 1), scalar(0.02f), codes(DType::kU8, {}, 2),
          codes(DType::kI8, {M, C, 3, 3}, 3), scalar(0.01f), qforge::Tensor::from<int8_t>({}, {0}),
          scalar(0.5f), codes(DType::kU8, {}, 4), qforge::Tensor::from<int32_t>({M}, bias)},
         3, qforge::ops::reference::qlinear_conv_maxpool, N * M * C * 9 * HW * HW,
         {{"pads", qforge::ir::Attribute::of(std::vector<int64_t>{1, 1, 1, 1})},
          {"channels_last", qforge::ir::Attribute::of(int64_t{1})}},
         "ai.qforge");
}
BENCHMARK(BM_QLinearConvMaxPoolOp)
    ->Args({1, 28, 32, 1, 1})
    ->Args({32, 14, 64, 1, 1})
    ->Args({1, 28, 32, 1, 32})
    ->Args({32, 14, 64, 1, 32})
    ->ArgNames({"C", "HW", "M", "fast", "N"})
    ->UseRealTime();

}  // namespace
