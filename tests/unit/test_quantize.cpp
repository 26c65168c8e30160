// Post-training quantization of whole models (qforge/quantize.h).
//
// References: the float models are checked against PyTorch elsewhere
// (test_models.cpp); here a quantized model must (a) have the structure ONNX
// Runtime's quantizer writes (weights s8 per channel behind a
// DequantizeLinear, int32 bias with scale = input scale x weight scale,
// zero point 0), (b) agree with the float model on real Fashion-MNIST
// images, and (c) take its activation ranges from qforge's observers, which
// test_torch_golden.cpp checks against PyTorch's. Agreement with ONNX
// Runtime on the same quantized model is in test_interop.cpp.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "kernels/qgemm.h"
#include "qforge/data.h"
#include "qforge/error.h"
#include "qforge/npy.h"
#include "qforge/passes.h"
#include "qforge/quantize.h"
#include "qforge/session.h"

using namespace qforge;

namespace {

const std::string kModels = QFORGE_MODELS_DIR;
const std::string kFashion = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz";

std::unique_ptr<CalibrationDataReader> fashion(int64_t limit, int64_t batch = 64) {
  CalibrationOptions o;
  o.input_names = {"image"};
  o.batch.batch_size = batch;
  o.batch.limit = limit;
  return open_calibration_data(kFashion, o);
}

// Images [offset, offset + n) of the test set as one batch.
Tensor fashion_images(int64_t n) {
  auto r = fashion(n, n);
  auto b = r->next();
  return b->at(0).second;
}

const ir::Node* producer(const ir::Graph& g, const std::string& v) {
  for (const auto& n : g.nodes)
    for (const auto& o : n.outputs)
      if (o == v) return &n;
  return nullptr;
}

int count_op(const ir::Graph& g, const std::string& op) {
  int c = 0;
  for (const auto& n : g.nodes) c += n.op_type == op;
  return c;
}

const NodeDecision* decision(const QuantizeReport& r, const std::string& op, int k = 0) {
  for (const auto& d : r.nodes)
    if (d.op_type == op && k-- == 0) return &d;
  return nullptr;
}

struct Agreement {
  double top1 = 0;     // fraction of rows whose argmax agrees
  double max_err = 0;  // largest |a - b|
  double max_ref = 0;  // largest |a|
  double mean_err = 0, mean_ref = 0;  // mean |a - b|, mean |a|
};
Agreement agree(const Tensor& a, const Tensor& b) {
  Agreement r;
  const int64_t rows = a.shape()[0], cols = a.numel() / rows;
  int64_t same = 0;
  for (int64_t i = 0; i < rows; ++i) {
    int64_t ia = 0, ib = 0;
    for (int64_t j = 0; j < cols; ++j) {
      const float x = a.data<float>()[i * cols + j], y = b.data<float>()[i * cols + j];
      if (x > a.data<float>()[i * cols + ia]) ia = j;
      if (y > b.data<float>()[i * cols + ib]) ib = j;
      r.max_err = std::max(r.max_err, static_cast<double>(std::fabs(x - y)));
      r.max_ref = std::max(r.max_ref, static_cast<double>(std::fabs(x)));
      r.mean_err += std::fabs(x - y) / static_cast<double>(a.numel());
      r.mean_ref += std::fabs(x) / static_cast<double>(a.numel());
    }
    same += ia == ib;
  }
  r.top1 = static_cast<double>(same) / static_cast<double>(rows);
  return r;
}

Tensor run1(const ir::Model& m, const std::string& input, const Tensor& x) {
  const Session s(m);
  return s.run({{input, x}})[0];
}

// ---------------------------------------------------------------- config

TEST(QuantConfig, JsonRoundTrip) {
  const QuantConfig c = QuantConfig::from_json(R"({
      "mode": "static", "format": "qop", "target": "onnxruntime",
      "activation_type": "s8", "weight_type": "int8", "per_channel": false,
      "calibration": {"method": "percentile", "percentile": 99.9, "bins": 1024},
      "exclude": ["conv1", "Gemm"],
      "op_type_overrides": {"MatMul": {"mode": "dynamic"}},
      "node_overrides": {"fc2": {"per_channel": true, "activation_type": "u8"}}})");
  EXPECT_EQ(c.format, QuantFormat::kQOperator);
  EXPECT_EQ(c.target, QuantTarget::kOnnxRuntime);
  EXPECT_EQ(c.activation_type, DType::kI8);
  EXPECT_FALSE(c.per_channel);
  EXPECT_EQ(c.method, CalibMethod::kPercentile);
  EXPECT_DOUBLE_EQ(c.percentile, 99.9);
  EXPECT_EQ(c.histogram_bins, 1024);
  EXPECT_EQ(c.exclude, (std::vector<std::string>{"conv1", "Gemm"}));
  EXPECT_EQ(c.op_type_overrides.at("MatMul").mode, QuantMode::kDynamic);
  EXPECT_EQ(c.node_overrides.at("fc2").activation_type, DType::kU8);
  EXPECT_EQ(c.node_overrides.at("fc2").per_channel, true);
  const QuantConfig back = QuantConfig::from_json(c.to_json());
  EXPECT_EQ(back.to_json(), c.to_json());
  EXPECT_EQ(back.node_overrides.at("fc2").activation_type, DType::kU8);
}

