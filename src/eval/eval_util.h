// Helpers shared by evaluate, compare and sensitivity: reading a tensor of
// any numeric type as doubles, and the batches of a dataset mapped onto a
// session's inputs.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "qforge/data.h"
#include "qforge/session.h"

namespace qforge::eval_detail {

// Element i of a numeric tensor (any float or 8..64-bit integer type) as a double.
double element(const Tensor& t, int64_t i);

// The batches of `data` for `session`'s inputs: each batch's tensors
// renamed to the inputs they feed, plus the data's "label" (if any).
class Feeder {
 public:
  Feeder(std::shared_ptr<const Dataset> data, const Session& session, BatchOptions batch);
  // The next batch's inputs, or false after the last; `label` is empty when
  // the data have none.
  bool next(Session::NamedTensors& inputs, Tensor& label);
  int64_t num_batches() const { return batcher_.num_batches(); }

 private:
  Batcher batcher_;
  InputMap map_;
};

// The batch size to use for a session: the one asked for, unless an input's
// first dimension is fixed (then that).
int64_t batch_size_for(const Session& session, int64_t wanted);

inline double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace qforge::eval_detail
