// Shared helpers for the unit tests.
#pragma once

#include <stdlib.h>  // mkdtemp

#include <algorithm>
#include <bit>
#include <cstdlib>
#include <map>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "qforge/error.h"
#include "qforge/ir.h"
#include "qforge/session.h"
#include "qforge/tensor.h"

namespace qforge::test {

inline nlohmann::json load_json(const std::string& path) {
  std::ifstream f(path);
  if (!f) throw std::runtime_error("can't open golden file " + path);
  return nlohmann::json::parse(f);
}

// The PyTorch golden vectors (tests/golden/torch_quant.json, made by
// scripts/gen_torch_golden.py), loaded once.
inline const nlohmann::json& torch_golden() {
  static const nlohmann::json j = load_json(std::string(QFORGE_GOLDEN_DIR) + "/torch_quant.json");
  return j;
}

// A JSON array of floats: numbers (float64, exact) or strings holding the
// shortest decimal of a float32, read with strtof (correctly rounded).
inline std::vector<float> floats(const nlohmann::json& a) {
  std::vector<float> v;
  v.reserve(a.size());
  for (const auto& e : a)
    v.push_back(e.is_string() ? std::strtof(e.get_ref<const std::string&>().c_str(), nullptr)
                              : static_cast<float>(e.get<double>()));
  return v;
}

inline std::vector<int32_t> ints(const nlohmann::json& a) {
  std::vector<int32_t> v;
  for (const auto& e : a) v.push_back(e.get<int32_t>());
  return v;
}

inline Shape shape_of(const nlohmann::json& a) { return a.get<Shape>(); }

inline Tensor f32_tensor(Shape s, const std::vector<float>& v) { return Tensor::from(std::move(s), v); }

// Seeded random floats, so that failures replay.
inline std::vector<float> random_floats(size_t n, float lo, float hi, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

// A seeded random f32 tensor with values in [lo, hi).
inline Tensor random_f32(Shape shape, uint32_t seed, float lo, float hi) {
  const auto n = static_cast<size_t>(shape_numel(shape));
  return f32_tensor(std::move(shape), random_floats(n, lo, hi, seed));
}

// A node of the default domain with one output, named after its op and output.
inline ir::Node one_output_node(const std::string& op, std::vector<std::string> in, const std::string& out) {
  ir::Node n;
  n.op_type = op;
  n.name = op + "_" + out;
  n.inputs = std::move(in);
  n.outputs = {out};
  return n;
}

// Two f32 tensors of one shape, bit for bit (NaN payloads and signed zeros
// included); the first difference is reported with `what`.
inline void expect_same_bits(const Tensor& got, const Tensor& want, const std::string& what) {
  ASSERT_EQ(got.shape(), want.shape()) << what;
  for (int64_t i = 0; i < want.numel(); ++i)
    ASSERT_EQ(std::bit_cast<uint32_t>(got.data<float>()[i]), std::bit_cast<uint32_t>(want.data<float>()[i]))
        << what << " at " << i << ": " << got.data<float>()[i] << " vs " << want.data<float>()[i];
}

// `raw` and `m` (a rewrite of it) run without Session's passes on x as raw's
// first input: their first outputs bit for bit.
inline void expect_same_first_output(const ir::Model& raw, const ir::Model& m, const Tensor& x,
                                     const std::string& what) {
  SessionOptions plain;
  plain.optimize = false;
  const std::string& in = raw.graph.inputs[0];
  expect_same_bits(Session(m, plain).run({{in, x}})[0], Session(raw, plain).run({{in, x}})[0], what);
}

inline int count_op(const ir::Graph& g, const std::string& op) {
  int n = 0;
  for (const auto& x : g.nodes) n += x.op_type == op;
  return n;
}

// Expects `fn` to throw qforge::Error whose message contains `needle`.
template <typename F>
void expect_error(F&& fn, const std::string& needle) {
  try {
    fn();
    ADD_FAILURE() << "no error; expected one mentioning '" << needle << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

// One node in a model of its own: `inputs` become graph inputs, or
// initializers when named in `constants`; the node's non-empty outputs are
// the graph's. run() runs it on `threads` threads.
struct OneNode {
  ir::Node node;
  std::vector<std::pair<std::string, Tensor>> inputs;
  std::vector<std::string> constants;
  std::map<std::string, int64_t> opsets{{"", 17}, {"com.microsoft", 1}, {"ai.qforge", 1}};

  std::vector<Tensor> run(int threads = 1) const {
    ir::Model m;
    m.opsets = opsets;
    m.graph.name = "g";
    Session::NamedTensors feed;
    for (const auto& [n, t] : inputs) {
      if (std::find(constants.begin(), constants.end(), n) != constants.end()) {
        m.graph.initializers[n] = t;
        continue;
      }
      m.graph.inputs.push_back(n);
      m.graph.values[n] = ir::ValueInfo{t.dtype(), ir::to_sym(t.shape())};
      feed.emplace_back(n, t);
    }
    for (const std::string& o : node.outputs)
      if (!o.empty()) m.graph.outputs.push_back(o);
    m.graph.nodes.push_back(node);
    SessionOptions so;
    so.threads = threads;
    Session s(std::move(m), so);
    return s.run(feed);
  }
};

// A fixture with a fresh temporary directory per test (dir_), removed with
// everything in it afterwards.
class TempDirTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = ::testing::TempDir() + "qforge_test_XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr) << "can't make a temporary directory from " << tmpl;
    dir_ = tmpl;
  }
  void TearDown() override {
    std::error_code ec;
    if (!dir_.empty()) std::filesystem::remove_all(dir_, ec);
  }
  // dir_/name (no directory is created).
  std::string path(const std::string& name) const { return (std::filesystem::path(dir_) / name).string(); }
  std::string dir_;
};

}  // namespace qforge::test