TEST(QuantConfig, BadJsonNamesTheKey) {
  auto message = [](const std::string& text) {
    try {
      QuantConfig::from_json(text, "config 'q.json'");
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message(R"({"mdoe": "static"})").find("'mdoe' is unknown"), std::string::npos);
  EXPECT_NE(message(R"({"mode": "fast"})").find("static, dynamic or float"), std::string::npos);
  EXPECT_NE(message(R"({"per_channel": "yes"})").find("per_channel"), std::string::npos);
  EXPECT_NE(message(R"({"calibration": {"percentile": 101}})").find("calibration.percentile"), std::string::npos);
  EXPECT_NE(message(R"({"node_overrides": {"a": {"mode": 3}}})").find("node_overrides.a.mode"), std::string::npos);
  EXPECT_NE(message("{").find("config 'q.json'"), std::string::npos);
  EXPECT_THROW(QuantConfig::load("/nonexistent/q.json"), Error);
}

// ---------------------------------------------------------------- static

class StaticFashionCnn : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    model_ = new ir::Model(ir::load_model(kModels + "/fashion_cnn.onnx"));
    report_ = new QuantizeReport;
    auto data = fashion(256);
    quantized_ = new ir::Model(quantize_model(*model_, QuantConfig{}, data.get(), report_));
  }
  static void TearDownTestSuite() {
    delete model_;
    delete quantized_;
    delete report_;
  }
  static ir::Model* model_;
  static ir::Model* quantized_;
  static QuantizeReport* report_;
};
ir::Model* StaticFashionCnn::model_ = nullptr;
ir::Model* StaticFashionCnn::quantized_ = nullptr;
QuantizeReport* StaticFashionCnn::report_ = nullptr;

TEST_F(StaticFashionCnn, AgreesWithTheFloatModelOnFashionMnist) {
  const Tensor x = fashion_images(256);
  const Tensor want = run1(*model_, "image", x);
  const Tensor got = run1(*quantized_, "image", x);
  const Agreement a = agree(want, got);
  EXPECT_GE(a.top1, 0.97);
  EXPECT_LE(a.mean_err, 0.03 * a.mean_ref) << "mean |float - int8| = " << a.mean_err;
  std::printf("top-1 agreement %.4f, mean |err| %.4f (mean |logit| %.3f), max |err| %.3f\n", a.top1,
              a.mean_err, a.mean_ref, a.max_err);
  // Not the float model in disguise: quantization changes the logits.
  EXPECT_GT(a.max_err, 1e-4);
}

TEST_F(StaticFashionCnn, ReportCountsAndSizes) {
  EXPECT_EQ(report_->quantized, 10);
  EXPECT_EQ(report_->kept_float, 0);
  EXPECT_EQ(report_->calibration_samples, 256);
  EXPECT_EQ(report_->calibration_batches, 4);
  EXPECT_LT(report_->bytes_after * 3, report_->bytes_before);
  EXPECT_EQ(report_->bytes_after, initializer_bytes(*quantized_));
  ASSERT_NE(decision(*report_, "Relu"), nullptr);
  EXPECT_NE(decision(*report_, "Relu")->how.find("absorbed"), std::string::npos);
}

