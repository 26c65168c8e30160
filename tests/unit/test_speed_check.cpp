// QuantConfig::speed_check ("never slower than float"): what it decides
// depends on the machine, so these tests hold its bookkeeping to account:
// every quantized node timed, every node it keeps float reported as such
// with the times, and the model it returns still the float model's
// function. Reference: the float model's own outputs.
#include <cmath>

#include <gtest/gtest.h>

#include "qforge/data.h"
#include "qforge/npy.h"
#include "qforge/quantize.h"
#include "qforge/session.h"
#include "test_util.h"

namespace qforge {
namespace {

const std::string kCnn = std::string(QFORGE_MODELS_DIR) + "/fashion_cnn.onnx";

void check_report(const QuantizeReport& rep, int64_t batch) {
  ASSERT_FALSE(rep.speed.empty());
  for (const SpeedDecision& s : rep.speed) {
    EXPECT_GT(s.int_ms, 0) << s.node;
    EXPECT_GT(s.float_ms, 0) << s.node;
    const NodeDecision* d = nullptr;
    for (const auto& n : rep.nodes)
      if (n.node == s.node) d = &n;
    ASSERT_NE(d, nullptr) << s.node;
    if (s.kept_float) {
      EXPECT_GT(s.int_ms, s.float_ms) << s.node;
      EXPECT_EQ(d->mode, QuantMode::kFloat) << s.node;
      EXPECT_NE(d->reason.find("slower in int8 on this CPU"), std::string::npos) << d->reason;
      EXPECT_NE(d->reason.find("batch " + std::to_string(batch)), std::string::npos) << d->reason;
    } else if (d->mode == QuantMode::kFloat) {
      // Left float only because a node before it was (its input is no longer quantized).
      EXPECT_EQ(d->reason.find("slower in int8"), std::string::npos) << d->reason;
      EXPECT_FALSE(d->reason.empty()) << s.node;
    }
  }
}

TEST(SpeedCheck, DynamicTimesEveryQuantizedNodeAndReportsWhatItKept) {
  QuantConfig c;
  c.mode = QuantMode::kDynamic;
  c.speed_check = true;
  c.speed_check_batch = 4;
  QuantizeReport rep;
  const ir::Model q = quantize_model(ir::load_model(kCnn), c, nullptr, &rep);
  EXPECT_EQ(rep.speed.size(), 4u);  // conv1, conv2, fc1, fc2
  check_report(rep, 4);
  // Whatever it kept, the model computes what the float one does (dynamic int8 error only).
  const Tensor x = read_npy(std::string(QFORGE_MODELS_DIR) + "/fashion_cnn.input.npy");
  const Tensor want = Session(kCnn).run({{"image", x}})[0];
  const Tensor got = Session(q).run({{"image", x}})[0];
  ASSERT_EQ(got.shape(), want.shape());
  for (int64_t i = 0; i < want.numel(); ++i) EXPECT_NEAR(got.data<float>()[i], want.data<float>()[i], 0.1) << i;
}

TEST(SpeedCheck, StaticKeepsTheCalibratedRangesWhenItRequantizes) {
  QuantConfig c;
  c.speed_check = true;
  CalibrationOptions co;
  co.input_names = {"image"};
  co.batch.batch_size = 32;
  co.batch.limit = 64;
  auto data = open_calibration_data("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz", co);
  QuantizeReport rep;
  const ir::Model q = quantize_model(ir::load_model(kCnn), c, data.get(), &rep);
  check_report(rep, 1);
  EXPECT_EQ(rep.quantized + rep.kept_float, static_cast<int>(rep.nodes.size()));
  const Tensor x = read_npy(std::string(QFORGE_MODELS_DIR) + "/fashion_cnn.input.npy");
  const Tensor want = Session(kCnn).run({{"image", x}})[0];
  const Tensor got = Session(q).run({{"image", x}})[0];
  for (int64_t i = 0; i < want.numel(); ++i) EXPECT_NEAR(got.data<float>()[i], want.data<float>()[i], 0.3) << i;
}

// A model whose inputs can't be made up from a batch size (a symbolic
// sequence length): the check is skipped with a note, the model still quantized.
TEST(SpeedCheck, SkippedWithANoteWhenInputsCantBeMadeUp) {
  ir::Model m;
  m.graph.name = "g";
  m.graph.inputs = {"x"};
  m.graph.values["x"] = ir::ValueInfo{DType::kF32, std::vector<ir::Dim>{ir::Dim::sym("batch"), ir::Dim::sym("seq"), 8}, {}};
  Tensor w(DType::kF32, {8, 4});
  for (int64_t i = 0; i < w.numel(); ++i) w.data<float>()[i] = 0.1f * static_cast<float>(i % 7) - 0.3f;
  m.graph.initializers["W"] = w;
  ir::Node mm;
  mm.name = "mm";
  mm.op_type = "MatMul";
  mm.inputs = {"x", "W"};
  mm.outputs = {"y"};
  m.graph.nodes = {mm};
  m.graph.outputs = {"y"};
  ir::infer_shapes(m);
  QuantConfig c;
  c.mode = QuantMode::kDynamic;
  c.speed_check = true;
  QuantizeReport rep;
  quantize_model(m, c, nullptr, &rep);
  EXPECT_EQ(rep.quantized, 1);
  EXPECT_TRUE(rep.speed.empty());
  bool noted = false;
  for (const auto& n : rep.notes) noted = noted || n.find("speed check skipped") != std::string::npos;
  EXPECT_TRUE(noted);
}

TEST(SpeedCheck, ConfigKeysAndBadBatch) {
  const QuantConfig c = QuantConfig::from_json(R"({"speed_check": true, "speed_check_batch": 8})");
  EXPECT_TRUE(c.speed_check);
  EXPECT_EQ(c.speed_check_batch, 8);
  EXPECT_EQ(QuantConfig::from_json(c.to_json()).speed_check_batch, 8);
  test::expect_error([] { QuantConfig::from_json(R"({"speed_check_batch": 0})"); }, "speed_check_batch");
  QuantConfig bad;
  bad.mode = QuantMode::kDynamic;
  bad.speed_check = true;
  bad.speed_check_batch = 0;
  test::expect_error([&] { quantize_model(ir::load_model(kCnn), bad); }, "speed_check_batch 0");
}

}  // namespace
}  // namespace qforge
