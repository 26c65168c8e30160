// The IR: ONNX import and export, and the bad-input contract (a clear Error,
// never a crash, a hang or a huge allocation). Reference: the ONNX IR spec
// (onnx.proto) and ONNX's backend test models from libonnx-testdata, which
// must load, pass the ONNX checker when written back, and reload to the same
// graph.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <atomic>
#include <cstring>
#include <fstream>
#include <thread>

#include <onnx/onnx_pb.h>

#include "test_util.h"
#include "qforge/ir.h"
#include "qforge/npy.h"
#include "qforge/session.h"

namespace fs = std::filesystem;
using namespace qforge;

namespace {

const std::string kData = QFORGE_ONNX_TESTDATA_DIR;

using test::expect_error;

void set_tensor_type(onnx::ValueInfoProto* v, const std::string& name, int elem,
                     std::vector<std::string> dims) {
  v->set_name(name);
  auto* tt = v->mutable_type()->mutable_tensor_type();
  tt->set_elem_type(elem);
  auto* s = tt->mutable_shape();
  for (const auto& d : dims) {
    auto* dp = s->add_dim();
    if (!d.empty() && std::isdigit(static_cast<unsigned char>(d[0]))) dp->set_dim_value(std::stoll(d));
    else dp->set_dim_param(d);
  }
}

// x: f32[N, 4] -> Relu -> y, opset 17.
onnx::ModelProto relu_model() {
  onnx::ModelProto m;
  m.set_ir_version(8);
  m.add_opset_import()->set_version(17);
  auto* g = m.mutable_graph();
  g->set_name("relu");
  set_tensor_type(g->add_input(), "x", onnx::TensorProto::FLOAT, {"N", "4"});
  set_tensor_type(g->add_output(), "y", onnx::TensorProto::FLOAT, {"N", "4"});
  auto* n = g->add_node();
  n->set_op_type("Relu");
  n->set_name("relu0");
  n->add_input("x");
  n->add_output("y");
  return m;
}

std::string tmp_path(const std::string& name) {
  return (fs::temp_directory_path() / ("qforge_test_ir_" + name)).string();
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary);
  f << bytes;
}

}  // namespace

TEST(IrImport, SmallModelWithSymbolicDims) {
  ir::Model m = ir::parse_model(relu_model().SerializeAsString());
  ASSERT_EQ(m.graph.nodes.size(), 1u);
  EXPECT_EQ(m.opset(""), 17);
  const ir::ValueInfo* y = m.graph.info("y");
  ASSERT_TRUE(y && y->shape);
  EXPECT_EQ(ir::sym_shape_str(*y->shape), "[N, 4]");
}

// Inference that knows less than the model keeps the names the model
// declares: the ViT's logits are declared [batch, 10], inference alone
// gives [?, 10] (the batch name is lost on the way), and the merge used to
// keep the "?".
TEST(IrShapes, DeclaredSymbolsBeatUnknownInferredDims) {
  const ir::Model m = ir::load_model(std::string(QFORGE_MODELS_DIR) + "/fmnist/vit.onnx");
  ASSERT_TRUE(m.graph.values.at("logits").shape);
  EXPECT_EQ(ir::sym_shape_str(*m.graph.values.at("logits").shape), "[batch, 10]");
}

TEST(IrImport, ConstantNodesBecomeInitializers) {
  onnx::ModelProto mp = relu_model();
  auto* g = mp.mutable_graph();
  auto* c = g->add_node();
  c->set_op_type("Constant");
  c->add_output("k");
  auto* a = c->add_attribute();
  a->set_name("value_floats");
  a->set_type(onnx::AttributeProto::FLOATS);
  a->add_floats(1.5f);
  a->add_floats(2.5f);
  set_tensor_type(g->add_output(), "k", onnx::TensorProto::FLOAT, {"2"});
  ir::Model m = ir::parse_model(mp.SerializeAsString());
  ASSERT_TRUE(m.graph.initializer("k"));
  EXPECT_EQ(m.graph.initializer("k")->data<float>()[1], 2.5f);
  EXPECT_EQ(m.graph.nodes.size(), 1u);
}

