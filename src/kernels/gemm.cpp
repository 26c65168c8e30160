// Float32 GEMM: argument checks, ISA choice, packing, cache blocking,
// threading, the matrix-vector path, and the scalar reference kernels. The
// layout and the blocking are described in gemm.h.
#include "kernels/gemm.h"

#include <algorithm>
#include <cstring>
#include <new>
#include <string>
#include <vector>

#include "qforge/error.h"
#include "kernels/scratch.h"
#include "kernels/tiling.h"
#include "qforge/thread_pool.h"

namespace qforge::kernels {
namespace {

using TileFn = void (*)(const MicroTile&);
using GemvFn = void (*)(int64_t, int64_t, const float*, const float*, int64_t, float*);
using GemvPanelsFn = void (*)(int64_t, int64_t, const float*, const float*, float*);
using PackTransposeFn = void (*)(const float*, int64_t, int64_t, int64_t, float*, int64_t,
                                 int64_t);

// One ISA's kernels and block sizes. KC x NR floats of B (a micro-panel)
// should stay in L1 (48 KiB here), MC x KC of A in L2, KC x NC of B in L2/L3.
struct Impl {
  Isa isa;
  int64_t mr, nr;
  int64_t kc, mc, nc;
  TileFn tile;
  GemvFn rows, dots;
  GemvPanelsFn panels;
  PackTransposeFn pack_transpose;
  int64_t transpose_width;  // the most `width` pack_transpose takes
};

const Impl kRefImpl{.isa = Isa::kRef, .mr = kRefMr, .nr = kRefNr,
                    .kc = 256, .mc = 128, .nc = 512,
                    .tile = sgemm_tile__ref,
                    .rows = sgemv_rows__ref, .dots = sgemv_dots__ref, .panels = sgemv_panels__ref,
                    .pack_transpose = pack_transpose__ref, .transpose_width = kRefNr};
#if defined(__x86_64__)
const Impl kAvx2Impl{.isa = Isa::kAvx2, .mr = kAvx2Mr, .nr = kAvx2Nr,
                     .kc = 256, .mc = 192, .nc = 512,
                     .tile = sgemm_tile__avx2,
                     .rows = sgemv_rows__avx2, .dots = sgemv_dots__avx2,
                     .panels = sgemv_panels__avx2,
                     .pack_transpose = pack_transpose__avx2, .transpose_width = 8};
const Impl kAvx512Impl{.isa = Isa::kAvx512, .mr = kAvx512Mr, .nr = kAvx512Nr,
                       .kc = 256, .mc = 192, .nc = 512,
                       .tile = sgemm_tile__avx512,
                       .rows = sgemv_rows__avx512, .dots = sgemv_dots__avx512,
                       .panels = sgemv_panels__avx512,
                       .pack_transpose = pack_transpose__avx512, .transpose_width = 16};
#endif

const Impl& impl_of(Isa isa) {
#if defined(__x86_64__)
  if (base_isa(isa) == Isa::kAvx512) return kAvx512Impl;
  if (base_isa(isa) == Isa::kAvx2) return kAvx2Impl;
#endif
  (void)isa;
  return kRefImpl;
}

// The implementation for an explicitly requested ISA; refused (Error) if the
// CPU can't run it.
const Impl& checked_impl(Isa isa) {
  static const std::vector<Isa> available = available_isas();
  if (std::find(available.begin(), available.end(), isa) == available.end())
    (void)kernels_for(isa);  // throws the Error that names the missing feature
  return impl_of(isa);
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }

// Splits `n` into equal parts of at most `block`, rounded up to `align`.
int64_t even_block(int64_t n, int64_t block, int64_t align) {
  const int64_t parts = ceil_div(n, block);
  return round_up(ceil_div(n, parts), align);
}

// ---- memory ----

constexpr std::align_val_t kAlign{64};

float* alloc_floats(size_t n) {
  return static_cast<float*>(::operator new(n * sizeof(float), kAlign));
}

thread_local Scratch t_pack_a;
thread_local Scratch t_pack_b;
thread_local Scratch t_vec;

// ---- packing ----

// op(A)[i0.., k0..] (m x kc) into MR-tall panels at dst + p * panel_stride,
// each kc x MR (k-major), the last padded with zeros.
void pack_a_block(const Impl& im, bool trans, const float* A, int64_t lda, int64_t i0, int64_t m,
                  int64_t k0, int64_t kc, float* dst, int64_t panel_stride) {
  const int64_t mr = im.mr;
  static_assert(kRefMr <= kRefNr && kAvx2Mr <= 8 && kAvx512Mr <= 16,
                "an A panel is one pack_transpose call");
  for (int64_t p = 0; p < m; p += mr) {
    const int64_t rows = std::min(mr, m - p);
    float* d = dst + (p / mr) * panel_stride;
    if (!trans) {
      // Rows of A are contiguous in k: a transposing copy.
      im.pack_transpose(A + (i0 + p) * lda + k0, lda, rows, kc, d, mr, mr);
    } else {
      // A is stored K x M: MR consecutive values per k.
      for (int64_t k = 0; k < kc; ++k) {
        const float* src = A + (k0 + k) * lda + i0 + p;
        float* dk = d + k * mr;
        std::memcpy(dk, src, static_cast<size_t>(rows) * sizeof(float));
        for (int64_t i = rows; i < mr; ++i) dk[i] = 0.0f;
      }
    }
  }
}

// op(B)[k0.., j0..] (kc x n) into NR-wide panels at dst + p * panel_stride,
// each kc x NR, the last padded with zeros.
void pack_b_block(const Impl& im, bool trans, const float* B, int64_t ldb, int64_t k0, int64_t kc,
                  int64_t j0, int64_t n, float* dst, int64_t panel_stride) {
  const int64_t nr = im.nr;
  for (int64_t p = 0; p < n; p += nr) {
    const int64_t cols = std::min(nr, n - p);
    float* d = dst + (p / nr) * panel_stride;
    if (!trans) {
      const float* src = B + k0 * ldb + j0 + p;
      if (cols == nr && nr == 32) {  // fixed sizes: the copies are inlined
        for (int64_t k = 0; k < kc; ++k) std::memcpy(d + k * nr, src + k * ldb, 32 * sizeof(float));
      } else if (cols == nr && nr == 16) {
        for (int64_t k = 0; k < kc; ++k) std::memcpy(d + k * nr, src + k * ldb, 16 * sizeof(float));
      } else {
        for (int64_t k = 0; k < kc; ++k) {
          float* dk = d + k * nr;
          std::memcpy(dk, src + k * ldb, static_cast<size_t>(cols) * sizeof(float));
          for (int64_t j = cols; j < nr; ++j) dk[j] = 0.0f;
        }
      }
    } else {
      // B is stored N x K: its rows are contiguous in k. Transposing copies
      // of at most transpose_width rows each.
      for (int64_t h = 0; h < nr; h += im.transpose_width) {
        const int64_t width = std::min(im.transpose_width, nr - h);
        const int64_t rows = std::clamp<int64_t>(cols - h, 0, width);
        const float* src = rows > 0 ? B + (j0 + p + h) * ldb + k0 : B;
        im.pack_transpose(src, ldb, rows, kc, d + h, nr, width);
      }
    }
  }
}

// ---- epilogue helpers ----

float activate(float v, const GemmEpilogue& ep) {
  switch (ep.act) {
    case Epilogue::kNone: return v;
    case Epilogue::kRelu: return v > 0.0f ? v : 0.0f;  // NaN gives 0, as max(v, 0) in SIMD
    case Epilogue::kClip: return std::min(std::max(v, ep.clip_min), ep.clip_max);
  }
  return v;
}

// C = beta * C + bias, then the activation (K == 0 or alpha == 0).
void scale_c(int64_t M, int64_t N, float beta, float* C, int64_t ldc, const GemmEpilogue& ep) {
  for (int64_t i = 0; i < M; ++i) {
    float* c = C + i * ldc;
    const float bm = ep.bias_m != nullptr ? ep.bias_m[i] : 0.0f;
    for (int64_t j = 0; j < N; ++j) {
      float v = beta == 0.0f ? 0.0f : beta * c[j];
      v += bm;
      if (ep.bias_n != nullptr) v += ep.bias_n[j];
      c[j] = activate(v, ep);
    }
  }
}

// ---- the blocked GEMM ----

// Where an operand comes from: a row-major matrix (possibly transposed), or
// a PackedMatrix of the same ISA.
struct Operand {
  const float* data = nullptr;
  int64_t ld = 0;
  bool trans = false;
  const PackedMatrix* packed = nullptr;
};

struct GemmJob {
  const Impl* im = nullptr;
  int64_t M = 0, N = 0, K = 0;
  float alpha = 1, beta = 0;
  Operand a, b;
  float* C = nullptr;
  int64_t ldc = 0;
  GemmEpilogue ep;
};

// Small products (attention's per-head matrices, 64 x 64 x 64) spend as
// long packing their operands as multiplying them: the kernels read them in
// place instead (MicroTile::a_ld, b_stride), the same products in the same
// order. A row-major A is read in place when it is used for at most
// kDirectMaxN columns of C (the kernel reads it once per NR of them), a
// row-major B's whole NR-column panels for at most kDirectMaxM rows of C;
// larger products keep packing, which keeps each operand's block contiguous
// in L1 and L2 however long its rows are.
constexpr int64_t kDirectMaxN = 128, kDirectMaxM = 96;

// C[m0:m1, n0:n1] in full (all of K). m0 and n0 are multiples of MR and NR.
void gemm_tile(const GemmJob& g, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  const Impl& im = *g.im;
  const int64_t mr = im.mr, nr = im.nr, K = g.K;
  const int64_t kc = even_block(K, im.kc, 1);
  const int64_t mc = even_block(m1 - m0, im.mc, mr);
  const int64_t nc = even_block(n1 - n0, im.nc, nr);
  const bool direct_a = g.a.packed == nullptr && !g.a.trans && g.a.ld > 0 && n1 - n0 <= kDirectMaxN;
  const bool direct_b = g.b.packed == nullptr && !g.b.trans && m1 - m0 <= kDirectMaxM;

  MicroTile t;
  t.alpha = g.alpha;
  t.ldc = g.ldc;

  // Packing is done just before first use, one micro-panel at a time: a B
  // panel during the first pass over M, an A panel during the first pass
  // over N, so that the kernel finds it in L1.
  for (int64_t jc = n0; jc < n1; jc += nc) {
    const int64_t ncur = std::min(nc, n1 - jc);
    for (int64_t pc = 0; pc < K; pc += kc) {
      const int64_t kcur = std::min(kc, K - pc);
      const bool last = pc + kcur == K;

      const bool pack_b = g.b.packed == nullptr;
      const float* bblock = nullptr;
      float* bbuf = nullptr;
      int64_t b_panel_stride = 0;
      if (pack_b) {
        bbuf = t_pack_b.get<float>(static_cast<size_t>(round_up(ncur, nr) * kcur));
        bblock = bbuf;
        b_panel_stride = kcur * nr;
      } else {
        bblock = g.b.packed->data() + (jc / nr) * K * nr + pc * nr;
        b_panel_stride = K * nr;
      }

      t.k = kcur;
      t.beta = pc == 0 ? g.beta : 1.0f;
      t.act = last ? g.ep.act : Epilogue::kNone;
      t.clip_min = g.ep.clip_min;
      t.clip_max = g.ep.clip_max;

      for (int64_t ic = m0; ic < m1; ic += mc) {
        const int64_t mcur = std::min(mc, m1 - ic);
        const bool pack_a = g.a.packed == nullptr;
        const float* ablock = nullptr;
        float* abuf = nullptr;
        int64_t a_panel_stride = 0;
        if (pack_a) {
          abuf = t_pack_a.get<float>(static_cast<size_t>(round_up(mcur, mr) * kcur));
          ablock = abuf;
          a_panel_stride = kcur * mr;
        } else {
          ablock = g.a.packed->data() + (ic / mr) * K * mr + pc * mr;
          a_panel_stride = K * mr;
        }

        const int64_t tiles_m = ceil_div(mcur, mr);
        for (int64_t jr = 0; jr < ncur; jr += nr) {
          t.n = std::min(nr, ncur - jr);
          const bool b_in_place = direct_b && t.n == nr;
          if (pack_b && !b_in_place && ic == m0)
            pack_b_block(im, g.b.trans, g.b.data, g.b.ld, pc, kcur, jc + jr, t.n,
                         bbuf + (jr / nr) * b_panel_stride, b_panel_stride);
          t.b = b_in_place ? g.b.data + pc * g.b.ld + jc + jr : bblock + (jr / nr) * b_panel_stride;
          t.b_stride = b_in_place ? g.b.ld : nr;
          t.bias_n = last && g.ep.bias_n != nullptr ? g.ep.bias_n + jc + jr : nullptr;
          // A prepacked B (weights) is usually not in cache: the tiles of
          // this column share the prefetching of the next B micro-panel into
          // L2, a slice each.
          const float* b_next = !pack_b && jr + nr < ncur ? t.b + b_panel_stride : nullptr;
          const int64_t b_lines = kcur * nr / 16;
          const int64_t b_lines_per_tile = ceil_div(b_lines, tiles_m);
          for (int64_t ir = 0; ir < mcur; ir += mr) {
            t.m = std::min(mr, mcur - ir);
            if (pack_a && !direct_a && jr == 0)
              pack_a_block(im, g.a.trans, g.a.data, g.a.ld, ic + ir, t.m, pc, kcur,
                           abuf + (ir / mr) * a_panel_stride, a_panel_stride);
            t.a = direct_a ? g.a.data + (ic + ir) * g.a.ld + pc : ablock + (ir / mr) * a_panel_stride;
            t.a_ld = direct_a ? g.a.ld : 0;
            t.prefetch = nullptr;
            t.prefetch_lines = 0;
            if (b_next != nullptr) {
              const int64_t first = (ir / mr) * b_lines_per_tile;  // 16 floats a line
              if (first < b_lines) {
                t.prefetch = b_next + first * 16;
                t.prefetch_lines = std::min(b_lines - first, b_lines_per_tile);
              }
            } else if (!pack_a && jr == 0 && ir + mr < mcur) {
              // A prepacked A: the next A micro-panel, on the first pass over N.
              t.prefetch = t.a + a_panel_stride;
              t.prefetch_lines = kcur * mr / 16;
            }
            t.c = g.C + (ic + ir) * g.ldc + jc + jr;
            t.bias_m = last && g.ep.bias_m != nullptr ? g.ep.bias_m + ic + ir : nullptr;
            im.tile(t);
          }
        }
      }
    }
  }
}

// Below this many multiply-adds a GEMM runs on one thread: waking the pool
// costs microseconds.
constexpr int64_t kMinParallelMacs = int64_t{1} << 19;

// Tiles of at least 32 rows: convolutions of small images (e.g. 64 x 196 x
// 288) need the split at batch 1.
void run_gemm(const GemmJob& g, ThreadPool* pool) {
  for_each_tile(g.M, g.N, g.im->mr, g.im->nr, 32, pool, g.M * g.N * g.K >= kMinParallelMacs,
                [&](int64_t m0, int64_t m1, int64_t n0, int64_t n1) { gemm_tile(g, m0, m1, n0, n1); });
}

// ---- matrix-vector ----

enum class GemvKind { kRows, kDots, kPanels };

// out[j * out_stride] = act(alpha * (x . column j of the matrix) + beta * out
// + bias_vec[j] + bias_scalar), j in [0, L).
struct GemvJob {
  const Impl* im = nullptr;
  GemvKind kind = GemvKind::kRows;
  int64_t L = 0, K = 0;
  const float* x = nullptr;  // K contiguous values
  const float* mat = nullptr;
  int64_t ld = 0;
  float* out = nullptr;
  int64_t out_stride = 1;
  float alpha = 1, beta = 0;
  const float* bias_vec = nullptr;
  float bias_scalar = 0;
  GemmEpilogue ep;
};

// Outputs per kernel call: the rows kernel keeps them in L1 while it streams
// the matrix. A multiple of every NR.
constexpr int64_t kGemvChunk = 1024;

void gemv_range(const GemvJob& g, int64_t j0, int64_t j1) {
  alignas(64) float y[kGemvChunk];
  for (int64_t j = j0; j < j1; j += kGemvChunk) {
    const int64_t n = std::min(kGemvChunk, j1 - j);
    switch (g.kind) {
      case GemvKind::kRows: g.im->rows(g.K, n, g.x, g.mat + j, g.ld, y); break;
      case GemvKind::kDots: g.im->dots(g.K, n, g.x, g.mat + j * g.ld, g.ld, y); break;
      case GemvKind::kPanels: g.im->panels(g.K, n, g.x, g.mat + (j / g.im->nr) * g.K * g.im->nr, y); break;
    }
    for (int64_t i = 0; i < n; ++i) {
      float* o = g.out + (j + i) * g.out_stride;
      float v = g.alpha * y[i];
      if (g.beta != 0.0f) v += g.beta * *o;
      if (g.bias_vec != nullptr) v += g.bias_vec[j + i];
      *o = activate(v + g.bias_scalar, g.ep);
    }
  }
}

void run_gemv(const GemvJob& g, ThreadPool* pool) {
  const int threads = pool != nullptr ? pool->threads() : 1;
  if (threads == 1 || g.L * g.K < (int64_t{1} << 16) || g.L < 64) {
    gemv_range(g, 0, g.L);
    return;
  }
  // One part per thread, each a whole number of 32-output blocks (so of NR
  // panels too): the matrix streams from memory, and with a fixed split a
  // matrix that fits in the cores' L2 caches together stays there from one
  // call to the next.
  const int64_t blocks = ceil_div(g.L, 32);
  const int64_t parts = std::min<int64_t>(threads, blocks);
  pool->parallel_for(parts, 1, [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; ++c)
      gemv_range(g, blocks * c / parts * 32, std::min(g.L, blocks * (c + 1) / parts * 32));
  });
}

// x as K contiguous floats: `v` itself when its stride is 1, else a copy.
const float* contiguous(const float* v, int64_t stride, int64_t K) {
  if (stride == 1) return v;
  float* buf = t_vec.get<float>(static_cast<size_t>(K));
  for (int64_t k = 0; k < K; ++k) buf[k] = v[k * stride];
  return buf;
}

// ---- argument checks ----

void check_dims(int64_t M, int64_t N, int64_t K) {
  if (M < 0 || N < 0 || K < 0)
    throw Error(Errc::kInvalidArgument, "sgemm",
                "has a negative dimension (M=" + std::to_string(M) + ", N=" + std::to_string(N) +
                    ", K=" + std::to_string(K) + ")",
                "M, N, K >= 0");
}

void check_ld(const char* name, int64_t ld, int64_t rows, int64_t cols) {
  if (rows > 0 && cols > 0 && ld < cols)
    throw Error(Errc::kInvalidArgument, std::string("sgemm: leading dimension ") + name,
                "is " + std::to_string(ld) + ", shorter than a row (" + std::to_string(cols) + ")",
                "ld >= the row length of the stored matrix");
}

// The general entry once the ISA is known.
void sgemm_impl(const Impl& im, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                float alpha, const float* A, int64_t lda, const float* B, int64_t ldb, float beta,
                float* C, int64_t ldc, const GemmEpilogue& ep, ThreadPool* pool) {
  check_dims(M, N, K);
  if (M == 0 || N == 0) return;
  check_ld("ldc", ldc, M, N);
  if (K == 0 || alpha == 0.0f) {
    scale_c(M, N, beta, C, ldc, ep);
    return;
  }
  check_ld("lda", lda, trans_a ? K : M, trans_a ? M : K);
  check_ld("ldb", ldb, trans_b ? N : K, trans_b ? K : N);

  if (M == 1 || N == 1) {
    GemvJob g;
    g.im = &im;
    g.K = K;
    g.alpha = alpha;
    g.beta = beta;
    g.ep = ep;
    g.out = C;
    if (M == 1) {
      // C row = a^T op(B): a is A's only row (a column when trans_a).
      g.L = N;
      g.out_stride = 1;
      g.x = contiguous(A, trans_a ? lda : 1, K);
      g.kind = trans_b ? GemvKind::kDots : GemvKind::kRows;
      g.mat = B;
      g.ld = ldb;
      g.bias_vec = ep.bias_n;
      g.bias_scalar = ep.bias_m != nullptr ? ep.bias_m[0] : 0.0f;
    } else {
      // C column = op(A) b: b is op(B)'s only column.
      g.L = M;
      g.out_stride = ldc;
      g.x = contiguous(B, trans_b ? 1 : ldb, K);
      g.kind = trans_a ? GemvKind::kRows : GemvKind::kDots;
      g.mat = A;
      g.ld = lda;
      g.bias_vec = ep.bias_m;
      g.bias_scalar = ep.bias_n != nullptr ? ep.bias_n[0] : 0.0f;
    }
    run_gemv(g, pool);
    return;
  }

  GemmJob g;
  g.im = &im;
  g.M = M;
  g.N = N;
  g.K = K;
  g.alpha = alpha;
  g.beta = beta;
  g.a = {A, lda, trans_a, nullptr};
  g.b = {B, ldb, trans_b, nullptr};
  g.C = C;
  g.ldc = ldc;
  g.ep = ep;
  run_gemm(g, pool);
}

}  // namespace

