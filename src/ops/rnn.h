// The recurrence shared by the float recurrent ops (rnn.cpp: RNN, GRU, LSTM)
// and the dynamically quantized ones (rnn_quant.cpp: com.microsoft
// DynamicQuantizeLSTM, ai.qforge DynamicQuantizeGRU). They differ only in
// how they multiply: the input projection (X by W, every step at once) and
// each step's recurrent product (H_{t-1} by R) are float GEMMs in the float
// ops and int8 GEMMs on dynamically quantized activations in the quantized
// ones. Everything else (input checks, outputs, sequence_lens, the gate
// equations, activations, clip, peepholes) is this header's, once.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "qforge/op.h"
#include "qforge/tensor.h"

namespace qforge {
class ThreadPool;
}

namespace qforge::ops::rnn {

enum class Cell { kRnn, kGru, kLstm };

// Gates per cell: 1 (RNN), 3 (GRU: z, r, h), 4 (LSTM: i, o, f, c).
int64_t gates_of(Cell c);

enum class ActKind {
  kSigmoid,
  kTanh,
  kRelu,
  kAffine,
  kLeakyRelu,
  kThresholdedRelu,
  kScaledTanh,
  kHardSigmoid,
  kElu,
  kSoftsign,
  kSoftplus
};

struct Act {
  ActKind kind = ActKind::kTanh;
  float alpha = 0, beta = 0;
};

// The attributes every recurrent op has (`layout` only from opset 14 of the
// ONNX domain; the com.microsoft and ai.qforge ops have no layout).
struct Attrs {
  Cell cell = Cell::kLstm;
  int64_t dirs = 1;
  bool reverse = false;  // direction == "reverse"
  int64_t hidden = -1;   // the hidden_size attribute, -1 if absent
  int64_t layout = 0;
  float clip = 0;                    // 0: no clip
  bool input_forget = false;         // LSTM
  bool linear_before_reset = false;  // GRU
  std::vector<Act> acts;             // per direction (1, 2 or 3), forward's first
};
Attrs read_attrs(const ir::Node& node, Cell cell, int64_t opset, bool has_layout);

// One step's product of a batch of rows (H_{t-1}, or r . H_{t-1} for a GRU
// without linear_before_reset) by a recurrent weight matrix, written into
// (or added to) the gate pre-activations:
//   c[b * ldc + n] (+)= sum_k a[b * H + k] * M[k, n]   for b < batch, n < N
// `mat` picks M: 0 is R^T (for a GRU without linear_before_reset, its z and
// r columns), 1 is the GRU's h columns. rows[b] says whether row b of `a`
// holds a value of the step: for H_{t-1}, the entries that made a state at
// the previous step (every entry at the first step: initial_h); for
// r . H_{t-1}, the entries still running. Other rows hold what an entry
// left behind, stand for zeros (as in Y) and must not count; the product's
// rows for entries no longer running are not used. One object per
// direction, so it may keep scratch buffers.
class StepProduct {
 public:
  virtual ~StepProduct() = default;
  virtual void multiply(int mat, int64_t batch, const float* a, const std::vector<char>& rows,
                        float* c, int64_t ldc, bool accumulate, ThreadPool* pool) = 0;

  // A product of R^T (mat 0) that can be cut by batch rows, so that the
  // steps of an LSTM run on `parts` threads, each on its own rows, with the
  // bits of one thread. split(parts, batch) readies it (false: it can't be
  // cut; then only multiply is used). range(set, part, ...) looks at rows
  // [b0, b1) of a (those with rows[b] set, as in multiply) and keeps what
  // the product needs from them (a quantized product: their range) in slot
  // (set, part); once every part of a set is in, multiply_rows(set, part,
  // ...) writes rows [b0, b1) of a x R^T to c (ldc apart, not added), from
  // what the slots of `set` hold. The parts of one set may run at once.
  virtual bool split(int /*parts*/, int64_t /*batch*/) { return false; }
  virtual void range(int /*set*/, int /*part*/, const float* /*a*/, int64_t /*b0*/, int64_t /*b1*/,
                     const std::vector<char>& /*rows*/) {}
  virtual void multiply_rows(int /*set*/, int /*part*/, const float* /*a*/, int64_t /*b0*/,
                             int64_t /*b1*/, float* /*c*/, int64_t /*ldc*/, ThreadPool* /*pool*/) {}