// Weights s8 per output channel, symmetric in [-127, 127]; bias int32 with
// scale = input scale x weight scale and zero point 0; Relu dropped because
// the u8 output's zero point is 0.
TEST_F(StaticFashionCnn, WritesTheQdqFormOfOnnxRuntimesQuantizer) {
  const ir::Graph& g = quantized_->graph;
  EXPECT_EQ(count_op(g, "Relu"), 0);
  int weighted = 0;
  for (const ir::Node& n : g.nodes) {
    if (n.op_type != "Conv" && n.op_type != "Gemm") continue;
    ++weighted;
    const ir::Node* xdq = producer(g, n.inputs[0]);
    const ir::Node* wdq = producer(g, n.inputs[1]);
    const ir::Node* bdq = producer(g, n.inputs[2]);
    ASSERT_TRUE(xdq && wdq && bdq) << n.describe();
    ASSERT_EQ(wdq->op_type, "DequantizeLinear");
    const Tensor& w = *g.initializer(wdq->inputs[0]);
    const Tensor& ws = *g.initializer(wdq->inputs[1]);
    const Tensor& wz = *g.initializer(wdq->inputs[2]);
    EXPECT_EQ(w.dtype(), DType::kI8);
    EXPECT_EQ(wdq->attr_int("axis", 1), n.op_type == "Gemm" && !n.attr_int("transB", 0) ? 1 : 0);
    const int64_t channels = ws.numel();
    EXPECT_GT(channels, 1);
    bool reaches_127 = false;
    for (int64_t i = 0; i < w.numel(); ++i) {
      EXPECT_GE(w.data<int8_t>()[i], -127);
      reaches_127 = reaches_127 || std::abs(w.data<int8_t>()[i]) == 127;
    }
    EXPECT_TRUE(reaches_127);
    for (int64_t c = 0; c < channels; ++c) EXPECT_EQ(wz.data<int8_t>()[c], 0);
    const float xs = g.initializer(xdq->inputs[1])->data<float>()[0];
    const Tensor& bs = *g.initializer(bdq->inputs[1]);
    EXPECT_EQ(g.initializer(bdq->inputs[0])->dtype(), DType::kI32);
    ASSERT_EQ(bs.numel(), channels);
    for (int64_t c = 0; c < channels; ++c) EXPECT_EQ(bs.data<float>()[c], xs * ws.data<float>()[c]);
    // Output: QuantizeLinear to u8 with zero point 0 (after an absorbed Relu).
    ASSERT_EQ(n.outputs.size(), 1u);
    const ir::Node* q = nullptr;
    for (const auto& m : g.nodes)
      if (m.op_type == "QuantizeLinear" && m.inputs[0] == n.outputs[0]) q = &m;
    ASSERT_NE(q, nullptr) << n.describe();
    EXPECT_EQ(g.initializer(q->inputs[2])->dtype(), DType::kU8);
  }
  EXPECT_EQ(weighted, 4);
}

TEST_F(StaticFashionCnn, SavesAndReloads) {
  const std::string dir = std::filesystem::temp_directory_path() / "qforge_quantize_test";
  std::filesystem::create_directories(dir);
  const std::string path = dir + "/q.onnx";
  ir::save_model(*quantized_, path);  // runs the ONNX checker
  const ir::Model back = ir::load_model(path);
  const Tensor x = fashion_images(16);
  const Tensor a = run1(*quantized_, "image", x), b = run1(back, "image", x);
  for (int64_t i = 0; i < a.numel(); ++i) ASSERT_EQ(a.data<float>()[i], b.data<float>()[i]);
  std::filesystem::remove_all(dir);
}

