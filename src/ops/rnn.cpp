// Recurrent layers: RNN, GRU, LSTM (ONNX opsets 1-21; `layout` from 14).
//
// Shapes (layout 0; layout 1 swaps the seq and batch axes of X, Y, and the
// direction and batch axes of initial_h/c, Y_h, Y_c):
//   X [seq, batch, input]   W [dirs, G*H, input]   R [dirs, G*H, H]
//   B [dirs, 2*G*H]  sequence_lens [batch]  initial_h/c [dirs, batch, H]
//   P [dirs, 3*H] (LSTM)    Y [seq, dirs, batch, H]   Y_h/Y_c [dirs, batch, H]
// with G = 1 (RNN), 3 (GRU: gates z, r, h), 4 (LSTM: gates i, o, f, c).
//
// How it runs: the input projection of every time step and direction is one
// GEMM, X[seq*batch, input] x [W_0; W_1]^T (+ Wb + Rb as the GEMM's column
// bias), before the recurrence; each step then gathers its rows of the
// projection, adds H_{t-1} x R^T with one GEMM against R^T packed once
// (in prepare when R is a constant), and applies the gate equations with
// vectorisable loops. The two directions of a bidirectional layer run in
// parallel when one step is too small to be worth splitting over threads.
// The dynamically quantized LSTM runs its steps by batch rows instead
// (run_lstm_parts): the step's product is written to the gates and the
// input projection is added in the activations' loops (no gather, no
// accumulate pass), and a large batch is cut over the threads for the whole
// sequence, a spin barrier between steps.
//
// sequence_lens: batch entry b runs len_b steps. Forward reads times
// 0..len_b-1; reverse reads len_b-1 down to 0 (each sequence reversed within
// its own length, as ONNX Runtime does). Y is zero at times >= len_b; Y_h
// and Y_c hold the state after the entry's last step, and are zero when
// len_b is 0 (the spec says nothing; ONNX Runtime gives zeros).
//
// clip bounds the input of every gate activation (i, o, f, c / z, r, h / the
// RNN's f) to [-clip, clip]; the cell state fed to h() is not clipped (as in
// ONNX Runtime). activation_alpha / activation_beta are consumed in order by
// the activations that take them; a missing one takes the default of the
// ONNX operator of that name.
//
// The recurrence itself (rnn.h: checks, outputs, sequence_lens, the gate
// equations) is shared with the dynamically quantized LSTM and GRU
// (rnn_quant.cpp), which bring their own input projection and per-step
// products (rnn::StepProduct) on the int8 GEMM.
#include "ops/rnn.h"

#include <algorithm>
#include <atomic>
#include <bit>
#include <cctype>
#include <cmath>
#include <cstring>
#include <exception>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "kernels/gemm.h"
#include "kernels/scratch.h"
#include "ops/families.h"
#include "ops/op_util.h"
#include "qforge/thread_pool.h"

