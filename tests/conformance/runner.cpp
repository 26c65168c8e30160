// ONNX backend conformance: runs every test of ONNX's backend test data
// (Debian libonnx-testdata: <dir>/<test>/model.onnx plus
// test_data_set_*/input_*.pb and output_*.pb) through qforge's Session and
// compares with the expected outputs (ONNX's backend tolerance: rtol 1e-3,
// atol 1e-7). Prints passed / failed / unsupported per directory.
//
//   qforge_conformance [--data DIR] [--dirs node,simple,...] [--filter SUBSTR]
//                      [--expected FILE] [--write-expected FILE] [--report FILE] [-v]
//
// With --expected, exits 1 when a listed test no longer passes (a
// regression); tests passing that are not listed are reported as new.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "qforge/error.h"
#include "qforge/ir.h"
#include "qforge/npy.h"
#include "qforge/onnx_tensor.h"
#include "qforge/session.h"

namespace fs = std::filesystem;
using namespace qforge;

namespace {

enum class Outcome { kPass, kFail, kUnsupported };

struct Result {
  std::string name;  // "node/test_add"
  Outcome outcome;
  std::string reason;
};

std::vector<fs::path> sorted_entries(const fs::path& dir, const std::string& prefix) {
  std::vector<fs::path> r;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().filename().string().rfind(prefix, 0) == 0) r.push_back(e.path());
  // input_10 after input_9: sort by the number after the last '_'.
  std::sort(r.begin(), r.end(), [](const fs::path& a, const fs::path& b) {
    auto num = [](const fs::path& p) {
      const std::string s = p.stem().string();
      const size_t u = s.find_last_of('_');
      return u == std::string::npos ? 0L : std::atol(s.c_str() + u + 1);
    };
    return num(a) < num(b);
  });
  return r;
}

template <typename T>
std::string compare_values(const T* got, const T* want, int64_t n, double rtol, double atol) {
  for (int64_t i = 0; i < n; ++i) {
    const double g = static_cast<double>(got[i]), w = static_cast<double>(want[i]);
    bool ok;
    if constexpr (std::is_floating_point_v<T>) {
      ok = (std::isnan(g) && std::isnan(w)) || (g == w) || std::fabs(g - w) <= atol + rtol * std::fabs(w);
    } else {
      ok = g == w;
    }
    if (!ok) {
      char buf[160];
      std::snprintf(buf, sizeof buf, "element %lld is %.9g, expected %.9g", static_cast<long long>(i), g, w);
      return buf;
    }
  }
  return {};
}

std::string compare(const Tensor& got, const Tensor& want, double rtol, double atol) {
  if (got.dtype() != want.dtype())
    return "dtype " + std::string(dtype_name(got.dtype())) + ", expected " + std::string(dtype_name(want.dtype()));
  if (got.shape() != want.shape())
    return "shape " + shape_str(got.shape()) + ", expected " + shape_str(want.shape());
  const int64_t n = got.numel();
  switch (got.dtype()) {
    case DType::kF32: return compare_values(got.data<float>(), want.data<float>(), n, rtol, atol);
    case DType::kF64: return compare_values(got.data<double>(), want.data<double>(), n, rtol, atol);
    case DType::kI64: return compare_values(got.data<int64_t>(), want.data<int64_t>(), n, 0, 0);
    case DType::kI32: return compare_values(got.data<int32_t>(), want.data<int32_t>(), n, 0, 0);
    case DType::kI16: return compare_values(got.data<int16_t>(), want.data<int16_t>(), n, 0, 0);
    case DType::kU16: return compare_values(got.data<uint16_t>(), want.data<uint16_t>(), n, 0, 0);
    case DType::kI8: return compare_values(got.data<int8_t>(), want.data<int8_t>(), n, 0, 0);
    case DType::kU8: return compare_values(got.data<uint8_t>(), want.data<uint8_t>(), n, 0, 0);
    case DType::kBool: return compare_values(got.data<bool>(), want.data<bool>(), n, 0, 0);
    default:
      return std::memcmp(got.raw(), want.raw(), got.nbytes()) == 0 ? std::string() : "bytes differ";
  }
}

