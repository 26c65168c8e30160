// NumPy .npy files: write_npy / read_npy round trips for every supported
// dtype and for scalar, empty, 1-D and 3-D shapes; files laid out by hand as
// NumPy writes them; malformed files and failed writes are qforge::Errors
// naming the file, and a failed write leaves nothing behind.
// Outside reference: the NPY format specification (numpy.lib.format, format
// version 1.0 and 2.0): magic "\x93NUMPY", major and minor version bytes, a
// little-endian header length (uint16 in 1.0, uint32 in 2.0), then an ASCII
// Python dict literal {'descr': ..., 'fortran_order': ..., 'shape': ...}
// padded with spaces and ended by '\n' so that the data start at a multiple
// of 64 bytes; C-order data follow. NumPy writes the dict with its keys
// sorted and a trailing ", " before '}', and shapes as Python tuples: (),
// (5,), (2, 3).
#include <stdlib.h>

#include <bit>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "qforge/npy.h"
#include "test_util.h"
#include "qforge/quant.h"

namespace qforge {
namespace {

namespace fs = std::filesystem;

class Npy : public test::TempDirTest {
 protected:
  std::vector<std::string> listing() const {
    std::vector<std::string> v;
    for (const auto& e : fs::directory_iterator(dir_)) v.push_back(e.path().filename().string());
    return v;
  }
};

std::string read_bytes(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

void write_bytes(const std::string& p, const std::string& bytes) {
  std::ofstream f(p, std::ios::binary);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// An NPY file laid out as the spec says: magic, version, little-endian header
// length, the dict padded with spaces to end with '\n' at a multiple of 64.
std::string npy_file(const std::string& dict, const std::string& data, int major = 1) {
  const size_t prefix = major == 1 ? 10 : 12;
  std::string header = dict;
  header.append((64 - (prefix + header.size() + 1) % 64) % 64, ' ');
  header += '\n';
  std::string out("\x93NUMPY", 6);
  out += static_cast<char>(major);
  out += '\0';
  const size_t len_bytes = major == 1 ? 2 : 4;
  for (size_t i = 0; i < len_bytes; ++i) out += static_cast<char>((header.size() >> (8 * i)) & 0xff);
  return out + header + data;
}

std::string le32(uint32_t u) {
  std::string s;
  for (int i = 0; i < 4; ++i) s += static_cast<char>((u >> (8 * i)) & 0xff);
  return s;
}

// ---- round trips ----

struct TypeCase {
  DType t;
  const char* descr;  // as NumPy writes it
};
const TypeCase kTypes[] = {{DType::kF32, "<f4"}, {DType::kF64, "<f8"}, {DType::kI64, "<i8"},
                           {DType::kI32, "<i4"}, {DType::kI16, "<i2"}, {DType::kU16, "<u2"},
                           {DType::kI8, "|i1"},  {DType::kU8, "|u1"},  {DType::kBool, "|b1"},
                           {DType::kF16, "<f2"}};

struct ShapeCase {
  Shape shape;
  const char* repr;  // Python's repr of the shape tuple
};
const ShapeCase kShapes[] = {{{}, "()"}, {{0}, "(0,)"}, {{5}, "(5,)"}, {{2, 3, 4}, "(2, 3, 4)"}};

TEST_F(Npy, RoundTripEveryTypeAndShape) {
  std::mt19937 rng(1);
  int n = 0;
  for (const TypeCase& tc : kTypes)
    for (const ShapeCase& sc : kShapes) {
      SCOPED_TRACE(std::string(tc.descr) + " " + sc.repr);
      Tensor t(tc.t, sc.shape);
      auto* b = static_cast<uint8_t*>(t.raw());
      for (size_t i = 0; i < t.nbytes(); ++i)
        b[i] = tc.t == DType::kBool ? static_cast<uint8_t>(rng() & 1u) : static_cast<uint8_t>(rng());
      const std::string p = path(std::to_string(n++) + ".npy");
      write_npy(p, t);

      // The file, as the spec lays it out.
      const std::string f = read_bytes(p);
      ASSERT_GE(f.size(), 10u);
      EXPECT_EQ(f.substr(0, 8), std::string("\x93NUMPY\x01\x00", 8));
      const size_t hlen = static_cast<uint8_t>(f[8]) | static_cast<size_t>(static_cast<uint8_t>(f[9])) << 8;
      ASSERT_EQ(f.size(), 10 + hlen + t.nbytes());
      EXPECT_EQ((10 + hlen) % 64, 0u);
      const std::string header = f.substr(10, hlen);
      const std::string dict = std::string("{'descr': '") + tc.descr +
                               "', 'fortran_order': False, 'shape': " + sc.repr + ", }";
      EXPECT_EQ(header.substr(0, dict.size()), dict);
      EXPECT_EQ(header.back(), '\n');
      EXPECT_EQ(header.find_first_not_of(' ', dict.size()), hlen - 1) << "padding is spaces";
      EXPECT_EQ(f.substr(10 + hlen), std::string(static_cast<const char*>(t.raw()), t.nbytes()));

      const Tensor r = read_npy(p);
      EXPECT_EQ(r.dtype(), tc.t);
      EXPECT_EQ(r.shape(), sc.shape);
      ASSERT_EQ(r.nbytes(), t.nbytes());
      if (t.nbytes() > 0) {
        EXPECT_EQ(std::memcmp(r.raw(), t.raw(), t.nbytes()), 0);
      }
    }
  EXPECT_EQ(n, 40);
}

TEST_F(Npy, OverwritesAnExistingFile) {
  const std::string p = path("a.npy");
  write_npy(p, Tensor::from({3}, std::vector<float>{1, 2, 3}));
  write_npy(p, Tensor::from({2}, std::vector<int32_t>{7, 8}));
  const Tensor r = read_npy(p);
  EXPECT_EQ(r.dtype(), DType::kI32);
  EXPECT_EQ(r.data<int32_t>()[1], 8);
  EXPECT_EQ(listing(), std::vector<std::string>{"a.npy"});  // no temporary left
}

// ---- files written by NumPy (laid out by hand) ----

TEST_F(Npy, ReadsNumpyLayout) {
  // np.save(p, np.array([[1, 2, 3], [4, 5, 6]], dtype='<f4'))
  std::string data;
  for (float v : {1.0f, 2.0f, 3.0f, 4.0f, 5.0f, 6.0f}) data += le32(std::bit_cast<uint32_t>(v));
  ASSERT_EQ(le32(std::bit_cast<uint32_t>(1.0f)), std::string("\x00\x00\x80\x3f", 4));
  const std::string p = path("np.npy");
  write_bytes(p, npy_file("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", data));
  ASSERT_EQ(read_bytes(p).size(), 128u + 24u);  // the header is one 128-byte block
  const Tensor t = read_npy(p);
  EXPECT_EQ(t.dtype(), DType::kF32);
  EXPECT_EQ(t.shape(), (Shape{2, 3}));
  for (int i = 0; i < 6; ++i) EXPECT_EQ(t.data<float>()[i], static_cast<float>(i + 1));
}

TEST_F(Npy, ReadsOtherLayouts) {
  struct Case {
    std::string dict, data;
    DType t;
    Shape shape;
    int major;
  };
  const std::vector<Case> cases = {
      // A 0-d array, as np.save(p, np.float64(2.5)).
      {"{'descr': '<f8', 'fortran_order': False, 'shape': (), }",
       std::string("\x00\x00\x00\x00\x00\x00\x04\x40", 8), DType::kF64, {}, 1},
      // Native-order and one-byte descrs, keys in another order, extra spaces
      // after the shape (NumPy >= 1.24 leaves room for the shape to grow).
      {"{'shape': (4,), 'fortran_order': False, 'descr': '=i2'}                          ",
       std::string("\x01\x00\xff\xff\x00\x80\xff\x7f", 8), DType::kI16, {4}, 1},
      {"{'descr': '|u1', 'fortran_order': False, 'shape': (1, 1, 3), }", "\x01\x02\xff", DType::kU8,
       {1, 1, 3}, 1},
      // Format version 2.0: a 4-byte header length.
      {"{'descr': '<i8', 'fortran_order': False, 'shape': (1,), }",
       std::string("\xfe\xff\xff\xff\xff\xff\xff\xff", 8), DType::kI64, {1}, 2},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    const Case& c = cases[i];
    SCOPED_TRACE(c.dict);
    const std::string p = path(std::to_string(i) + "c.npy");
    write_bytes(p, npy_file(c.dict, c.data, c.major));
    const Tensor t = read_npy(p);
    EXPECT_EQ(t.dtype(), c.t);
    EXPECT_EQ(t.shape(), c.shape);
    ASSERT_EQ(t.nbytes(), c.data.size());
    EXPECT_EQ(std::memcmp(t.raw(), c.data.data(), c.data.size()), 0);
  }
  // The values, for the ones above.
  EXPECT_EQ(read_npy(path("0c.npy")).data<double>()[0], 2.5);
  const Tensor i16 = read_npy(path("1c.npy"));
  EXPECT_EQ(i16.data<int16_t>()[1], -1);
  EXPECT_EQ(i16.data<int16_t>()[2], -32768);
  EXPECT_EQ(read_npy(path("3c.npy")).data<int64_t>()[0], -2);
}

// ---- errors ----

void expect_file_error(const std::string& p, const std::string& what_else) {
  try {
    read_npy(p);
    ADD_FAILURE() << "no error reading " << p;
  } catch (const Error& e) {
    const std::string w = e.what();
    EXPECT_NE(w.find(p), std::string::npos) << "doesn't name the file: " << w;
    EXPECT_NE(w.find(what_else), std::string::npos) << "doesn't say '" << what_else << "': " << w;
  }
}

TEST_F(Npy, MalformedFilesAreErrorsNamingTheFile) {
  const std::string good_dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
  const std::string data(24, '\0');
  struct Bad {
    const char* name;
    std::string bytes;
    const char* says;
  };
  std::string bad_magic = npy_file(good_dict, data);
  bad_magic[5] = 'X';
  const std::string good = npy_file(good_dict, data);
  const std::vector<Bad> cases = {
      {"magic.npy", bad_magic, "magic"},
      {"csv.npy", "1,2,3\n4,5,6\n", "magic"},
      {"empty.npy", "", "magic"},
      {"short_data.npy", good.substr(0, good.size() - 1), "23 bytes"},
      {"no_data.npy", good.substr(0, good.size() - 24), "0 bytes"},
      {"short_header.npy", good.substr(0, 40), "truncated"},
      {"big_endian.npy", npy_file("{'descr': '>f4', 'fortran_order': False, 'shape': (2, 3), }", data), "big-endian"},
      {"fortran.npy", npy_file("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }", data), "Fortran"},
      {"complex.npy", npy_file("{'descr': '<c8', 'fortran_order': False, 'shape': (2, 3), }", data + data), "<c8"},
      {"unicode.npy", npy_file("{'descr': '<U3', 'fortran_order': False, 'shape': (2,), }", data), "<U3"},
      {"no_shape.npy", npy_file("{'descr': '<f4', 'fortran_order': False, }", data), "shape"},
      {"version9.npy", npy_file(good_dict, data, 9), "version"},
  };
  for (const Bad& b : cases) {
    SCOPED_TRACE(b.name);
    const std::string p = path(b.name);
    write_bytes(p, b.bytes);
    expect_file_error(p, b.says);
  }
  expect_file_error(path("missing.npy"), "can't be opened");
}

TEST_F(Npy, FailedWriteThrowsAndLeavesNothing) {
  const Tensor t = Tensor::from({2}, std::vector<float>{1, 2});
  // A directory that doesn't exist.
  const std::string p = path("no/such/dir/x.npy");
  try {
    write_npy(p, t);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::kIo);
    EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(path("no")));
  // A path that is a directory: the temporary file is written, then can't be
  // renamed over the directory, and must be removed.
  fs::create_directory(path("taken"));
  try {
    write_npy(path("taken"), t);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(path("taken")), std::string::npos) << e.what();
  }
  EXPECT_EQ(listing(), std::vector<std::string>{"taken"});
  EXPECT_TRUE(fs::is_empty(path("taken")));
}

TEST_F(Npy, TypesWithoutNumpyDtypeAreRefused) {
  for (DType d : {DType::kI4, DType::kU4, DType::kI2, DType::kU2, DType::kBF16}) {
    SCOPED_TRACE(dtype_name(d));
    Tensor t(d, {5});
    t.set_name("packed");
    const std::string p = path(std::string(dtype_name(d)) + ".npy");
    try {
      write_npy(p, t);
      ADD_FAILURE() << "no error";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), Errc::kUnsupported);
      EXPECT_NE(std::string(e.what()).find("'packed'"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(dtype_name(d)), std::string::npos) << e.what();
    }
    EXPECT_FALSE(fs::exists(p));
  }
  EXPECT_TRUE(listing().empty());
}

}  // namespace
}  // namespace qforge
