// Basics of qforge's core types: DType's table (names, ONNX codes, storage
// sizes of packed types, integer ranges), Tensor (shapes, reshape, views and
// their bounds, deep clone vs shared handles, typed access) and Error's
// message format.
// Outside references: the ONNX TensorProto.DataType numbers (onnx.proto:
// FLOAT=1 UINT8=2 INT8=3 UINT16=4 INT16=5 INT32=6 INT64=7 BOOL=9 FLOAT16=10
// DOUBLE=11 BFLOAT16=16 UINT4=21 INT4=22) and NumPy's reshape rule for -1.
#include <cstdint>
#include <cstring>
#include <iterator>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "qforge/dtype.h"
#include "qforge/error.h"
#include "qforge/quant.h"
#include "qforge/tensor.h"

namespace qforge {
namespace {

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// ---- DType ----

struct Row {
  DType t;
  const char* name;
  int bits;
  int64_t min, max;
  int onnx;
};

const Row kRows[] = {
    {DType::kF32, "f32", 32, 0, 0, 1},
    {DType::kF16, "f16", 16, 0, 0, 10},
    {DType::kBF16, "bf16", 16, 0, 0, 16},
    {DType::kF64, "f64", 64, 0, 0, 11},
    {DType::kI64, "i64", 64, std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max(), 7},
    {DType::kI32, "i32", 32, -2147483648LL, 2147483647LL, 6},
    {DType::kI16, "i16", 16, -32768, 32767, 5},
    {DType::kU16, "u16", 16, 0, 65535, 4},
    {DType::kI8, "i8", 8, -128, 127, 3},
    {DType::kU8, "u8", 8, 0, 255, 2},
    {DType::kBool, "bool", 8, 0, 1, 9},
    {DType::kI4, "i4", 4, -8, 7, 22},
    {DType::kU4, "u4", 4, 0, 15, 21},
    {DType::kI2, "i2", 2, -2, 1, 0},
    {DType::kU2, "u2", 2, 0, 3, 0},
};

TEST(TensorDType, TableRows) {
  EXPECT_EQ(std::size(kRows), static_cast<size_t>(kNumDTypes));
  for (const Row& r : kRows) {
    SCOPED_TRACE(r.name);
    EXPECT_EQ(dtype_name(r.t), r.name);
    EXPECT_EQ(dtype_bits(r.t), r.bits);
    EXPECT_EQ(dtype_info(r.t).dtype, r.t);
    EXPECT_EQ(dtype_info(r.t).onnx, r.onnx);
    EXPECT_EQ(dtype_info(r.t).is_packed, r.bits < 8);
    EXPECT_EQ(dtype_from_name(r.name), r.t);
    if (r.onnx != 0) {
      EXPECT_EQ(dtype_from_onnx(r.onnx), r.t);
    }
    if (dtype_is_integer(r.t) || r.t == DType::kBool) {
      EXPECT_EQ(dtype_min(r.t), r.min);
      EXPECT_EQ(dtype_max(r.t), r.max);
    }
  }
  EXPECT_TRUE(dtype_is_integer(DType::kI4));
  EXPECT_FALSE(dtype_is_integer(DType::kBool));
  EXPECT_FALSE(dtype_is_integer(DType::kBF16));
}

TEST(TensorDType, UnknownNamesAndOnnxTypesAreErrors) {
  for (const char* bad : {"f8", "", "F32", "int8", "u1", "i4 "}) {
    try {
      dtype_from_name(bad);
      ADD_FAILURE() << "no error for '" << bad << "'";
    } catch (const Error& e) {
      EXPECT_TRUE(contains(e.what(), "'" + std::string(bad) + "'")) << e.what();
      EXPECT_TRUE(contains(e.what(), "f32")) << "lists the known names: " << e.what();
    }
  }
  // 0 UNDEFINED, 8 STRING, 12 UINT32, 13 UINT64, 14 COMPLEX64, 17 FLOAT8E4M3FN, 99.
  for (int bad : {0, 8, 12, 13, 14, 17, 99, -1}) {
    try {
      dtype_from_onnx(bad);
      ADD_FAILURE() << "no error for ONNX type " << bad;
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), Errc::kUnsupported);
      EXPECT_TRUE(contains(e.what(), std::to_string(bad))) << e.what();
    }
  }
}

