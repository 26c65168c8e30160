// `qforge inspect MODEL`: what a model is made of and whether qforge can run
// it: opsets, inputs and outputs with shapes, an op histogram, parameters by
// dtype, and each node qforge can't run with the reason.
#include <cstdio>
#include <filesystem>
#include <algorithm>
#include <map>

#include "commands.h"
#include "qforge/ir.h"
#include "qforge/op.h"

namespace qforge::cli {
namespace {

std::string human_bytes(double b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB"};
  int u = 0;
  while (b >= 1024 && u < 3) {
    b /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, u ? "%.1f %s" : "%.0f %s", b, units[u]);
  return buf;
}

struct Census {
  std::map<std::string, int> ops;
  std::map<DType, std::pair<int64_t, int64_t>> params;  // dtype -> (elements, tensors)
  // reason -> (nodes, the first node's description); grouped so a model
  // with hundreds of one missing op stays readable.
  std::map<std::string, std::pair<int, std::string>> cannot_run;
  int cannot_run_nodes = 0;
  int nodes = 0, subgraphs = 0;
};

void survey(const ir::Graph& g, const ir::Model& m, Census& c, const std::vector<const ir::Graph*>& scopes) {
  for (const auto& [name, t] : g.initializers) {
    auto& p = c.params[t.dtype()];
    p.first += t.numel();
    p.second += 1;
  }
  std::vector<const ir::Graph*> inner = scopes;
  inner.push_back(&g);
  auto lookup_info = [&](const std::string& v) -> const ir::ValueInfo* {
    for (auto it = inner.rbegin(); it != inner.rend(); ++it)
      if (const ir::ValueInfo* vi = (*it)->info(v)) return vi;
    return nullptr;
  };
  auto lookup_const = [&](const std::string& v) -> const Tensor* {
    for (auto it = inner.rbegin(); it != inner.rend(); ++it)
      if (const Tensor* t = (*it)->initializer(v)) return t;
    return nullptr;
  };
  static const ir::ValueInfo kUnknown;
  for (const ir::Node& n : g.nodes) {
    ++c.nodes;
    ++c.ops[n.domain.empty() ? n.op_type : n.domain + "." + n.op_type];
    std::vector<const ir::ValueInfo*> in;
    std::vector<const Tensor*> consts;
    for (const std::string& v : n.inputs) {
      const ir::ValueInfo* vi = v.empty() ? nullptr : lookup_info(v);
      in.push_back(v.empty() ? nullptr : (vi ? vi : &kUnknown));
      consts.push_back(v.empty() ? nullptr : lookup_const(v));
    }
    const ops::InferContext ctx(n, m.opset(n.domain), in, consts);
    std::string why;
    try {
      why = ops::unsupported_reason(n, m.opset(n.domain), &ctx);
    } catch (const Error& e) {
      why = e.what();
    }
    if (!why.empty()) {
      auto& [count, first] = c.cannot_run[why];
      if (count++ == 0) first = n.describe();
      ++c.cannot_run_nodes;
    }
    for (const auto& [an, a] : n.attrs) {
      if (a.g) {
        ++c.subgraphs;
        survey(*a.g, m, c, inner);
      }
      for (const auto& sg : a.graphs) {
        ++c.subgraphs;
        survey(*sg, m, c, inner);
      }
    }
  }
}

int run_inspect(const std::string& path) {
  const ir::Model m = ir::load_model(path);
  std::printf("model      %s (%s)\n", path.c_str(),
              human_bytes(static_cast<double>(std::filesystem::file_size(path))).c_str());
  std::printf("ir         version %lld, producer '%s %s'\n", static_cast<long long>(m.ir_version),
              m.producer_name.c_str(), m.producer_version.c_str());
  std::printf("opsets    ");
  for (const auto& [d, v] : m.opsets)
    std::printf(" %s %lld", d.empty() ? "ai.onnx" : d.c_str(), static_cast<long long>(v));
  std::printf("\n\ninputs\n");
  for (const std::string& i : m.graph.inputs)
    std::printf("  %-24s %s\n", i.c_str(), m.graph.info(i) ? m.graph.info(i)->str().c_str() : "?");
  std::printf("outputs\n");
  for (const std::string& o : m.graph.outputs)
    std::printf("  %-24s %s\n", o.c_str(), m.graph.info(o) ? m.graph.info(o)->str().c_str() : "?");

  Census c;
  survey(m.graph, m, c, {});
  std::printf("\nnodes      %d", c.nodes);
  if (c.subgraphs) std::printf(" (including %d subgraphs)", c.subgraphs);
  std::printf("\n");
  std::vector<std::pair<int, std::string>> hist;
  for (const auto& [op, n] : c.ops) hist.emplace_back(-n, op);
  std::sort(hist.begin(), hist.end());
  for (const auto& [n, op] : hist) std::printf("  %-24s %d\n", op.c_str(), -n);

  int64_t total = 0, total_bytes = 0;
  for (const auto& [dt, p] : c.params) {
    total += p.first;
    total_bytes += storage_bytes(dt, p.first);
  }
  std::printf("\nparameters %lld in %zu dtype(s), %s\n", static_cast<long long>(total), c.params.size(),
              human_bytes(static_cast<double>(total_bytes)).c_str());
  for (const auto& [dt, p] : c.params)
    std::printf("  %-6s %14lld elements in %5lld tensors, %s\n", std::string(dtype_name(dt)).c_str(),
                static_cast<long long>(p.first), static_cast<long long>(p.second),
                human_bytes(static_cast<double>(storage_bytes(dt, p.first))).c_str());

  if (c.cannot_run.empty()) {
    std::printf("\nqforge can run every node of this model.\n");
  } else {
    std::printf("\nqforge can't run %d node(s):\n", c.cannot_run_nodes);
    for (const auto& [why, seen] : c.cannot_run) {
      if (seen.first == 1) std::printf("  %s: %s\n", seen.second.c_str(), why.c_str());
      else std::printf("  %d nodes, e.g. %s: %s\n", seen.first, seen.second.c_str(), why.c_str());
    }
  }
  return 0;
}

}  // namespace

Command add_inspect(CLI::App& app) {
  auto* sub = app.add_subcommand("inspect", "Describe an ONNX model and what qforge can run of it");
  auto path = std::make_shared<std::string>();
  sub->add_option("model", *path, "ONNX model file")->required();
  return {sub, [path] { return run_inspect(*path); }};
}

}  // namespace qforge::cli