namespace qforge::ops::rnn {
namespace {

int64_t acts_per_dir(Cell c) {
  return c == Cell::kRnn ? 1 : c == Cell::kGru ? 2 : 3;
}

// ---- activations ----

// The activations below are always inlined: apply's loops vectorise (and
// contract to FMA in its AVX2 and AVX-512 clones) only with their bodies in
// them, and the results must not depend on the compiler's inlining choice.
//
// e^x without libm, written so the compiler vectorises loops over it (no
// branch, no float-to-int conversion): x = n*ln2 + r with |r| <= ln2/2, e^r
// by its Taylor polynomial to r^7 (relative error < 1e-8 before float
// rounding), 2^n built in the exponent bits. x is clamped to [-87, 88] so
// that 2^n stays a normal float; NaN stays NaN (it passes the clamps and
// poisons r).
[[gnu::always_inline]] inline float exp_approx(float x) {
  constexpr float kMagic = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  // The clamps are bit masks rather than selects: a select of a constant
  // invites the compiler to split the loop body into paths (it then can't
  // vectorise it without -fno-trapping-math).
  const uint32_t hi = x > 88.0f ? 0xFFFFFFFFu : 0u;
  const uint32_t lo = x < -87.0f ? 0xFFFFFFFFu : 0u;
  const float xc = std::bit_cast<float>((std::bit_cast<uint32_t>(x) & ~(hi | lo)) |
                                        (std::bit_cast<uint32_t>(88.0f) & hi) |
                                        (std::bit_cast<uint32_t>(-87.0f) & lo));
  const float shifted = xc * 1.44269504088896341f + kMagic;
  const float n = shifted - kMagic;
  // n as an integer: the low mantissa bits of `shifted` (unsigned, so a NaN's
  // bits wrap harmlessly).
  const uint32_t ni = std::bit_cast<uint32_t>(shifted) - std::bit_cast<uint32_t>(kMagic);
  const float r =
      (xc - n * 0.693359375f) + n * 2.12194440e-4f;  // ln2 = 0.693359375 - 2.12194440e-4
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  return p * std::bit_cast<float>((ni + 127u) << 23);
}

[[gnu::always_inline]] inline float sigmoid_approx(float x) {
  return 1.0f / (1.0f + exp_approx(-x));
}

// tanh: an odd Taylor series to x^11 where |x| < 0.4 (truncation error
// < 3e-8), else (1 - e) / (1 + e) with e = exp(-2|x|) >= 0, which loses
// nothing to cancellation there. Both are computed and one is picked with a
// bit mask, so the loop has no branch to keep it from vectorising.
[[gnu::always_inline]] inline float tanh_approx(float x) {
  const float a = std::fabs(x);
  const float x2 = x * x;
  float s = -1382.0f / 155925.0f;
  s = s * x2 + 62.0f / 2835.0f;
  s = s * x2 - 17.0f / 315.0f;
  s = s * x2 + 2.0f / 15.0f;
  s = s * x2 - 1.0f / 3.0f;
  s = s * x2 + 1.0f;
  const float small = x * s;
  const float e = exp_approx(-2.0f * a);
  const float big = std::copysign((1.0f - e) / (1.0f + e), x);
  const uint32_t use_small = a < 0.4f ? 0xFFFFFFFFu : 0u;
  return std::bit_cast<float>((std::bit_cast<uint32_t>(small) & use_small) |
                              (std::bit_cast<uint32_t>(big) & ~use_small));
}

std::string lower(std::string s) {
  for (char& ch : s) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return s;
}

// The loops over gate values are compiled for AVX-512 and AVX2 as well as
// the baseline (QFORGE_ISA_CLONES); the wider versions may fuse a multiply
// and an add (FMA), so results can differ from the baseline's in the last
// bit, as the GEMM's do between ISAs.
//
// x[i] = act(x[i]) for i < n, or act(add[i] + x[i]) where add is given
// (the sigmoid and tanh in the same loop). One loop per kind, so each
// vectorises.
QFORGE_ISA_CLONES void apply(const Act& a, float* x, int64_t n, const float* add = nullptr) {
  const float al = a.alpha, be = a.beta;
  if (add && a.kind == ActKind::kSigmoid) {
    for (int64_t i = 0; i < n; ++i) x[i] = sigmoid_approx(add[i] + x[i]);
    return;
  }
  if (add && a.kind == ActKind::kTanh) {
    for (int64_t i = 0; i < n; ++i) x[i] = tanh_approx(add[i] + x[i]);
    return;
  }
  if (add)
    for (int64_t i = 0; i < n; ++i) x[i] = add[i] + x[i];
  switch (a.kind) {
    case ActKind::kSigmoid:
      for (int64_t i = 0; i < n; ++i) x[i] = sigmoid_approx(x[i]);
      break;
    case ActKind::kTanh:
      for (int64_t i = 0; i < n; ++i) x[i] = tanh_approx(x[i]);
      break;
    case ActKind::kRelu:
      for (int64_t i = 0; i < n; ++i) x[i] = x[i] > 0.0f ? x[i] : 0.0f;
      break;
    case ActKind::kAffine:
      for (int64_t i = 0; i < n; ++i) x[i] = al * x[i] + be;
      break;
    case ActKind::kLeakyRelu:
      for (int64_t i = 0; i < n; ++i) x[i] *= x[i] >= 0.0f ? 1.0f : al;
      break;
    case ActKind::kThresholdedRelu:
      for (int64_t i = 0; i < n; ++i) x[i] = x[i] > al ? x[i] : 0.0f;
      break;
    case ActKind::kScaledTanh:
      for (int64_t i = 0; i < n; ++i) x[i] = al * tanh_approx(be * x[i]);
      break;
    case ActKind::kHardSigmoid:
      for (int64_t i = 0; i < n; ++i) {
        const float v = al * x[i] + be;
        x[i] = v < 0.0f ? 0.0f : (v > 1.0f ? 1.0f : v);
      }
      break;
    case ActKind::kElu:
      for (int64_t i = 0; i < n; ++i) x[i] = x[i] >= 0.0f ? x[i] : al * std::expm1(x[i]);
      break;
    case ActKind::kSoftsign:
      for (int64_t i = 0; i < n; ++i) x[i] = x[i] / (1.0f + std::fabs(x[i]));
      break;
    case ActKind::kSoftplus:
      for (int64_t i = 0; i < n; ++i) x[i] = x[i] > 20.0f ? x[i] : std::log1p(std::exp(x[i]));
      break;
  }
}

// An LSTM row's new state with h = tanh (ONNX's default), i, f, g and o
// already activated: C = f . C + i . g, H = o . tanh(C), in one loop
// (compiled for the ISA, as `apply` is) where the general path takes three
// and a copy.
QFORGE_ISA_CLONES void lstm_state_tanh(const float* gi, const float* gf, const float* gc,
                                       const float* go, float* cs, float* hp, int64_t H) {
  for (int64_t k = 0; k < H; ++k) {
    const float c = gf[k] * cs[k] + gi[k] * gc[k];
    cs[k] = c;
    hp[k] = go[k] * tanh_approx(c);
  }
}

void clip_to(float* x, int64_t n, float c) {
  for (int64_t i = 0; i < n; ++i) {
    const float v = x[i] < c ? x[i] : c;
    x[i] = v > -c ? v : -c;
  }
}

// ---- attributes ----

Act make_act(const ir::Node& node, const std::string& name, const std::vector<float>& alphas,
             const std::vector<float>& betas, size_t& ai, size_t& bi) {
  struct Spec {
    const char* name;
    ActKind kind;
    int params;  // 0: none, 1: alpha, 2: alpha and beta
    float alpha, beta;
  };
  // Defaults are those of the ONNX operators of the same name.
  static const Spec kSpecs[] = {
      {"sigmoid", ActKind::kSigmoid, 0, 0, 0},
      {"tanh", ActKind::kTanh, 0, 0, 0},
      {"relu", ActKind::kRelu, 0, 0, 0},
      {"affine", ActKind::kAffine, 2, 1.0f, 0.0f},
      {"leakyrelu", ActKind::kLeakyRelu, 1, 0.01f, 0},
      {"thresholdedrelu", ActKind::kThresholdedRelu, 1, 1.0f, 0},
      {"scaledtanh", ActKind::kScaledTanh, 2, 1.0f, 1.0f},
      {"hardsigmoid", ActKind::kHardSigmoid, 2, 0.2f, 0.5f},
      {"elu", ActKind::kElu, 1, 1.0f, 0},
      {"softsign", ActKind::kSoftsign, 0, 0, 0},
      {"softplus", ActKind::kSoftplus, 0, 0, 0},
  };
  const std::string l = lower(name);
  for (const Spec& s : kSpecs) {
    if (l != s.name) continue;
    Act a{s.kind, s.alpha, s.beta};
    if (s.params >= 1 && ai < alphas.size()) a.alpha = alphas[ai++];
    if (s.params >= 2 && bi < betas.size()) a.beta = betas[bi++];
    return a;
  }
  throw Error(Errc::kUnsupported, node.describe(), "has activation '" + name + "'",
              "one of Sigmoid, Tanh, Relu, Affine, LeakyRelu, ThresholdedRelu, ScaledTanh, "
              "HardSigmoid, Elu, Softsign, Softplus");
}

// ---- the recurrence ----

// One direction of a recurrence: its steps, and where its results go.
struct DirJob {
  const Recurrence* rc = nullptr;
  int64_t d = 0;
  bool reverse = false;
  const float* xproj = nullptr;    // [seq*batch rows in X's order, dirs*G*H]
  StepProduct* product = nullptr;  // this direction's recurrent products
  ThreadPool* pool = nullptr;      // for the per-step GEMM, or null
};

// Offset of state row (direction d, batch b) in initial_h/c and Y_h/Y_c.
int64_t state_row(const DirJob& j, int64_t b) {
  const Recurrence& rc = *j.rc;
  return (rc.at.layout == 0 ? j.d * rc.batch + b : b * rc.dirs + j.d) * rc.H;
}

// Per batch row buffers (H, C, gates) start on a cache line: an LSTM's
// parts write their rows at once (run_lstm_parts).
using Rows = kernels::CacheLineVector<float>;

// H and (LSTM) C per batch row, from initial_h / initial_c or zeros.
void init_state(const DirJob& j, Rows& h, Rows& c) {
  const Recurrence& rc = *j.rc;
  const int64_t H = rc.H, B = rc.batch;
  h.assign(static_cast<size_t>(B * H), 0.0f);
  if (rc.at.cell == Cell::kLstm) c.assign(static_cast<size_t>(B * H), 0.0f);
  for (int64_t b = 0; b < B; ++b) {
    if (rc.h0)
      std::memcpy(&h[static_cast<size_t>(b * H)], rc.h0 + state_row(j, b),
                  sizeof(float) * static_cast<size_t>(H));
    if (rc.c0 && !c.empty())
      std::memcpy(&c[static_cast<size_t>(b * H)], rc.c0 + state_row(j, b),
                  sizeof(float) * static_cast<size_t>(H));
  }
}

// Y_h and Y_c from the final state.
void write_final(const DirJob& j, const Rows& h, const Rows& c) {
  const Recurrence& rc = *j.rc;
  const int64_t H = rc.H;
  for (int64_t b = 0; b < rc.batch; ++b) {
    if (rc.lens[static_cast<size_t>(b)] == 0) {  // no step: zero, as ONNX Runtime gives
      if (rc.Yh) std::fill_n(rc.Yh + state_row(j, b), H, 0.0f);
      if (rc.Yc) std::fill_n(rc.Yc + state_row(j, b), H, 0.0f);
      continue;
    }
    if (rc.Yh)
      std::memcpy(rc.Yh + state_row(j, b), h.data() + b * H,
                  sizeof(float) * static_cast<size_t>(H));
    if (rc.Yc)
      std::memcpy(rc.Yc + state_row(j, b), c.data() + b * H,
                  sizeof(float) * static_cast<size_t>(H));
  }
}

// Row b of Y at time t (if Y is asked for) from the state hb.
void write_y(const DirJob& j, int64_t t, int64_t b, const float* hb) {
  const Recurrence& rc = *j.rc;
  if (!rc.Y) return;
  const int64_t off = rc.at.layout == 0 ? ((t * rc.dirs + j.d) * rc.batch + b) * rc.H
                                        : ((b * rc.seq + t) * rc.dirs + j.d) * rc.H;
  std::memcpy(rc.Y + off, hb, sizeof(float) * static_cast<size_t>(rc.H));
}

// The time batch entry b reads at step s, -1 once it is done.
int64_t time_of(const DirJob& j, int64_t s, int64_t b) {
  const int64_t len = j.rc->lens[static_cast<size_t>(b)];
  if (s >= len) return -1;
  return j.reverse ? len - 1 - s : s;
}

// The input projection of batch entry b at time t (GH values).
const float* xproj_row(const DirJob& j, int64_t t, int64_t b) {
  const Recurrence& rc = *j.rc;
  const int64_t row = rc.at.layout == 0 ? t * rc.batch + b : b * rc.seq + t;
  return j.xproj + row * rc.dirs * rc.GH + j.d * rc.GH;
}

// The gate equations of an LSTM, one batch row at a time.
struct LstmGates {
  int64_t H = 0;
  const float* P = nullptr;   // peepholes i, o, f, or null
  const Act* acts = nullptr;  // f, g, h
  float clip = 0;             // 0: none
  bool input_forget = false;