// ---- PackedMatrix ----

void PackedMatrix::Free::operator()(float* p) const noexcept { ::operator delete(p, kAlign); }

PackedMatrix pack_matrix(PackedMatrix::Side side, Isa isa, bool trans, int64_t rows, int64_t cols,
                         const float* X, int64_t ld) {
  const Impl& im = checked_impl(isa);
  const bool is_a = side == PackedMatrix::Side::kA;
  if (rows < 0 || cols < 0)
    throw Error(Errc::kInvalidArgument, is_a ? "pack_a" : "pack_b",
                "has a negative dimension (" + std::to_string(rows) + " x " +
                    std::to_string(cols) + ")",
                "dimensions >= 0");
  // The stored matrix is rows x cols, or cols x rows when transposed.
  check_ld(is_a ? "lda" : "ldb", ld, trans ? cols : rows, trans ? rows : cols);
  PackedMatrix pm;
  pm.side_ = side;
  pm.isa_ = isa;
  pm.rows_ = rows;
  pm.cols_ = cols;
  pm.panel_ = is_a ? im.mr : im.nr;
  // A: panels of MR rows over all K (= cols). B: panels of NR columns over
  // all K (= rows).
  const int64_t K = is_a ? cols : rows;
  const int64_t width = is_a ? rows : cols;
  const int64_t n = round_up(width, pm.panel_) * K;
  if (n == 0) return pm;
  pm.data_.reset(alloc_floats(static_cast<size_t>(n)));
  pm.size_ = static_cast<size_t>(n);
  if (is_a)
    pack_a_block(im, trans, X, ld, 0, rows, 0, cols, pm.data_.get(), cols * im.mr);
  else
    pack_b_block(im, trans, X, ld, 0, rows, 0, cols, pm.data_.get(), rows * im.nr);
  return pm;
}