TEST(TensorDType, StorageBytes) {
  struct Case {
    DType t;
    int64_t n, bytes;
  };
  for (const Case& c : {Case{DType::kF32, 3, 12}, Case{DType::kF64, 3, 24}, Case{DType::kF16, 5, 10},
                        Case{DType::kBF16, 1, 2}, Case{DType::kBool, 7, 7}, Case{DType::kI64, 2, 16},
                        Case{DType::kU8, 0, 0}, Case{DType::kI4, 0, 0}, Case{DType::kI4, 1, 1},
                        Case{DType::kI4, 2, 1}, Case{DType::kU4, 3, 2}, Case{DType::kU4, 67, 34},
                        Case{DType::kI2, 1, 1}, Case{DType::kI2, 4, 1}, Case{DType::kU2, 5, 2},
                        Case{DType::kU2, 67, 17}, Case{DType::kI2, 8, 2}, Case{DType::kI2, 9, 3}}) {
    EXPECT_EQ(storage_bytes(c.t, c.n), c.bytes) << dtype_name(c.t) << " n=" << c.n;
  }
  // Tensors of packed types own that many bytes.
  EXPECT_EQ(Tensor(DType::kI4, {3, 3}).nbytes(), 5u);
  EXPECT_EQ(Tensor(DType::kU2, {7}).nbytes(), 2u);
  EXPECT_EQ(Tensor(DType::kU2, {0, 7}).nbytes(), 0u);
}

// ---- shapes ----

TEST(TensorShape, NumelAndStr) {
  EXPECT_EQ(shape_numel({}), 1);
  EXPECT_EQ(shape_numel({0}), 0);
  EXPECT_EQ(shape_numel({2, 3, 4}), 24);
  EXPECT_EQ(shape_numel({5, 0, 1000000}), 0);
  EXPECT_EQ(shape_str({}), "[]");
  EXPECT_EQ(shape_str({2, 3, 4}), "[2, 3, 4]");
  EXPECT_THROW(shape_numel({2, -1}), Error);
  EXPECT_THROW(shape_numel({int64_t{1} << 40, int64_t{1} << 40}), Error);
  EXPECT_THROW(Tensor(DType::kF32, {-3}), Error);
}

// shape_numel refuses a product past 2^63 - 1, checked at every step (a
// later 0 doesn't hide an overflow before it), and takes one right up to it.
TEST(TensorShape, NumelOverflowAtEveryStep) {
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  EXPECT_EQ(shape_numel({int64_t{1} << 31, int64_t{1} << 31}), int64_t{1} << 62);
  EXPECT_EQ(shape_numel({3, kMax / 3}), kMax / 3 * 3);
  for (const Shape& s : {Shape{int64_t{1} << 62, 2}, Shape{int64_t{1} << 40, int64_t{1} << 40, 0},
                         Shape{3, kMax / 2}}) {
    try {
      shape_numel(s);
      ADD_FAILURE() << shape_str(s) << " was accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("more elements than fit in 64 bits"), std::string::npos) << e.what();
    }
  }
}

TEST(TensorShape, ScalarAndDim) {
  Tensor s(DType::kF32, {});
  EXPECT_FALSE(s.empty());
  EXPECT_EQ(s.rank(), 0);
  EXPECT_EQ(s.numel(), 1);
  EXPECT_EQ(s.nbytes(), 4u);
  Tensor t(DType::kI8, {2, 3, 4});
  EXPECT_EQ(t.dim(0), 2);
  EXPECT_EQ(t.dim(-1), 4);
  EXPECT_EQ(t.dim(-3), 2);
  EXPECT_THROW(t.dim(3), Error);
  EXPECT_THROW(t.dim(-4), Error);
  EXPECT_THROW(s.dim(0), Error);
  const Tensor e;
  EXPECT_TRUE(e.empty());
  EXPECT_EQ(e.numel(), 0);
  EXPECT_EQ(e.nbytes(), 0u);
  EXPECT_EQ(e.raw(), nullptr);
}

