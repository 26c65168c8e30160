// `qforge demo`: the main job end to end on the bundled Fashion-MNIST CNN and
// Debian's Fashion-MNIST data: dynamic and static quantization, accuracy on
// the 10k test images, speed and memory, per-layer error, a sensitivity scan,
// and the report. Each step is the library call its own subcommand makes.
#include <chrono>
#include <cstdio>
#include <filesystem>

#include "cli_util.h"
#include "commands.h"
#include "qforge/error.h"
#include "qforge/evaluate.h"
#include "qforge/quantize.h"
#include "report.h"
#include "results.h"

namespace qforge::cli {
namespace {

namespace fs = std::filesystem;

struct Options {
  std::string model = std::string(QFORGE_MODELS_DIR) + "/fmnist/cnn_bn.onnx";
  std::string data = "/usr/share/datasets/fashion-mnist";
  std::string out = "qforge-demo";
  int64_t test_samples = 0;  // 0: all 10k
  int runs = 30;
  bool quiet = false;
};

void step(int k, const char* what) { std::printf("\n== %d/6 %s\n", k, what); }

std::string quantize_to(const ir::Model& model, QuantConfig c, CalibrationDataReader* calib, const std::string& path,
                        bool quiet) {
  QuantizeReport rep;
  {
    ProgressBar bar(progress_enabled(quiet), "calibrating");
    const ir::Model q = quantize_model(model, c, calib, &rep, [&](const CalibrationProgress& p) {
      bar.update(p.batches, p.total_batches, p.seconds, p.samples);
    });
    ir::SaveOptions save;
    save.value_info = false;  // as qforge quantize writes it
    ir::save_model(q, path, save);
  }
  std::printf("%-8s %d node(s) quantized, %d kept float; weights %s -> %s; wrote %s\n", quant_mode_name(c.mode),
              rep.quantized, rep.kept_float, human_bytes(rep.bytes_before).c_str(),
              human_bytes(rep.bytes_after).c_str(), path.c_str());
  for (const SpeedDecision& s : rep.speed)
    if (s.kept_float)
      std::printf("         %s kept float: %.3f ms in int8 vs %.3f ms float at batch 1 on this CPU\n", s.node.c_str(),
                  s.int_ms, s.float_ms);
  for (const std::string& n : rep.notes)
    if (n.rfind("speed check", 0) == 0) std::printf("         %s\n", n.c_str());
  return path;
}

int demo(const Options& o) {
  const auto t0 = std::chrono::steady_clock::now();
  const std::string test = o.data + "/t10k-images-idx3-ubyte.gz", train = o.data + "/train-images-idx3-ubyte.gz";
  for (const std::string& f : {test, train, o.data + "/t10k-labels-idx1-ubyte.gz"})
    check(fs::exists(f), Errc::kNotFound, "Fashion-MNIST file '" + f + "'", "is missing",
          "Debian's dataset-fashion-mnist (scripts/setup.sh installs it), or --data DIR");
  std::error_code ec;
  fs::create_directories(o.out, ec);
  check(!ec && fs::is_directory(o.out), Errc::kIo, "output folder '" + o.out + "'",
        "can't be created" + (ec ? ": " + ec.message() : std::string()), "a writable folder (--out DIR)");
  const std::string stem = (fs::path(o.out) / fs::path(o.model).stem()).string();
  const ir::Model model = ir::load_model(o.model);
  std::printf("qforge demo: %s on Fashion-MNIST (%s)\n", o.model.c_str(), o.data.c_str());

  step(1, "quantize: dynamic (weights int8 ahead of time, activations at run time) and static "
          "(512 training images calibrate the activations)");
  // Never slower than float: nodes that lose in int8 at batch 1 stay float.
  QuantConfig base;
  base.speed_check = true;
  QuantConfig dyn = base;
  dyn.mode = QuantMode::kDynamic;
  const std::string dyn_path = quantize_to(model, dyn, nullptr, stem + ".dynamic.onnx", o.quiet);
  CalibrationOptions co;
  co.input_names = model.graph.inputs;
  co.batch.batch_size = 32;
  co.batch.limit = 512;
  co.batch.shuffle = true;
  auto calib = open_calibration_data(train, co);
  const std::string static_path = quantize_to(model, base, calib.get(), stem + ".static.onnx", o.quiet);
  const std::vector<std::string> models = {o.model, static_path, dyn_path};

  step(2, "evaluate: top-1 accuracy on the test images");
  EvalOptions eo;
  eo.batch.batch_size = 64;
  eo.batch.limit = o.test_samples;
  EvalResult er;
  {
    ProgressBar bar(progress_enabled(o.quiet), "evaluating");
    eo.progress = [&](int64_t d, int64_t t, double s) { bar.update(d, t, s); };
    er = evaluate(models, test, eo);
  }
  print_eval(er);
  std::vector<std::string> results = {o.out + "/eval.json"};
  write_json(results[0], to_json(er));

  step(3, "benchmark: latency at batch 1 and 32, memory, load time");
  for (int64_t batch : {1, 32}) {
    BenchOptions bo;
    bo.batch = batch;
    bo.runs = o.runs;
    std::vector<BenchResult> br;
    {
      ProgressBar bar(progress_enabled(o.quiet), "timing batch " + std::to_string(batch), "rounds");
      bo.progress = [&](int64_t d, int64_t t, double s) { bar.update(d, t, s); };
      br = benchmark(models, bo);
    }
    print_bench(br, bo);
    results.push_back(o.out + "/bench_b" + std::to_string(batch) + ".json");
    write_json(results.back(), to_json(br, bo));
    std::printf("\n");
  }

  step(4, "compare: per-tensor error of the static model against the float one (256 test images)");
  CompareOptions cmp;
  cmp.batch.limit = 256;
  const CompareResult cr = compare_models(o.model, static_path, test, cmp);
  print_compare(cr, 10);
  results.push_back(o.out + "/compare.json");
  write_json(results.back(), to_json(cr));

  step(5, "sensitivity: each quantized layer left float in turn (1000 test images)");
  EvalOptions se;
  se.batch.batch_size = 64;
  se.batch.limit = 1000;
  BatchOptions cb;
  cb.batch_size = 32;
  cb.limit = 512;
  cb.shuffle = true;
  SensitivityResult sr;
  {
    ProgressBar bar(progress_enabled(o.quiet), "scanning", "layers");
    sr = sensitivity_scan(model, QuantConfig{}, train, cb, test, se,
                          [&](int64_t d, int64_t t, double s) { bar.update(d, t, s); });
  }
  print_sensitivity(sr);
  results.push_back(o.out + "/sensitivity.json");
  write_json(results.back(), to_json(sr));

  step(6, "report");
  const ReportFiles f = write_report(results, o.out + "/report.html");
  std::printf("done in %.0f s. The report: %s (offline HTML; also %s and %s)\n",
              std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), f.html.c_str(),
              f.markdown.c_str(), f.json.c_str());
  return 0;
}

}  // namespace

Command add_demo(CLI::App& app) {
  auto* sub = app.add_subcommand("demo", "The main job on the bundled Fashion-MNIST CNN: quantize, evaluate, "
                                         "benchmark, compare, report");
  auto o = std::make_shared<Options>();
  sub->add_option("--model", o->model, "float ONNX model taking Fashion-MNIST images (default: the bundled CNN)");
  sub->add_option("--data", o->data, "folder with Fashion-MNIST's IDX files (default: Debian's)");
  sub->add_option("--out", o->out, "folder for the models, results and report (default qforge-demo)");
  sub->add_option("--test-samples", o->test_samples, "evaluate on the first N test images (default: all 10000)");
  sub->add_option("--runs", o->runs, "timed runs per model and batch (default 30)");
  sub->add_flag("-q,--quiet", o->quiet, "no progress bars");
  return {sub, [o] { return demo(*o); }};
}

}  // namespace qforge::cli