PackedMatrix pack_a_for_isa(Isa isa, bool trans_a, int64_t M, int64_t K, const float* A,
                            int64_t lda) {
  return pack_matrix(PackedMatrix::Side::kA, isa, trans_a, M, K, A, lda);
}

PackedMatrix pack_b_for_isa(Isa isa, bool trans_b, int64_t K, int64_t N, const float* B,
                            int64_t ldb) {
  return pack_matrix(PackedMatrix::Side::kB, isa, trans_b, K, N, B, ldb);
}

PackedMatrix pack_a(bool trans_a, int64_t M, int64_t K, const float* A, int64_t lda) {
  return pack_a_for_isa(kernels().isa, trans_a, M, K, A, lda);
}

PackedMatrix pack_b(bool trans_b, int64_t K, int64_t N, const float* B, int64_t ldb) {
  return pack_b_for_isa(kernels().isa, trans_b, K, N, B, ldb);
}

// ---- entry points ----

void apply_activation(const GemmEpilogue& ep, float* y, int64_t n) {
  if (ep.act == Epilogue::kNone) return;
  for (int64_t i = 0; i < n; ++i) y[i] = activate(y[i], ep);
}

void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
           const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
           int64_t ldc, const GemmEpilogue& ep, ThreadPool* pool) {
  sgemm_impl(impl_of(kernels().isa), trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C,
             ldc, ep, pool);
}