Result run_test(const fs::path& dir, const std::string& name) {
  Result r{name, Outcome::kFail, {}};
  try {
    ir::Model model = ir::load_model((dir / "model.onnx").string());
    Session session(std::move(model));
    const auto sets = sorted_entries(dir, "test_data_set_");
    if (sets.empty()) return {name, Outcome::kUnsupported, "no test data sets"};
    for (const fs::path& set : sets) {
      Session::NamedTensors inputs;
      const auto in_files = sorted_entries(set, "input_");
      const auto& declared = session.inputs();
      if (in_files.size() > declared.size())
        return {name, Outcome::kFail,
                set.filename().string() + ": " + std::to_string(in_files.size()) +
                    " input files for " + std::to_string(declared.size()) + " model inputs"};
      for (size_t i = 0; i < in_files.size(); ++i) {
        Tensor t = read_tensor_pb(in_files[i].string());
        // ONNX 1.12's test generator stores bfloat16 data as UINT16 tensors.
        if (t.dtype() == DType::kU16 && declared[i].info.dtype == DType::kBF16)
          t = Tensor::view(DType::kBF16, t.shape(), t.storage());
        inputs.emplace_back(declared[i].name, std::move(t));
      }
      const std::vector<Tensor> got = session.run(inputs);
      const auto out_files = sorted_entries(set, "output_");
      if (out_files.size() != got.size())
        return {name, Outcome::kFail,
                set.filename().string() + ": " + std::to_string(got.size()) + " outputs, expected " +
                    std::to_string(out_files.size())};
      for (size_t i = 0; i < got.size(); ++i) {
        Tensor want = read_tensor_pb(out_files[i].string());
        if (want.dtype() == DType::kU16 && got[i].dtype() == DType::kBF16)  // as for inputs
          want = Tensor::view(DType::kBF16, want.shape(), want.storage());
        const std::string diff = compare(got[i], want, 1e-3, 1e-7);
        if (!diff.empty())
          return {name, Outcome::kFail,
                  set.filename().string() + " output " + std::to_string(i) + " ('" +
                      session.outputs()[i].name + "'): " + diff};
      }
    }
    r.outcome = Outcome::kPass;
  } catch (const Error& e) {
    r.outcome = e.code() == Errc::kUnsupported ? Outcome::kUnsupported : Outcome::kFail;
    r.reason = e.what();
  } catch (const std::exception& e) {
    r.outcome = Outcome::kFail;
    r.reason = std::string("exception: ") + e.what();
  }
  return r;
}

