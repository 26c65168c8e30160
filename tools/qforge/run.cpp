// `qforge run MODEL --input NAME=FILE ... --output-dir DIR`: runs a model on
// NPY or ONNX TensorProto (.pb) inputs and writes each output to DIR in the
// same format (NAME.npy, or NAME.pb with --format pb).
#include <algorithm>
#include <cstdio>
#include <filesystem>

#include "commands.h"
#include "qforge/npy.h"
#include "qforge/onnx_tensor.h"
#include "qforge/session.h"

namespace qforge::cli {
namespace {

struct Options {
  std::string model, output_dir, format = "npy";
  std::vector<std::string> inputs;
  int threads = 0;
  bool profile = false;
  int repeat = 1;
};

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

Tensor read_tensor_file(const std::string& path) {
  if (ends_with(path, ".pb")) return read_tensor_pb(path);
  return read_npy(path);
}

// Output names may hold '/' or ':' (e.g. "encoder/layer.0:0"): keep a file name safe.
std::string file_name_for(const std::string& value) {
  std::string r;
  for (char ch : value)
    r += (std::isalnum(static_cast<unsigned char>(ch)) || ch == '_' || ch == '-' || ch == '.') ? ch : '_';
  return r.empty() ? std::string("output") : r;
}

// Each node's median time over profiles[1..] (or profiles[0] alone).
RunProfile median_profile(const std::vector<RunProfile>& profiles) {
  if (profiles.size() == 1) return profiles[0];
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  RunProfile out = profiles[1];
  std::vector<double> totals;
  for (size_t i = 1; i < profiles.size(); ++i) totals.push_back(profiles[i].total_ms);
  out.total_ms = median(totals);
  for (size_t n = 0; n < out.nodes.size(); ++n) {
    std::vector<double> t;
    for (size_t i = 1; i < profiles.size(); ++i)
      if (n < profiles[i].nodes.size()) t.push_back(profiles[i].nodes[n].ms);
    out.nodes[n].ms = median(t);
  }
  return out;
}

int run_model(const Options& o) {
  check(o.format == "npy" || o.format == "pb", Errc::kInvalidArgument, "--format " + o.format,
        "is not a tensor format", "npy or pb");
  SessionOptions so;
  so.threads = o.threads;
  const Session session(o.model, so);
  Session::NamedTensors inputs;
  size_t positional = 0;
  for (const std::string& spec : o.inputs) {
    const size_t eq = spec.find('=');
    std::string name, file;
    if (eq == std::string::npos) {  // FILE alone: the next model input in order
      check(positional < session.inputs().size(), Errc::kInvalidArgument, "--input " + spec,
            "is one input too many", std::to_string(session.inputs().size()) + " model inputs");
      name = session.inputs()[positional++].name;
      file = spec;
    } else {
      name = spec.substr(0, eq);
      file = spec.substr(eq + 1);
    }
    Tensor t = read_tensor_file(file);
    t.set_name(name);
    inputs.emplace_back(name, std::move(t));
  }
  check(o.repeat >= 1, Errc::kInvalidArgument, "--repeat " + std::to_string(o.repeat), "must be at least 1");
  // With --repeat N the model runs N times; the profile shows each node's
  // median over the runs after the first (the first one warms caches and
  // the buffer pool), or the single run when N is 1.
  std::vector<RunProfile> profiles(static_cast<size_t>(o.repeat));
  std::vector<Tensor> outputs;
  for (int r = 0; r < o.repeat; ++r)
    outputs = session.run(inputs, o.profile ? &profiles[static_cast<size_t>(r)] : nullptr);
  const RunProfile profile = median_profile(profiles);
  if (!o.output_dir.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(o.output_dir, ec);
    check(!ec, Errc::kIo, "output directory '" + o.output_dir + "'", "can't be created: " + ec.message());
  }
  for (size_t i = 0; i < outputs.size(); ++i) {
    const std::string& name = session.outputs()[i].name;
    std::printf("%-24s %s%s", name.c_str(), std::string(dtype_name(outputs[i].dtype())).c_str(),
                shape_str(outputs[i].shape()).c_str());
    if (!o.output_dir.empty()) {
      const std::string path = o.output_dir + "/" + file_name_for(name) + "." + o.format;
      if (o.format == "pb") write_tensor_pb(path, outputs[i]);
      else write_npy(path, outputs[i]);
      std::printf("  -> %s", path.c_str());
    }
    std::printf("\n");
  }
  if (o.profile) {
    if (o.repeat > 1) std::printf("\nmedian of %d warm runs\n", o.repeat - 1);
    std::printf("\n%-32s %-20s %10s\n", "node", "op", "ms");
    for (const NodeTime& t : profile.nodes)
      std::printf("%-32s %-20s %10.3f\n", t.node.c_str(), t.op_type.c_str(), t.ms);
    std::printf("%-53s %10.3f\n", "total", profile.total_ms);
  }
  return 0;
}

}  // namespace

Command add_run(CLI::App& app) {
  auto* sub = app.add_subcommand("run", "Run an ONNX model on NPY or TensorProto inputs");
  auto o = std::make_shared<Options>();
  sub->add_option("model", o->model, "ONNX model file")->required();
  sub->add_option("-i,--input", o->inputs, "NAME=FILE.npy|FILE.pb (or FILE, in model input order)");
  sub->add_option("-o,--output-dir", o->output_dir, "write each output as NAME.npy (or .pb) here");
  sub->add_option("--format", o->format, "output format: npy (default) or pb");
  sub->add_option("--threads", o->threads, "threads (default: QFORGE_NUM_THREADS or all cores)");
  sub->add_flag("--profile", o->profile, "print each node's time");
  sub->add_option("--repeat", o->repeat, "run N times; the profile is the median of the warm runs");
  return {sub, [o] { return run_model(*o); }};
}

}  // namespace qforge::cli