TEST(IrImport, SortsNodesTopologically) {
  onnx::ModelProto mp = relu_model();
  auto* g = mp.mutable_graph();
  // y = Relu(t); t = Relu(x), listed in the wrong order.
  g->mutable_node(0)->set_input(0, "t");
  auto* n = g->add_node();
  n->set_op_type("Relu");
  n->set_name("first");
  n->add_input("x");
  n->add_output("t");
  ir::Model m = ir::parse_model(mp.SerializeAsString());
  ASSERT_EQ(m.graph.nodes.size(), 2u);
  EXPECT_EQ(m.graph.nodes[0].name, "first");
}

TEST(IrImport, RefusesCycles) {
  onnx::ModelProto mp = relu_model();
  auto* g = mp.mutable_graph();
  g->mutable_node(0)->set_input(0, "t");
  auto* n = g->add_node();
  n->set_op_type("Relu");
  n->set_name("loop_back");
  n->add_input("y");
  n->add_output("t");
  expect_error([&] { ir::parse_model(mp.SerializeAsString()); }, "cycle");
}

TEST(IrImport, RefusesMissingInput) {
  onnx::ModelProto mp = relu_model();
  mp.mutable_graph()->mutable_node(0)->set_input(0, "nowhere");
  expect_error([&] { ir::parse_model(mp.SerializeAsString()); },
               "reads 'nowhere', which no node, input or initializer provides");
}

TEST(IrImport, RefusesBadVersions) {
  onnx::ModelProto mp = relu_model();
  mp.set_ir_version(2);
  expect_error([&] { ir::parse_model(mp.SerializeAsString()); }, "IR version 2");
  mp = relu_model();
  mp.mutable_opset_import(0)->set_version(99);
  expect_error([&] { ir::parse_model(mp.SerializeAsString()); }, "opset 99");
}

TEST(IrImport, RefusesAbsurdAndNegativeDims) {
  onnx::ModelProto mp = relu_model();
  auto* t = mp.mutable_graph()->add_initializer();
  t->set_name("w");
  t->set_data_type(onnx::TensorProto::FLOAT);
  t->add_dims(int64_t{1} << 20);
  t->add_dims(int64_t{1} << 20);  // 2^40 elements
  t->set_raw_data(std::string(16, '\0'));
  expect_error([&] { ir::parse_model(mp.SerializeAsString()); }, "initializer 'w'");
  t->clear_dims();
  t->add_dims(-4);
  expect_error([&] { ir::parse_model(mp.SerializeAsString()); }, "negative dimension -4");
  t->clear_dims();
  t->add_dims(int64_t{1} << 40);
  t->add_dims(int64_t{1} << 40);  // overflows 64 bits
  expect_error([&] { ir::parse_model(mp.SerializeAsString()); }, "absurd dimensions");
}

TEST(IrImport, RefusesRawDataOfTheWrongSize) {
  onnx::ModelProto mp = relu_model();
  auto* t = mp.mutable_graph()->add_initializer();
  t->set_name("w");
  t->set_data_type(onnx::TensorProto::FLOAT);
  t->add_dims(3);
  t->set_raw_data(std::string(8, '\0'));
  expect_error([&] { ir::parse_model(mp.SerializeAsString()); }, "raw_data has 8 bytes");
}

TEST(IrImport, RefusesDeeplyNestedSubgraphs) {
  // If nodes nested 40 deep (the limit is 32).
  onnx::ModelProto mp = relu_model();
  onnx::GraphProto inner;
  inner.set_name("leaf");
  for (int d = 0; d < 40; ++d) {
    onnx::GraphProto outer;
    outer.set_name(std::string("level") += std::to_string(d));
    auto* n = outer.add_node();
    n->set_op_type("If");
    n->add_input("x");
    n->add_output(std::string("o") += std::to_string(d));
    auto* a = n->add_attribute();
    a->set_name("then_branch");
    a->set_type(onnx::AttributeProto::GRAPH);
    *a->mutable_g() = inner;
    inner = outer;
  }
  auto* n = mp.mutable_graph()->add_node();
  n->set_op_type("If");
  n->add_input("x");
  n->add_output("z");
  auto* a = n->add_attribute();
  a->set_name("then_branch");
  a->set_type(onnx::AttributeProto::GRAPH);
  *a->mutable_g() = inner;
  const std::string bytes = mp.SerializeAsString();
  try {
    ir::parse_model(bytes);
    ADD_FAILURE() << "nested subgraphs were accepted";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_TRUE(msg.find("nested") != std::string::npos || msg.find("protobuf") != std::string::npos)
        << msg;
  }
}

