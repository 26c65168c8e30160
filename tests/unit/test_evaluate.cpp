// evaluate, benchmark, compare_models and sensitivity_scan (qforge/evaluate.h)
// on the bundled Fashion-MNIST CNN and Debian's Fashion-MNIST test images.
// References: top-1 counted here by hand from the Session's logits and the
// IDX labels; the SQNR of the logits computed here from both models'
// outputs; PyTorch 1.13's float accuracy of the trained models
// (models/fmnist/pytorch_results.json, scripts/train_fashion.py).
#include <cmath>
#include <filesystem>
#include <cstring>
#include <fstream>

#include <gtest/gtest.h>

#include "qforge/data.h"
#include "qforge/error.h"
#include "qforge/evaluate.h"
#include "qforge/npy.h"
#include "qforge/quantize.h"
#include "test_util.h"

namespace qforge {
namespace {

const std::string kModels = QFORGE_MODELS_DIR;
const std::string kCnn = kModels + "/fashion_cnn.onnx";
const std::string kTest = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz";
const std::string kTestLabels = "/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz";
const std::string kTrain = "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz";

class Evaluate : public test::TempDirTest {
 protected:
  // The CNN quantized statically on 128 training images, written to dir_.
  std::string static_model() {
    const std::string out = path("static.onnx");
    CalibrationOptions co;
    co.input_names = {"image"};
    co.batch.batch_size = 32;
    co.batch.limit = 128;
    auto data = open_calibration_data(kTrain, co);
    ir::save_model(quantize_model(ir::load_model(kCnn), QuantConfig{}, data.get()), out);
    return out;
  }
};

// The first n test images and labels, and the top-1 count by hand.
int64_t hand_top1_hits(const Session& s, int64_t n) {
  const Tensor images = idx_images_to_float(read_idx(kTest));
  const Tensor labels = read_idx(kTestLabels);
  int64_t hits = 0;
  for (int64_t i = 0; i < n; ++i) {
    Tensor x(DType::kF32, {1, 1, 28, 28});
    std::memcpy(x.raw(), images.data<float>() + i * 784, 784 * sizeof(float));
    const Tensor y = s.run({{"image", x}})[0];
    int64_t best = 0;
    for (int64_t c = 1; c < 10; ++c)
      if (y.data<float>()[c] > y.data<float>()[best]) best = c;
    hits += best == labels.data<uint8_t>()[i];
  }
  return hits;
}

TEST_F(Evaluate, Top1EqualsAHandCountOverOddBatches) {
  const Session s(kCnn);
  EvalOptions o;
  o.batch.batch_size = 7;  // 100 = 14 x 7 + 2: the last batch is short
  o.batch.limit = 100;
  int64_t progress_calls = 0;
  o.progress = [&](int64_t done, int64_t total, double) {
    ++progress_calls;
    EXPECT_EQ(total, 15);
    EXPECT_LE(done, total);
  };
  const EvalResult r = evaluate({&s}, {"cnn"}, kTest, o);
  ASSERT_EQ(r.samples, 100);
  EXPECT_EQ(progress_calls, 15);
  EXPECT_DOUBLE_EQ(r.models[0].value, static_cast<double>(hand_top1_hits(s, 100)));
  EXPECT_DOUBLE_EQ(r.models[0].agreement, 100.0);
}

TEST_F(Evaluate, Top5IsAtLeastTop1AndAgreementComparesWithTheFirstModel) {
  const std::string q = static_model();
  EvalOptions o;
  o.batch.limit = 300;
  const EvalResult t1 = evaluate({kCnn, q}, kTest, o);
  o.metric = Metric::kTop5;
  const EvalResult t5 = evaluate({kCnn, q}, kTest, o);
  for (size_t k = 0; k < 2; ++k) EXPECT_GE(t5.models[k].value, t1.models[k].value);
  EXPECT_GT(t1.models[1].agreement, 95.0);
  EXPECT_LE(t1.models[1].agreement, 100.0);
  EXPECT_GT(t1.models[0].value, 70.0);
}

TEST_F(Evaluate, MseAndCosineAgainstTheFirstModelAndAgainstAFile) {
  EvalOptions o;
  o.batch.limit = 64;
  o.metric = Metric::kMse;
  EvalResult same = evaluate({kCnn, kCnn}, kTest, o);
  EXPECT_EQ(same.models[1].value, 0.0);
  o.metric = Metric::kCosine;
  same = evaluate({kCnn, kCnn}, kTest, o);
  EXPECT_NEAR(same.models[1].value, 1.0, 1e-12);

  // Reference outputs from a file: the model's own logits, less 0.5 everywhere.
  const Session s(kCnn);
  const Tensor images = idx_images_to_float(read_idx(kTest));
  Tensor x(DType::kF32, {64, 1, 28, 28});
  std::memcpy(x.raw(), images.raw(), x.nbytes());
  Tensor y = s.run({{"image", x}})[0];
  for (int64_t i = 0; i < y.numel(); ++i) y.data<float>()[i] -= 0.5f;
  write_npy(path("ref.npy"), y);
  o.metric = Metric::kMse;
  o.labels = path("ref.npy");
  const EvalResult r = evaluate({kCnn}, kTest, o);
  EXPECT_NEAR(r.models[0].value, 0.25, 1e-5);
}

TEST_F(Evaluate, BadInputIsAClearError) {
  EvalOptions o;
  o.batch.limit = 20;
  // Fewer labels than samples.
  write_npy(path("few.npy"), Tensor::from<int64_t>({5}, {0, 1, 2, 3, 4}));
  o.labels = path("few.npy");
  test::expect_error([&] { evaluate({kCnn}, kTest, o); }, "labels '" + path("few.npy") + "'");
  // Outputs that are not class scores: ONNX's one-Relu test model on a matching .npy.
  const std::string relu = "/usr/share/libonnx-testdata/data/simple/test_single_relu_model/model.onnx";
  write_npy(path("x.npy"), Tensor::from<float>({3, 2}, {1, -1, 2, -2, 3, -3}));
  write_npy(path("y.npy"), Tensor::from<int64_t>({3}, {0, 1, 0}));
  o.labels = path("y.npy");
  // Relu's [1, 2] input is fixed: batches of one, each output [1, 2] of 2 classes.
  EvalOptions t5 = o;
  t5.metric = Metric::kTop5;
  test::expect_error([&] { evaluate({relu}, path("x.npy"), t5); }, "is not class scores for top5");
  // No labels at all.
  EvalOptions none;
  test::expect_error([&] { evaluate({relu}, path("x.npy"), none); }, "has no labels for top1");
  test::expect_error([] { parse_metric("accuracy"); }, "metric 'accuracy'");
  test::expect_error([&] { evaluate({path("missing.onnx")}, kTest, o); }, "missing.onnx");
}

TEST_F(Evaluate, CompareMatchesAHandSqnrOfTheLogitsAndFindsEveryLayer) {
  const std::string q = static_model();
  CompareOptions o;
  o.batch.limit = 64;
  const CompareResult r = compare_models(kCnn, q, kTest, o);
  EXPECT_EQ(r.samples, 64);
  ASSERT_GE(r.tensors.size(), 5u);  // two Relu after the convs, two pools, flatten, fc1 Relu, logits
  for (size_t i = 1; i < r.tensors.size(); ++i) EXPECT_LE(r.tensors[i - 1].sqnr_db, r.tensors[i].sqnr_db);
  const TensorError* logits = nullptr;
  for (const auto& t : r.tensors)
    if (t.is_output) logits = &t;
  ASSERT_NE(logits, nullptr);
  EXPECT_EQ(logits->op_type, "Gemm");
  EXPECT_EQ(logits->elements, 640);

  // The logits' SQNR by hand from both models' outputs on the same batch.
  const Session fs(kCnn), qs(q);
  const Tensor images = idx_images_to_float(read_idx(kTest));
  Tensor x(DType::kF32, {64, 1, 28, 28});
  std::memcpy(x.raw(), images.raw(), x.nbytes());
  const Tensor a = fs.run({{"image", x}})[0], b = qs.run({{"image", x}})[0];
  double xx = 0, nn = 0, mx = 0;
  for (int64_t i = 0; i < a.numel(); ++i) {
    const double u = a.data<float>()[i], d = u - b.data<float>()[i];
    xx += u * u, nn += d * d, mx = std::max(mx, std::fabs(d));
  }
  EXPECT_NEAR(logits->sqnr_db, 10 * std::log10(xx / nn), 1e-9);
  EXPECT_DOUBLE_EQ(logits->max_abs, mx);
  EXPECT_GT(logits->sqnr_db, 20.0);
}

TEST_F(Evaluate, CompareOfAModelWithItselfIsExact) {
  CompareOptions o;
  o.batch.limit = 16;
  const CompareResult r = compare_models(kCnn, kCnn, kTest, o);
  ASSERT_FALSE(r.tensors.empty());
  for (const auto& t : r.tensors) {
    EXPECT_TRUE(std::isinf(t.sqnr_db) && t.sqnr_db > 0) << t.tensor;
    EXPECT_EQ(t.max_abs, 0.0);
  }
}

TEST_F(Evaluate, SensitivityScanLeavesEachQuantizedNodeFloatInTurn) {
  EvalOptions e;
  e.batch.limit = 200;
  BatchOptions cb;
  cb.batch_size = 32;
  cb.limit = 64;
  int64_t calls = 0;
  const SensitivityResult r = sensitivity_scan(ir::load_model(kCnn), QuantConfig{}, kTrain, cb, kTest, e,
                                               [&](int64_t, int64_t, double) { ++calls; });
  // fashion_cnn: conv1, conv2, two MaxPools, Flatten, fc1, fc2 (the Relus are absorbed).
  ASSERT_EQ(r.layers.size(), 7u);
  EXPECT_EQ(calls, 7);
  for (size_t i = 1; i < r.layers.size(); ++i) EXPECT_GE(r.layers[i - 1].gain, r.layers[i].gain);
  for (const auto& l : r.layers) EXPECT_DOUBLE_EQ(l.gain, l.value - r.quant_value) << l.node;
  // Static without calibration data names what is missing.
  test::expect_error([&] { sensitivity_scan(ir::load_model(kCnn), QuantConfig{}, "", cb, kTest, e); },
                     "needs calibration data");
}

TEST_F(Evaluate, BenchmarkMeasuresEachModel) {
  BenchOptions o;
  o.batch = 4;
  o.runs = 3;
  o.warmup = 1;
  const auto r = benchmark({kCnn, kCnn}, o);
  ASSERT_EQ(r.size(), 2u);
  for (const auto& b : r) {
    EXPECT_EQ(b.file_bytes, static_cast<int64_t>(std::filesystem::file_size(kCnn)));
    EXPECT_GT(b.p50_ms, 0);
    EXPECT_LE(b.p50_ms, b.p99_ms);
    EXPECT_GT(b.load_ms, 0);
    EXPECT_GT(b.peak_rss_bytes, 0);
    EXPECT_NEAR(b.samples_per_s, 4e3 / b.mean_ms, 1e-6);
  }
  // A shape given for the input wins over the batch; throughput counts its samples.
  o.shapes = {{"image", {2, 1, 28, 28}}};
  const BenchResult two = benchmark({kCnn}, o)[0];
  EXPECT_NEAR(two.samples_per_s, 2e3 / two.mean_ms, 1e-6);
  BenchOptions bad;
  bad.batch = 0;
  test::expect_error([&] { benchmark({kCnn}, bad); }, "batch 0");
  bad = BenchOptions{};
  bad.block = 0;
  test::expect_error([&] { benchmark({kCnn}, bad); }, "block 0");
}

// Runs are timed in blocks: a number of runs that isn't a multiple of the
// block still gets exactly that many timings (a last, shorter block), and
// progress reports every block.
TEST_F(Evaluate, BenchmarkTimesRunsInBlocks) {
  BenchOptions o;
  o.runs = 7;
  o.block = 3;
  o.warmup = 0;
  std::vector<int64_t> done;
  o.progress = [&](int64_t d, int64_t total, double) {
    EXPECT_EQ(total, 7);
    done.push_back(d);
  };
  const auto r = benchmark({kCnn, kCnn}, o);
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(done, (std::vector<int64_t>{3, 6, 7}));
  for (const auto& b : r) EXPECT_GT(b.p50_ms, 0);
}

}  // namespace
}  // namespace qforge