void sgemm_for_isa(Isa isa, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                   float alpha, const float* A, int64_t lda, const float* B, int64_t ldb,
                   float beta, float* C, int64_t ldc, const GemmEpilogue& ep, ThreadPool* pool) {
  sgemm_impl(checked_impl(isa), trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc,
             ep, pool);
}

void sgemm_packed_a(const PackedMatrix& A, int64_t N, const float* B, int64_t ldb, bool trans_b,
                    float beta, float* C, int64_t ldc, const GemmEpilogue& ep, ThreadPool* pool) {
  if (A.side() != PackedMatrix::Side::kA)
    throw Error(Errc::kInvalidArgument, "sgemm_packed_a", "was given a matrix packed as B",
                "a matrix from pack_a");
  const int64_t M = A.rows(), K = A.cols();
  check_dims(M, N, K);
  if (M == 0 || N == 0) return;
  check_ld("ldc", ldc, M, N);
  if (K == 0) {
    scale_c(M, N, beta, C, ldc, ep);
    return;
  }
  check_ld("ldb", ldb, trans_b ? N : K, trans_b ? K : N);
  GemmJob g;
  g.im = &impl_of(A.isa());
  g.M = M;
  g.N = N;
  g.K = K;
  g.beta = beta;
  g.a.packed = &A;
  g.b = {B, ldb, trans_b, nullptr};
  g.C = C;
  g.ldc = ldc;
  g.ep = ep;
  run_gemm(g, pool);
}

