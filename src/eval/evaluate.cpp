// evaluate(): a metric for one or several models over the same batches.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>

#include "eval/eval_util.h"
#include "qforge/error.h"
#include "qforge/evaluate.h"
#include "qforge/npy.h"

namespace qforge {

namespace eval_detail {

double element(const Tensor& t, int64_t i) {
  switch (t.dtype()) {
    case DType::kF32: return t.data<float>()[i];
    case DType::kF64: return t.data<double>()[i];
    case DType::kI64: return static_cast<double>(t.data<int64_t>()[i]);
    case DType::kI32: return t.data<int32_t>()[i];
    case DType::kI16: return t.data<int16_t>()[i];
    case DType::kU16: return t.data<uint16_t>()[i];
    case DType::kI8: return t.data<int8_t>()[i];
    case DType::kU8: return t.data<uint8_t>()[i];
    default:
      throw Error(Errc::kTypeMismatch, t.describe(), "is not a numeric tensor qforge can score",
                  "float or 8..64-bit integers");
  }
}

Feeder::Feeder(std::shared_ptr<const Dataset> data, const Session& session, BatchOptions batch)
    : batcher_(data, batch) {
  std::vector<std::string> names;
  for (const IoInfo& in : session.inputs()) names.push_back(in.name);
  map_ = map_inputs(*data, names);
}

bool Feeder::next(Session::NamedTensors& inputs, Tensor& label) {
  auto batch = batcher_.next();
  if (!batch) return false;
  inputs.clear();
  label = Tensor();
  for (const auto& [input, tensor] : map_)
    for (const auto& [n, t] : *batch)
      if (n == tensor) inputs.emplace_back(input, t);
  for (const auto& [n, t] : *batch)
    if (n == "label") label = t;
  return true;
}

int64_t batch_size_for(const Session& session, int64_t wanted) {
  for (const IoInfo& in : session.inputs())
    if (in.info.shape && !in.info.shape->empty() && (*in.info.shape)[0].known())
      return (*in.info.shape)[0].size;
  return wanted;
}

}  // namespace eval_detail

using eval_detail::element;

const char* metric_name(Metric m) {
  switch (m) {
    case Metric::kTop1: return "top1";
    case Metric::kTop5: return "top5";
    case Metric::kMse: return "mse";
    case Metric::kCosine: return "cosine";
    case Metric::kPerplexity: return "perplexity";
  }
  return "?";
}

Metric parse_metric(const std::string& s, const std::string& what) {
  for (Metric m : {Metric::kTop1, Metric::kTop5, Metric::kMse, Metric::kCosine, Metric::kPerplexity})
    if (s == metric_name(m)) return m;
  throw Error(Errc::kInvalidArgument, what + " '" + s + "'", "is not a metric",
              "top1, top5, mse, cosine or perplexity");
}

bool higher_is_better(Metric m) { return m == Metric::kTop1 || m == Metric::kTop5 || m == Metric::kCosine; }

namespace {

// What one model has accumulated so far.
struct Tally {
  double sum = 0;       // hits, squared errors, cosines or negative log-likelihoods
  int64_t count = 0;    // what `sum` is over
  int64_t agree = 0;    // top-1 equal to the first model's
  double seconds = 0;
};

// The class scores of output `out` of `model`: [B, C] with C >= k.
void check_scores(const Tensor& out, int64_t batch, int64_t k, const std::string& model, Metric m) {
  if (out.rank() != 2 || out.dim(0) != batch || out.dim(1) < k || !dtype_info(out.dtype()).is_float)
    throw Error(Errc::kShapeMismatch, "model '" + model + "' output " + out.describe(),
                std::string("is not class scores for ") + metric_name(m),
                "a float output [batch, classes] with at least " + std::to_string(k) +
                    " classes (choose --metric mse or cosine for other outputs)");
}

std::vector<int64_t> top_k(const Tensor& scores, int64_t row, int64_t k) {
  const int64_t c = scores.dim(1);
  std::vector<int64_t> idx(static_cast<size_t>(c));
  std::iota(idx.begin(), idx.end(), 0);
  auto score = [&](int64_t j) { return element(scores, row * c + j); };
  // Ties go to the lower index, as argmax does.
  std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), [&](int64_t a, int64_t b) {
    const double sa = score(a), sb = score(b);
    return sa > sb || (sa == sb && a < b);
  });
  idx.resize(static_cast<size_t>(k));
  return idx;
}

