// ONNX ModelProto -> ir::Model.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <unordered_set>

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl.h>

#include "ir/proto.h"
#include "qforge/ir.h"

namespace qforge::ir {
namespace {

constexpr int64_t kMinIr = 3, kMaxIr = 10;
constexpr int64_t kMinOpset = 1, kMaxOpset = 21;  // 7-21 is the promise; older ops run where unchanged

struct Importer {
  std::string file;  // for messages
  ExternalData* ext;
  const LoadOptions& opt;

  std::optional<DType> elem_type(int t) {
    if (t == 0) return std::nullopt;
    try {
      return dtype_from_onnx(t);
    } catch (const Error&) {
      return std::nullopt;  // a type qforge has no kernel for; ops refuse it by name
    }
  }

  ValueInfo value_info(const onnx::ValueInfoProto& v, const std::string& subject) {
    ValueInfo info;
    if (!v.has_type()) return info;
    const auto& type = v.type();
    if (!type.has_tensor_type() || !elem_type(type.tensor_type().elem_type())) {
      info.foreign_type = type.SerializeAsString();  // sequences, strings: kept opaque
      return info;
    }
    const auto& tt = type.tensor_type();
    info.dtype = elem_type(tt.elem_type());
    if (tt.has_shape()) {
      SymShape s;
      for (const auto& d : tt.shape().dim()) {
        if (d.has_dim_value()) {
          check(d.dim_value() >= 0, Errc::kCorrupt, subject,
                "has a negative dimension " + std::to_string(d.dim_value()), "dimensions >= 0");
          s.push_back(Dim(d.dim_value()));
        } else if (d.has_dim_param()) {
          s.push_back(Dim::sym(d.dim_param()));
        } else {
          s.push_back(Dim());
        }
      }
      info.shape = std::move(s);
    }
    return info;
  }

  Attribute attribute(onnx::AttributeProto& a, const std::string& subject, int depth) {
    Attribute r;
    using AP = onnx::AttributeProto;
    const std::string where = subject + " attribute '" + a.name() + "'";
    check(a.ref_attr_name().empty(), Errc::kUnsupported, where,
          "refers to a function attribute", "a concrete value (functions are not supported)");
    switch (a.type()) {
      case AP::FLOAT: r.kind = Attribute::Kind::kFloat; r.f = a.f(); break;
      case AP::INT: r.kind = Attribute::Kind::kInt; r.i = a.i(); break;
      case AP::STRING: r.kind = Attribute::Kind::kString; r.s = a.s(); break;
      case AP::TENSOR:
        r.kind = Attribute::Kind::kTensor;
        r.t = tensor_from_proto(*a.mutable_t(), where, ext, opt.max_tensor_bytes);
        break;
      case AP::GRAPH:
        r.kind = Attribute::Kind::kGraph;
        r.g = std::make_shared<Graph>(graph(*a.mutable_g(), depth + 1, /*top=*/false));
        break;
      case AP::FLOATS:
        r.kind = Attribute::Kind::kFloats;
        r.floats.assign(a.floats().begin(), a.floats().end());
        break;
      case AP::INTS:
        r.kind = Attribute::Kind::kInts;
        r.ints.assign(a.ints().begin(), a.ints().end());
        break;
      case AP::STRINGS:
        r.kind = Attribute::Kind::kStrings;
        r.strings.assign(a.strings().begin(), a.strings().end());
        break;
      case AP::TENSORS:
        r.kind = Attribute::Kind::kTensors;
        for (auto& t : *a.mutable_tensors())
          r.tensors.push_back(tensor_from_proto(t, where, ext, opt.max_tensor_bytes));
        break;
      case AP::GRAPHS:
        r.kind = Attribute::Kind::kGraphs;
        for (auto& g : *a.mutable_graphs())
          r.graphs.push_back(std::make_shared<Graph>(graph(g, depth + 1, false)));
        break;
      default:
        throw Error(Errc::kUnsupported, where,
                    "has attribute type " + std::to_string(static_cast<int>(a.type())),
                    "float, int, string, tensor, graph or a list of those");
    }
    return r;
  }

