// ai.qforge QLinearLookup(X, table) -> Y: a quantized unary op as a table of
// its 256 results. X is u8 or i8; table is a 1-D tensor of 256 codes of Y's
// type (u8 or i8), entry i the result for X's code whose byte is i XOR the
// sign bit (u8: code i; i8: code i - 128). passes::fuse_qdq builds the
// table for a DequantizeLinear -> f -> QuantizeLinear group, with f any
// elementwise op of one input, by running f on the 256 dequantized codes
// with qforge's own kernel and quantizing the results: the group's result
// for every code, one byte load per element at run time.
#include <cstring>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "ops/families.h"
#include "ops/nn_common.h"
#include "ops/op_util.h"
#include "qforge/error.h"
#include "qforge/thread_pool.h"

namespace qforge::ops {
namespace {

bool is_8bit(DType t) { return t == DType::kU8 || t == DType::kI8; }

#if defined(__x86_64__)
// 64 lookups at a time (AVX-512 VBMI): vpermi2b picks bytes from a
// 128-entry table (two registers) by the low 7 bits of each index; one
// pick from entries 0..127 and one from 128..255, and bit 7 of the index
// chooses between them.
__attribute__((target("avx512f,avx512bw,avx512vbmi"))) void lookup_vbmi(const uint8_t* in, uint8_t* out,
                                                                        int64_t n, const uint8_t* t) {
  const __m512i t0 = _mm512_loadu_si512(t), t1 = _mm512_loadu_si512(t + 64);
  const __m512i t2 = _mm512_loadu_si512(t + 128), t3 = _mm512_loadu_si512(t + 192);
  int64_t i = 0;
  for (; i + 64 <= n; i += 64) {
    const __m512i x = _mm512_loadu_si512(in + i);
    const __m512i lo = _mm512_permutex2var_epi8(t0, x, t1);
    const __m512i hi = _mm512_permutex2var_epi8(t2, x, t3);
    _mm512_storeu_si512(out + i, _mm512_mask_blend_epi8(_mm512_movepi8_mask(x), lo, hi));
  }
  for (; i < n; ++i) out[i] = t[in[i]];
}

// The VBMI loop where the CPU has it and the kernel table allows AVX-512 (QFORGE_ISA).
bool use_vbmi() {
  static const bool ok = __builtin_cpu_supports("avx512vbmi") && nn_detail::vector_isa() == 2;
  return ok;
}
#endif

void lookup_run(OpContext& ctx) {
  const ir::Node& node = ctx.node();
  const Tensor& x = ctx.input(0);
  const Tensor& table = ctx.input(1);
  if (!is_8bit(x.dtype())) bad_type(node, "input X", x.dtype(), "u8 or i8");
  if (!is_8bit(table.dtype())) bad_type(node, "input table", table.dtype(), "u8 or i8");
  if (table.rank() != 1 || table.numel() != 256)  // (the message only on failure)
    QFORGE_CHECK(false, Errc::kShapeMismatch, node.describe(), "has a table of shape " + shape_str(table.shape()),
          "256 entries, one per input code");
  Tensor& y = ctx.output(0, table.dtype(), x.shape());
  const auto* in = static_cast<const uint8_t*>(x.raw());
  auto* out = static_cast<uint8_t*>(y.raw());
  uint8_t t[256];
  // Indexed by the code's byte: i8 codes -128..127 are bytes 128..255, 0..127.
  const int flip = x.dtype() == DType::kI8 ? 0x80 : 0;
  const auto* src = static_cast<const uint8_t*>(table.raw());
  for (int i = 0; i < 256; ++i) t[i ^ flip] = src[i];
  auto body = [&](int64_t b, int64_t e) {
    // Locals, not the captured references: a byte store may alias
    // anything, so the loop would otherwise reload in, out and t each time.
    const uint8_t* __restrict src_b = in;
    uint8_t* __restrict dst_b = out;
    const uint8_t* __restrict tab = t;
#if defined(__x86_64__)
    if (use_vbmi()) return lookup_vbmi(src_b + b, dst_b + b, e - b, tab);
#endif
    for (int64_t i = b; i < e; ++i) dst_b[i] = tab[src_b[i]];
  };
  const int64_t n = x.numel();
  if (ctx.pool() && n >= (int64_t{1} << 16)) ctx.pool()->parallel_for(n, int64_t{1} << 15, body);
  else body(0, n);
}

void lookup_infer(InferContext& c) { set_output(c, 0, c.input(1).dtype, c.input(0).shape); }

}  // namespace

void register_lookup_ops(OpRegistry& r) {
  r.add({.domain = "ai.qforge", .op_type = "QLinearLookup", .min_opset = 1, .max_opset = 1,
         .infer = lookup_infer, .run = lookup_run});
}

}  // namespace qforge::ops
