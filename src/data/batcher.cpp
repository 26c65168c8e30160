// Datasets of in-memory arrays, the seeded Batcher, CalibrationDataReader
// over a Batcher, and the factories that pick a reader from a path.
#include <algorithm>
#include <cstring>
#include <filesystem>
#include <numeric>
#include <random>
#include <regex>

#include "data/data_internal.h"
#include "qforge/data.h"
#include "qforge/npy.h"

namespace qforge {

namespace data_detail {

Tensor row_view(const Tensor& t, int64_t i) {
  if (t.rank() < 1 || i < 0 || i >= t.dim(0))
    throw Error(Errc::kInvalidArgument, t.describe(), "has no row " + std::to_string(i));
  if (dtype_info(t.dtype()).is_packed)
    throw Error(Errc::kUnsupported, t.describe(), "is packed: rows may not start on a byte",
                "a type of 8 bits or more");
  Shape s(t.shape().begin() + 1, t.shape().end());
  const auto row_bytes = static_cast<size_t>(storage_bytes(t.dtype(), shape_numel(s)));
  const auto base = static_cast<size_t>(static_cast<const char*>(t.raw()) -
                                        static_cast<const char*>(t.storage()->data()));
  Tensor v =
      Tensor::view(t.dtype(), std::move(s), t.storage(), base + static_cast<size_t>(i) * row_bytes);
  v.set_name(t.name());
  return v;
}

}  // namespace data_detail

namespace {

namespace fs = std::filesystem;
using data_detail::file_subject;

class TensorDataset final : public Dataset {
 public:
  TensorDataset(NamedTensors arrays, std::string desc)
      : arrays_(std::move(arrays)), desc_(std::move(desc)) {
    check(!arrays_.empty(), Errc::kInvalidArgument, desc_, "has no arrays", "at least one array");
    for (const auto& [name, t] : arrays_) {
      check(!t.empty() && t.rank() >= 1, Errc::kShapeMismatch, desc_,
            "array '" + name + "' is " + (t.empty() ? std::string("empty") : "a scalar") +
                ": it has no sample axis",
            "arrays of shape [N, ...]");
      check(!dtype_info(t.dtype()).is_packed, Errc::kUnsupported, desc_,
            "array '" + name + "' is of packed type " + std::string(dtype_name(t.dtype())));
      check(t.dim(0) == arrays_[0].second.dim(0), Errc::kShapeMismatch, desc_,
            "array '" + name + "' has " + std::to_string(t.dim(0)) + " samples, '" +
                arrays_[0].first + "' has " + std::to_string(arrays_[0].second.dim(0)),
            "the same first dimension in every array");
    }
  }
  int64_t size() const override { return arrays_[0].second.dim(0); }
  NamedTensors get(int64_t i) const override {
    data_detail::check_index(i, size(), desc_);
    NamedTensors s;
    for (const auto& [name, t] : arrays_) s.emplace_back(name, data_detail::row_view(t, i));
    return s;
  }
  std::string describe() const override { return desc_; }