// Rows [first, first + n) of a whole-file label array.
Tensor label_rows(const Tensor& all, int64_t first, int64_t n, const std::string& path) {
  check(all.rank() >= 1 && first + n <= all.dim(0), Errc::kShapeMismatch, "labels '" + path + "'",
        "have " + std::to_string(all.rank() >= 1 ? all.dim(0) : 0) + " rows, fewer than the data's samples",
        "one label per sample");
  Shape s = all.shape();
  s[0] = n;
  Tensor t(all.dtype(), s);
  const size_t row = all.nbytes() / static_cast<size_t>(all.dim(0));
  std::memcpy(t.raw(), static_cast<const char*>(all.raw()) + static_cast<size_t>(first) * row,
              row * static_cast<size_t>(n));
  return t;
}

Tensor read_labels(const std::string& path) {
  const bool npy = path.size() >= 4 && path.compare(path.size() - 4, 4, ".npy") == 0;
  return npy ? read_npy(path) : read_idx(path);
}

// Scores one batch of one model into its tally.
void score(Metric m, const Tensor& out, const Tensor& label, const Tensor& reference,
           const Session::NamedTensors& inputs, int64_t batch, const std::string& model, Tally& t) {
  switch (m) {
    case Metric::kTop1:
    case Metric::kTop5: {
      const int64_t k = m == Metric::kTop1 ? 1 : 5;
      check_scores(out, batch, k, model, m);
      for (int64_t r = 0; r < batch; ++r) {
        const auto best = top_k(out, r, k);
        const auto y = static_cast<int64_t>(element(label, r));
        t.sum += std::find(best.begin(), best.end(), y) != best.end() ? 1 : 0;
      }
      t.count += batch;
      return;
    }
    case Metric::kMse:
    case Metric::kCosine: {
      check(out.shape() == reference.shape(), Errc::kShapeMismatch,
            "model '" + model + "' output " + out.describe(),
            "has another shape than the reference " + shape_str(reference.shape()), "the same shape");
      const int64_t per = batch > 0 ? out.numel() / batch : 0;
      for (int64_t r = 0; r < batch; ++r) {
        double dot = 0, xx = 0, yy = 0, se = 0;
        for (int64_t j = r * per; j < (r + 1) * per; ++j) {
          const double x = element(out, j), y = element(reference, j);
          dot += x * y, xx += x * x, yy += y * y, se += (x - y) * (x - y);
        }
        if (m == Metric::kMse) {
          t.sum += se;
          t.count += per;
        } else {
          t.sum += (xx == 0 && yy == 0) ? 1.0 : (xx == 0 || yy == 0) ? 0.0 : dot / std::sqrt(xx * yy);
          t.count += 1;
        }
      }
      return;
    }
    case Metric::kPerplexity: {
      // logits [B, T, V]; targets [B, T], or the next token of the input.
      check(out.rank() == 3 && out.dim(0) == batch, Errc::kShapeMismatch,
            "model '" + model + "' output " + out.describe(), "is not logits for perplexity",
            "[batch, tokens, vocabulary]");
      const int64_t T = out.dim(1), V = out.dim(2);
      Tensor target = label;
      int64_t shift = 0;
      if (target.empty()) {
        check(inputs.size() == 1 && dtype_is_integer(inputs[0].second.dtype()), Errc::kInvalidArgument,
              "model '" + model + "'", "has no labels for perplexity",
              "--labels FILE of token ids, or one integer input to predict the next token of");
        target = inputs[0].second;
        shift = 1;
      }
      check(target.rank() == 2 && target.dim(0) == batch && target.dim(1) == T, Errc::kShapeMismatch,
            "perplexity targets " + target.describe(), "don't match the logits " + shape_str(out.shape()),
            "[batch, tokens]");
      for (int64_t b = 0; b < batch; ++b)
        for (int64_t p = 0; p + shift < T; ++p) {
          const int64_t y = static_cast<int64_t>(element(target, b * T + p + shift));
          check(y >= 0 && y < V, Errc::kInvalidArgument, "perplexity target " + std::to_string(y),
                "is outside the vocabulary of " + std::to_string(V));
          const int64_t base = (b * T + p) * V;
          double mx = -INFINITY;
          for (int64_t v = 0; v < V; ++v) mx = std::max(mx, element(out, base + v));
          double z = 0;
          for (int64_t v = 0; v < V; ++v) z += std::exp(element(out, base + v) - mx);
          t.sum += std::log(z) + mx - element(out, base + y);
          t.count += 1;
        }
      return;
    }
  }
}

double finish(Metric m, const Tally& t) {
  if (t.count == 0) return NAN;
  const double mean = t.sum / static_cast<double>(t.count);
  switch (m) {
    case Metric::kTop1:
    case Metric::kTop5: return 100.0 * mean;
    case Metric::kPerplexity: return std::exp(mean);
    default: return mean;
  }
}

}  // namespace