std::set<std::string> read_list(const std::string& path) {
  std::set<std::string> s;
  std::ifstream f(path);
  if (!f) throw Error(Errc::kIo, "expected-pass list '" + path + "'", "can't be opened");
  std::string line;
  while (std::getline(f, line)) {
    if (line.empty() || line[0] == '#') continue;
    s.insert(line);
  }
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  std::string data = "/usr/share/libonnx-testdata/data";
  std::vector<std::string> dirs = {"node", "pytorch-converted", "pytorch-operator", "simple"};
  std::string filter, expected_path, write_path, report_path;
  bool verbose = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "qforge_conformance: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--data") data = next();
    else if (a == "--dirs") {
      dirs.clear();
      std::string v = next(), cur;
      for (char c : v + ",")
        if (c == ',') { if (!cur.empty()) dirs.push_back(cur); cur.clear(); }
        else cur += c;
    } else if (a == "--filter") filter = next();
    else if (a == "--expected") expected_path = next();
    else if (a == "--write-expected") write_path = next();
    else if (a == "--report") report_path = next();
    else if (a == "-v" || a == "--verbose") verbose = true;
    else {
      std::fprintf(stderr, "usage: qforge_conformance [--data DIR] [--dirs a,b] [--filter S] "
                           "[--expected FILE] [--write-expected FILE] [--report FILE] [-v]\n");
      return 2;
    }
  }
  if (!fs::is_directory(data)) {
    std::fprintf(stderr, "qforge_conformance: error: '%s' is not a directory (install libonnx-testdata)\n", data.c_str());
    return 1;
  }
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<Result> results;
  std::printf("%-20s %8s %8s %12s\n", "directory", "passed", "failed", "unsupported");
  for (const std::string& d : dirs) {
    const fs::path root = fs::path(data) / d;
    if (!fs::is_directory(root)) continue;
    std::vector<fs::path> tests;
    for (const auto& e : fs::directory_iterator(root))
      if (e.is_directory() && fs::exists(e.path() / "model.onnx")) tests.push_back(e.path());
    std::sort(tests.begin(), tests.end());
    int counts[3] = {0, 0, 0};
    for (const fs::path& t : tests) {
      const std::string name = d + "/" + t.filename().string();
      if (!filter.empty() && name.find(filter) == std::string::npos) continue;
      Result r = run_test(t, name);
      ++counts[static_cast<int>(r.outcome)];
      if (verbose && r.outcome != Outcome::kPass)
        std::printf("  %s %s: %s\n", r.outcome == Outcome::kFail ? "FAIL" : "UNSUPPORTED",
                    name.c_str(), r.reason.c_str());
      results.push_back(std::move(r));
    }
    std::printf("%-20s %8d %8d %12d\n", d.c_str(), counts[0], counts[1], counts[2]);
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("%zu tests in %.1f s\n", results.size(), secs);

  if (!write_path.empty()) {
    std::string out = "# ONNX backend tests qforge passes; CI fails if one stops passing.\n"
                      "# Regenerate: build/tests/qforge_conformance --write-expected tests/conformance/expected_pass.txt\n";
    for (const Result& r : results)
      if (r.outcome == Outcome::kPass) out += r.name + "\n";
    write_file_atomic(write_path, out);
  }
  if (!report_path.empty()) {
    std::string out = "# ONNX backend tests qforge does not pass\n\n"
                      "Generated by `build/tests/qforge_conformance --report docs/CONFORMANCE.md`.\n\n"
                      "| test | outcome | reason |\n|---|---|---|\n";
    for (const Result& r : results) {
      if (r.outcome == Outcome::kPass) continue;
      std::string reason = r.reason;
      std::replace(reason.begin(), reason.end(), '|', '/');
      std::replace(reason.begin(), reason.end(), '\n', ' ');
      out += "| " + r.name + " | " + (r.outcome == Outcome::kFail ? "failed" : "unsupported") +
             " | " + reason + " |\n";
    }
    write_file_atomic(report_path, out);
  }
  int status = 0;
  if (!expected_path.empty()) {
    const std::set<std::string> expected = read_list(expected_path);
    std::set<std::string> seen;
    int regressions = 0, fresh = 0;
    for (const Result& r : results) {
      seen.insert(r.name);
      if (expected.count(r.name) && r.outcome != Outcome::kPass) {
        std::printf("REGRESSION %s: %s\n", r.name.c_str(), r.reason.c_str());
        ++regressions;
      } else if (!expected.count(r.name) && r.outcome == Outcome::kPass) {
        ++fresh;
      }
    }
    if (filter.empty())
      for (const std::string& e : expected)
        if (!seen.count(e)) {
          std::printf("MISSING %s: listed as passing, but not found in the test data\n", e.c_str());
          ++regressions;
        }
    std::printf("expected passes: %zu, regressions: %d, new passes not in the list: %d\n",
                expected.size(), regressions, fresh);
    if (regressions) status = 1;
  }
  return status;
}