TEST(IrImport, CorruptFilesGiveClearErrors) {
  const std::string model = kData + "/node/test_relu/model.onnx";
  std::ifstream f(model, std::ios::binary);
  ASSERT_TRUE(f.good()) << model;
  const std::string bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  ASSERT_GT(bytes.size(), 20u);

  const std::string p = tmp_path("truncated.onnx");
  write_bytes(p, bytes.substr(0, bytes.size() / 2));
  expect_error([&] { ir::load_model(p); }, "model '" + p + "'");
  write_bytes(p, "\x89PNG\r\n\x1a\n not a model at all");
  expect_error([&] { ir::load_model(p); }, "not");
  write_bytes(p, "");
  expect_error([&] { ir::load_model(p); }, "is not an ONNX model");
  std::remove(p.c_str());
  expect_error([&] { ir::load_model(p); }, "can't be opened");
  // Every truncation of a real model is refused or loads; none crashes.
  for (size_t cut = 1; cut < bytes.size(); cut += 7) {
    try {
      ir::parse_model(bytes.substr(0, cut));
    } catch (const Error&) {
    }
  }
}

TEST(IrImport, ExternalDataIsMappedAndChecked) {
  const std::string dir = tmp_path("ext");
  fs::create_directories(dir);
  const std::vector<float> w = {1, -2, 3, -4};
  write_bytes(dir + "/weights.bin",
              std::string(8, 'x') + std::string(reinterpret_cast<const char*>(w.data()), 16));
  onnx::ModelProto mp = relu_model();
  auto* t = mp.mutable_graph()->add_initializer();
  t->set_name("w");
  t->set_data_type(onnx::TensorProto::FLOAT);
  t->add_dims(4);
  t->set_data_location(onnx::TensorProto::EXTERNAL);
  auto add_kv = [&](const char* k, const char* v) {
    auto* kv = t->add_external_data();
    kv->set_key(k);
    kv->set_value(v);
  };
  add_kv("location", "weights.bin");
  add_kv("offset", "8");
  add_kv("length", "16");
  write_bytes(dir + "/model.onnx", mp.SerializeAsString());
  ir::Model m = ir::load_model(dir + "/model.onnx");
  ASSERT_TRUE(m.graph.initializer("w"));
  EXPECT_EQ(m.graph.initializer("w")->data<float>()[3], -4.0f);

  t->mutable_external_data(1)->set_value("40");  // beyond the end of the file
  write_bytes(dir + "/model.onnx", mp.SerializeAsString());
  expect_error([&] { ir::load_model(dir + "/model.onnx"); }, "beyond the end of 'weights.bin'");
  t->mutable_external_data(0)->set_value("../../etc/passwd");
  write_bytes(dir + "/model.onnx", mp.SerializeAsString());
  expect_error([&] { ir::load_model(dir + "/model.onnx"); }, "a relative path inside");
  fs::remove_all(dir);
}

TEST(IrExport, RoundTripKeepsTheGraph) {
  ir::Model m = ir::parse_model(relu_model().SerializeAsString());
  const std::string bytes = ir::serialize_model(m);  // runs the ONNX checker
  ir::Model back = ir::parse_model(bytes);
  ASSERT_EQ(back.graph.nodes.size(), 1u);
  EXPECT_EQ(back.graph.nodes[0].op_type, "Relu");
  EXPECT_EQ(back.graph.inputs, m.graph.inputs);
  EXPECT_EQ(back.graph.info("x")->str(), "f32[N, 4]");
}