  // g: the row's pre-activations i, o, f, c (4H), the input projection
  // included; or, where x is given, without it (it is added first: x + g,
  // the sum the row would hold). Updates the row's cell state cs and state
  // hp; hc is scratch (H values).
  void step(const float* x, float* g, float* cs, float* hc, float* hp) const {
    float* gi = g;
    float* go = g + H;
    float* gf = g + 2 * H;
    float* gc = g + 3 * H;
    if (x && (P || clip > 0)) {
      for (int64_t k = 0; k < 4 * H; ++k) g[k] = x[k] + g[k];
      x = nullptr;
    }
    if (P) {
      // Peepholes: i and f see C_{t-1}, o sees C_t, so o waits.
      const float* pi = P;
      const float* pf = P + 2 * H;
      for (int64_t k = 0; k < H; ++k) {
        gi[k] += pi[k] * cs[k];
        gf[k] += pf[k] * cs[k];
      }
      if (clip > 0) {
        clip_to(gi, H, clip);
        clip_to(gf, 2 * H, clip);  // f and c
      }
      apply(acts[0], gi, H);
      apply(acts[0], gf, H);
    } else {
      // i, o, f are contiguous and all take f().
      if (clip > 0) clip_to(gi, 4 * H, clip);
      apply(acts[0], gi, 3 * H, x);
    }
    if (input_forget)
      for (int64_t k = 0; k < H; ++k) gf[k] = 1.0f - gi[k];
    apply(acts[1], gc, H, x ? x + 3 * H : nullptr);
    if (!P && acts[2].kind == ActKind::kTanh) {
      lstm_state_tanh(gi, gf, gc, go, cs, hp, H);
      return;
    }
    for (int64_t k = 0; k < H; ++k) cs[k] = gf[k] * cs[k] + gi[k] * gc[k];
    if (P) {
      const float* po = P + H;
      for (int64_t k = 0; k < H; ++k) go[k] += po[k] * cs[k];
      if (clip > 0) clip_to(go, H, clip);
      apply(acts[0], go, H);
    }
    std::memcpy(hc, cs, sizeof(float) * static_cast<size_t>(H));
    apply(acts[2], hc, H);
    for (int64_t k = 0; k < H; ++k) hp[k] = go[k] * hc[k];
  }
};

LstmGates lstm_gates(const DirJob& j) {
  const Recurrence& rc = *j.rc;
  LstmGates g;
  g.H = rc.H;
  g.P = rc.P ? rc.P + j.d * 3 * rc.H : nullptr;
  g.acts = rc.at.acts.data() + j.d * acts_per_dir(Cell::kLstm);
  g.clip = rc.at.clip;
  g.input_forget = rc.at.input_forget;
  return g;
}

inline void spin_pause() {
#if defined(__x86_64__)
  __builtin_ia32_pause();
#endif
}

// Runs fn(s, p) for every step s < steps and part p < parts on the pool's
// threads: the parts of a step at once, each step after all of the one
// before (a spin barrier per step). Thread k takes part k when it can, so
// that a part's rows stay in one core's cache; a part no thread has taken
// yet goes to the first that finds it, so a thread left alone (another
// busy, or a nested call run inline) still runs every part. The first
// exception fn throws ends the run and is re-thrown.
template <typename Fn>
void run_parts(ThreadPool& pool, int64_t steps, int parts, const Fn& fn) {
  struct alignas(64) Step {
    std::atomic<int> done{0};
  };
  std::unique_ptr<Step[]> st(new Step[static_cast<size_t>(steps)]);
  std::unique_ptr<std::atomic<bool>[]> taken(
      new std::atomic<bool>[static_cast<size_t>(steps * parts)]());
  std::atomic<bool> failed{false};
  std::exception_ptr error;
  pool.parallel_for(std::min(pool.threads(), parts), 1, [&](int64_t k, int64_t) {
    for (int64_t s = 0; s < steps; ++s) {
      Step& x = st[static_cast<size_t>(s)];
      for (int i = 0; i < parts; ++i) {
        const int p = static_cast<int>((k + i) % parts);
        if (taken[static_cast<size_t>(s * parts + p)].exchange(true, std::memory_order_relaxed))
          continue;
        try {
          if (!failed.load(std::memory_order_relaxed)) fn(s, p);
        } catch (...) {
          if (!failed.exchange(true)) error = std::current_exception();
        }
        x.done.fetch_add(1, std::memory_order_release);
      }
      while (x.done.load(std::memory_order_acquire) < parts) spin_pause();
      if (failed.load(std::memory_order_relaxed)) return;
    }
  });
  if (error) std::rethrow_exception(error);
}

// An LSTM direction whose product can be cut by batch rows
// (StepProduct::split): the batch in `parts` runs of rows, each step of a
// part its product, its gates (the input projection added there) and its
// rows of Y, and the range of its new state the next step's product needs.
// On j.pool when parts > 1; every cut gives the same bits.
void run_lstm_parts(const DirJob& j, int parts) {
  const Recurrence& rc = *j.rc;
  const int64_t H = rc.H, B = rc.batch, GH = rc.GH;
  StepProduct& mul = *j.product;
  const LstmGates cell = lstm_gates(j);
  Rows h, c;
  init_state(j, h, c);
  Rows gates(static_cast<size_t>(B * GH)), tmp(static_cast<size_t>(B * H));
  // The rows of H_{t-1} that hold a state (every row at the first step):
  // entries already done hold zeros in Y, whatever is left in h.
  std::vector<char> h_rows(static_cast<size_t>(B), 1);
  auto first = [&](int p) { return part_first(rc, parts, p); };
  for (int p = 0; p < parts; ++p) mul.range(0, p, h.data(), first(p), first(p + 1), h_rows);
  // Where the product projects the input at the steps: each part's rows of
  // it and of their times (at a line apart).
  const bool own_proj = mul.projects();
  Rows xp(own_proj ? static_cast<size_t>(B * GH) : 0);
  const int64_t time_stride = (B + 7) / 8 * 8;
  kernels::CacheLineVector<int64_t> times(own_proj ? static_cast<size_t>(parts * time_stride) : 0);
  auto part_step = [&](int64_t s, int p) {
    const int64_t b0 = first(p), b1 = first(p + 1);
    if (own_proj) {
      int64_t* tp = times.data() + p * time_stride;
      for (int64_t b = b0; b < b1; ++b) tp[b - b0] = time_of(j, s, b);
      mul.project_rows(tp, b0, b1, xp.data() + b0 * GH, GH);
    }
    mul.multiply_rows(static_cast<int>(s % 2), p, h.data(), b0, b1, gates.data(), GH,
                      parts == 1 ? j.pool : nullptr);
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t t = time_of(j, s, b);
      if (t < 0) continue;
      float* hb = h.data() + b * H;
      cell.step(own_proj ? xp.data() + b * GH : xproj_row(j, t, b), gates.data() + b * GH,
                c.data() + b * H, tmp.data() + b * H, hb);
      write_y(j, t, b, hb);
    }
    if (s + 1 == rc.max_len) return;
    // Entries that end here leave their rows of H out of the next range.
    // (Written only then: the parts' entries share cache lines.)
    for (int64_t b = b0; b < b1; ++b)
      if (rc.lens[static_cast<size_t>(b)] == s) h_rows[static_cast<size_t>(b)] = 0;
    mul.range(static_cast<int>((s + 1) % 2), p, h.data(), b0, b1, h_rows);
  };
  if (parts == 1) {
    for (int64_t s = 0; s < rc.max_len; ++s) part_step(s, 0);
  } else if (rc.max_len > 0) {
    run_parts(*j.pool, rc.max_len, parts, part_step);
  }
  write_final(j, h, c);
}

void run_direction(const DirJob& j) {
  const Recurrence& rc = *j.rc;
  const int64_t H = rc.H, B = rc.batch, GH = rc.GH;
  const int64_t ld = rc.dirs * GH;
  const Attrs& at = rc.at;
  StepProduct& mul = *j.product;
  if (at.cell == Cell::kLstm) {
    const int parts = lstm_parts(rc, j.pool);
    if (mul.split(parts, B)) {
      run_lstm_parts(j, parts);
      return;
    }
  }
  const float* rbh = rc.rbh.empty() ? nullptr : rc.rbh.data() + j.d * H;
  const Act* acts = at.acts.data() + j.d * acts_per_dir(at.cell);
  const bool clip = at.clip > 0;
  const float cl = at.clip;

  Rows h, c;
  init_state(j, h, c);
  Rows gates(static_cast<size_t>(B * GH)), tmp(static_cast<size_t>(B * H));
  std::vector<float> rec;
  if (at.cell == Cell::kGru && at.linear_before_reset) rec.resize(static_cast<size_t>(B * GH));
  // The time each batch entry reads at this step, -1 once it is done.
  std::vector<int64_t> tb(static_cast<size_t>(B));
  // The rows of H_{t-1} that hold a state (the rest are entries already
  // done, whose rows of Y are zero), and the rows still running.
  std::vector<char> h_rows(static_cast<size_t>(B)), running(static_cast<size_t>(B));

  for (int64_t s = 0; s < rc.max_len; ++s) {
    // Gather this step's projected inputs.
    for (int64_t b = 0; b < B; ++b) {
      const int64_t len = rc.lens[static_cast<size_t>(b)];
      float* g = gates.data() + b * GH;
      h_rows[static_cast<size_t>(b)] = s == 0 || len >= s;  // initial_h, or a state made last step
      running[static_cast<size_t>(b)] = s < len;
      if (s >= len) {
        tb[static_cast<size_t>(b)] = -1;
        std::fill(g, g + GH, 0.0f);
        continue;
      }
      const int64_t t = j.reverse ? len - 1 - s : s;
      tb[static_cast<size_t>(b)] = t;
      const int64_t row = at.layout == 0 ? t * B + b : b * rc.seq + t;
      std::memcpy(g, j.xproj + row * ld + j.d * GH, sizeof(float) * static_cast<size_t>(GH));
    }

    if (at.cell == Cell::kRnn) {
      mul.multiply(0, B, h.data(), h_rows, gates.data(), GH, true, j.pool);
      for (int64_t b = 0; b < B; ++b) {
        if (tb[static_cast<size_t>(b)] < 0) continue;
        float* g = gates.data() + b * H;
        if (clip) clip_to(g, H, cl);
        apply(acts[0], g, H);
        std::memcpy(h.data() + b * H, g, sizeof(float) * static_cast<size_t>(H));
      }
    } else if (at.cell == Cell::kGru) {
      if (!at.linear_before_reset) {
        // z, r: + H_{t-1} R_zr^T; h: + (r . H_{t-1}) R_h^T.
        mul.multiply(0, B, h.data(), h_rows, gates.data(), GH, true, j.pool);
        for (int64_t b = 0; b < B; ++b) {
          float* g = gates.data() + b * GH;
          if (clip) clip_to(g, 2 * H, cl);
          apply(acts[0], g, 2 * H);
          const float* r = g + H;
          const float* hp = h.data() + b * H;
          float* rh = tmp.data() + b * H;
          for (int64_t k = 0; k < H; ++k) rh[k] = r[k] * hp[k];
        }
        mul.multiply(1, B, tmp.data(), running, gates.data() + 2 * H, GH, true, j.pool);
      } else {
        // rec = H_{t-1} R^T; z, r: + rec; h: + r . (rec_h + Rbh).
        mul.multiply(0, B, h.data(), h_rows, rec.data(), GH, false, j.pool);
        for (int64_t b = 0; b < B; ++b) {
          float* g = gates.data() + b * GH;
          const float* rb = rec.data() + b * GH;
          for (int64_t k = 0; k < 2 * H; ++k) g[k] += rb[k];
          if (clip) clip_to(g, 2 * H, cl);
          apply(acts[0], g, 2 * H);
          const float* r = g + H;
          float* gh = g + 2 * H;
          const float* rch = rb + 2 * H;
          if (rbh)
            for (int64_t k = 0; k < H; ++k) gh[k] += r[k] * (rch[k] + rbh[k]);
          else
            for (int64_t k = 0; k < H; ++k) gh[k] += r[k] * rch[k];
        }
      }
      for (int64_t b = 0; b < B; ++b) {
        if (tb[static_cast<size_t>(b)] < 0) continue;
        float* g = gates.data() + b * GH;
        float* gh = g + 2 * H;
        if (clip) clip_to(gh, H, cl);
        apply(acts[1], gh, H);
        const float* z = g;
        float* hp = h.data() + b * H;
        for (int64_t k = 0; k < H; ++k) hp[k] = (1.0f - z[k]) * gh[k] + z[k] * hp[k];
      }
    } else {
      mul.multiply(0, B, h.data(), h_rows, gates.data(), GH, true, j.pool);
      const LstmGates cell = lstm_gates(j);
      for (int64_t b = 0; b < B; ++b) {
        if (tb[static_cast<size_t>(b)] >= 0)
          cell.step(nullptr, gates.data() + b * GH, c.data() + b * H, tmp.data() + b * H,
                    h.data() + b * H);
      }
    }

    for (int64_t b = 0; b < B; ++b)
      if (tb[static_cast<size_t>(b)] >= 0)
        write_y(j, tb[static_cast<size_t>(b)], b, h.data() + b * H);
  }
  write_final(j, h, c);
}

}  // namespace

