// What the quantizer makes of LSTM and GRU (src/quantize/quantize.cpp):
// com.microsoft DynamicQuantizeLSTM and ai.qforge DynamicQuantizeGRU with
// weights s8 per output column (per direction with --per-tensor), in
// dynamic and static mode, under --target, exclusions and overrides.
//
// Reference: the float model; the quantized ops themselves are checked
// against a reference and against ONNX Runtime in test_ops_rnn_quant.cpp.
// The tolerance below is the error int8 weights and activations cost these
// small layers (measured ~1e-2 of the outputs' range; float vs float would
// agree to ~1e-7), so a wrong weight layout or scale shows as O(1) errors.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <string>

#include "qforge/error.h"
#include "qforge/op.h"
#include "qforge/quantize.h"
#include "qforge/session.h"
#include "test_util.h"

namespace qforge {
namespace {

using test::random_floats;

constexpr int64_t kSeq = 6, kBatch = 3, kInput = 10, kHidden = 12;

struct Layer {
  std::string name, op, direction = "forward";
  bool linear_before_reset = false;
  std::vector<int32_t> lens;  // constant sequence_lens, or none
};

int64_t dirs(const Layer& l) {
  return l.direction == "bidirectional" ? 2 : 1;
}

// X [kSeq, kBatch, kInput] -> each layer (W, R, B initializers) -> its Y, Y_h (and Y_c).
ir::Model model_of(const std::vector<Layer>& layers, uint32_t seed = 1) {
  ir::Model m;
  m.opsets = {{"", 14}};
  m.graph.name = "rnns";
  m.graph.inputs = {"X"};
  m.graph.values["X"] = ir::ValueInfo{DType::kF32, ir::to_sym({kSeq, kBatch, kInput})};
  for (const Layer& l : layers) {
    const int64_t D = dirs(l), GH = (l.op == "LSTM" ? 4 : 3) * kHidden;
    const float a = 1.0f / std::sqrt(static_cast<float>(kHidden));  // PyTorch's initialisation
    auto rnd = [&](const std::string& n, Shape s) {
      m.graph.initializers[l.name + "_" + n] =
          Tensor::from(s, random_floats(static_cast<size_t>(shape_numel(s)), -a, a, seed++));
      return l.name + "_" + n;
    };
    ir::Node n;
    n.name = l.name;
    n.op_type = l.op;
    n.inputs = {"X", rnd("W", {D, GH, kInput}), rnd("R", {D, GH, kHidden}), rnd("B", {D, 2 * GH})};
    if (!l.lens.empty()) {
      m.graph.initializers[l.name + "_lens"] = Tensor::from({kBatch}, l.lens);
      n.inputs.push_back(l.name + "_lens");
    }
    n.outputs = {l.name + "_Y", l.name + "_Y_h"};
    if (l.op == "LSTM") n.outputs.push_back(l.name + "_Y_c");
    n.attrs["hidden_size"] = ir::Attribute::of(kHidden);
    n.attrs["direction"] = ir::Attribute::of(l.direction);
    if (l.linear_before_reset) n.attrs["linear_before_reset"] = ir::Attribute::of(int64_t{1});
    m.graph.outputs.insert(m.graph.outputs.end(), n.outputs.begin(), n.outputs.end());
    m.graph.nodes.push_back(n);
  }
  return m;
}

Tensor input_x(uint32_t seed) {
  return Tensor::from({kSeq, kBatch, kInput},
                      random_floats(static_cast<size_t>(kSeq * kBatch * kInput), -2, 2, seed));
}

std::vector<Tensor> run(const ir::Model& m, const Tensor& x) {
  return Session(m).run({{"X", x}});
}

const ir::Node* node_named(const ir::Model& m, const std::string& name) {
  for (const auto& n : m.graph.nodes)
    if (n.name == name) return &n;
  return nullptr;
}

const NodeDecision* decision(const QuantizeReport& r, const std::string& node) {
  for (const auto& d : r.nodes)
    if (d.node == node) return &d;
  return nullptr;
}

// Largest |quantized - float| over every output, relative to the largest |float|.
double relative_error(const ir::Model& fm, const ir::Model& qm, uint32_t seed) {
  const Tensor x = input_x(seed);
  const std::vector<Tensor> f = run(fm, x), q = run(qm, x);
  double err = 0, ref = 0;
  for (size_t i = 0; i < f.size(); ++i) {
    EXPECT_EQ(q[i].shape(), f[i].shape());
    for (int64_t k = 0; k < f[i].numel(); ++k) {
      err = std::max(err,
                     static_cast<double>(std::fabs(q[i].data<float>()[k] - f[i].data<float>()[k])));
      ref = std::max(ref, static_cast<double>(std::fabs(f[i].data<float>()[k])));
    }
  }
  return err / ref;
}

// The quantized node's W (input 1) and W_scale as the op takes them.
void expect_weights(const ir::Model& qm, const std::string& node, int64_t D, int64_t GH,
                    bool per_channel) {
  const ir::Node* n = node_named(qm, node);
  ASSERT_NE(n, nullptr);
  const size_t ws = n->op_type == "DynamicQuantizeLSTM" ? 8 : 6;
  ASSERT_EQ(n->inputs.size(), ws + 4);
  const Tensor* W = qm.graph.initializer(n->inputs[1]);
  const Tensor* R = qm.graph.initializer(n->inputs[2]);
  const Tensor* scale = qm.graph.initializer(n->inputs[ws]);
  const Tensor* zp = qm.graph.initializer(n->inputs[ws + 1]);
  ASSERT_TRUE(W && R && scale && zp);
  EXPECT_EQ(W->dtype(), DType::kI8);
  EXPECT_EQ(W->shape(), (Shape{D, kInput, GH}));  // transposed: [dirs, input, G*H]
  EXPECT_EQ(R->shape(), (Shape{D, kHidden, GH}));
  EXPECT_EQ(scale->shape(), per_channel ? (Shape{D, GH}) : (Shape{D}));
  EXPECT_EQ(zp->dtype(), DType::kI8);
  for (int64_t i = 0; i < zp->numel(); ++i) EXPECT_EQ(zp->data<int8_t>()[i], 0);  // symmetric
}

TEST(QuantizeRecurrent, DynamicLstmAndGruBecomeQuantizedOps) {
  const std::vector<Layer> layers = {
      {"lstm_f", "LSTM"},
      {"lstm_bi", "LSTM", "bidirectional", false, {6, 2, 4}},
      {"gru_f", "GRU"},
      {"gru_bi_lbr", "GRU", "bidirectional", true, {3, 6, 1}},
  };
  const ir::Model fm = model_of(layers);
  for (bool per_channel : {true, false}) {
    SCOPED_TRACE(per_channel ? "per column" : "per direction");
    QuantConfig c;
    c.mode = QuantMode::kDynamic;
    c.per_channel = per_channel;
    QuantizeReport rep;
    const ir::Model qm = quantize_model(fm, c, nullptr, &rep);
    EXPECT_EQ(rep.quantized, 4);
    EXPECT_EQ(rep.kept_float, 0);
    for (const Layer& l : layers) {
      SCOPED_TRACE(l.name);
      const bool lstm = l.op == "LSTM";
      const ir::Node* n = node_named(qm, l.name);
      ASSERT_NE(n, nullptr);
      EXPECT_EQ(n->op_type, lstm ? "DynamicQuantizeLSTM" : "DynamicQuantizeGRU");
      EXPECT_EQ(n->domain, lstm ? "com.microsoft" : ops::kQforgeDomain);
      const NodeDecision* d = decision(rep, l.name);
      ASSERT_NE(d, nullptr);
      EXPECT_EQ(d->mode, QuantMode::kDynamic);
      EXPECT_EQ(d->how, n->op_type);
      expect_weights(qm, l.name, dirs(l), (lstm ? 4 : 3) * kHidden, per_channel);
    }
    EXPECT_EQ(qm.opsets.at("com.microsoft"), 1);
    EXPECT_EQ(qm.opsets.at(ops::kQforgeDomain), 1);
    EXPECT_LT(rep.bytes_after * 2,
              rep.bytes_before);  // float W and R gone, int8 ones in (B stays float)
    const double err = relative_error(fm, qm, 11);
    std::printf("  dynamic, %-13s max |int8 - float| / max |float| = %.4f\n",
                per_channel ? "per column" : "per direction", err);
    EXPECT_LT(err, per_channel ? 0.03 : 0.05);
    EXPECT_GT(err, 1e-4);  // it is quantized
  }
}

TEST(QuantizeRecurrent, StaticModeQuantizesThemDynamically) {
  const ir::Model fm = model_of({{"lstm0", "LSTM", "reverse"}, {"gru0", "GRU"}});
  QuantizeReport rep;
  // No calibration data: nothing is left to calibrate.
  const ir::Model qm = quantize_model(fm, QuantConfig{}, nullptr, &rep);
  for (const char* name : {"lstm0", "gru0"}) {
    const NodeDecision* d = decision(rep, name);
    ASSERT_NE(d, nullptr);
    EXPECT_EQ(d->mode, QuantMode::kDynamic) << name;
  }
  int notes = 0;
  for (const auto& n : rep.notes)
    notes += n.find("no static integer form") != std::string::npos &&
             n.find("as PyTorch does") != std::string::npos;
  EXPECT_EQ(notes, 2);
  EXPECT_LT(relative_error(fm, qm, 12), 0.03);
}

TEST(QuantizeRecurrent, TargetOnnxRuntimeKeepsGruFloat) {
  const ir::Model fm = model_of({{"lstm0", "LSTM", "bidirectional"}, {"gru0", "GRU"}});
  QuantConfig c;
  c.mode = QuantMode::kDynamic;
  c.target = QuantTarget::kOnnxRuntime;
  QuantizeReport rep;
  const ir::Model qm = quantize_model(fm, c, nullptr, &rep);
  EXPECT_EQ(node_named(qm, "lstm0")->op_type, "DynamicQuantizeLSTM");
  EXPECT_EQ(node_named(qm, "gru0")->op_type, "GRU");
  const NodeDecision* d = decision(rep, "gru0");
  ASSERT_NE(d, nullptr);
  EXPECT_EQ(d->mode, QuantMode::kFloat);
  EXPECT_NE(d->reason.find("ONNX Runtime has no dynamically quantized GRU"), std::string::npos)
      << d->reason;
  EXPECT_FALSE(qm.opsets.count(ops::kQforgeDomain));  // nothing but ONNX Runtime's ops

  // u8 weights: ONNX Runtime takes one zero point per direction.
  c.weight_type = DType::kU8;
  const ir::Model qu = quantize_model(fm, c, nullptr, &rep);
  const ir::Node* n = node_named(qu, "lstm0");
  EXPECT_EQ(qu.graph.initializer(n->inputs[1])->dtype(), DType::kU8);
  EXPECT_EQ(qu.graph.initializer(n->inputs[8])->shape(), (Shape{2}));
  bool noted = false;
  for (const auto& note : rep.notes)
    noted = noted || note.find("u8 per direction") != std::string::npos;
  EXPECT_TRUE(noted);
  EXPECT_LT(relative_error(fm, qu, 13), 0.05);
}

TEST(QuantizeRecurrent, ExclusionsAndOverrides) {
  const ir::Model fm =
      model_of({{"lstm0", "LSTM"}, {"lstm1", "LSTM"}, {"gru0", "GRU"}, {"gru1", "GRU"}});
  QuantConfig c;
  c.mode = QuantMode::kDynamic;
  c.exclude = {"gru0"};
  c.op_type_overrides["LSTM"].per_channel = false;
  c.node_overrides["lstm1"].mode = QuantMode::kFloat;
  QuantizeReport rep;
  const ir::Model qm = quantize_model(fm, c, nullptr, &rep);
  EXPECT_EQ(decision(rep, "gru0")->reason, "excluded by name");
  EXPECT_EQ(decision(rep, "lstm1")->reason, "config says float");
  EXPECT_EQ(node_named(qm, "gru1")->op_type, "DynamicQuantizeGRU");
  expect_weights(qm, "lstm0", 1, 4 * kHidden, false);  // the op type's override
  expect_weights(qm, "gru1", 1, 3 * kHidden, true);
  c.exclude = {"GRU"};
  const ir::Model q2 = quantize_model(fm, c, nullptr, &rep);
  EXPECT_EQ(node_named(q2, "gru1")->op_type, "GRU");
  EXPECT_EQ(decision(rep, "gru1")->reason, "op type excluded");
}

TEST(QuantizeRecurrent, LayoutOneStaysFloat) {
  ir::Model fm = model_of({{"lstm0", "LSTM"}});
  fm.graph.nodes[0].attrs["layout"] = ir::Attribute::of(int64_t{1});
  QuantConfig c;
  c.mode = QuantMode::kDynamic;
  QuantizeReport rep;
  quantize_model(fm, c, nullptr, &rep);
  EXPECT_NE(decision(rep, "lstm0")->reason.find("layout 1"), std::string::npos);
}

class QuantizeRecurrentFiles : public test::TempDirTest {};

TEST_F(QuantizeRecurrentFiles, SavedModelPassesTheCheckerAndRunsTheSame) {
  const ir::Model fm = model_of({{"lstm0", "LSTM", "bidirectional"}, {"gru0", "GRU", "reverse"}});
  QuantConfig c;
  c.mode = QuantMode::kDynamic;
  const ir::Model qm = quantize_model(fm, c);
  const std::string p = path("q.onnx");
  ir::save_model(qm, p);  // the ONNX checker runs
  const ir::Model back = ir::load_model(p);
  const Tensor x = input_x(14);
  const std::vector<Tensor> a = run(qm, x), b = run(back, x);
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i)
    EXPECT_TRUE(
        std::equal(a[i].data<float>(), a[i].data<float>() + a[i].numel(), b[i].data<float>()));
}

// A static MatMul reading an LSTM's Y_h: the LSTM is quantized dynamically,
// and its output gets the QuantizeLinear/DequantizeLinear pair the MatMul's
// integer kernel needs.
TEST(QuantizeRecurrent, StaticReaderOfAnLstmOutput) {
  ir::Model fm = model_of({{"lstm0", "LSTM"}});
  fm.graph.initializers["fc_W"] =
      Tensor::from({kHidden, 5}, random_floats(static_cast<size_t>(kHidden * 5), -0.5f, 0.5f, 77));
  ir::Node mm;
  mm.name = "fc";
  mm.op_type = "MatMul";
  mm.inputs = {"lstm0_Y_h", "fc_W"};
  mm.outputs = {"logits"};
  fm.graph.nodes.push_back(mm);
  fm.graph.outputs = {"logits"};
  class Batches : public CalibrationDataReader {
   public:
    std::optional<NamedTensors> next() override {
      if (i_ == 4) return std::nullopt;
      return NamedTensors{{"X", input_x(static_cast<uint32_t>(100 + i_++))}};
    }
    int i_ = 0;
  } data;
  QuantizeReport rep;
  const ir::Model qm = quantize_model(fm, QuantConfig{}, &data, &rep);
  EXPECT_EQ(decision(rep, "lstm0")->how, "DynamicQuantizeLSTM");
  EXPECT_EQ(decision(rep, "fc")->how, "QLinearMatMul");
  const ir::Node* lstm = node_named(qm, "lstm0");
  ASSERT_NE(lstm, nullptr);
  bool quantized_yh = false;
  for (const auto& n : qm.graph.nodes)
    quantized_yh =
        quantized_yh || (n.op_type == "QuantizeLinear" && n.inputs[0] == lstm->outputs[1]);
  EXPECT_TRUE(quantized_yh);
  EXPECT_LT(relative_error(fm, qm, 15), 0.05);
}

}  // namespace
}  // namespace qforge