void sgemm_packed_b(int64_t M, const float* A, int64_t lda, bool trans_a, const PackedMatrix& B,
                    float beta, float* C, int64_t ldc, const GemmEpilogue& ep, ThreadPool* pool) {
  if (B.side() != PackedMatrix::Side::kB)
    throw Error(Errc::kInvalidArgument, "sgemm_packed_b", "was given a matrix packed as A",
                "a matrix from pack_b");
  const int64_t K = B.rows(), N = B.cols();
  check_dims(M, N, K);
  if (M == 0 || N == 0) return;
  check_ld("ldc", ldc, M, N);
  if (K == 0) {
    scale_c(M, N, beta, C, ldc, ep);
    return;
  }
  check_ld("lda", lda, trans_a ? K : M, trans_a ? M : K);
  const Impl& im = impl_of(B.isa());
  if (M == 1) {
    // Matrix-vector: stream the panels once.
    GemvJob g;
    g.im = &im;
    g.kind = GemvKind::kPanels;
    g.L = N;
    g.K = K;
    g.x = contiguous(A, trans_a ? lda : 1, K);
    g.mat = B.data();
    g.out = C;
    g.beta = beta;
    g.bias_vec = ep.bias_n;
    g.bias_scalar = ep.bias_m != nullptr ? ep.bias_m[0] : 0.0f;
    g.ep = ep;
    run_gemv(g, pool);
    return;
  }
  GemmJob g;
  g.im = &im;
  g.M = M;
  g.N = N;
  g.K = K;
  g.beta = beta;
  g.a = {A, lda, trans_a, nullptr};
  g.b.packed = &B;
  g.C = C;
  g.ldc = ldc;
  g.ep = ep;
  run_gemm(g, pool);
}

