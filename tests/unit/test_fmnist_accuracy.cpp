// qforge's float runtime scores the Fashion-MNIST reference models exactly
// as PyTorch 1.13 did: top-1 over Debian's 10k test images equal to the
// float accuracy scripts/train_fashion.py recorded in
// models/fmnist/pytorch_results.json (PyTorch's own evaluation).
#include <gtest/gtest.h>

#include "qforge/evaluate.h"
#include "test_util.h"

namespace qforge {
namespace {

void check_accuracy(const std::string& name) {
  const std::string dir = std::string(QFORGE_MODELS_DIR) + "/fmnist";
  const auto results = test::load_json(dir + "/pytorch_results.json");
  const double want = results.at("models").at(name).at("float_acc").get<double>();
  EvalOptions o;
  o.batch.batch_size = 250;
  const EvalResult r = evaluate({dir + "/" + name + ".onnx"}, "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz", o);
  ASSERT_EQ(r.samples, 10000);
  // PyTorch recorded two decimals; one image is 0.01 points.
  EXPECT_NEAR(r.models[0].value, want, 0.006) << name;
}

// The MLP only: the CNNs take minutes under the sanitizers, and
// scripts/results_fmnist.sh checks all five the same way.
TEST(FashionAccuracy, MlpEqualsPyTorch) { check_accuracy("mlp"); }

}  // namespace
}  // namespace qforge