TEST(IrExport, SaveIsAtomicAndRefusesUnwritablePaths) {
  ir::Model m = ir::parse_model(relu_model().SerializeAsString());
  expect_error([&] { ir::save_model(m, "/nonexistent-dir/model.onnx"); }, "/nonexistent-dir");
  const std::string p = tmp_path("saved.onnx");
  ir::save_model(m, p);
  EXPECT_EQ(ir::load_model(p).graph.nodes.size(), 1u);
  std::remove(p.c_str());
}

// Every backend test model loads, is written back through the ONNX checker
// (for opsets it knows) and reloads to the same nodes, attributes and
// initializers.
TEST(IrExport, BackendModelsRoundTrip) {
  int models = 0;
  for (const char* dir : {"node", "pytorch-converted", "pytorch-operator", "simple"}) {
    const fs::path root = fs::path(kData) / dir;
    if (!fs::is_directory(root)) continue;
    for (const auto& e : fs::directory_iterator(root)) {
      const std::string path = (e.path() / "model.onnx").string();
      if (!fs::exists(path)) continue;
      ir::Model m;
      try {
        m = ir::load_model(path);
      } catch (const Error& err) {
        EXPECT_EQ(err.code(), Errc::kUnsupported) << path << ": " << err.what();
        continue;
      }
      ++models;
      ir::SaveOptions so;
      so.run_checker = m.opset("") >= 7;  // ONNX 1.12's checker rejects some opset-1 forms
      std::string bytes;
      try {
        bytes = ir::serialize_model(m, so);
      } catch (const Error& err) {
        ADD_FAILURE() << path << ": " << err.what();
        continue;
      }
      ir::Model back = ir::parse_model(bytes, path);
      ASSERT_EQ(back.graph.nodes.size(), m.graph.nodes.size()) << path;
      for (size_t i = 0; i < m.graph.nodes.size(); ++i) {
        const ir::Node& a = m.graph.nodes[i];
        const ir::Node& b = back.graph.nodes[i];
        EXPECT_EQ(a.op_type, b.op_type) << path;
        EXPECT_EQ(a.inputs, b.inputs) << path;
        EXPECT_EQ(a.outputs, b.outputs) << path;
        EXPECT_EQ(a.attrs.size(), b.attrs.size()) << path;
      }
      ASSERT_EQ(back.graph.initializers.size(), m.graph.initializers.size()) << path;
      for (const auto& [name, t] : m.graph.initializers) {
        const Tensor* u = back.graph.initializer(name);
        ASSERT_TRUE(u) << path << " " << name;
        EXPECT_EQ(u->shape(), t.shape());
        if (t.nbytes()) {
          EXPECT_EQ(0, std::memcmp(u->raw(), t.raw(), t.nbytes())) << path << " " << name;
        }
      }
    }
  }
  EXPECT_GT(models, 1000);
}

TEST(SessionApi, ChecksInputsAtRun) {
  Session s(ir::parse_model(relu_model().SerializeAsString()));
  const Tensor x = Tensor::from<float>({2, 4}, {-1, 2, -3, 4, 5, -6, 7, -8});
  std::vector<Tensor> y = s.run({{"x", x}});
  ASSERT_EQ(y.size(), 1u);
  EXPECT_EQ(y[0].data<float>()[1], 2.0f);
  EXPECT_EQ(y[0].data<float>()[2], 0.0f);
  expect_error([&] { s.run({{"x", Tensor::from<float>({2, 3}, {1, 2, 3, 4, 5, 6})}}); },
               "input 'x': has shape [2, 3]");
  expect_error([&] { s.run({{"x", Tensor::from<int64_t>({1, 4}, {1, 2, 3, 4})}}); }, "is i64");
  expect_error([&] { s.run({{"z", x}}); }, "is not an input of the model");
  expect_error([&] { s.run({}); }, "was not given");
}