TEST(TensorShape, Reshape) {
  std::vector<float> v(24);
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(i);
  const Tensor t = Tensor::from({2, 3, 4}, v);
  EXPECT_EQ(t.reshape({-1, 4}).shape(), (Shape{6, 4}));
  EXPECT_EQ(t.reshape({4, -1, 2}).shape(), (Shape{4, 3, 2}));
  EXPECT_EQ(t.reshape({-1}).shape(), (Shape{24}));
  EXPECT_EQ(t.reshape({24, 1, 1}).shape(), (Shape{24, 1, 1}));
  EXPECT_EQ(Tensor::from({1}, std::vector<float>{5}).reshape({}).shape(), Shape{});
  EXPECT_EQ(Tensor(DType::kF32, {0, 3}).reshape({3, -1}).shape(), (Shape{3, 0}));
  EXPECT_THROW(t.reshape({-1, -1}), Error);
  EXPECT_THROW(t.reshape({5, -1}), Error);  // 24 is not a multiple of 5
  EXPECT_THROW(t.reshape({0, -1}), Error);  // -1 can't be inferred next to 0
  EXPECT_THROW(t.reshape({2, 3, 5}), Error);
  EXPECT_THROW(t.reshape({-2, -12}), Error);
  try {
    Tensor named = t;
    named.set_name("act");
    named.reshape({7, -1});
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_TRUE(contains(e.what(), "'act'")) << e.what();
    EXPECT_EQ(e.code(), Errc::kShapeMismatch);
  }
  // Same storage: a write through the reshaped tensor shows in the original.
  Tensor r = t.reshape({6, 4});
  r.data<float>()[5] = -1;
  EXPECT_EQ(t.data<float>()[5], -1.0f);
  EXPECT_EQ(r.storage(), t.storage());
}

// ---- storage, views, copies ----

TEST(TensorStorage, AllocateIsZeroedAndAligned) {
  for (size_t bytes : {size_t{1}, size_t{63}, size_t{64}, size_t{1000}}) {
    auto s = Storage::allocate(bytes);
    EXPECT_EQ(s->size(), bytes);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(s->data()) % 64, 0u);
    const auto* b = static_cast<const uint8_t*>(s->data());
    for (size_t i = 0; i < bytes; ++i) ASSERT_EQ(b[i], 0) << i;
  }
  const Tensor t(DType::kF64, {3, 5});
  for (int64_t i = 0; i < 15; ++i) EXPECT_EQ(t.data<double>()[i], 0.0);
}

TEST(TensorStorage, ViewBounds) {
  auto s = Storage::allocate(16);
  EXPECT_NO_THROW(Tensor::view(DType::kF32, {4}, s));
  EXPECT_NO_THROW(Tensor::view(DType::kF32, {3}, s, 4));
  EXPECT_NO_THROW(Tensor::view(DType::kU8, {0}, s, 16));
  EXPECT_NO_THROW(Tensor::view(DType::kI4, {32}, s));
  EXPECT_THROW(Tensor::view(DType::kI4, {33}, s), Error);
  EXPECT_THROW(Tensor::view(DType::kF32, {5}, s), Error);
  EXPECT_THROW(Tensor::view(DType::kF32, {3}, s, 8), Error);
  EXPECT_THROW(Tensor::view(DType::kU8, {1}, s, 16), Error);
  EXPECT_THROW(Tensor::view(DType::kU8, {0}, s, 17), Error);
  EXPECT_THROW(Tensor::view(DType::kU8, {1}, s, std::numeric_limits<size_t>::max()), Error);
  EXPECT_THROW(Tensor::view(DType::kF32, {1}, nullptr), Error);
  try {
    Tensor::view(DType::kF64, {3}, s, 0);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_TRUE(contains(e.what(), "24")) << "names the bytes needed: " << e.what();
    EXPECT_TRUE(contains(e.what(), "16")) << "names the bytes there are: " << e.what();
  }
  // A view sees the storage at its offset, and writes go through.
  Tensor whole = Tensor::view(DType::kF32, {4}, s);
  Tensor tail = Tensor::view(DType::kF32, {2}, s, 8);
  whole.data<float>()[2] = 7.5f;
  EXPECT_EQ(tail.data<float>()[0], 7.5f);
  tail.data<float>()[1] = -1.0f;
  EXPECT_EQ(whole.data<float>()[3], -1.0f);
}