int64_t panel_columns(Isa isa) {
  return impl_of(isa).nr;
}

void sgemm_packed_a_rows(const PackedMatrix& A, int64_t N, const float* B, const int64_t* b_rows,
                         float* C, int64_t ldc, const GemmEpilogue& ep, ThreadPool* pool) {
  if (A.side() != PackedMatrix::Side::kA)
    throw Error(Errc::kInvalidArgument, "sgemm_packed_a_rows", "was given a matrix packed as B",
                "a matrix from pack_a");
  const int64_t M = A.rows(), K = A.cols();
  check_dims(M, N, K);
  if (M == 0 || N == 0) return;
  const Impl& im = checked_impl(A.isa());
  const int64_t mr = im.mr, nr = im.nr;
  // Each tile takes all of K: B's rows are scattered, so a K block would not
  // be one contiguous slice of them anyway.
  for_each_tile(M, N, mr, nr, 32, pool, M * N * K >= kMinParallelMacs,
                [&](int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
                  MicroTile t;
                  t.b_rows = b_rows;
                  t.k = K;
                  t.ldc = ldc;
                  t.act = ep.act;
                  t.clip_min = ep.clip_min;
                  t.clip_max = ep.clip_max;
                  for (int64_t jr = n0; jr < n1; jr += nr) {
                    t.b = B + jr;
                    t.n = std::min(nr, n1 - jr);
                    t.bias_n = ep.bias_n != nullptr ? ep.bias_n + jr : nullptr;
                    for (int64_t ir = m0; ir < m1; ir += mr) {
                      t.m = std::min(mr, m1 - ir);
                      t.a = A.data() + (ir / mr) * K * mr;
                      t.c = C + ir * ldc + jr;
                      t.bias_m = ep.bias_m != nullptr ? ep.bias_m + ir : nullptr;
                      im.tile(t);
                    }
                  }
                });
}

