// qforge's quantize / dequantize against ONNX's own backend test data for
// QuantizeLinear, DequantizeLinear and DynamicQuantizeLinear (Debian package
// libonnx-testdata, ONNX 1.12: node/test_*/model.onnx and test_data_set_*/).
// Expected outputs are compared exactly.
#include <filesystem>
#include <fstream>

#include <onnx/onnx_pb.h>

#include "qforge/onnx_tensor.h"
#include "qforge/pack.h"
#include "qforge/quant.h"
#include "test_util.h"

namespace qforge {
namespace {

namespace fs = std::filesystem;

const fs::path kNodeDir = fs::path(QFORGE_ONNX_TESTDATA_DIR) / "node";

struct NodeTest {
  onnx::NodeProto node;
  std::vector<std::pair<std::vector<Tensor>, std::vector<Tensor>>> sets;  // inputs, outputs
};

NodeTest load_node_test(const std::string& name) {
  const fs::path dir = kNodeDir / name;
  if (!fs::exists(dir / "model.onnx"))
    throw std::runtime_error(dir.string() + " is missing: install libonnx-testdata (scripts/setup.sh)");
  NodeTest t;
  onnx::ModelProto m;
  std::ifstream f(dir / "model.onnx", std::ios::binary);
  if (!m.ParseFromIstream(&f)) throw std::runtime_error("can't parse " + (dir / "model.onnx").string());
  EXPECT_EQ(m.graph().node_size(), 1);
  t.node = m.graph().node(0);
  for (int s = 0; fs::exists(dir / ("test_data_set_" + std::to_string(s))); ++s) {
    const fs::path sd = dir / ("test_data_set_" + std::to_string(s));
    std::vector<Tensor> in, out;
    for (int i = 0; fs::exists(sd / ("input_" + std::to_string(i) + ".pb")); ++i)
      in.push_back(read_tensor_pb(sd / ("input_" + std::to_string(i) + ".pb")));
    for (int i = 0; fs::exists(sd / ("output_" + std::to_string(i) + ".pb")); ++i)
      out.push_back(read_tensor_pb(sd / ("output_" + std::to_string(i) + ".pb")));
    t.sets.emplace_back(std::move(in), std::move(out));
  }
  EXPECT_FALSE(t.sets.empty()) << name << " has no test data sets";
  return t;
}

int axis_attr(const onnx::NodeProto& n) {
  for (const auto& a : n.attribute())
    if (a.name() == "axis") return static_cast<int>(a.i());
  return 1;  // the ONNX default for QuantizeLinear / DequantizeLinear
}

std::vector<int32_t> codes(const Tensor& t) {
  std::vector<int32_t> v(static_cast<size_t>(t.numel()));
  load_codes(t.raw(), t.numel(), t.dtype(), v.data());
  return v;
}

std::vector<float> values(const Tensor& t) {
  return {t.data<float>(), t.data<float>() + t.numel()};
}

class QuantizeLinear : public ::testing::TestWithParam<std::string> {};

TEST_P(QuantizeLinear, MatchesOnnx) {
  const NodeTest t = load_node_test(GetParam());
  ASSERT_EQ(t.node.op_type(), "QuantizeLinear");
  for (const auto& [in, out] : t.sets) {
    const Tensor* zp = in.size() > 2 ? &in[2] : nullptr;
    const QuantParams p = params_from_onnx(in[1], zp, in[0].shape(), axis_attr(t.node));
    const Tensor y = quantize(in[0], p);
    EXPECT_EQ(y.dtype(), out[0].dtype());
    EXPECT_EQ(y.shape(), out[0].shape());
    EXPECT_EQ(codes(y), codes(out[0]));
  }
}
INSTANTIATE_TEST_SUITE_P(Onnx, QuantizeLinear,
                         ::testing::Values("test_quantizelinear", "test_quantizelinear_axis"));

class DequantizeLinear : public ::testing::TestWithParam<std::string> {};

TEST_P(DequantizeLinear, MatchesOnnx) {
  const NodeTest t = load_node_test(GetParam());
  ASSERT_EQ(t.node.op_type(), "DequantizeLinear");
  for (const auto& [in, out] : t.sets) {
    const Tensor* zp = in.size() > 2 ? &in[2] : nullptr;
    const QuantParams p = params_from_onnx(in[1], zp, in[0].shape(), axis_attr(t.node), 0, in[0].dtype());
    const Tensor y = dequantize(in[0], p);
    EXPECT_EQ(y.shape(), out[0].shape());
    EXPECT_EQ(values(y), values(out[0]));
  }
}
INSTANTIATE_TEST_SUITE_P(Onnx, DequantizeLinear,
                         ::testing::Values("test_dequantizelinear", "test_dequantizelinear_axis"));

class DynamicQuantizeLinear : public ::testing::TestWithParam<std::string> {};

TEST_P(DynamicQuantizeLinear, MatchesOnnx) {
  const NodeTest t = load_node_test(GetParam());
  ASSERT_EQ(t.node.op_type(), "DynamicQuantizeLinear");
  for (const auto& [in, out] : t.sets) {
    const DynamicQuantized r = dynamic_quantize_linear(in[0]);
    EXPECT_EQ(codes(r.y), codes(out[0]));
    EXPECT_EQ(r.params.scale, values(out[1]));
    EXPECT_EQ(r.params.zero_point, codes(out[2]));
  }
}
INSTANTIATE_TEST_SUITE_P(Onnx, DynamicQuantizeLinear,
                         ::testing::Values("test_dynamicquantizelinear",
                                           "test_dynamicquantizelinear_max_adjusted",
                                           "test_dynamicquantizelinear_min_adjusted"));

TEST(OnnxTensorPb, RoundTripAndErrors) {
  const std::string dir = ::testing::TempDir();
  Tensor x = Tensor::from<float>({2, 3}, {1, -2, 3.5f, 0, 1e-8f, -7});
  x.set_name("x");
  write_tensor_pb(dir + "/x.pb", x);
  const Tensor y = read_tensor_pb(dir + "/x.pb");
  EXPECT_EQ(y.name(), "x");
  EXPECT_EQ(y.shape(), x.shape());
  EXPECT_EQ(values(y), values(x));
  try {
    read_tensor_pb(dir + "/missing.pb");
    FAIL() << "no error for a missing file";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("missing.pb"), std::string::npos) << e.what();
  }
  std::ofstream(dir + "/junk.pb") << "\xff\xff\xff not a tensor";
  EXPECT_THROW(read_tensor_pb(dir + "/junk.pb"), Error);
}

}  // namespace
}  // namespace qforge