// Initializers are read through the plan, not copied into each run's frame;
// a graph input of the same name, when fed, comes first (ONNX: an
// initializer is the default of an input of its name).
TEST(SessionApi, FedInputOverridesInitializerOfItsName) {
  ir::Model m;
  m.opsets[""] = 17;
  m.graph.name = "g";
  m.graph.inputs = {"x", "w"};
  m.graph.values["x"] = ir::ValueInfo{DType::kF32, ir::to_sym(Shape{2})};
  m.graph.values["w"] = ir::ValueInfo{DType::kF32, ir::to_sym(Shape{2})};
  m.graph.initializers["w"] = Tensor::from<float>({2}, {10, 20});
  m.graph.initializers["k"] = Tensor::from<float>({2}, {100, 200});
  m.graph.nodes = {test::one_output_node("Add", {"x", "w"}, "s"),
                   test::one_output_node("Add", {"s", "k"}, "y")};
  m.graph.outputs = {"y", "k"};  // an initializer as a graph output too
  SessionOptions plain;
  plain.optimize = false;
  const Session s(m, plain);
  const Tensor x = Tensor::from<float>({2}, {1, 2});
  for (int run = 0; run < 2; ++run) {  // the second run reuses the first's buffers
    const std::vector<Tensor> y = s.run({{"x", x}, {"w", Tensor::from<float>({2}, {3, 4})}});
    ASSERT_EQ(y.size(), 2u);
    EXPECT_EQ(y[0].data<float>()[0], 104.0f);
    EXPECT_EQ(y[0].data<float>()[1], 206.0f);
    EXPECT_EQ(y[1].data<float>()[1], 200.0f);
  }
}

TEST(SessionApi, RefusesUnsupportedOpsListingThem) {
  onnx::ModelProto mp = relu_model();
  mp.mutable_graph()->mutable_node(0)->set_op_type("NoSuchOp");
  expect_error([&] { Session s(ir::parse_model(mp.SerializeAsString())); },
               "node 'relu0' (NoSuchOp): no kernel for op NoSuchOp");
}

// x [n, 6] reshaped to [2n, 3] by a shape computation: Shape, Gather,
// Unsqueeze, Mul, Concat. A run reuses the computation's values (a memo per
// step) while x's shape is the last run's, and recomputes them when it
// changes; a value that is a graph output is never shared with the memo.
TEST(SessionApi, ShapeComputationsKeptWhileTheShapeIs) {
  ir::Model m;
  m.opsets[""] = 17;
  m.graph.name = "g";
  m.graph.inputs = {"x"};
  m.graph.values["x"] = ir::ValueInfo{DType::kF32, ir::SymShape{ir::Dim::sym("n"), ir::Dim(6)}, {}};
  m.graph.initializers["zero"] = Tensor::from<int64_t>({}, {0});
  m.graph.initializers["axes"] = Tensor::from<int64_t>({1}, {0});
  m.graph.initializers["two"] = Tensor::from<int64_t>({1}, {2});
  m.graph.initializers["three"] = Tensor::from<int64_t>({1}, {3});
  ir::Node cat = test::one_output_node("Concat", {"rows", "three"}, "shape");
  cat.attrs["axis"] = ir::Attribute::of(int64_t{0});
  m.graph.nodes = {test::one_output_node("Shape", {"x"}, "s"),
                   test::one_output_node("Gather", {"s", "zero"}, "n"),
                   test::one_output_node("Unsqueeze", {"n", "axes"}, "n1"),
                   test::one_output_node("Mul", {"n1", "two"}, "rows"), cat,
                   test::one_output_node("Reshape", {"x", "shape"}, "y")};
  m.graph.outputs = {"y", "shape"};
  ir::infer_shapes(m);
  SessionOptions plain;
  plain.optimize = false;
  const Session s(m, plain);
  std::vector<Tensor> rows;  // "rows" of each run, as the tap saw it
  const Session::ValueTap tap = [&](const std::string& name, const Tensor& t) {
    if (name == "rows") rows.push_back(t);
  };
  for (int64_t n : {2, 2, 3, 2}) {
    const Tensor x = test::random_f32({n, 6}, static_cast<uint32_t>(n), -1.0f, 1.0f);
    std::vector<Tensor> y = s.run({{"x", x}}, nullptr, tap);
    ASSERT_EQ(y[0].shape(), (Shape{2 * n, 3}));
    EXPECT_EQ(std::memcmp(y[0].raw(), x.raw(), x.nbytes()), 0);
    ASSERT_EQ(y[1].numel(), 2);
    EXPECT_EQ(y[1].data<int64_t>()[0], 2 * n);
    EXPECT_EQ(y[1].data<int64_t>()[1], 3);
    y[1].data<int64_t>()[0] = -7;  // the caller's: the next run's value is not this
  }
  ASSERT_EQ(rows.size(), 4u);
  EXPECT_EQ(rows[1].storage(), rows[0].storage()) << "the second run (same shape) computed 'rows' again";
  EXPECT_NE(rows[2].storage(), rows[1].storage());
  EXPECT_EQ(rows[2].data<int64_t>()[0], 6);
  EXPECT_EQ(rows[3].data<int64_t>()[0], 4);
}