TEST(TensorStorage, WrapKeepsOwnerAlive) {
  auto owner = std::make_shared<std::vector<float>>(std::vector<float>{1, 2, 3});
  std::weak_ptr<std::vector<float>> watch = owner;
  Tensor t;
  {
    auto s = Storage::wrap(owner->data(), 12, owner);
    owner.reset();
    t = Tensor::view(DType::kF32, {3}, s);
  }
  EXPECT_FALSE(watch.expired());
  EXPECT_EQ(t.data<float>()[2], 3.0f);
  t = Tensor();
  EXPECT_TRUE(watch.expired());
}

TEST(TensorStorage, CopyIsAHandleCloneIsDeep) {
  Tensor a = Tensor::from({2, 2}, std::vector<float>{1, 2, 3, 4});
  a.set_name("w");
  auto qp = std::make_shared<QuantParams>();
  qp->dtype = DType::kI8;
  qp->scale = {0.5f};
  qp->zero_point = {3};
  a.set_qparams(qp);
  Tensor b = a;  // shares bytes
  b.data<float>()[0] = 10;
  EXPECT_EQ(a.data<float>()[0], 10.0f);
  Tensor c = a.clone();  // does not
  c.data<float>()[1] = 20;
  EXPECT_EQ(a.data<float>()[1], 2.0f);
  EXPECT_EQ(c.data<float>()[0], 10.0f);
  EXPECT_NE(c.storage(), a.storage());
  EXPECT_EQ(c.name(), "w");
  EXPECT_EQ(c.shape(), a.shape());
  ASSERT_NE(c.qparams(), nullptr);
  EXPECT_NE(c.qparams().get(), a.qparams().get());  // a copy of the parameters
  EXPECT_EQ(c.qparams()->scale, qp->scale);
  EXPECT_EQ(c.qparams()->zero_point, qp->zero_point);
  EXPECT_EQ(c.qparams()->dtype, DType::kI8);
  // Clone of a view copies the viewed bytes only.
  auto s = Storage::allocate(16);
  static_cast<float*>(s->data())[3] = 9.0f;
  const Tensor v = Tensor::view(DType::kF32, {2}, s, 8).clone();
  EXPECT_EQ(v.nbytes(), 8u);
  EXPECT_EQ(v.data<float>()[1], 9.0f);
  EXPECT_NE(v.storage(), s);
  // Packed types: the packed bytes.
  Tensor p(DType::kI4, {3});
  static_cast<uint8_t*>(p.raw())[1] = 0x07;
  EXPECT_EQ(static_cast<const uint8_t*>(p.clone().raw())[1], 0x07);
  // An empty tensor clones to an empty tensor.
  EXPECT_TRUE(Tensor().clone().empty());
  EXPECT_EQ(Tensor().clone().numel(), 0);
}

TEST(TensorAccess, FromChecksCount) {
  EXPECT_THROW(Tensor::from({2, 2}, std::vector<float>{1, 2, 3}), Error);
  EXPECT_NO_THROW(Tensor::from({0}, std::vector<float>{}));
  const Tensor i = Tensor::from({3}, std::vector<int16_t>{-1, 2, 300});
  EXPECT_EQ(i.dtype(), DType::kI16);
  EXPECT_EQ(i.data<int16_t>()[2], 300);
  EXPECT_EQ(Tensor::from({2}, std::vector<bool>{true, false}).dtype(), DType::kBool);
}