int64_t gates_of(Cell c) {
  return c == Cell::kRnn ? 1 : c == Cell::kGru ? 3 : 4;
}

Attrs read_attrs(const ir::Node& node, Cell cell, int64_t opset, bool has_layout) {
  Attrs at;
  at.cell = cell;
  const std::string dir = node.attr_string("direction", "forward");
  if (dir == "forward") {
    at.dirs = 1;
  } else if (dir == "reverse") {
    at.dirs = 1;
    at.reverse = true;
  } else if (dir == "bidirectional") {
    at.dirs = 2;
  } else {
    throw Error(Errc::kInvalidArgument, node.describe(), "has direction '" + dir + "'",
                "forward, reverse or bidirectional");
  }
  if (node.has_attr("hidden_size")) {
    at.hidden = node.attr_int("hidden_size", -1);
    if (at.hidden < 0)
      throw Error(Errc::kInvalidArgument, node.describe(),
                  "has hidden_size " + std::to_string(at.hidden), "hidden_size >= 0");
  }
  if (has_layout && opset >= 14) {
    at.layout = node.attr_int("layout", 0);
    if (at.layout != 0 && at.layout != 1)
      throw Error(Errc::kInvalidArgument, node.describe(),
                  "has layout " + std::to_string(at.layout), "layout 0 or 1");
  }
  if (node.has_attr("clip")) {
    at.clip = node.attr_float("clip", 0);
    if (at.clip <= 0)
      throw Error(Errc::kInvalidArgument, node.describe(), "has clip " + std::to_string(at.clip),
                  "a positive clip threshold");
  }
  if (cell == Cell::kLstm) at.input_forget = node.attr_int("input_forget", 0) != 0;
  if (cell == Cell::kGru) at.linear_before_reset = node.attr_int("linear_before_reset", 0) != 0;

  const int64_t per = acts_per_dir(cell);
  std::vector<std::string> names;
  if (node.has_attr("activations")) {
    names = node.attr("activations").strings;
    if (!(names.size() == static_cast<size_t>(per * at.dirs) ||
          (at.dirs == 2 && names.size() == static_cast<size_t>(per))))
      throw Error(Errc::kInvalidArgument, node.describe(),
                  "has " + std::to_string(names.size()) + " activations",
                  std::to_string(per * at.dirs) + " (" + std::to_string(per) + " per direction)");
    if (names.size() == static_cast<size_t>(per) && at.dirs == 2) {  // the same for both
      const std::vector<std::string> once = names;
      names.insert(names.end(), once.begin(), once.end());
    }
  } else {
    static const char* kLstm[] = {"Sigmoid", "Tanh", "Tanh"};
    static const char* kGru[] = {"Sigmoid", "Tanh"};
    static const char* kRnn[] = {"Tanh"};
    const char** d = cell == Cell::kLstm ? kLstm : cell == Cell::kGru ? kGru : kRnn;
    for (int64_t k = 0; k < at.dirs; ++k)
      for (int64_t j = 0; j < per; ++j) names.emplace_back(d[j]);
  }
  const std::vector<float> alphas = node.attr_floats("activation_alpha");
  const std::vector<float> betas = node.attr_floats("activation_beta");
  size_t ai = 0, bi = 0;
  for (const std::string& n : names) at.acts.push_back(make_act(node, n, alphas, betas, ai, bi));
  return at;
}