  // An input projection made at each step of an LSTM cut by rows, by the
  // part that reads it, instead of one for all steps ahead (xproj, which an
  // LSTM then doesn't read): projects() says whether the product makes it.
  // project_rows(times, b0, b1, out, ldo) writes the projection (bias
  // included) of batch entries b0 <= b < b1 at times[b - b0] to out's rows
  // (ldo apart); a time of -1 (an entry already done) leaves its row
  // unspecified.
  virtual bool projects() const { return false; }
  virtual void project_rows(const int64_t* /*times*/, int64_t /*b0*/, int64_t /*b1*/,
                            float* /*out*/, int64_t /*ldo*/) {}
};

// Everything a recurrent op computes besides its products: the sizes, X,
// sequence_lens, initial_h / initial_c, P, the biases and the outputs.
struct Recurrence {
  Attrs at;
  int64_t seq = 0, batch = 0, input = 0, dirs = 1, G = 1, H = 0, GH = 0;
  std::vector<int64_t> lens;  // per batch entry
  int64_t max_len = 0;
  const float* X = nullptr;
  const float* h0 = nullptr;  // initial_h, whole tensor, or null
  const float* c0 = nullptr;  // initial_c (LSTM), whole tensor, or null
  const float* P = nullptr;   // peepholes (LSTM), [dirs, 3H], or null
  float* Y = nullptr;         // outputs, or null where the graph doesn't use them
  float* Yh = nullptr;
  float* Yc = nullptr;
  // The input projection's column bias, [dirs * GH]: Wb + Rb, except a GRU's
  // h gate under linear_before_reset, which takes Wb only; its Rbh ([dirs * H])
  // goes inside r . (...).
  std::vector<float> bias, rbh;
};

// Checks X (f32, rank 3; the caller has checked W and R and knows H), B,
// sequence_lens, initial_h, initial_c and P (inputs 0, 3, 4, 5, 6, 7, the
// layout every recurrent op shares), allocates the outputs (Y zeroed past
// each sequence's end) and arranges the biases. Errors name the node.
Recurrence make_recurrence(OpContext& ctx, const Attrs& at, int64_t H);

// Checks that X is f32 of rank 3 (before its sizes are read).
void check_x(const ir::Node& node, const Tensor& X, const Attrs& at);
void expect_shape(const ir::Node& node, const Tensor* t, const std::string& what,
                  const Shape& want);
// The product of dims, or an Error naming the node when a buffer that large
// can't be allocated.
int64_t checked_mul(const ir::Node& node, std::initializer_list<int64_t> dims);

// A step's recurrent GEMM is worth splitting over threads only from about 1M
// multiply-adds (tens of microseconds): below that, handing it to the pool
// at every step costs more than it saves.
bool big_step(const Recurrence& rc);

// The parts an LSTM's batch is cut into, each part's steps on a thread of
// its own (1: not cut): the pool's threads, at most one per row, where
// big_step. Part p takes batch rows [part_first(p), part_first(p + 1)).
int lstm_parts(const Recurrence& rc, ThreadPool* pool);
int64_t part_first(const Recurrence& rc, int parts, int p);

// Runs the recurrence of every direction from the input projection xproj
// ([seq * batch rows in X's order, dirs * GH], bias included), with
// products[d] for direction d's recurrent products. Two directions run at
// once when a step is too small to split over threads.
void run_directions(const Recurrence& rc, const float* xproj,
                    const std::vector<StepProduct*>& products, ThreadPool* pool);

// Shape inference: Y, Y_h (and Y_c). `transposed`: W and R are stored
// [dirs, input, G*H] and [dirs, H, G*H] (the quantized ops) rather than
// ONNX's [dirs, G*H, input] and [dirs, G*H, H].
void infer(InferContext& c, Cell cell, bool has_layout, bool transposed);

}  // namespace qforge::ops::rnn
