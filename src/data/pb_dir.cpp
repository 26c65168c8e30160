// Folders of ONNX TensorProto files, as ONNX's backend tests lay them out:
// test_data_set_N/input_K.pb. One folder of input_K.pb files is one sample;
// a folder of test_data_set_* folders is one sample per folder.
#include <algorithm>
#include <filesystem>
#include <map>

#include "data/data_internal.h"
#include "qforge/data.h"
#include "qforge/onnx_tensor.h"

namespace qforge {
namespace {

namespace fs = std::filesystem;

// The number after `prefix` in a name like "input_12.pb" / "test_data_set_3",
// or -1 when the name is not prefix + digits + suffix.
int64_t numbered(const std::string& name, const std::string& prefix, const std::string& suffix) {
  if (name.size() <= prefix.size() + suffix.size() || name.compare(0, prefix.size(), prefix) != 0 ||
      name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0)
    return -1;
  const std::string digits =
      name.substr(prefix.size(), name.size() - prefix.size() - suffix.size());
  if (digits.size() > 9 ||
      !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return -1;
  return std::stoll(digits);
}

// How many input_K.pb files dir holds (K = 0 .. n-1, no gaps); 0 if none.
int64_t count_inputs(const fs::path& dir) {
  std::vector<int64_t> ks;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const int64_t k = numbered(e.path().filename().string(), "input_", ".pb");
    if (k >= 0) ks.push_back(k);
  }
  check(!ec, Errc::kIo, "folder '" + dir.string() + "'", "can't be listed: " + ec.message());
  std::sort(ks.begin(), ks.end());
  for (size_t i = 0; i < ks.size(); ++i)
    check(ks[i] == static_cast<int64_t>(i), Errc::kNotFound,
          "file '" + (dir / ("input_" + std::to_string(i) + ".pb")).string() + "'", "is missing",
          "input_0.pb ... input_" + std::to_string(ks.size() - 1) + ".pb without gaps");
  return static_cast<int64_t>(ks.size());
}

class PbDataset final : public Dataset {
 public:
  PbDataset(std::vector<fs::path> sets, int64_t inputs, std::string desc)
      : sets_(std::move(sets)), inputs_(inputs), desc_(std::move(desc)) {}
  int64_t size() const override { return static_cast<int64_t>(sets_.size()); }
  NamedTensors get(int64_t i) const override {
    data_detail::check_index(i, size(), desc_);
    NamedTensors s;
    for (int64_t k = 0; k < inputs_; ++k) {
      Tensor t = read_tensor_pb(
          (sets_[static_cast<size_t>(i)] / ("input_" + std::to_string(k) + ".pb")).string());
      std::string name = t.name().empty() ? "input_" + std::to_string(k) : t.name();
      s.emplace_back(std::move(name), std::move(t));
    }
    return s;
  }
  bool samples_batched() const override { return true; }
  std::string describe() const override { return desc_; }

 private:
  std::vector<fs::path> sets_;
  int64_t inputs_;
  std::string desc_;
};

}  // namespace

std::shared_ptr<Dataset> open_pb_dataset(const std::string& dir) {
  const std::string desc = "tensor folder '" + dir + "'";
  std::error_code ec;
  check(fs::exists(dir, ec), Errc::kNotFound, desc, "does not exist");
  check(fs::is_directory(dir, ec), Errc::kInvalidArgument, desc, "is not a folder");
  const int64_t here = count_inputs(dir);
  if (here > 0)
    return std::make_shared<PbDataset>(std::vector<fs::path>{fs::path(dir)}, here, desc);

  std::map<int64_t, fs::path> sets;  // ordered by number
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    std::error_code dec;
    const int64_t n = numbered(e.path().filename().string(), "test_data_set_", "");
    if (n >= 0 && e.is_directory(dec)) sets[n] = e.path();
  }
  check(!ec, Errc::kIo, desc, "can't be listed: " + ec.message());
  check(!sets.empty(), Errc::kNotFound, desc,
        "has no input_K.pb files and no test_data_set_* folders",
        "input_0.pb ... or test_data_set_0/input_0.pb ...");
  std::vector<fs::path> paths;
  int64_t inputs = -1;
  for (const auto& [n, p] : sets) {
    const int64_t k = count_inputs(p);
    const std::string sd = "tensor folder '" + p.string() + "'";
    check(k > 0, Errc::kNotFound, sd, "has no input_K.pb files", "input_0.pb ...");
    if (inputs >= 0 && k != inputs)
      throw Error(Errc::kShapeMismatch, sd,
                  "has " + std::to_string(k) + " inputs, " + paths.front().filename().string() +
                      " has " + std::to_string(inputs),
                  "the same inputs in every test_data_set_*");
    inputs = k;
    paths.push_back(p);
  }
  return std::make_shared<PbDataset>(std::move(paths), inputs, desc);
}

}  // namespace qforge