// ---- checks, outputs, biases ----

void check_x(const ir::Node& node, const Tensor& X, const Attrs& at) {
  if (X.dtype() != DType::kF32) bad_type(node, "input X", X.dtype(), "f32");
  if (X.rank() != 3)
    throw Error(Errc::kShapeMismatch, node.describe(), "input X has shape " + shape_str(X.shape()),
                at.layout == 0 ? "[seq_length, batch_size, input_size]"
                               : "[batch_size, seq_length, input_size]");
}

void expect_shape(const ir::Node& node, const Tensor* t, const std::string& what,
                  const Shape& want) {
  if (!t) return;
  if (t->shape() != want)
    throw Error(Errc::kShapeMismatch, node.describe(), what + " has shape " + shape_str(t->shape()),
                shape_str(want));
}

int64_t checked_mul(const ir::Node& node, std::initializer_list<int64_t> dims) {
  int64_t n = 1;
  for (int64_t d : dims) {
    if (__builtin_mul_overflow(n, d, &n) || n > (int64_t{1} << 40))
      throw Error(Errc::kShapeMismatch, node.describe(), "needs a buffer too large to allocate",
                  "smaller sequence, batch or hidden sizes");
  }
  return n;
}

namespace {

const Tensor* opt_input(OpContext& ctx, int i) {
  return ctx.has_input(i) ? &ctx.input(i) : nullptr;
}

void expect_f32(const ir::Node& node, const Tensor* t, const char* what) {
  if (t && t->dtype() != DType::kF32) bad_type(node, what, t->dtype(), "f32");
}

std::vector<int64_t> read_lens(const ir::Node& node, const Tensor* lens_t, int64_t seq,
                               int64_t batch) {
  std::vector<int64_t> lens(static_cast<size_t>(batch), seq);
  if (!lens_t) return lens;
  expect_shape(node, lens_t, "input sequence_lens", {batch});
  lens = to_int64s(*lens_t, node, "input sequence_lens");
  for (size_t b = 0; b < lens.size(); ++b)
    if (lens[b] < 0 || lens[b] > seq)
      throw Error(Errc::kInvalidArgument, node.describe(),
                  "has sequence_lens[" + std::to_string(b) + "] = " + std::to_string(lens[b]),
                  "lengths in [0, " + std::to_string(seq) + "] (the sequence length of X)");
  return lens;
}

// Wb + Rb as the projection's column bias, except a GRU's Rbh under
// linear_before_reset, which goes inside r . (...).
void arrange_biases(Recurrence& rc, const Tensor* Bt) {
  const bool lbr = rc.at.cell == Cell::kGru && rc.at.linear_before_reset;
  const int64_t GH = rc.GH, H = rc.H;
  rc.bias.assign(static_cast<size_t>(rc.dirs * GH), 0.0f);
  if (!Bt) return;
  const float* pb = Bt->data<float>();
  if (lbr) rc.rbh.resize(static_cast<size_t>(rc.dirs * H));
  for (int64_t d = 0; d < rc.dirs; ++d)
    for (int64_t k = 0; k < GH; ++k) {
      const float wb = pb[d * 2 * GH + k], rb = pb[d * 2 * GH + GH + k];
      if (lbr && k >= 2 * H) {
        rc.bias[static_cast<size_t>(d * GH + k)] = wb;
        rc.rbh[static_cast<size_t>(d * H + k - 2 * H)] = rb;
      } else {
        rc.bias[static_cast<size_t>(d * GH + k)] = wb + rb;
      }
    }
}

void allocate_outputs(OpContext& ctx, Recurrence& rc) {
  const int64_t seq = rc.seq, batch = rc.batch, dirs = rc.dirs, H = rc.H;
  const int64_t layout = rc.at.layout;
  const Shape state_shape = layout == 0 ? Shape{dirs, batch, H} : Shape{batch, dirs, H};
  if (ctx.wants_output(0)) {
    const Shape ys = layout == 0 ? Shape{seq, dirs, batch, H} : Shape{batch, seq, dirs, H};
    rc.Y = ctx.output(0, DType::kF32, ys).data<float>();
    // Zero the times past each sequence's length.
    for (int64_t t = 0; t < seq; ++t)
      for (int64_t d = 0; d < dirs; ++d)
        for (int64_t b = 0; b < batch; ++b) {
          if (t < rc.lens[static_cast<size_t>(b)]) continue;
          const int64_t off =
              layout == 0 ? ((t * dirs + d) * batch + b) * H : ((b * seq + t) * dirs + d) * H;
          std::fill(rc.Y + off, rc.Y + off + H, 0.0f);
        }
  }
  if (ctx.wants_output(1)) rc.Yh = ctx.output(1, DType::kF32, state_shape).data<float>();
  if (rc.at.cell == Cell::kLstm && ctx.wants_output(2))
    rc.Yc = ctx.output(2, DType::kF32, state_shape).data<float>();
}

}  // namespace

