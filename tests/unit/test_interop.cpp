// Interop with ONNX Runtime 1.30 (reference: its outputs). Each case of
// the manifest is a model qforge quantized (--target onnxruntime) and the
// output ONNX Runtime computed for it (bench/peers/ort_run.js); made by
// scripts/interop_ort.sh, which also runs this test on a fresh set. Here
// every model must pass the ONNX checker, load and run in qforge (so
// qforge runs QDQ and QOperator models as ONNX Runtime's quantizer writes
// them), and agree with ONNX Runtime within the manifest's tolerance in
// steps of the output's quantization: the scale of the DequantizeLinear
// that writes the output, or, for a float output (dynamic quantization),
// 1/255 of the output's largest magnitude.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "qforge/npy.h"
#include "qforge/session.h"

using namespace qforge;

namespace {

std::string interop_dir() {
  const char* env = std::getenv("QFORGE_INTEROP_DIR");
  return env && *env ? env : QFORGE_INTEROP_DATA_DIR;
}

struct Case {
  std::string name, input, input_file;
  double tolerance_steps = 1;
};

std::vector<Case> manifest() {
  std::ifstream f(interop_dir() + "/manifest.txt");
  std::vector<Case> cases;
  std::string line;
  while (std::getline(f, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream s(line);
    Case c;
    s >> c.name >> c.input >> c.input_file >> c.tolerance_steps;
    cases.push_back(c);
  }
  return cases;
}

TEST(Interop, ManifestIsThere) {
  EXPECT_GE(manifest().size(), 4u) << interop_dir() << "/manifest.txt";
}

TEST(Interop, QforgeAgreesWithOnnxRuntimeOnTheSameQuantizedModel) {
  const std::string dir = interop_dir();
  for (const Case& c : manifest()) {
    SCOPED_TRACE(c.name);
    const ir::Model m = ir::load_model(dir + "/" + c.name + ".onnx");
    EXPECT_NO_THROW(ir::serialize_model(m));  // the ONNX checker runs
    float step = 0;
    for (const auto& n : m.graph.nodes)
      if (n.op_type == "DequantizeLinear" && n.outputs[0] == m.graph.outputs[0])
        step = m.graph.initializer(n.inputs[1])->data<float>()[0];
    const Session s(m);
    const Tensor x = read_npy(dir + "/" + c.input_file);
    const Tensor got = s.run({{c.input, x}})[0];
    const Tensor want = read_npy(dir + "/" + c.name + ".ort.npy");
    ASSERT_EQ(got.shape(), want.shape());
    double max_err = 0, max_ref = 0;
    for (int64_t i = 0; i < want.numel(); ++i) {
      max_err = std::max(max_err, static_cast<double>(std::fabs(got.data<float>()[i] - want.data<float>()[i])));
      max_ref = std::max(max_ref, static_cast<double>(std::fabs(want.data<float>()[i])));
    }
    if (step == 0) step = static_cast<float>(max_ref / 255);
    ASSERT_GT(step, 0);
    std::printf("%-40s max |qforge - ORT| = %.3g = %.2f output steps\n", c.name.c_str(), max_err, max_err / step);
    EXPECT_LE(max_err, c.tolerance_steps * step * (1 + 1e-6));
  }
}

}  // namespace