 private:
  NamedTensors arrays_;
  std::string desc_;
};

// A uniform integer in [0, n): rejection sampling on the full 64-bit output
// of mt19937_64 (fully specified by the standard), so the shuffle does not
// depend on the standard library's distributions, which differ.
uint64_t uniform_below(std::mt19937_64& rng, uint64_t n) {
  const uint64_t threshold = (0 - n) % n;  // 2^64 mod n
  for (;;) {
    const uint64_t r = rng();
    if (r >= threshold) return r % n;
  }
}

std::string names_of(const NamedTensors& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + s[i].first;
  return r + "]";
}

// Stacks or concatenates the tensors of `samples` (all with the names of
// samples[0]) name by name.
NamedTensors collate(const std::vector<NamedTensors>& samples, const std::vector<int64_t>& index,
                     bool concat, const Dataset& data) {
  const NamedTensors& first = samples[0];
  auto where = [&](size_t j) {
    return "sample " + std::to_string(index[j]) + " of " + data.describe();
  };
  for (size_t j = 1; j < samples.size(); ++j) {
    bool same = samples[j].size() == first.size();
    for (size_t k = 0; same && k < first.size(); ++k) same = samples[j][k].first == first[k].first;
    if (!same)
      throw Error(Errc::kShapeMismatch, where(j), "has tensors " + names_of(samples[j]),
                  names_of(first) + " as sample " + std::to_string(index[0]));
  }
  NamedTensors out;
  for (size_t k = 0; k < first.size(); ++k) {
    const std::string& name = first[k].first;
    const Tensor& t0 = first[k].second;
    if (t0.empty() || dtype_info(t0.dtype()).is_packed)
      throw Error(Errc::kUnsupported, where(0),
                  "tensor '" + name + "' is empty or of a packed type",
                  "a tensor of 8 bits or more per element");
    if (concat && t0.rank() < 1)
      throw Error(Errc::kShapeMismatch, where(0),
                  "tensor '" + name + "' is a scalar and can't be concatenated",
                  "a leading batch axis");
    Shape inner = concat ? Shape(t0.shape().begin() + 1, t0.shape().end()) : t0.shape();
    int64_t lead = 0;
    for (size_t j = 0; j < samples.size(); ++j) {
      const Tensor& t = samples[j][k].second;
      const bool fits =
          !t.empty() && t.dtype() == t0.dtype() &&
          (concat ? t.rank() == t0.rank() && Shape(t.shape().begin() + 1, t.shape().end()) == inner
                  : t.shape() == t0.shape());
      if (!fits)
        throw Error(Errc::kShapeMismatch, where(j),
                    "tensor '" + name + "' is " + (t.empty() ? std::string("empty") : t.describe()),
                    std::string(dtype_name(t0.dtype())) + shape_str(t0.shape()) + " as in sample " +
                        std::to_string(index[0]) +
                        (concat ? " (all but the first dimension)" : ""));
      lead += concat ? t.dim(0) : 1;
    }
    Shape shape{lead};
    shape.insert(shape.end(), inner.begin(), inner.end());
    const auto bytes = static_cast<size_t>(storage_bytes(t0.dtype(), shape_numel(shape)));
    Tensor b = Tensor::view(t0.dtype(), shape, Storage::allocate_uninitialized(bytes));
    char* dst = static_cast<char*>(b.raw());
    for (const auto& s : samples) {
      const Tensor& t = s[k].second;
      if (t.nbytes()) std::memcpy(dst, t.raw(), t.nbytes());
      dst += t.nbytes();
    }
    b.set_name(name);
    out.emplace_back(name, std::move(b));
  }
  return out;
}

class DatasetReader final : public CalibrationDataReader {
 public:
  DatasetReader(std::shared_ptr<const Dataset> data, BatchOptions batch, InputMap inputs)
      : batcher_(std::move(data), batch), inputs_(std::move(inputs)) {}
  std::optional<NamedTensors> next() override {
    std::optional<NamedTensors> b = batcher_.next();
    if (!b || inputs_.empty()) return b;
    NamedTensors out;
    for (const auto& [input, from] : inputs_) {
      auto it = std::find_if(b->begin(), b->end(), [&](const auto& p) { return p.first == from; });
      if (it == b->end())
        throw Error(Errc::kNotFound, "model input '" + input + "'",
                    "is mapped to tensor '" + from + "', which the data's batches don't have",
                    "one of " + names_of(*b));
      Tensor t = it->second;
      t.set_name(input);
      out.emplace_back(input, std::move(t));
    }
    return out;
  }
  void rewind() override { batcher_.rewind(); }
  int64_t num_batches() const override { return batcher_.num_batches(); }

 private:
  Batcher batcher_;
  InputMap inputs_;
};

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

bool has_pb_inputs(const fs::path& dir) {
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string n = e.path().filename().string();
    if ((n.rfind("input_", 0) == 0 && ends_with(n, ".pb")) || n.rfind("test_data_set_", 0) == 0)
      return true;
  }
  return false;
}

}  // namespace

std::shared_ptr<Dataset> tensor_dataset(NamedTensors arrays, std::string description) {
  return std::make_shared<TensorDataset>(std::move(arrays), std::move(description));
}

// ---------------------------------------------------------------- Batcher

Batcher::Batcher(std::shared_ptr<const Dataset> data, BatchOptions opts)
    : data_(std::move(data)), opts_(opts) {
  check(data_ != nullptr, Errc::kInvalidArgument, "Batcher", "has no dataset");
  check(opts_.batch_size >= 1, Errc::kInvalidArgument, "batch options for " + data_->describe(),
        "batch_size = " + std::to_string(opts_.batch_size), "1 or more");
  check(opts_.limit >= 0, Errc::kInvalidArgument, "batch options for " + data_->describe(),
        "limit = " + std::to_string(opts_.limit), "0 (all samples) or more");
  const int64_t n = data_->size();
  order_.resize(static_cast<size_t>(n));
  std::iota(order_.begin(), order_.end(), int64_t{0});
  if (opts_.shuffle) {
    std::mt19937_64 rng(opts_.seed);
    for (size_t i = order_.size(); i > 1; --i) {
      const auto j = static_cast<size_t>(uniform_below(rng, i));
      std::swap(order_[i - 1], order_[j]);
    }
  }
  if (opts_.limit > 0 && opts_.limit < n) order_.resize(static_cast<size_t>(opts_.limit));
  if (opts_.drop_last)
    order_.resize(order_.size() / static_cast<size_t>(opts_.batch_size) *
                  static_cast<size_t>(opts_.batch_size));
}

int64_t Batcher::num_batches() const {
  const auto n = static_cast<int64_t>(order_.size());
  return (n + opts_.batch_size - 1) / opts_.batch_size;
}