// qforge's Session runs the QDQ groups as integer ops (passes::fuse_qdq);
// --format qop writes the same graph, so the two give identical results;
// both stay close to the float emulation of the QDQ graph (DequantizeLinear,
// float op, QuantizeLinear), which rounds the same sums in another order.
TEST_F(StaticFashionCnn, RunsAsIntegerKernels) {
  const Session s(*quantized_);
  EXPECT_EQ(count_op(s.model().graph, "Conv"), 0);
  // Each conv and the MaxPool after it as one ai.qforge QLinearConvMaxPool.
  EXPECT_EQ(count_op(s.model().graph, "QLinearConv") + count_op(s.model().graph, "QLinearConvMaxPool"), 2);
  for (const auto& n : s.model().graph.nodes)
    if (n.op_type == "MaxPool") {  // reads the u8 output of an integer conv
      const ir::Node* p = producer(s.model().graph, n.inputs[0]);
      ASSERT_NE(p, nullptr);
      EXPECT_EQ(p->op_type, "QLinearConv") << n.describe();
    }
  auto data = fashion(128);
  QuantConfig qop;
  qop.format = QuantFormat::kQOperator;
  const ir::Model q2 = quantize_model(*model_, qop, data.get());
  EXPECT_EQ(count_op(q2.graph, "QLinearConv"), 2);
  EXPECT_EQ(count_op(q2.graph, "Conv"), 0);
  SessionOptions emulate;
  emulate.optimize = false;
  const Session e(*quantized_, emulate);
  ASSERT_EQ(count_op(e.model().graph, "Conv"), 2);
  const Tensor x = fashion_images(128);
  const Tensor a = s.run({{"image", x}})[0];
  const Tensor b = e.run({{"image", x}})[0];
  // The logits' own quantization step (the last QuantizeLinear's scale).
  float step = 0;
  for (const auto& n : quantized_->graph.nodes)
    if (n.op_type == "QuantizeLinear" && n.inputs[0].rfind("logits", 0) == 0)
      step = quantized_->graph.initializer(n.inputs[1])->data<float>()[0];
  ASSERT_GT(step, 0);
  const Agreement ab = agree(a, b);
  EXPECT_GE(ab.top1, 0.99);
  EXPECT_LE(ab.mean_err, step) << "mean |integer - emulated| in logit steps: " << ab.mean_err / step;
  std::printf("integer vs float-emulated QDQ: mean %.3f, max %.1f logit steps\n", ab.mean_err / step,
              ab.max_err / step);
}

// A QDQ group whose bias scales don't match the weight's channels is not
// fused (its integer bias would be in the wrong units): it stays float
// between DequantizeLinear and QuantizeLinear, and nothing reads past a scale.
TEST_F(StaticFashionCnn, MismatchedBiasScalesAreNotFused) {
  ir::Model m = *quantized_;
  for (const ir::Node& n : m.graph.nodes) {
    if (n.op_type != "Conv") continue;
    const ir::Node* bdq = producer(m.graph, n.inputs[2]);
    ASSERT_NE(bdq, nullptr);
    // Twice as many bias scales as channels (ASan sees a read past the weight's scales).
    const Tensor& bs = *m.graph.initializer(bdq->inputs[1]);
    std::vector<float> twice(bs.data<float>(), bs.data<float>() + bs.numel());
    twice.insert(twice.end(), twice.begin(), twice.end());
    m.graph.initializers[bdq->inputs[1]] = Tensor::from<float>({static_cast<int64_t>(twice.size())}, twice);
    break;
  }
  ir::Model untouched = *quantized_;
  const int all = passes::fuse_qdq(untouched);
  EXPECT_EQ(passes::fuse_qdq(m), all - 1);
  EXPECT_EQ(count_op(m.graph, "Conv"), 1);
  EXPECT_EQ(count_op(m.graph, "QLinearConv"), 1);
}