Recurrence make_recurrence(OpContext& ctx, const Attrs& at, int64_t H) {
  const ir::Node& node = ctx.node();
  const bool lstm = at.cell == Cell::kLstm;
  const Tensor& X = ctx.input(0);
  const Tensor* Bt = opt_input(ctx, 3);
  const Tensor* lens_t = opt_input(ctx, 4);
  const Tensor* h0 = opt_input(ctx, 5);
  const Tensor* c0 = lstm ? opt_input(ctx, 6) : nullptr;
  const Tensor* P = lstm ? opt_input(ctx, 7) : nullptr;
  check_x(node, X, at);
  expect_f32(node, Bt, "input B");
  expect_f32(node, h0, "input initial_h");
  expect_f32(node, c0, "input initial_c");
  expect_f32(node, P, "input P");
  Recurrence rc;
  rc.at = at;
  rc.seq = at.layout == 0 ? X.dim(0) : X.dim(1);
  rc.batch = at.layout == 0 ? X.dim(1) : X.dim(0);
  rc.input = X.dim(2);
  rc.dirs = at.dirs;
  rc.G = gates_of(at.cell);
  rc.H = H;
  rc.GH = rc.G * H;
  expect_shape(node, Bt, "input B", {rc.dirs, 2 * rc.GH});
  const Shape state_shape =
      at.layout == 0 ? Shape{rc.dirs, rc.batch, H} : Shape{rc.batch, rc.dirs, H};
  expect_shape(node, h0, "input initial_h", state_shape);
  expect_shape(node, c0, "input initial_c", state_shape);
  expect_shape(node, P, "input P", {rc.dirs, 3 * H});
  rc.lens = read_lens(node, lens_t, rc.seq, rc.batch);
  for (int64_t l : rc.lens) rc.max_len = std::max(rc.max_len, l);
  checked_mul(node, {rc.seq, rc.batch, rc.dirs, rc.GH});  // the projection's buffer
  rc.X = X.data<float>();
  rc.h0 = h0 ? h0->data<float>() : nullptr;
  rc.c0 = c0 ? c0->data<float>() : nullptr;
  rc.P = P ? P->data<float>() : nullptr;
  allocate_outputs(ctx, rc);
  arrange_biases(rc, Bt);
  return rc;
}