// ---- scalar reference kernels ----

void pack_transpose__ref(const float* src, int64_t ld, int64_t rows, int64_t kc, float* dst,
                         int64_t stride, int64_t width) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t k = 0; k < kc; ++k) dst[k * stride + r] = src[r * ld + k];
  for (int64_t r = rows; r < width; ++r)
    for (int64_t k = 0; k < kc; ++k) dst[k * stride + r] = 0.0f;
}

void sgemm_tile__ref(const MicroTile& t) {
  constexpr int64_t MR = kRefMr, NR = kRefNr;
  float acc[MR][NR] = {};
  const float* a = t.a;
  const int64_t lda = t.a_ld != 0 ? t.a_ld : 1, as = t.a_ld != 0 ? 1 : MR;
  const int64_t rows = t.a_ld != 0 ? t.m : MR;  // a packed panel's rows >= m are zeros
  for (int64_t k = 0; k < t.k; ++k) {
    const float* b = t.b + (t.b_rows != nullptr ? t.b_rows[k] : k * t.b_stride);
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t j = 0; j < NR; ++j) acc[i][j] += a[i * lda] * b[j];
    a += as;
  }
  GemmEpilogue ep;
  ep.act = t.act;
  ep.clip_min = t.clip_min;
  ep.clip_max = t.clip_max;
  for (int64_t i = 0; i < t.m; ++i) {
    float* c = t.c + i * t.ldc;
    for (int64_t j = 0; j < t.n; ++j) {
      float v = t.alpha * acc[i][j];
      if (t.beta != 0.0f) v += t.beta * c[j];
      if (t.bias_m != nullptr) v += t.bias_m[i];
      if (t.bias_n != nullptr) v += t.bias_n[j];
      c[j] = activate(v, ep);
    }
  }
}

