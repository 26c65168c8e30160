// Shared by the nn op files (nn.cpp, nn_conv.cpp, nn_pool.cpp,
// nn_norm.cpp): window geometry (defined in nn.cpp), compiling a loop for the
// best vector ISA, and small threading and dtype helpers.
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "kernels/gemm.h"
#include "ops/op_util.h"
#include "qforge/thread_pool.h"

namespace qforge::ops::nn_detail {

// 2 = AVX-512, 1 = AVX2, 0 = plain, following kernels() (QFORGE_ISA honoured).
int vector_isa();
// An ints attribute of n entries (strides, dilations, ...), default dflt,
// each at least min_value.
std::vector<int64_t> window_ints(const ir::Node& node, const char* name, size_t n, int64_t dflt,
                                 int64_t min_value);
std::string auto_pad_attr(const ir::Node& node);
// Output size of a sliding window along one axis; fills the pads when auto_pad decides them.
int64_t window_out_dim(const ir::Node& node, int64_t in, int64_t k, int64_t s, int64_t d,
                       const std::string& auto_pad, bool ceil_mode, int64_t& pad_begin,
                       int64_t& pad_end);

#define NN_INLINE inline __attribute__((always_inline))
#define NN_LAMBDA __attribute__((always_inline))
#if defined(__x86_64__)
template <class F>
__attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,fma,prefer-vector-width=512")))
void run_avx512(const F& f) { f(); }
template <class F>
__attribute__((target("avx2,fma"))) void run_avx2(const F& f) { f(); }
#endif
// Runs f (an always-inline lambda) compiled for the best ISA kernels() allows.
template <class F>
void run_vectorized(const F& f) {
#if defined(__x86_64__)
  switch (vector_isa()) {
    case 2: run_avx512(f); return;
    case 1: run_avx2(f); return;
    default: break;
  }
#endif
  f();
}

// 16 values of T in one vector (GCC's vector extension): what one AVX-512
// register holds of floats. Used only inside always-inline code compiled
// for one ISA (run_vectorized), never passed to or returned from a call.
template <typename T>
using Vec16 [[gnu::vector_size(16 * sizeof(T))]] = T;

// Prefetches `rows` rows of `cols` values of T stored `ld` apart, a cache
// line at a time: rows the hardware won't fetch ahead of a loop whose
// dependent steps hold back its next loads (short strided rows, or rows
// behind a long chain of arithmetic).
template <typename T>
NN_INLINE void prefetch_rows(const T* m, int64_t rows, int64_t cols, int64_t ld) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; c += 64 / static_cast<int64_t>(sizeof(T))) __builtin_prefetch(m + r * ld + c);
}

// x[0] + ... + x[n-1], in 16 partial sums so that the loop vectorises.
template <typename T>
NN_INLINE T sum_of(const T* x, int64_t n) {
  constexpr int64_t L = 16;
  T acc[L] = {};
  int64_t i = 0;
  for (; i + L <= n; i += L)
    for (int64_t j = 0; j < L; ++j) acc[j] += x[i + j];
  T s = 0;
  for (int64_t j = 0; j < L; ++j) s += acc[j];
  for (; i < n; ++i) s += x[i];
  return s;
}

template <class F>
void dispatch_float(DType dt, const ir::Node& node, const char* what, F&& f) {
  if (dt == DType::kF32) f(float{});
  else if (dt == DType::kF64) f(double{});
  else bad_type(node, what, dt, "f32 or f64");
}

// fn over [0, n) in chunks of `grain`, inline when there is no pool or little work.
inline void parallel(ThreadPool* pool, int64_t n, int64_t grain,
                     const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  if (pool == nullptr || n <= grain) fn(0, n);
  else pool->parallel_for(n, grain, fn);
}

// Items per parallel chunk so that a chunk holds about `work` units.
inline int64_t grain_for(int64_t per_item, int64_t work = 1 << 15) {
  return std::max<int64_t>(1, work / std::max<int64_t>(1, per_item));
}

// The activation of a com.microsoft FusedConv or FusedGemm node (attribute
// "activation": "Relu", or "Clip" with activation_params [min, max]) as a
// GEMM epilogue (kernels::apply_activation applies it outside a GEMM); kNone
// for the plain ops. fused_activation_check says why a node's activation
// can't run ("" if it can). Defined in nn_conv.cpp.
kernels::GemmEpilogue fused_activation(const ir::Node& node);
std::string fused_activation_check(const ir::Node& node);

}  // namespace qforge::ops::nn_detail