std::optional<NamedTensors> Batcher::next() {
  if (pos_ >= order_.size()) return std::nullopt;
  const size_t end = std::min(order_.size(), pos_ + static_cast<size_t>(opts_.batch_size));
  std::vector<int64_t> index(order_.begin() + static_cast<std::ptrdiff_t>(pos_),
                             order_.begin() + static_cast<std::ptrdiff_t>(end));
  std::vector<NamedTensors> samples;
  samples.reserve(index.size());
  for (int64_t i : index) samples.push_back(data_->get(i));
  const bool concat = opts_.mode == BatchMode::kConcat ||
                      (opts_.mode == BatchMode::kAuto && data_->samples_batched());
  NamedTensors b = collate(samples, index, concat, *data_);
  pos_ = end;  // only after success: a failed batch is tried again
  return b;
}

// ---------------------------------------------------------------- readers

void CalibrationDataReader::rewind() {
  throw Error(Errc::kUnsupported, "this CalibrationDataReader", "can't rewind",
              "a reader that implements rewind() for multi-pass calibration");
}

std::unique_ptr<CalibrationDataReader> make_calibration_reader(std::shared_ptr<const Dataset> data,
                                                               BatchOptions batch,
                                                               InputMap inputs) {
  return std::make_unique<DatasetReader>(std::move(data), batch, std::move(inputs));
}

std::shared_ptr<Dataset> open_dataset(const std::string& path, const ImageOptions& image) {
  std::error_code ec;
  const fs::path p(path);
  if (fs::is_directory(p, ec)) {
    if (has_pb_inputs(p)) return open_pb_dataset(path);
    return open_image_folder(path, image);
  }
  const std::string name = p.filename().string();
  static const std::regex kIdx(R"(.*idx[0-9]+-ubyte(\.gz)?$)");
  if (ends_with(name, ".npy")) {
    Tensor t = read_npy(path);
    return tensor_dataset({{p.stem().string(), std::move(t)}}, file_subject(path));
  }
  if (ends_with(name, ".npz")) return tensor_dataset(read_npz(path), file_subject(path));
  if (std::regex_match(name, kIdx)) {
    std::string labels;
    const auto at = name.find("-images-idx3-ubyte");
    if (at != std::string::npos) {
      const fs::path l =
          p.parent_path() / (name.substr(0, at) + "-labels-idx1-ubyte" +
                             name.substr(at + std::string("-images-idx3-ubyte").size()));
      if (fs::is_regular_file(l, ec)) labels = l.string();
    }
    return open_idx_dataset(path, labels, image);
  }
  check(fs::exists(p, ec), Errc::kNotFound, file_subject(path), "does not exist");
  throw Error(Errc::kUnsupported, file_subject(path),
              "is not a kind of calibration data qforge reads",
              ".npy, .npz, *idx<D>-ubyte[.gz], or a folder of input_K.pb files, test_data_set_* "
              "folders or images");
}

InputMap map_inputs(const Dataset& data, const std::vector<std::string>& want) {
  check(data.size() > 0, Errc::kNotFound, data.describe(), "holds no samples", "at least one");
  const NamedTensors first = data.get(0);
  auto is_input = [&](const std::string& n) {
    return std::find(want.begin(), want.end(), n) != want.end();
  };
  std::vector<std::string> names;  // the data's tensors that may be inputs
  for (const auto& [n, t] : first)
    if (n != "label" || is_input(n)) names.push_back(n);
  InputMap map;
  if (want.empty()) {
    for (const auto& n : names) map.emplace_back(n, n);
  } else if (std::all_of(want.begin(), want.end(), [&](const std::string& w) {
               return std::find(names.begin(), names.end(), w) != names.end();
             })) {
    for (const auto& w : want) map.emplace_back(w, w);
  } else if (names.size() == want.size() && (want.size() == 1 || data.samples_batched())) {
    for (size_t i = 0; i < want.size(); ++i) map.emplace_back(want[i], names[i]);
  } else {
    std::string w = "[";
    for (size_t i = 0; i < want.size(); ++i) w += (i ? ", " : "") + want[i];
    std::string h = "[";
    for (size_t i = 0; i < names.size(); ++i) h += (i ? ", " : "") + names[i];
    throw Error(Errc::kInvalidArgument, data.describe(),
                "has tensors " + h + "] that can't be matched to the model inputs " + w + "]",
                "a tensor named as each input, or one tensor for a one-input model");
  }
  return map;
}

std::unique_ptr<CalibrationDataReader> open_calibration_data(const std::string& path,
                                                             const CalibrationOptions& opts) {
  std::shared_ptr<Dataset> data = open_dataset(path, opts.image);
  InputMap map = map_inputs(*data, opts.input_names);
  return make_calibration_reader(std::move(data), opts.batch, std::move(map));
}

}  // namespace qforge