EvalResult evaluate(const std::vector<const Session*>& sessions, const std::vector<std::string>& names,
                    const std::string& data_path, const EvalOptions& opts) {
  check(!sessions.empty() && sessions.size() == names.size(), Errc::kInvalidArgument, "evaluate",
        "needs at least one model");
  std::shared_ptr<Dataset> data = open_dataset(data_path, opts.image);
  check(data->size() > 0, Errc::kNotFound, data->describe(), "holds no samples", "at least one");
  const Metric m = opts.metric;
  const bool needs_labels = m == Metric::kTop1 || m == Metric::kTop5;
  Tensor file_labels;
  if (!opts.labels.empty()) {
    file_labels = read_labels(opts.labels);
    const int64_t want = opts.batch.limit > 0 ? std::min(opts.batch.limit, data->size()) : data->size();
    check(file_labels.rank() >= 1 && file_labels.dim(0) >= want, Errc::kShapeMismatch,
          "labels '" + opts.labels + "'",
          "have " + std::to_string(file_labels.rank() ? file_labels.dim(0) : 0) + " rows for " +
              std::to_string(want) + " samples of " + data->describe(),
          "one label per sample");
  }
  BatchOptions bo = opts.batch;
  bo.batch_size = eval_detail::batch_size_for(*sessions[0], bo.batch_size);
  check(!opts.batch.shuffle || opts.labels.empty(), Errc::kInvalidArgument, "--labels",
        "can't follow a shuffled order", "labels in the data, or no shuffle");
  std::vector<eval_detail::Feeder> feeders;
  for (const Session* s : sessions) feeders.emplace_back(data, *s, bo);

  EvalResult r;
  r.metric = m;
  r.data = data->describe();
  r.reference = (m == Metric::kMse || m == Metric::kCosine)
                    ? (opts.labels.empty() ? "model '" + names[0] + "'" : "labels '" + opts.labels + "'")
                    : (opts.labels.empty() ? "the data's labels" : "labels '" + opts.labels + "'");
  std::vector<Tally> tally(sessions.size());
  const auto t0 = std::chrono::steady_clock::now();
  const int64_t total = feeders[0].num_batches();
  int64_t done = 0, offset = 0;
  Session::NamedTensors inputs;
  Tensor label, reference;
  std::vector<int64_t> first_top;  // the first model's top-1 per sample of this batch
  for (;;) {
    bool more = false;
    for (size_t k = 0; k < sessions.size(); ++k) {
      // Every feeder yields the same batch; only the first one's label is kept.
      Tensor lk;
      more = feeders[k].next(inputs, lk);
      if (!more) break;
      if (k == 0) label = lk;
      const int64_t batch = inputs.empty() || inputs[0].second.rank() == 0 ? 1 : inputs[0].second.dim(0);
      if (k == 0 && !file_labels.empty()) label = label_rows(file_labels, offset, batch, opts.labels);
      if (k == 0 && needs_labels)
        check(!label.empty(), Errc::kNotFound, data->describe(), std::string("has no labels for ") + metric_name(m),
              "--labels FILE, or IDX images with their labels file beside them");
      const auto ts = std::chrono::steady_clock::now();
      std::vector<Tensor> outs = sessions[k]->run(inputs);
      tally[k].seconds += eval_detail::seconds_since(ts);
      check(!outs.empty(), Errc::kInvalidArgument, "model '" + names[k] + "'", "has no outputs");
      const Tensor& out = outs[0];
      if ((m == Metric::kMse || m == Metric::kCosine) && k == 0) reference = file_labels.empty() ? out : label;
      score(m, out, label, reference, inputs, batch, names[k], tally[k]);
      if (needs_labels) {
        if (k == 0) first_top.clear();
        for (int64_t row = 0; row < batch; ++row) {
          const int64_t top = top_k(out, row, 1)[0];
          if (k == 0) first_top.push_back(top);
          else if (first_top[static_cast<size_t>(row)] == top) ++tally[k].agree;
        }
      }
      if (k == 0) offset += batch;
    }
    if (!more) break;
    if (opts.progress) opts.progress(++done, total, eval_detail::seconds_since(t0));
  }
  r.samples = offset;
  for (size_t k = 0; k < sessions.size(); ++k) {
    ModelScore s;
    s.model = names[k];
    s.value = finish(m, tally[k]);
    if (needs_labels && r.samples > 0)
      s.agreement = k == 0 ? 100.0 : 100.0 * static_cast<double>(tally[k].agree) / static_cast<double>(r.samples);
    s.run_seconds = tally[k].seconds;
    r.models.push_back(s);
  }
  return r;
}

EvalResult evaluate(const std::vector<std::string>& models, const std::string& data, const EvalOptions& opts) {
  std::vector<Session> sessions;
  sessions.reserve(models.size());
  SessionOptions so;
  so.threads = opts.threads;
  for (const std::string& path : models) sessions.emplace_back(path, so);
  std::vector<const Session*> ptrs;
  for (const Session& s : sessions) ptrs.push_back(&s);
  return evaluate(ptrs, models, data, opts);
}

}  // namespace qforge