void sgemv_rows__ref(int64_t k, int64_t n, const float* x, const float* b, int64_t ldb, float* y) {
  for (int64_t j = 0; j < n; ++j) y[j] = 0.0f;
  for (int64_t p = 0; p < k; ++p) {
    const float xv = x[p];
    const float* row = b + p * ldb;
    for (int64_t j = 0; j < n; ++j) y[j] += xv * row[j];
  }
}

void sgemv_dots__ref(int64_t k, int64_t n, const float* x, const float* b, int64_t ldb, float* y) {
  for (int64_t j = 0; j < n; ++j) {
    const float* row = b + j * ldb;
    float s = 0.0f;
    for (int64_t p = 0; p < k; ++p) s += x[p] * row[p];
    y[j] = s;
  }
}

void sgemv_panels__ref(int64_t k, int64_t n, const float* x, const float* p, float* y) {
  constexpr int64_t NR = kRefNr;
  for (int64_t j0 = 0; j0 < n; j0 += NR) {
    float acc[NR] = {};
    const float* panel = p + (j0 / NR) * k * NR;
    for (int64_t q = 0; q < k; ++q)
      for (int64_t j = 0; j < NR; ++j) acc[j] += x[q] * panel[q * NR + j];
    for (int64_t j = 0; j < std::min(NR, n - j0); ++j) y[j0 + j] = acc[j];
  }
}

}  // namespace qforge::kernels