// The Transformer (its shape computations feed Reshape and the attention's
// column shapes) run by one Session at batch 2, 1, 2 gives each batch's
// logits bit for bit as a fresh Session does.
TEST(SessionApi, TransformerAcrossBatchesAsFresh) {
  const std::string dir = QFORGE_MODELS_DIR;
  const Tensor x2 = read_npy(dir + "/transformer4.input.npy");
  ASSERT_EQ(x2.dim(0), 2);
  Shape s1 = x2.shape();
  s1[0] = 1;
  Tensor x1(x2.dtype(), s1);
  std::memcpy(x1.raw(), static_cast<const unsigned char*>(x2.raw()) + x1.nbytes(), x1.nbytes());  // the second
  const std::string in = Session(dir + "/transformer4.onnx").inputs()[0].name;
  const Session kept(dir + "/transformer4.onnx");
  for (const Tensor* x : {&x2, static_cast<const Tensor*>(&x1), &x2}) {
    const Tensor a = kept.run({{in, *x}})[0];
    const Tensor b = Session(dir + "/transformer4.onnx").run({{in, *x}})[0];
    ASSERT_EQ(a.shape(), b.shape());
    EXPECT_EQ(std::memcmp(a.raw(), b.raw(), a.nbytes()), 0) << "batch " << x->dim(0);
  }
}

// A profiled run times every step, in order, each within the run's time;
// the same run without a profile gives the same logits.
TEST(SessionApi, ProfileTimesEveryStep) {
  const std::string dir = QFORGE_MODELS_DIR;
  const Tensor x = read_npy(dir + "/transformer4.input.npy");
  const Session s(dir + "/transformer4.onnx");
  const std::string in = s.inputs()[0].name;
  RunProfile prof;
  const Tensor a = s.run({{in, x}}, &prof)[0];
  const Tensor b = s.run({{in, x}})[0];
  EXPECT_EQ(std::memcmp(a.raw(), b.raw(), a.nbytes()), 0);
  ASSERT_GT(prof.nodes.size(), 100u);
  EXPECT_GT(prof.total_ms, 0.0);
  double sum = 0;
  for (const NodeTime& n : prof.nodes) {
    EXPECT_FALSE(n.node.empty());
    EXPECT_GE(n.ms, 0.0) << n.node;
    EXPECT_LE(n.ms, prof.total_ms) << n.node;
    sum += n.ms;
  }
  EXPECT_LE(sum, prof.total_ms);
  EXPECT_EQ(prof.nodes.back().op_type, "Gemm") << "the head, last";
}

TEST(SessionApi, ConcurrentRunsAgree) {
  const Session s(ir::parse_model(relu_model().SerializeAsString()));
  std::vector<std::thread> threads;
  std::atomic<int> bad{0};
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < 200; ++i) {
        const float v = static_cast<float>(t * 1000 + i);
        auto y = s.run({{"x", Tensor::from<float>({1, 4}, {v, -v, v, -v})}});
        if (y[0].data<float>()[0] != v || y[0].data<float>()[1] != 0.0f) ++bad;
      }
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(bad.load(), 0);
}