// The calibrated range of a tensor is what an observer of the configured
// kind gives on the same activations, computed by running the float model
// with that tensor as an output.
TEST(Calibration, RangesAreTheObserversOverTheSameActivations) {
  const ir::Model m = ir::load_model(kModels + "/fashion_cnn.onnx");
  const std::string conv_out = m.graph.nodes[0].outputs[0];
  ASSERT_EQ(m.graph.nodes[0].op_type, "Conv");
  for (CalibMethod method : {CalibMethod::kMinMax, CalibMethod::kMovingAverage, CalibMethod::kEntropy,
                             CalibMethod::kPercentile, CalibMethod::kMse}) {
    QuantConfig c;
    c.method = method;
    auto data = fashion(192);
    const auto ranges = calibrate_ranges(m, {"image", conv_out}, c, *data);
    ir::Model probe = m;
    probe.graph.outputs.push_back(conv_out);
    SessionOptions so;
    so.optimize = false;
    const Session s(probe, so);
    QuantSpec spec;
    std::unique_ptr<Observer> oi, oc;
    if (method == CalibMethod::kMinMax) {
      oi = std::make_unique<MinMaxObserver>(spec);
      oc = std::make_unique<MinMaxObserver>(spec);
    } else if (method == CalibMethod::kMovingAverage) {
      oi = std::make_unique<MovingAverageMinMaxObserver>(spec);
      oc = std::make_unique<MovingAverageMinMaxObserver>(spec);
    } else {
      HistogramOptions ho;
      ho.method = method == CalibMethod::kEntropy      ? RangeMethod::kEntropy
                  : method == CalibMethod::kPercentile ? RangeMethod::kPercentile
                                                       : RangeMethod::kMse;
      oi = std::make_unique<HistogramObserver>(spec, ho);
      oc = std::make_unique<HistogramObserver>(spec, ho);
    }
    auto again = fashion(192);
    while (auto b = again->next()) {
      const auto y = s.run(*b);
      oi->observe(b->at(0).second);
      oc->observe(y[1]);
    }
    EXPECT_EQ(ranges.at("image").min, oi->range().min) << calib_method_name(method);
    EXPECT_EQ(ranges.at("image").max, oi->range().max) << calib_method_name(method);
    EXPECT_EQ(ranges.at(conv_out).min, oc->range().min) << calib_method_name(method);
    EXPECT_EQ(ranges.at(conv_out).max, oc->range().max) << calib_method_name(method);
  }
}

TEST(Calibration, ProgressIsReported) {
  const ir::Model m = ir::load_model(kModels + "/fashion_cnn.onnx");
  auto data = fashion(100, 32);
  std::vector<CalibrationProgress> seen;
  QuantizeReport r;
  quantize_model(m, QuantConfig{}, data.get(), &r, [&](const CalibrationProgress& p) { seen.push_back(p); },
                 data->num_batches());
  ASSERT_EQ(seen.size(), 4u);
  EXPECT_EQ(seen.back().batches, 4);
  EXPECT_EQ(seen.back().samples, 100);
  EXPECT_EQ(seen.back().total_batches, 4);
  EXPECT_EQ(r.calibration_samples, 100);
}

// ---------------------------------------------------------------- dynamic, mixed, exclusions

TEST(DynamicQuantization, TransformerMatMulsRunAsMatMulInteger) {
  const ir::Model m = ir::load_model(kModels + "/transformer4.onnx");
  QuantConfig c;
  c.mode = QuantMode::kDynamic;
  QuantizeReport r;
  const ir::Model q = quantize_model(m, c, nullptr, &r);
  int constant_weight_matmuls = 0;
  for (const auto& n : m.graph.nodes)
    if ((n.op_type == "MatMul" || n.op_type == "Gemm") && m.graph.initializer(n.inputs[1])) ++constant_weight_matmuls;
  EXPECT_GT(constant_weight_matmuls, 0);
  EXPECT_EQ(count_op(q.graph, "MatMulInteger"), constant_weight_matmuls);
  EXPECT_EQ(count_op(q.graph, "DynamicQuantizeLinear"), constant_weight_matmuls);
  EXPECT_EQ(count_op(q.graph, "DequantizeLinear"), 0);
  EXPECT_EQ(r.quantized, constant_weight_matmuls);
  const Tensor x = read_npy(kModels + "/transformer4.input.npy");
  const Agreement a = agree(run1(m, "input_ids", x), run1(q, "input_ids", x));
  EXPECT_EQ(a.top1, 1.0);
  EXPECT_LE(a.max_err, 0.05 * a.max_ref);
  EXPECT_GT(a.max_err, 0.0);
  EXPECT_LT(r.bytes_after * 3, r.bytes_before);
}