TEST(TensorAccess, WrongTypeNamesBothTypes) {
  Tensor t = Tensor::from({2, 3}, std::vector<float>(6, 1.0f));
  t.set_name("conv1.weight");
  try {
    t.data<int8_t>();
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::kTypeMismatch);
    const std::string w = e.what();
    EXPECT_TRUE(contains(w, "i8")) << w;
    EXPECT_TRUE(contains(w, "f32")) << w;
    EXPECT_TRUE(contains(w, "'conv1.weight'")) << w;
  }
  const Tensor& ct = t;
  EXPECT_THROW(ct.data<double>(), Error);
  EXPECT_THROW(Tensor(DType::kI4, {2}).data<int8_t>(), Error);  // no C++ type is i4
  EXPECT_THROW(Tensor(DType::kF16, {2}).data<uint16_t>(), Error);  // f16 is not u16
  EXPECT_NO_THROW(t.data<float>());
}

TEST(TensorAccess, Describe) {
  Tensor t(DType::kF32, {2, 3});
  EXPECT_EQ(t.describe(), "tensor f32[2, 3]");
  t.set_name("x");
  EXPECT_EQ(t.describe(), "tensor 'x' f32[2, 3]");
  EXPECT_EQ(Tensor(DType::kU4, {}).describe(), "tensor u4[]");
}

// ---- Error ----

TEST(TensorError, WhatHasSubjectProblemAndExpected) {
  const Error e(Errc::kCorrupt, "file 'a.npy'", "has 3 bytes of data", "24 bytes");
  const std::string w = e.what();
  EXPECT_TRUE(contains(w, "file 'a.npy'")) << w;
  EXPECT_TRUE(contains(w, "has 3 bytes of data")) << w;
  EXPECT_TRUE(contains(w, "24 bytes")) << w;
  EXPECT_LT(w.find("file 'a.npy'"), w.find("has 3 bytes")) << "subject first: " << w;
  EXPECT_EQ(e.code(), Errc::kCorrupt);
  EXPECT_EQ(e.subject(), "file 'a.npy'");
  EXPECT_EQ(e.problem(), "has 3 bytes of data");
  EXPECT_EQ(e.expected(), "24 bytes");
  // Without `expected`, nothing is claimed to be expected.
  const Error f(Errc::kIo, "file 'b'", "can't be opened");
  EXPECT_TRUE(contains(f.what(), "file 'b'"));
  EXPECT_TRUE(contains(f.what(), "can't be opened"));
  EXPECT_FALSE(contains(f.what(), "expected"));
  // It is a std::runtime_error, and check() throws it only when false.
  EXPECT_THROW(check(false, Errc::kInternal, "s", "p"), std::runtime_error);
  EXPECT_NO_THROW(check(true, Errc::kInternal, "s", "p"));
  try {
    check(false, Errc::kNotFound, "node 'n'", "is missing", "a node");
  } catch (const Error& g) {
    EXPECT_EQ(g.code(), Errc::kNotFound);
    EXPECT_EQ(g.subject(), "node 'n'");
  }
}

TEST(TensorError, ErrcNamesAreDistinct) {
  const Errc all[] = {Errc::kInvalidArgument, Errc::kShapeMismatch, Errc::kTypeMismatch, Errc::kNotFound,
                      Errc::kIo, Errc::kCorrupt, Errc::kUnsupported, Errc::kInternal};
  for (size_t i = 0; i < std::size(all); ++i) {
    EXPECT_STRNE(errc_name(all[i]), "");
    for (size_t j = 0; j < i; ++j) EXPECT_STRNE(errc_name(all[i]), errc_name(all[j]));
  }
}

}  // namespace
}  // namespace qforge