  // A Constant node's value as a tensor (opset 1-21 forms).
  Tensor constant_value(const Node& n) {
    check(n.attrs.size() == 1, Errc::kInvalidArgument, n.describe(),
          "has " + std::to_string(n.attrs.size()) + " attributes", "exactly one value attribute");
    const auto& [an, a] = *n.attrs.begin();
    if (an == "value") return a.t;
    if (an == "value_float") return Tensor::from<float>({}, {a.f});
    if (an == "value_floats")
      return Tensor::from<float>({static_cast<int64_t>(a.floats.size())}, a.floats);
    if (an == "value_int") return Tensor::from<int64_t>({}, {a.i});
    if (an == "value_ints")
      return Tensor::from<int64_t>({static_cast<int64_t>(a.ints.size())}, a.ints);
    throw Error(Errc::kUnsupported, n.describe(), "has a constant of kind '" + an + "'",
                "value, value_float(s) or value_int(s)");
  }

  Graph graph(onnx::GraphProto& gp, int depth, bool top) {
    const std::string gname = gp.name().empty() ? std::string("graph") : "graph '" + gp.name() + "'";
    check(depth <= opt.max_subgraph_depth, Errc::kCorrupt, gname + " in " + file,
          "is nested " + std::to_string(depth) + " subgraphs deep",
          "at most " + std::to_string(opt.max_subgraph_depth) + " (LoadOptions::max_subgraph_depth)");
    Graph g;
    g.name = gp.name();
    g.doc_string = gp.doc_string();
    check(gp.sparse_initializer_size() == 0, Errc::kUnsupported, gname,
          "has sparse initializers", "dense initializers");
    for (auto& tp : *gp.mutable_initializer()) {
      const std::string subject = "initializer '" + tp.name() + "'";
      check(!tp.name().empty(), Errc::kCorrupt, gname, "has an initializer without a name");
      Tensor t = tensor_from_proto(tp, subject, ext, opt.max_tensor_bytes);
      g.values[tp.name()] = ValueInfo{t.dtype(), to_sym(t.shape())};
      g.initializers[tp.name()] = std::move(t);
    }
    std::unordered_set<std::string> seen_inputs;
    for (const auto& v : gp.input()) {
      const std::string subject = "input '" + v.name() + "' of " + gname;
      check(!v.name().empty(), Errc::kCorrupt, gname, "has an input without a name");
      check(seen_inputs.insert(v.name()).second, Errc::kCorrupt, subject, "is listed twice");
      ValueInfo vi = value_info(v, subject);
      // Inputs that are also initializers (IR < 4 listed every weight as an
      // input) are constants here; their initializer gives the type.
      if (g.initializers.count(v.name())) continue;
      g.inputs.push_back(v.name());
      g.values[v.name()] = std::move(vi);
    }
    for (const auto& v : gp.output()) {
      check(!v.name().empty(), Errc::kCorrupt, gname, "has an output without a name");
      g.outputs.push_back(v.name());
      ValueInfo vi = value_info(v, "output '" + v.name() + "' of " + gname);
      if (!g.values.count(v.name())) g.values[v.name()] = std::move(vi);
    }
    for (const auto& v : gp.value_info())
      if (!g.values.count(v.name())) g.values[v.name()] = value_info(v, "value '" + v.name() + "'");

    for (auto& np : *gp.mutable_node()) {
      Node n;
      n.name = np.name();
      n.op_type = np.op_type();
      n.domain = np.domain() == "ai.onnx" ? "" : np.domain();
      n.doc_string = np.doc_string();
      n.inputs.assign(np.input().begin(), np.input().end());
      n.outputs.assign(np.output().begin(), np.output().end());
      check(!n.op_type.empty(), Errc::kCorrupt, n.describe() + " in " + gname, "has no op_type");
      for (auto& a : *np.mutable_attribute()) {
        check(!a.name().empty(), Errc::kCorrupt, n.describe(), "has an attribute without a name");
        const std::string an = a.name();
        check(!n.attrs.count(an), Errc::kCorrupt, n.describe(), "has attribute '" + an + "' twice");
        n.attrs[an] = attribute(a, n.describe(), depth);
      }
      if (n.op_type == "Constant" && n.domain.empty()) {
        check(n.outputs.size() == 1 && !n.outputs[0].empty(), Errc::kCorrupt, n.describe(),
              "has " + std::to_string(n.outputs.size()) + " outputs", "one");
        Tensor t = constant_value(n);
        check(!g.initializers.count(n.outputs[0]), Errc::kCorrupt, n.describe(),
              "produces '" + n.outputs[0] + "', which is also an initializer");
        g.values[n.outputs[0]] = ValueInfo{t.dtype(), to_sym(t.shape())};
        g.initializers[n.outputs[0]] = std::move(t);
        continue;
      }
      g.nodes.push_back(std::move(n));
    }
    g.topo_sort();

    // Every input must be defined: here, or (for subgraphs) in an enclosing graph.
    if (top) {
      std::unordered_set<std::string> defined(g.inputs.begin(), g.inputs.end());
      for (const auto& [n, t] : g.initializers) defined.insert(n);
      for (const Node& n : g.nodes) {
        for (const std::string& in : n.inputs)
          check(in.empty() || defined.count(in), Errc::kCorrupt, n.describe(),
                "reads '" + in + "', which no node, input or initializer provides",
                "every input defined before use");
        for (const std::string& o : n.outputs) defined.insert(o);
      }
      for (const std::string& c : g.captured_names())
        throw Error(Errc::kCorrupt, gname + " in " + file,
                    "uses '" + c + "', which nothing in the model defines");
    }
    return g;
  }
};

Model convert(onnx::ModelProto& mp, const std::string& subject, ExternalData* ext,
              const LoadOptions& options) {
  check(mp.ir_version() > 0 && mp.has_graph(), Errc::kCorrupt, subject,
        "is not an ONNX model (no ir_version or no graph)", "an ONNX ModelProto");
  check(mp.ir_version() >= kMinIr && mp.ir_version() <= kMaxIr, Errc::kUnsupported, subject,
        "has IR version " + std::to_string(mp.ir_version()),
        "IR version " + std::to_string(kMinIr) + " to " + std::to_string(kMaxIr));
  Model m;
  m.ir_version = mp.ir_version();
  m.producer_name = mp.producer_name();
  m.producer_version = mp.producer_version();
  m.domain = mp.domain();
  m.model_version = mp.model_version();
  m.doc_string = mp.doc_string();
  for (const auto& kv : mp.metadata_props()) m.metadata.emplace_back(kv.key(), kv.value());
  m.opsets.clear();
  for (const auto& o : mp.opset_import()) {
    const std::string d = o.domain() == "ai.onnx" ? "" : o.domain();
    m.opsets[d] = o.version();
  }
  if (mp.opset_import_size() == 0) m.opsets[""] = 1;  // IR 3 without opset_import
  const int64_t v = m.opset("");
  if (m.opsets.count("")) {
    check(v >= kMinOpset && v <= kMaxOpset, Errc::kUnsupported, subject,
          "imports default-domain opset " + std::to_string(v),
          "opset " + std::to_string(kMinOpset) + " to " + std::to_string(kMaxOpset));
  }
  Importer imp{subject, ext, options};
  m.graph = imp.graph(*mp.mutable_graph(), 0, true);
  if (options.infer_shapes) infer_shapes(m, /*strict=*/false);
  return m;
}

}  // namespace

Model load_model(const std::string& path, const LoadOptions& options) {
  const std::string subject = "model '" + path + "'";
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  check(fd >= 0, Errc::kIo, subject, std::string("can't be opened: ") + std::strerror(errno));
  onnx::ModelProto mp;
  bool ok = false;
  {
    google::protobuf::io::FileInputStream in(fd);
    google::protobuf::io::CodedInputStream coded(&in);
    coded.SetTotalBytesLimit(std::numeric_limits<int>::max());
    coded.SetRecursionLimit(4 * options.max_subgraph_depth + 64);
    ok = mp.ParseFromCodedStream(&coded) && coded.ConsumedEntireMessage();
  }
  ::close(fd);
  check(ok, Errc::kCorrupt, subject,
        "is not a valid ONNX model (protobuf parsing failed: truncated, corrupt or another format)");
  const size_t slash = path.find_last_of('/');
  ExternalData ext(slash == std::string::npos ? std::string() : path.substr(0, slash));
  return convert(mp, subject, &ext, options);
}

Model parse_model(const std::string& bytes, const std::string& subject, const LoadOptions& options) {
  onnx::ModelProto mp;
  google::protobuf::io::CodedInputStream coded(reinterpret_cast<const uint8_t*>(bytes.data()),
                                               static_cast<int>(bytes.size()));
  coded.SetRecursionLimit(4 * options.max_subgraph_depth + 64);
  check(mp.ParseFromCodedStream(&coded) && coded.ConsumedEntireMessage(), Errc::kCorrupt, subject,
        "is not a valid ONNX model (protobuf parsing failed)");
  return convert(mp, subject, nullptr, options);
}

}  // namespace qforge::ir