// reduce_range: 7-bit s8 weights ([-63, 63]), which the AVX2 int8 GEMM
// packs as safe for vpmaddubsw (kernels/qgemm.h); full-range ones are not.
TEST(DynamicQuantization, ReduceRangeGivesWeightsVpmaddubswCanTake) {
  const ir::Model m = ir::load_model(kModels + "/transformer4.onnx");
  for (const bool reduce : {false, true}) {
    QuantConfig c;
    c.mode = QuantMode::kDynamic;
    c.reduce_range = reduce;
    const ir::Model q = quantize_model(m, c);
    int weights = 0, safe = 0;
    for (const auto& n : q.graph.nodes) {
      if (n.op_type != "MatMulInteger") continue;
      const Tensor* w = q.graph.initializer(n.inputs[1]);
      ASSERT_NE(w, nullptr);
      ASSERT_EQ(w->dtype(), DType::kI8);
      ASSERT_EQ(w->shape().size(), 2u);
      const auto* codes = w->data<int8_t>();
      const auto [lo, hi] = std::minmax_element(codes, codes + w->numel());
      if (reduce) {
        EXPECT_GE(*lo, -63) << n.name;
        EXPECT_LE(*hi, 63) << n.name;
      }
      const int64_t K = w->shape()[0], N = w->shape()[1];
      ++weights;
      safe += kernels::qpack_b(true, false, K, N, codes, N).maddubs_exact() ? 1 : 0;
    }
    ASSERT_GT(weights, 0);
    EXPECT_EQ(safe, reduce ? weights : 0) << (reduce ? "reduce_range" : "full range");
    if (reduce) {
      const Tensor x = read_npy(kModels + "/transformer4.input.npy");
      EXPECT_EQ(agree(run1(m, "input_ids", x), run1(q, "input_ids", x)).top1, 1.0);
    }
  }
}

TEST(DynamicQuantization, ConvForOnnxRuntimeGetsU8WeightsAndSaysSo) {
  const ir::Model m = ir::load_model(kModels + "/fashion_cnn.onnx");
  QuantConfig c;
  c.mode = QuantMode::kDynamic;
  c.target = QuantTarget::kOnnxRuntime;
  QuantizeReport r;
  const ir::Model q = quantize_model(m, c, nullptr, &r);
  int convs = 0;
  for (const auto& n : q.graph.nodes) {
    if (n.op_type != "ConvInteger") continue;
    ++convs;
    EXPECT_EQ(q.graph.initializer(n.inputs[1])->dtype(), DType::kU8);
    EXPECT_EQ(q.graph.initializer(n.inputs[3])->numel(), 1);
  }
  EXPECT_EQ(convs, 2);
  ASSERT_EQ(r.notes.size(), 2u);
  EXPECT_NE(r.notes[0].find("ConvInteger"), std::string::npos);
  const Tensor x = fashion_images(64);
  EXPECT_GE(agree(run1(m, "image", x), run1(q, "image", x)).top1, 0.95);
}

TEST(MixedQuantization, StaticConvsAndDynamicGemmsInOneModel) {
  const ir::Model m = ir::load_model(kModels + "/fashion_cnn.onnx");
  const QuantConfig c = QuantConfig::from_json(R"({"op_type_overrides": {"Gemm": {"mode": "dynamic"}}})");
  auto data = fashion(128);
  QuantizeReport r;
  const ir::Model q = quantize_model(m, c, data.get(), &r);
  EXPECT_EQ(count_op(q.graph, "MatMulInteger"), 2);
  EXPECT_EQ(count_op(q.graph, "Gemm"), 0);
  EXPECT_EQ(count_op(q.graph, "Conv"), 2);
  EXPECT_EQ(decision(r, "Gemm")->mode, QuantMode::kDynamic);
  EXPECT_EQ(decision(r, "Conv")->mode, QuantMode::kStatic);
  const Tensor x = fashion_images(256);
  EXPECT_GE(agree(run1(m, "image", x), run1(q, "image", x)).top1, 0.97);
}