bool big_step(const Recurrence& rc) {
  return rc.batch * rc.GH * rc.H >= (int64_t{1} << 20);
}

int lstm_parts(const Recurrence& rc, ThreadPool* pool) {
  if (rc.at.cell != Cell::kLstm || !pool || !big_step(rc)) return 1;
  return static_cast<int>(std::clamp<int64_t>(rc.batch, 1, pool->threads()));
}

// Where the batch is large enough, a multiple of q rows, so that each
// part's rows of every per-row buffer (H, C and the gates, and the
// product's u8 codes of H) start on a cache line of their own, and no line
// moves between two cores that write it in turn.
int64_t part_first(const Recurrence& rc, int parts, int p) {
  const int64_t B = rc.batch, q = 64 / std::gcd(rc.H, int64_t{64});
  if (p <= 0 || p >= parts) return p <= 0 ? 0 : B;
  const int64_t even = B * p / parts;
  return B >= 4 * q * parts ? std::min(B, (even + q / 2) / q * q) : even;
}

void run_directions(const Recurrence& rc, const float* xproj,
                    const std::vector<StepProduct*>& products, ThreadPool* pool) {
  const bool big = big_step(rc);
  std::vector<DirJob> jobs(static_cast<size_t>(rc.dirs));
  for (int64_t d = 0; d < rc.dirs; ++d) {
    DirJob& j = jobs[static_cast<size_t>(d)];
    j.rc = &rc;
    j.d = d;
    j.reverse = rc.at.reverse || d == 1;
    j.xproj = xproj;
    j.product = products[static_cast<size_t>(d)];
    j.pool = big ? pool : nullptr;
  }
  // Two directions at once when a step is too small to split over threads
  // (then each step's GEMM runs on its direction's thread).
  const bool par_dirs = rc.dirs == 2 && pool && pool->threads() > 1 && !big;
  if (par_dirs) {
    pool->parallel_for(2, 1, [&](int64_t b, int64_t e) {
      for (int64_t d = b; d < e; ++d) run_direction(jobs[static_cast<size_t>(d)]);
    });
  } else {
    for (const DirJob& j : jobs) run_direction(j);
  }
}

// ---- shape inference ----

void infer(InferContext& c, Cell cell, bool has_layout, bool transposed) {
  const ir::Node& node = c.node();
  const Attrs at = read_attrs(node, cell, c.opset(), has_layout);
  const ir::ValueInfo& x = c.input(0);
  const int64_t G = gates_of(cell);
  ir::Dim seq, batch, H;
  if (x.shape) {
    if (x.shape->size() != 3)
      throw Error(Errc::kShapeMismatch, node.describe(),
                  "input X has shape " + ir::sym_shape_str(*x.shape), "rank 3");
    seq = (*x.shape)[at.layout == 0 ? 0 : 1];
    batch = (*x.shape)[at.layout == 0 ? 1 : 0];
  }
  // H from hidden_size, else R's hidden axis, else W's gate axis / G.
  const size_t r_hidden = transposed ? 1 : 2, w_gates = transposed ? 2 : 1;
  if (at.hidden >= 0) {
    H = at.hidden;
  } else if (c.has_input(2) && c.input(2).shape && c.input(2).shape->size() == 3) {
    H = (*c.input(2).shape)[r_hidden];
  } else if (c.has_input(1) && c.input(1).shape && c.input(1).shape->size() == 3 &&
             (*c.input(1).shape)[w_gates].known()) {
    H = (*c.input(1).shape)[w_gates].size / G;
  }
  const ir::Dim dirs(at.dirs);
  set_output(
      c, 0, x.dtype,
      at.layout == 0 ? ir::SymShape{seq, dirs, batch, H} : ir::SymShape{batch, seq, dirs, H});
  const ir::SymShape st =
      at.layout == 0 ? ir::SymShape{dirs, batch, H} : ir::SymShape{batch, dirs, H};
  set_output(c, 1, x.dtype, st);
  if (cell == Cell::kLstm) set_output(c, 2, x.dtype, st);
}

}  // namespace qforge::ops::rnn

// ---------------------------------------------------------------- RNN, GRU, LSTM

