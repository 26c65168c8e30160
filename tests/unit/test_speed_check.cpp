// QuantConfig::speed_check ("never slower than float"): what it decides
// depends on the machine, so these tests hold its bookkeeping to account:
// every quantized node timed, every node it keeps float reported as such
// with the times, and the model it returns still the float model's
// function. Reference: the float model's own outputs.
#include <cmath>
#include <functional>
#include <optional>
#include <set>

#include <gtest/gtest.h>

#include "qforge/data.h"
#include "qforge/npy.h"
#include "qforge/quantize.h"
#include "qforge/session.h"
#include "quantize/float_search.h"
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

// 64 Fashion-MNIST training images, batches of 32, for the input "image".
std::unique_ptr<CalibrationDataReader> fmnist_images() {
  CalibrationOptions co;
  co.input_names = {"image"};
  co.batch.batch_size = 32;
  co.batch.limit = 64;
  return open_calibration_data("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz", co);
}

TEST(SpeedCheck, StaticKeepsTheCalibratedRangesWhenItRequantizes) {
  QuantConfig c;
  c.speed_check = true;
  auto data = fmnist_images();
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

// A static ViT (two attention layers): the nodes that lose in int8 there
// are partly attention's scores, Softmax and weighted sum, whose float
// inputs the first plan never observed. Kept float, they need ranges it
// didn't calibrate: the check calibrates them on the data again (it used to
// give up with "a calibrated range is missing") and the model it returns
// still computes the float model's function.
TEST(SpeedCheck, StaticCalibratesTheRangesAMixedModelNeeds) {
  const std::string vit = std::string(QFORGE_MODELS_DIR) + "/fmnist/vit.onnx";
  QuantConfig c;
  c.speed_check = true;
  auto data = fmnist_images();
  QuantizeReport rep;
  const ir::Model q = quantize_model(ir::load_model(vit), c, data.get(), &rep);
  for (const auto& n : rep.notes) EXPECT_EQ(n.find("range is missing"), std::string::npos) << n;
  check_report(rep, 1);
  const Tensor x = read_npy(std::string(QFORGE_MODELS_DIR) + "/fmnist/vit.input.npy");
  const Tensor want = Session(vit).run({{"image", x}})[0];
  const Tensor got = Session(q).run({{"image", x}})[0];
  ASSERT_EQ(got.shape(), want.shape());
  for (int64_t i = 0; i < want.numel(); ++i)
    EXPECT_NEAR(got.data<float>()[i], want.data<float>()[i], 0.5) << i;
}

// The search over sets of float nodes (quantize/float_search.h) on made-up
// costs: a candidate's time is cost(its float nodes), base costs 100.
// Kinds A = {a1, a2}, B = {b}, C = {c}, A having lost the most.
struct Made {
  std::set<std::string> floats;
  double cost = 0;
};

std::optional<Made> search(const std::function<double(const std::set<std::string>&)>& cost,
                           int* made = nullptr) {
  const std::vector<std::set<std::string>> kinds = {{"a1", "a2"}, {"b"}, {"c"}};
  auto make = [&](const std::set<std::string>& f) -> std::optional<Made> {
    if (made) ++*made;
    return Made{f, cost(f)};
  };
  auto time = [](const Made& a, const Made& b) { return std::make_pair(a.cost, b.cost); };
  return quantize_detail::search_float_set(Made{{}, 100}, kinds, make, time);
}

size_t count(const std::set<std::string>& s, std::initializer_list<const char*> names) {
  size_t n = 0;
  for (const char* x : names) n += s.count(x);
  return n;
}

TEST(SpeedCheck, SearchKeepsAFloatRegionWholeAndDropsWhatDoesntPay) {
  // Each float node costs 5 (a dequantize and a quantize around it); A and
  // C float together save 30 (a region that runs fused in float). Every
  // node float wins (90), and taking B out of it wins again (85).
  auto region = [](const std::set<std::string>& f) {
    return 100 + 5.0 * static_cast<double>(f.size()) - (count(f, {"a1", "a2", "c"}) == 3 ? 30 : 0);
  };
  const std::optional<Made> r = search(region);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->floats, (std::set<std::string>{"a1", "a2", "c"}));
}

TEST(SpeedCheck, SearchAddsTheOneKindThatPays) {
  // B alone float saves 10; every node float costs as much as none, and
  // taking any one kind out of it costs 10: going back from it finds
  // nothing, going forward from none finds B.
  auto one = [](const std::set<std::string>& f) {
    if (f == std::set<std::string>{"b"}) return 90.0;
    return f.size() == 4 ? 100.0 : 110.0;
  };
  const std::optional<Made> r = search(one);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->floats, (std::set<std::string>{"b"}));
}

TEST(SpeedCheck, SearchKeepsTheModelQuantizedWhenNothingIsTwoPercentFaster) {
  int made = 0;
  auto worse = [](const std::set<std::string>& f) { return 100 + static_cast<double>(f.size()); };
  EXPECT_FALSE(search(worse, &made));
  EXPECT_GT(made, 3);  // all, then forward and backward
  // 1.5% faster: within the timing noise the search allows for.
  EXPECT_FALSE(search([](const std::set<std::string>&) { return 98.5; }));
  EXPECT_TRUE(search([](const std::set<std::string>& f) { return f.size() == 4 ? 97.5 : 101; }));
}

}  // namespace
}  // namespace qforge