// The other direction: static nodes (the bias and residual Adds) read the
// float outputs of dynamically quantized MatMuls, and get their own
// QuantizeLinear -> DequantizeLinear there.
TEST(MixedQuantization, StaticAddsReadDynamicMatMulsInTheViT) {
  const ir::Model m = ir::load_model(kModels + "/fmnist/vit.onnx");
  const QuantConfig c = QuantConfig::from_json(R"({"op_type_overrides": {"MatMul": {"mode": "dynamic"}}})");
  auto data = fashion(128);
  QuantizeReport r;
  const ir::Model q = quantize_model(m, c, data.get(), &r);
  EXPECT_GT(count_op(q.graph, "MatMulInteger"), 0);
  EXPECT_EQ(decision(r, "Add")->mode, QuantMode::kStatic);
  // The MatMuls' float outputs are quantized for their static readers: under
  // their own names they now come from a DequantizeLinear.
  std::set<std::string> dynamic_outputs;  // the MatMuls' outputs keep their names
  for (const auto& d : r.nodes)
    if (d.op_type == "MatMul" && d.mode == QuantMode::kDynamic)
      for (const auto& n : m.graph.nodes)
        if (n.name == d.node) dynamic_outputs.insert(n.outputs[0]);
  EXPECT_FALSE(dynamic_outputs.empty());
  int requantized = 0;
  for (const auto& n : q.graph.nodes)
    requantized += n.op_type == "DequantizeLinear" && dynamic_outputs.count(n.outputs[0]);
  EXPECT_EQ(requantized, static_cast<int>(dynamic_outputs.size()));
  ir::Model fused = q;
  passes::fuse_qdq(fused);
  EXPECT_EQ(count_op(fused.graph, "Add"), 0) << "every Add runs as QLinearAdd";
  const Tensor x = fashion_images(256);
  EXPECT_GE(agree(run1(m, "image", x), run1(q, "image", x)).top1, 0.97);
}

TEST(MixedQuantization, ExcludedNodesStayFloatWithTheReason) {
  const ir::Model m = ir::load_model(kModels + "/fashion_cnn.onnx");
  QuantConfig c;
  const std::string first_conv = m.graph.nodes[0].name;
  c.exclude = {first_conv, "Gemm"};
  auto data = fashion(64);
  QuantizeReport r;
  const ir::Model q = quantize_model(m, c, data.get(), &r);
  EXPECT_EQ(decision(r, "Conv", 0)->mode, QuantMode::kFloat);
  EXPECT_EQ(decision(r, "Conv", 0)->reason, "excluded by name");
  EXPECT_EQ(decision(r, "Conv", 1)->mode, QuantMode::kStatic);
  EXPECT_EQ(decision(r, "Gemm", 0)->reason, "op type excluded");
  EXPECT_EQ(decision(r, "Gemm", 1)->reason, "op type excluded");
  // The first Conv keeps its float weight; the second one's is s8.
  int float_weights = 0;
  for (const auto& n : q.graph.nodes)
    if ((n.op_type == "Conv" || n.op_type == "Gemm") && q.graph.initializer(n.inputs[1]))
      float_weights += q.graph.initializer(n.inputs[1])->dtype() == DType::kF32;
  EXPECT_EQ(float_weights, 3);
}

// ---------------------------------------------------------------- bad input

TEST(QuantizeErrors, StaticWithoutDataSaysWhatToDo) {
  const ir::Model m = ir::load_model(kModels + "/fashion_cnn.onnx");
  try {
    quantize_model(m, QuantConfig{}, nullptr);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("calibration data"), std::string::npos) << e.what();
  }
}

TEST(QuantizeErrors, EmptyCalibrationData) {
  class Empty : public CalibrationDataReader {
   public:
    std::optional<NamedTensors> next() override { return std::nullopt; }
  } empty;
  const ir::Model m = ir::load_model(kModels + "/fashion_cnn.onnx");
  EXPECT_THROW(quantize_model(m, QuantConfig{}, &empty), Error);
}

TEST(QuantizeErrors, NanInCalibrationDataNamesTheTensor) {
  class Nan : public CalibrationDataReader {
   public:
    std::optional<NamedTensors> next() override {
      if (done_) return std::nullopt;
      done_ = true;
      Tensor x(DType::kF32, {1, 1, 28, 28});
      x.data<float>()[5] = std::nanf("");
      return NamedTensors{{"image", x}};
    }
    bool done_ = false;
  } nan;
  const ir::Model m = ir::load_model(kModels + "/fashion_cnn.onnx");
  try {
    quantize_model(m, QuantConfig{}, &nan);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'image'"), std::string::npos) << e.what();
  }
}

}  // namespace