namespace qforge::ops {
namespace {

using rnn::Attrs;
using rnn::Cell;
using rnn::gates_of;
using rnn::Recurrence;

// W^T for all directions at once (K = input, N = dirs*G*H), and per
// direction R^T; a GRU without linear_before_reset keeps R_zr^T and R_h^T
// apart (2 per direction), since its h gate multiplies by r first.
struct Packed {
  kernels::PackedMatrix w;
  std::vector<kernels::PackedMatrix> r;
  Shape w_shape, r_shape;
};

std::vector<kernels::PackedMatrix> pack_recurrent(Cell cell, bool lbr, const float* R, int64_t dirs,
                                                  int64_t H) {
  const int64_t G = gates_of(cell);
  std::vector<kernels::PackedMatrix> out;
  for (int64_t d = 0; d < dirs; ++d) {
    const float* Rd = R + d * G * H * H;
    if (cell == Cell::kGru && !lbr) {
      out.push_back(kernels::pack_b(true, H, 2 * H, Rd, H));
      out.push_back(kernels::pack_b(true, H, H, Rd + 2 * H * H, H));
    } else {
      out.push_back(kernels::pack_b(true, H, G * H, Rd, H));
    }
  }
  return out;
}

// Packs constant W and R when they have the shapes the op needs; anything
// else is left to run, which reports it.
std::shared_ptr<const void> rnn_prepare(const PrepareContext& pc, Cell cell) {
  try {
    const Attrs at = rnn::read_attrs(pc.node, cell, pc.opset, true);
    const Tensor* W = pc.constants.size() > 1 ? pc.constants[1] : nullptr;
    const Tensor* R = pc.constants.size() > 2 ? pc.constants[2] : nullptr;
    const int64_t G = gates_of(cell);
    auto p = std::make_shared<Packed>();
    bool any = false;
    if (R && R->dtype() == DType::kF32 && R->rank() == 3 && R->dim(0) == at.dirs &&
        R->dim(1) == G * R->dim(2) && (at.hidden < 0 || at.hidden == R->dim(2))) {
      p->r = pack_recurrent(cell, at.linear_before_reset, R->data<float>(), at.dirs, R->dim(2));
      p->r_shape = R->shape();
      any = true;
    }
    if (W && W->dtype() == DType::kF32 && W->rank() == 3 && W->dim(0) == at.dirs) {
      p->w = kernels::pack_b(true, W->dim(2), W->dim(0) * W->dim(1), W->data<float>(), W->dim(2));
      p->w_shape = W->shape();
      any = true;
    }
    if (!any) return nullptr;
    return p;
  } catch (const Error&) {
    return nullptr;  // run reports the problem
  }
}

// The float recurrent product: a GEMM against R^T packed once.
class FloatProduct : public rnn::StepProduct {
 public:
  FloatProduct(const kernels::PackedMatrix* r0, const kernels::PackedMatrix* r1, int64_t H)
      : r_{r0, r1}, H_(H) {}
  void multiply(int mat, int64_t batch, const float* a, const std::vector<char>&, float* c,
                int64_t ldc, bool accumulate, ThreadPool* pool) override {
    kernels::sgemm_packed_b(batch, a, H_, false, *r_[mat], accumulate ? 1.0f : 0.0f, c, ldc, {},
                            pool);
  }

 private:
  const kernels::PackedMatrix* r_[2];
  int64_t H_;
};

void rnn_run(OpContext& ctx, Cell cell) {
  const ir::Node& node = ctx.node();
  const Attrs at = rnn::read_attrs(node, cell, ctx.opset(), true);
  const Tensor& X = ctx.input(0);
  const Tensor& W = ctx.input(1);
  const Tensor& R = ctx.input(2);
  rnn::check_x(node, X, at);
  if (W.dtype() != DType::kF32) bad_type(node, "input W", W.dtype(), "f32");
  if (R.dtype() != DType::kF32) bad_type(node, "input R", R.dtype(), "f32");
  if (W.rank() != 3)
    throw Error(Errc::kShapeMismatch, node.describe(), "input W has shape " + shape_str(W.shape()),
                "[num_directions, G*hidden_size, input_size]");
  if (R.rank() != 3)
    throw Error(Errc::kShapeMismatch, node.describe(), "input R has shape " + shape_str(R.shape()),
                "[num_directions, G*hidden_size, hidden_size]");
  const int64_t H = at.hidden >= 0 ? at.hidden : R.dim(2);
  const int64_t dirs = at.dirs, GH = gates_of(cell) * H;
  rnn::expect_shape(node, &W, "input W", {dirs, GH, X.dim(2)});
  rnn::expect_shape(node, &R, "input R", {dirs, GH, H});
  const Recurrence rc = rnn::make_recurrence(ctx, at, H);

  // Prepacked weights if prepare made them for these shapes, else pack now.
  const auto* pre = static_cast<const Packed*>(ctx.state());
  ThreadPool* pool = ctx.pool();
  std::vector<kernels::PackedMatrix> r_local;
  const std::vector<kernels::PackedMatrix>* rp = nullptr;
  if (pre && !pre->r.empty() && pre->r_shape == R.shape()) {
    rp = &pre->r;
  } else {
    r_local = pack_recurrent(cell, at.linear_before_reset, R.data<float>(), dirs, H);
    rp = &r_local;
  }

  // The input projection for every step and direction: one GEMM.
  const int64_t rows = rc.seq * rc.batch;
  std::unique_ptr<float[]> xproj(
      new float[static_cast<size_t>(std::max<int64_t>(rows * dirs * GH, 1))]);
  kernels::GemmEpilogue ep;
  ep.bias_n = rc.bias.data();
  if (rc.max_len > 0) {
    if (pre && !pre->w.empty() && pre->w_shape == W.shape())
      kernels::sgemm_packed_b(rows, rc.X, rc.input, false, pre->w, 0.0f, xproj.get(), dirs * GH, ep,
                              pool);
    else
      kernels::sgemm(false, true, rows, dirs * GH, rc.input, 1.0f, rc.X, rc.input, W.data<float>(),
                     rc.input, 0.0f, xproj.get(), dirs * GH, ep, pool);
  }

  const size_t per = cell == Cell::kGru && !at.linear_before_reset ? 2 : 1;
  std::vector<FloatProduct> products;
  for (size_t d = 0; d < static_cast<size_t>(dirs); ++d)
    products.emplace_back(&(*rp)[d * per], per == 2 ? &(*rp)[d * per + 1] : nullptr, H);
  std::vector<rnn::StepProduct*> ptrs;
  for (auto& p : products) ptrs.push_back(&p);
  rnn::run_directions(rc, xproj.get(), ptrs, pool);
}

// Why a node can't run here: qforge's kernels are f32 only.
std::string rnn_check(const InferContext& c) {
  for (int i : {0, 1, 2, 3, 5, 6, 7}) {
    if (!c.has_input(i) || !c.input(i).dtype || *c.input(i).dtype == DType::kF32) continue;
    return "input " + std::to_string(i) + " is " + std::string(dtype_name(*c.input(i).dtype)) +
           "; qforge runs " + c.node().op_type + " in f32 only";
  }
  return {};
}

}  // namespace

void register_rnn_ops(OpRegistry& r) {
  for (Cell cell : {Cell::kRnn, Cell::kGru, Cell::kLstm}) {
    const char* name = cell == Cell::kRnn ? "RNN" : cell == Cell::kGru ? "GRU" : "LSTM";
    r.add({.domain = "",
           .op_type = name,
           .min_opset = 1,
           .max_opset = 21,
           .infer = [cell](InferContext& c) { rnn::infer(c, cell, true, false); },
           .check = rnn_check,
           .prepare = [cell](const PrepareContext& pc) { return rnn_prepare(pc, cell); },
           .run = [cell](OpContext& c) { rnn_run(c, cell); }});
  }
}

}  // namespace qforge::ops