namespace qforge {
namespace {

// A "language model" whose logits for token t are row t of a table: ids
// i64[B, T] -> Gather(table [V, V]) -> logits f32[B, T, V]. Its perplexity,
// predicting each next token, is computed here by hand (log-softmax of the
// row of the current token at the next token).
TEST_F(Evaluate, PerplexityOfNextTokensByHand) {
  const int64_t V = 5, B = 3, T = 4;
  ir::Model m;
  m.graph.name = "lm";
  m.graph.inputs = {"ids"};
  m.graph.values["ids"] = ir::ValueInfo{DType::kI64, std::vector<ir::Dim>{ir::Dim::sym("batch"), T}, {}};
  Tensor table(DType::kF32, {V, V});
  for (int64_t i = 0; i < V * V; ++i) table.data<float>()[i] = static_cast<float>((i * 7) % 11) * 0.3f - 1.0f;
  m.graph.initializers["table"] = table;
  ir::Node g;
  g.name = "embed";
  g.op_type = "Gather";
  g.inputs = {"table", "ids"};
  g.outputs = {"logits"};
  m.graph.nodes.push_back(g);
  m.graph.outputs = {"logits"};
  ir::infer_shapes(m);
  Tensor ids(DType::kI64, {B, T});
  for (int64_t i = 0; i < B * T; ++i) ids.data<int64_t>()[i] = (i * 3 + 1) % V;
  write_npy(path("ids.npy"), ids);

  double nll = 0;
  int64_t count = 0;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t + 1 < T; ++t) {
      const float* row = table.data<float>() + ids.data<int64_t>()[b * T + t] * V;
      double z = 0;
      for (int64_t v = 0; v < V; ++v) z += std::exp(static_cast<double>(row[v]));
      nll += std::log(z) - row[ids.data<int64_t>()[b * T + t + 1]];
      ++count;
    }
  const Session s(m);
  EvalOptions o;
  o.metric = Metric::kPerplexity;
  o.batch.batch_size = 2;  // 3 samples: batches of 2 and 1
  const EvalResult r = evaluate({&s}, {"lm"}, path("ids.npy"), o);
  EXPECT_EQ(r.samples, B);
  EXPECT_NEAR(r.models[0].value, std::exp(nll / static_cast<double>(count)), 1e-9);

  // With explicit targets [N, T]: every position scored against its label.
  Tensor labels(DType::kI64, {B, T});
  double nll2 = 0;
  for (int64_t i = 0; i < B * T; ++i) {
    labels.data<int64_t>()[i] = (i * 2) % V;
    const float* row = table.data<float>() + ids.data<int64_t>()[i] * V;
    double z = 0;
    for (int64_t v = 0; v < V; ++v) z += std::exp(static_cast<double>(row[v]));
    nll2 += std::log(z) - row[labels.data<int64_t>()[i]];
  }
  write_npy(path("labels.npy"), labels);
  o.labels = path("labels.npy");
  EXPECT_NEAR(evaluate({&s}, {"lm"}, path("ids.npy"), o).models[0].value,
              std::exp(nll2 / static_cast<double>(B * T)), 1e-9);
  // Targets outside the vocabulary are an error naming the value.
  labels.data<int64_t>()[5] = V;
  write_npy(path("labels.npy"), labels);
  test::expect_error([&] { evaluate({&s}, {"lm"}, path("ids.npy"), o); }, "perplexity target 5");
}

}  // namespace
}  // namespace qforge
