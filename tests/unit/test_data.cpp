// Calibration data (qforge/data.h): every reader on real files, the seeded
// Batcher, the CalibrationDataReader adapter and factory, and bad input,
// which must be a qforge::Error naming the file, never a crash.
//
// Outside references:
//  - Fashion-MNIST as Debian's dataset-fashion-mnist installs it
//    (/usr/share/datasets/fashion-mnist). The expected counts, labels and
//    pixel sums below were read with Python's gzip and struct modules and
//    NumPy (not qforge) when this test was written:
//      d = gzip.open(path).read(); ndim = d[3]
//      dims = struct.unpack(">" + "I" * ndim, d[4:4 + 4 * ndim])
//      a = np.frombuffer(d, np.uint8, offset=4 + 4 * ndim).reshape(dims)
//  - models/fashion_cnn.input.npy: the first two test images as PyTorch saw
//    them in scripts/make_models.py (u8 / 255.0, unsqueezed to [N, 1, 28, 28]).
//  - tests/data/: NPZ files written by NumPy (savez, savez_compressed, and a
//    zip64 variant), images written by Pillow and decoded by Pillow into
//    images_expected.npz; all made by scripts/make_test_data.py, whose
//    docstring gives the array formulas restated here.
//  - Bilinear resize values: PyTorch 1.13's F.interpolate(mode="bilinear",
//    align_corners=False) on the same inputs.
//  - ONNX's backend test data (Debian's libonnx-testdata): node/test_add.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "qforge/data.h"
#include "test_util.h"
#include "qforge/npy.h"
#include "qforge/onnx_tensor.h"
#include "qforge/session.h"

namespace qforge {
namespace {

namespace fs = std::filesystem;

const std::string kFashion = "/usr/share/datasets/fashion-mnist/";
// tests/data, beside tests/golden.
const std::string kData = std::string(QFORGE_GOLDEN_DIR) + "/../data/";
const std::string kOnnxData = std::string(QFORGE_ONNX_TESTDATA_DIR) + "/";

std::string read_bytes(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

void write_bytes(const std::string& p, const std::string& bytes) {
  std::ofstream f(p, std::ios::binary);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(f.good()) << p;
}

// Runs fn, which must throw a qforge::Error of code `code` whose message
// contains every string in `says` (the file's path, at least).
void expect_error(const std::function<void()>& fn, Errc code,
                  const std::vector<std::string>& says) {
  try {
    fn();
    ADD_FAILURE() << "no error; expected one saying " << says.front();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), code) << errc_name(e.code()) << ": " << e.what();
    for (const auto& s : says)
      EXPECT_NE(std::string(e.what()).find(s), std::string::npos)
          << "doesn't say '" << s << "': " << e.what();
  }
}

// A temporary directory whose path() also creates the parent folders.
class TempDir : public test::TempDirTest {
 protected:
  std::string path(const std::string& name) const {
    const fs::path p = fs::path(dir_) / name;
    fs::create_directories(p.parent_path());
    return p.string();
  }
};

// Every tensor of a sample or batch, by name.
const Tensor& get(const NamedTensors& s, const std::string& name) {
  for (const auto& [n, t] : s)
    if (n == name) return t;
  throw std::runtime_error("no tensor '" + name + "'");
}

std::vector<std::string> names(const NamedTensors& s) {
  std::vector<std::string> v;
  for (const auto& p : s) v.push_back(p.first);
  return v;
}

// ================================================================ IDX

TEST(DataIdx, FashionMnistCountsLabelsAndPixels) {
  const Tensor train_x = read_idx(kFashion + "train-images-idx3-ubyte.gz");
  const Tensor train_y = read_idx(kFashion + "train-labels-idx1-ubyte.gz");
  const Tensor test_x = read_idx(kFashion + "t10k-images-idx3-ubyte.gz");
  const Tensor test_y = read_idx(kFashion + "t10k-labels-idx1-ubyte.gz");
  EXPECT_EQ(train_x.dtype(), DType::kU8);
  EXPECT_EQ(train_x.shape(), (Shape{60000, 28, 28}));
  EXPECT_EQ(train_y.shape(), (Shape{60000}));
  EXPECT_EQ(test_x.shape(), (Shape{10000, 28, 28}));
  EXPECT_EQ(test_y.shape(), (Shape{10000}));
  ASSERT_EQ(train_y.dtype(), DType::kU8);

  // First 20 labels of each split (Python, see the top of this file).
  const std::vector<int> train_first = {9, 0, 0, 3, 0, 2, 7, 2, 5, 5, 0, 9, 5, 5, 7, 9, 1, 0, 6, 4};
  const std::vector<int> test_first = {9, 2, 1, 1, 6, 1, 4, 6, 5, 7, 4, 5, 7, 3, 4, 1, 2, 4, 8, 0};
  for (size_t i = 0; i < 20; ++i) {
    EXPECT_EQ(train_y.data<uint8_t>()[i], train_first[i]) << i;
    EXPECT_EQ(test_y.data<uint8_t>()[i], test_first[i]) << i;
  }
  // Ten balanced classes: 6000 / 1000 of each.
  std::vector<int64_t> count(10, 0);
  for (int64_t i = 0; i < train_y.numel(); ++i) ++count.at(train_y.data<uint8_t>()[i]);
  for (int64_t c : count) EXPECT_EQ(c, 6000);
  std::fill(count.begin(), count.end(), 0);
  for (int64_t i = 0; i < test_y.numel(); ++i) ++count.at(test_y.data<uint8_t>()[i]);
  for (int64_t c : count) EXPECT_EQ(c, 1000);

  // Pixel sums: of image 0, the last image, and all images; row 14 of train image 0.
  auto sum = [](const Tensor& t, int64_t from, int64_t n) {
    int64_t s = 0;
    for (int64_t i = from; i < from + n; ++i) s += t.data<uint8_t>()[i];
    return s;
  };
  EXPECT_EQ(sum(train_x, 0, 784), 76247);
  EXPECT_EQ(sum(train_x, 59999 * 784, 784), 16684);
  EXPECT_EQ(sum(train_x, 0, train_x.numel()), 3431114169);
  EXPECT_EQ(sum(test_x, 0, 784), 33456);
  EXPECT_EQ(sum(test_x, 9999 * 784, 784), 24390);
  EXPECT_EQ(sum(test_x, 0, test_x.numel()), 573469082);
  const std::vector<int> row14 = {0,   0,   1,   4,   6,   7,   2,   0,   0,   0,
                                  0,   0,   237, 226, 217, 223, 222, 219, 222, 221,
                                  216, 223, 229, 215, 218, 255, 77,  0};
  for (size_t x = 0; x < 28; ++x) EXPECT_EQ(train_x.data<uint8_t>()[14 * 28 + x], row14[x]) << x;
}

// An IDX file by hand: magic, dims (big-endian u32), data.
std::string idx_bytes(unsigned type, const std::vector<uint32_t>& dims, const std::string& data) {
  std::string s{'\0', '\0', static_cast<char>(type), static_cast<char>(dims.size())};
  for (uint32_t d : dims)
    for (int sh : {24, 16, 8, 0}) s += static_cast<char>((d >> sh) & 0xff);
  return s + data;
}

class DataIdxFiles : public TempDir {};

TEST_F(DataIdxFiles, EveryTypeBigEndian) {
  // Values spelled as big-endian bytes, per the IDX format.
  write_bytes(path("u8-idx1-ubyte"), idx_bytes(0x08, {3}, std::string("\x00\x7f\xff", 3)));
  write_bytes(path("i8-idx1-ubyte"), idx_bytes(0x09, {3}, std::string("\x00\x7f\xff", 3)));
  write_bytes(path("i16-idx2-ubyte"), idx_bytes(0x0B, {1, 2}, std::string("\x01\x02\xff\xfe", 4)));
  write_bytes(path("i32-idx1-ubyte"),
              idx_bytes(0x0C, {2}, std::string("\x01\x02\x03\x04\x80\x00\x00\x00", 8)));
  // 1.5f = 0x3fc00000, -2.0f = 0xc0000000; 0.1 = 0x3fb999999999999a.
  write_bytes(path("f32-idx1-ubyte"),
              idx_bytes(0x0D, {2}, std::string("\x3f\xc0\x00\x00\xc0\x00\x00\x00", 8)));
  write_bytes(path("f64-idx1-ubyte"),
              idx_bytes(0x0E, {1}, std::string("\x3f\xb9\x99\x99\x99\x99\x99\x9a", 8)));

  const Tensor u8 = read_idx(path("u8-idx1-ubyte"));
  ASSERT_EQ(u8.dtype(), DType::kU8);
  EXPECT_EQ(u8.data<uint8_t>()[2], 255);
  const Tensor i8 = read_idx(path("i8-idx1-ubyte"));
  ASSERT_EQ(i8.dtype(), DType::kI8);
  EXPECT_EQ(i8.data<int8_t>()[1], 127);
  EXPECT_EQ(i8.data<int8_t>()[2], -1);
  const Tensor i16 = read_idx(path("i16-idx2-ubyte"));
  ASSERT_EQ(i16.dtype(), DType::kI16);
  EXPECT_EQ(i16.shape(), (Shape{1, 2}));
  EXPECT_EQ(i16.data<int16_t>()[0], 0x0102);
  EXPECT_EQ(i16.data<int16_t>()[1], -2);
  const Tensor i32 = read_idx(path("i32-idx1-ubyte"));
  ASSERT_EQ(i32.dtype(), DType::kI32);
  EXPECT_EQ(i32.data<int32_t>()[0], 0x01020304);
  EXPECT_EQ(i32.data<int32_t>()[1], INT32_MIN);
  const Tensor f32 = read_idx(path("f32-idx1-ubyte"));
  ASSERT_EQ(f32.dtype(), DType::kF32);
  EXPECT_EQ(f32.data<float>()[0], 1.5f);
  EXPECT_EQ(f32.data<float>()[1], -2.0f);
  const Tensor f64 = read_idx(path("f64-idx1-ubyte"));
  ASSERT_EQ(f64.dtype(), DType::kF64);
  EXPECT_EQ(f64.data<double>()[0], 0.1);

  // A gzipped i16 file (scripts/make_test_data.py): [[1, -2, 300], [-32768, 32767, 0]].
  const Tensor gz = read_idx(kData + "idx/i16-idx2-ubyte.gz");
  ASSERT_EQ(gz.dtype(), DType::kI16);
  ASSERT_EQ(gz.shape(), (Shape{2, 3}));
  const std::vector<int16_t> want = {1, -2, 300, -32768, 32767, 0};
  for (size_t i = 0; i < want.size(); ++i) EXPECT_EQ(gz.data<int16_t>()[i], want[i]) << i;
  // As a dataset: IDX files other than u8 images give their rows as "data".
  auto ds = open_dataset(kData + "idx/i16-idx2-ubyte.gz");
  ASSERT_EQ(ds->size(), 2);
  const NamedTensors row1 = ds->get(1);
  ASSERT_EQ(names(row1), (std::vector<std::string>{"data"}));
  ASSERT_EQ(row1[0].second.shape(), (Shape{3}));
  EXPECT_EQ(row1[0].second.data<int16_t>()[0], -32768);
}

TEST_F(DataIdxFiles, BadFilesAreErrorsNamingTheFile) {
  // Plain files.
  const std::string good = idx_bytes(0x08, {2, 5}, std::string(10, '\x07'));
  struct Bad {
    const char* name;
    std::string bytes;
    Errc code;
    const char* says;
  };
  const std::vector<Bad> cases = {
      {"short-idx2-ubyte", good.substr(0, good.size() - 3), Errc::kCorrupt,
       "truncated: 7 bytes of data"},
      {"long-idx2-ubyte", good + "xy", Errc::kCorrupt, "2 bytes after the data"},
      {"header-idx2-ubyte", good.substr(0, 9), Errc::kCorrupt, "truncated inside its IDX header"},
      {"magic-idx2-ubyte", "PK\x03\x04" + good.substr(4), Errc::kCorrupt,
       "not an IDX file (magic 50 4b 03 04)"},
      {"type-idx2-ubyte", idx_bytes(0x07, {2, 5}, std::string(10, '\0')), Errc::kCorrupt,
       "type byte 07"},
      {"nodims-idx0-ubyte", idx_bytes(0x08, {}, ""), Errc::kCorrupt, "0 dimensions"},
      {"empty-idx1-ubyte", "", Errc::kCorrupt, "not an IDX file"},
      // A header claiming 4 * 2^31 * 2^31 bytes: refused before allocating.
      {"huge-idx3-ubyte", idx_bytes(0x0C, {0x80000000u, 0x80000000u, 4}, "abcd"), Errc::kCorrupt,
       "too large"},
      {"big-idx1-ubyte", idx_bytes(0x0E, {0xFFFFFFFFu}, "abcd"), Errc::kCorrupt, "truncated"},
  };
  for (const Bad& b : cases) {
    SCOPED_TRACE(b.name);
    const std::string p = path(b.name);
    write_bytes(p, b.bytes);
    expect_error([&] { read_idx(p); }, b.code, {p, b.says});
  }

  // Gzip: the real labels file cut in half, and with its deflate data damaged.
  const std::string gz = read_bytes(kFashion + "t10k-labels-idx1-ubyte.gz");
  ASSERT_GT(gz.size(), 4000u);
  write_bytes(path("cut-idx1-ubyte.gz"), gz.substr(0, gz.size() / 2));
  expect_error([&] { read_idx(path("cut-idx1-ubyte.gz")); }, Errc::kCorrupt,
               {path("cut-idx1-ubyte.gz"), "truncated"});
  std::string damaged = gz;
  for (size_t i = 1000; i < 1064; ++i) damaged[i] = static_cast<char>(damaged[i] ^ 0x5a);
  write_bytes(path("damaged-idx1-ubyte.gz"), damaged);
  expect_error([&] { read_idx(path("damaged-idx1-ubyte.gz")); }, Errc::kCorrupt,
               {path("damaged-idx1-ubyte.gz"), "corrupt gzip"});
  // Only the CRC-32 in the gzip trailer is wrong: the data decode, the check fails.
  std::string bad_crc = gz;
  bad_crc[gz.size() - 8] = static_cast<char>(bad_crc[gz.size() - 8] ^ 1);
  write_bytes(path("crc-idx1-ubyte.gz"), bad_crc);
  expect_error([&] { read_idx(path("crc-idx1-ubyte.gz")); }, Errc::kCorrupt,
               {path("crc-idx1-ubyte.gz"), "corrupt gzip"});
  // A 27-byte gzip file whose header claims 2 GiB (scripts/make_test_data.py).
  const std::string claims = kData + "idx/claims_too_much-idx1-ubyte.gz";
  expect_error([&] { read_idx(claims); }, Errc::kCorrupt, {claims, "more than a gzip file of"});
  expect_error([&] { read_idx(path("missing-idx1-ubyte")); }, Errc::kNotFound,
               {path("missing-idx1-ubyte"), "does not exist"});
  expect_error([&] { read_idx(dir_); }, Errc::kIo, {dir_, "not a regular file"});
}

TEST(DataIdx, ImagesBecomeWhatPyTorchTrainedOn) {
  // models/fashion_cnn.input.npy holds the first two test images exactly as
  // scripts/make_models.py fed them to PyTorch: u8 / 255.0 as f32[2, 1, 28, 28].
  const Tensor want = read_npy(std::string(QFORGE_MODELS_DIR) + "/fashion_cnn.input.npy");
  ASSERT_EQ(want.shape(), (Shape{2, 1, 28, 28}));
  const Tensor x = read_idx(kFashion + "t10k-images-idx3-ubyte.gz");
  const Tensor f = idx_images_to_float(x);
  ASSERT_EQ(f.shape(), (Shape{10000, 1, 28, 28}));
  ASSERT_EQ(f.dtype(), DType::kF32);
  for (int64_t i = 0; i < want.numel(); ++i)
    ASSERT_EQ(f.data<float>()[i], want.data<float>()[i])
        << "element " << i << " differs from PyTorch's";

  // The dataset (labels found beside the images) and a batch of 2 give the same.
  auto ds = open_dataset(kFashion + "t10k-images-idx3-ubyte.gz");
  ASSERT_EQ(ds->size(), 10000);
  const NamedTensors s0 = ds->get(0);
  EXPECT_EQ(names(s0), (std::vector<std::string>{"image", "label"}));
  EXPECT_EQ(get(s0, "image").shape(), (Shape{1, 28, 28}));
  EXPECT_EQ(get(s0, "label").data<int64_t>()[0], 9);
  Batcher b(ds, {.batch_size = 2});
  const NamedTensors batch = *b.next();
  const Tensor& img = get(batch, "image");
  ASSERT_EQ(img.shape(), want.shape());
  EXPECT_EQ(std::memcmp(img.raw(), want.raw(), want.nbytes()), 0);
  EXPECT_EQ(get(batch, "label").shape(), (Shape{2}));
  EXPECT_EQ(get(batch, "label").data<int64_t>()[1], 2);

  // Mean / std, NHWC and resizing on the same image.
  ImageOptions o;
  o.mean = {0.2860f};
  o.stddev = {0.3530f};
  o.layout = Layout::kNHWC;
  o.height = 32;
  o.width = 32;
  const Tensor n = idx_images_to_float(x, o);
  EXPECT_EQ(n.shape(), (Shape{10000, 32, 32, 1}));
  o.height = o.width = 0;
  const Tensor m = idx_images_to_float(x, o);
  for (int64_t i : {0, 300, 783})
    EXPECT_EQ(m.data<float>()[i], (want.data<float>()[i] - 0.2860f) / 0.3530f) << i;
  o.mean = {0.1f, 0.2f};
  expect_error([&] { idx_images_to_float(x, o); }, Errc::kInvalidArgument,
               {"2 mean values for 1 channels"});
  // Labels that don't belong to the images.
  const std::string train_labels = kFashion + "train-labels-idx1-ubyte.gz";
  expect_error([&] { open_idx_dataset(kFashion + "t10k-images-idx3-ubyte.gz", train_labels); },
               Errc::kShapeMismatch, {train_labels, "60000 labels for the 10000 samples"});
}

TEST(DataIdx, BilinearResizeMatchesPyTorch) {
  // u8 images through idx_images_to_float with scale 1 give the resampled
  // values themselves. Expected: PyTorch F.interpolate, bilinear,
  // align_corners=False.
  ImageOptions o;
  o.scale = 1.0;
  auto resize = [&](Shape shape, std::vector<uint8_t> v, int64_t h, int64_t w) {
    o.height = h;
    o.width = w;
    return idx_images_to_float(Tensor::from(std::move(shape), v), o);
  };
  const Tensor up = resize({1, 2, 2}, {0, 100, 200, 250}, 4, 4);
  const std::vector<float> up_want = {0,        25,     75,     100,      50,       71.875f,
                                      115.625f, 137.5f, 150,    165.625f, 196.875f, 212.5f,
                                      200,      212.5f, 237.5f, 250};
  ASSERT_EQ(up.shape(), (Shape{1, 1, 4, 4}));
  for (size_t i = 0; i < up_want.size(); ++i)
    EXPECT_NEAR(up.data<float>()[i], up_want[i], 1e-4) << i;
  const Tensor down = resize({1, 1, 4}, {0, 40, 80, 120}, 1, 2);
  EXPECT_NEAR(down.data<float>()[0], 20, 1e-4);
  EXPECT_NEAR(down.data<float>()[1], 100, 1e-4);
  std::vector<uint8_t> ramp(15);
  for (size_t i = 0; i < ramp.size(); ++i) ramp[i] = static_cast<uint8_t>(i);
  const Tensor odd = resize({1, 3, 5}, ramp, 2, 3);
  const std::vector<float> odd_want = {1.5833333f, 3.25f,  4.9166665f,
                                       9.083333f,  10.75f, 12.416667f};
  for (size_t i = 0; i < odd_want.size(); ++i)
    EXPECT_NEAR(odd.data<float>()[i], odd_want[i], 1e-4) << i;
  const Tensor grow = resize({1, 2, 3}, {0, 10, 20, 30, 40, 50}, 3, 5);
  const std::vector<float> grow_want = {0, 4, 10, 16, 20, 15, 19, 25, 31, 35, 30, 34, 40, 46, 50};
  for (size_t i = 0; i < grow_want.size(); ++i)
    EXPECT_NEAR(grow.data<float>()[i], grow_want[i], 1e-4) << i;
}

// ================================================================ NPZ

void expect_arrays(const NamedTensors& a, const std::string& file) {
  SCOPED_TRACE(file);
  ASSERT_EQ(names(a), (std::vector<std::string>{"image", "ids", "flags"}));
  const Tensor& image = get(a, "image");
  ASSERT_EQ(image.dtype(), DType::kF32);
  ASSERT_EQ(image.shape(), (Shape{5, 1, 4, 4}));
  for (int64_t i = 0; i < 80; ++i)
    ASSERT_EQ(image.data<float>()[i], static_cast<float>(i) * 0.25f) << i;
  const Tensor& ids = get(a, "ids");
  ASSERT_EQ(ids.dtype(), DType::kI64);
  ASSERT_EQ(ids.shape(), (Shape{5, 3}));
  for (int64_t i = 0; i < 15; ++i) ASSERT_EQ(ids.data<int64_t>()[i], i - 7) << i;
  const Tensor& flags = get(a, "flags");
  ASSERT_EQ(flags.dtype(), DType::kU8);
  ASSERT_EQ(flags.shape(), (Shape{5}));
  for (int64_t i = 0; i < 5; ++i) ASSERT_EQ(flags.data<uint8_t>()[i], i * 50) << i;
}

TEST(DataNpz, StoredDeflatedAndZip64) {
  expect_arrays(read_npz(kData + "npz/arrays.npz"), "arrays.npz");
  expect_arrays(read_npz(kData + "npz/arrays_compressed.npz"), "arrays_compressed.npz");
  expect_arrays(read_npz(kData + "npz/arrays_zip64.npz"), "arrays_zip64.npz");
  const NamedTensors one = read_npz(kData + "npz/single.npz");
  ASSERT_EQ(names(one), (std::vector<std::string>{"arr_0"}));
  EXPECT_EQ(one[0].second.shape(), (Shape{3, 2}));
  EXPECT_EQ(one[0].second.data<float>()[5], 5.0f);
}

class DataNpzFiles : public TempDir {};

// Where an entry's data start: after its local header's name and extra field.
size_t entry_data_offset(const std::string& zip, size_t local_header) {
  auto u16 = [&](size_t at) {
    return static_cast<size_t>(static_cast<unsigned char>(zip[at])) |
           static_cast<size_t>(static_cast<unsigned char>(zip[at + 1])) << 8;
  };
  return local_header + 30 + u16(local_header + 26) + u16(local_header + 28);
}

TEST_F(DataNpzFiles, BadFilesAreErrorsNamingTheFileAndEntry) {
  const std::string bad = kData + "npz/bad_entry.npz";
  expect_error([&] { read_npz(bad); }, Errc::kCorrupt, {bad, "entry 'x.npy'", "not an NPY file"});
  const std::string other = kData + "npz/not_npy.npz";
  expect_error([&] { read_npz(other); }, Errc::kUnsupported,
               {other, "entry 'readme.txt'", "not a .npy array"});

  const std::string stored = read_bytes(kData + "npz/arrays.npz");
  const std::string deflated = read_bytes(kData + "npz/arrays_compressed.npz");
  ASSERT_EQ(stored.substr(0, 4), "PK\x03\x04");
  // The end cut off: no end of central directory record.
  write_bytes(path("cut.npz"), stored.substr(0, stored.size() - 30));
  expect_error([&] { read_npz(path("cut.npz")); }, Errc::kCorrupt,
               {path("cut.npz"), "not a zip archive"});
  // The first array's last data byte changed in a stored entry: only the CRC can tell.
  std::string flipped = stored;
  const size_t data0 = entry_data_offset(stored, 0);
  flipped[data0 + 447] = static_cast<char>(flipped[data0 + 447] ^ 0x01);
  write_bytes(path("flipped.npz"), flipped);
  expect_error([&] { read_npz(path("flipped.npz")); }, Errc::kCorrupt,
               {path("flipped.npz"), "entry 'image.npy'", "CRC-32"});
  // Damaged deflate data.
  std::string damaged = deflated;
  const size_t ddata = entry_data_offset(deflated, 0);
  for (size_t i = ddata + 20; i < ddata + 120; ++i)
    damaged[i] = static_cast<char>(damaged[i] ^ 0xa5);
  write_bytes(path("damaged.npz"), damaged);
  expect_error([&] { read_npz(path("damaged.npz")); }, Errc::kCorrupt,
               {path("damaged.npz"), "entry 'image.npy'"});
  // Not a zip at all, a missing file.
  expect_error([&] { read_npz(std::string(QFORGE_MODELS_DIR) + "/fashion_cnn.input.npy"); },
               Errc::kCorrupt, {"fashion_cnn.input.npy", "not a zip archive"});
  expect_error([&] { read_npz(path("missing.npz")); }, Errc::kNotFound,
               {path("missing.npz"), "does not exist"});
}

// ================================================================ .pb folders

TEST(DataPb, OnnxBackendTestData) {
  const std::string set0 = kOnnxData + "node/test_add/test_data_set_0";
  auto ds = open_pb_dataset(set0);
  ASSERT_EQ(ds->size(), 1);
  EXPECT_TRUE(ds->samples_batched());
  const NamedTensors s = ds->get(0);
  ASSERT_EQ(names(s), (std::vector<std::string>{"x", "y"}));
  const Tensor y = read_tensor_pb(set0 + "/input_1.pb");
  ASSERT_EQ(s[1].second.shape(), y.shape());
  EXPECT_EQ(std::memcmp(s[1].second.raw(), y.raw(), y.nbytes()), 0);
  // The test's folder: its test_data_set_* folders are the samples.
  auto model_dir = open_dataset(kOnnxData + "node/test_add");
  ASSERT_EQ(model_dir->size(), 1);
  EXPECT_EQ(names(model_dir->get(0)), (std::vector<std::string>{"x", "y"}));
}

class DataPbFiles : public TempDir {};

TEST_F(DataPbFiles, SetsInNumericOrderConcatenated) {
  for (int n : {0, 1, 2, 10}) {
    Tensor t = Tensor::from<float>({1, 2}, {static_cast<float>(n), static_cast<float>(n) + 0.5f});
    write_tensor_pb(path("test_data_set_" + std::to_string(n) + "/input_0.pb"), t);  // unnamed
  }
  auto ds = open_dataset(dir_);
  ASSERT_EQ(ds->size(), 4);
  Batcher b(ds, {.batch_size = 3});
  const NamedTensors b0 = *b.next();
  ASSERT_EQ(names(b0), (std::vector<std::string>{"input_0"}));
  ASSERT_EQ(b0[0].second.shape(), (Shape{3, 2}));  // concatenated, not stacked
  const std::vector<float> want = {0, 0.5f, 1, 1.5f, 2, 2.5f};
  for (size_t i = 0; i < want.size(); ++i) EXPECT_EQ(b0[0].second.data<float>()[i], want[i]) << i;
  const NamedTensors b1 = *b.next();
  EXPECT_EQ(b1[0].second.data<float>()[0], 10.0f);  // test_data_set_10 last, not after _1
  EXPECT_FALSE(b.next().has_value());
  // Forced stacking keeps each sample's own batch axis.
  Batcher st(ds, {.batch_size = 2, .mode = BatchMode::kStack});
  EXPECT_EQ(st.next()->at(0).second.shape(), (Shape{2, 1, 2}));
}

TEST_F(DataPbFiles, BadFoldersAreErrors) {
  expect_error([&] { open_pb_dataset(path("missing")); }, Errc::kNotFound,
               {path("missing"), "does not exist"});
  const Tensor t = Tensor::from<float>({1}, {1});
  write_tensor_pb(path("gap/input_0.pb"), t);
  write_tensor_pb(path("gap/input_2.pb"), t);
  expect_error([&] { open_pb_dataset(path("gap")); }, Errc::kNotFound,
               {path("gap/input_1.pb"), "missing"});
  write_tensor_pb(path("uneven/test_data_set_0/input_0.pb"), t);
  write_tensor_pb(path("uneven/test_data_set_1/input_0.pb"), t);
  write_tensor_pb(path("uneven/test_data_set_1/input_1.pb"), t);
  expect_error([&] { open_pb_dataset(path("uneven")); }, Errc::kShapeMismatch,
               {path("uneven/test_data_set_1"), "has 2 inputs"});
  write_bytes(path("garbage/input_0.pb"), "\xff\xff\xff\xff not a protobuf");
  auto ds = open_pb_dataset(path("garbage"));
  expect_error([&] { ds->get(0); }, Errc::kCorrupt, {path("garbage/input_0.pb")});
  fs::create_directories(path("nothing"));
  expect_error([&] { open_pb_dataset(path("nothing")); }, Errc::kNotFound,
               {path("nothing"), "no input_K.pb"});
}

// ================================================================ images

const std::vector<std::string> kImageKeys = {"circle_a", "circle_b", "square_c", "square_d"};

TEST(DataImages, ClassFoldersDecodeLikePillow) {
  const NamedTensors expected = read_npz(kData + "images_expected.npz");  // Pillow's RGB decode
  ASSERT_EQ(names(expected), kImageKeys);
  ImageOptions o;
  o.class_subfolders = true;
  std::vector<std::string> classes;
  auto ds = open_image_folder(kData + "images", o, &classes);
  EXPECT_EQ(classes, (std::vector<std::string>{"circle", "square"}));
  ASSERT_EQ(ds->size(), 4);  // notes.txt skipped
  for (int64_t i = 0; i < 4; ++i) {
    SCOPED_TRACE(kImageKeys[static_cast<size_t>(i)]);
    const NamedTensors s = ds->get(i);
    ASSERT_EQ(names(s), (std::vector<std::string>{"image", "label"}));
    EXPECT_EQ(get(s, "label").data<int64_t>()[0], i < 2 ? 0 : 1);
    const Tensor& img = get(s, "image");
    ASSERT_EQ(img.shape(), (Shape{3, 4, 6}));
    const Tensor& want = expected[static_cast<size_t>(i)].second;  // u8 [4, 6, 3]
    ASSERT_EQ(want.shape(), (Shape{4, 6, 3}));
    const bool jpeg = i == 1;  // decoders may differ slightly on JPEG
    for (int64_t c = 0; c < 3; ++c)
      for (int64_t y = 0; y < 4; ++y)
        for (int64_t x = 0; x < 6; ++x) {
          const float got = img.data<float>()[(c * 4 + y) * 6 + x];
          const uint8_t px = want.data<uint8_t>()[(y * 6 + x) * 3 + c];
          if (jpeg)
            EXPECT_NEAR(got * 255.0f, px, 6.0f) << c << "," << y << "," << x;
          else
            EXPECT_EQ(got, static_cast<float>(px / 255.0)) << c << "," << y << "," << x;
        }
  }
}

TEST(DataImages, GrayscaleLayoutNormalizationResize) {
  const NamedTensors expected = read_npz(kData + "images_expected.npz");
  const Tensor& rgb = expected[0].second;  // circle/a.png
  ImageOptions o;
  o.channels = 1;
  o.layout = Layout::kNHWC;
  auto gray = open_image_folder(kData + "images/circle", o);
  ASSERT_EQ(gray->size(), 2);
  const Tensor g = gray->get(0)[0].second;
  ASSERT_EQ(g.shape(), (Shape{4, 6, 1}));
  for (int64_t p = 0; p < 24; ++p) {
    const uint8_t* q = rgb.data<uint8_t>() + p * 3;
    const double luma = 0.299 * q[0] + 0.587 * q[1] + 0.114 * q[2];  // ITU-R 601
    EXPECT_NEAR(g.data<float>()[p] * 255.0, luma, 1.5) << p;
  }

  ImageOptions n;
  n.mean = {0.485f, 0.456f, 0.406f};
  n.stddev = {0.229f, 0.224f, 0.225f};
  const Tensor t = open_image_folder(kData + "images/circle", n)->get(0)[0].second;
  ASSERT_EQ(t.shape(), (Shape{3, 4, 6}));
  for (int64_t c = 0; c < 3; ++c)
    for (int64_t p = 0; p < 24; ++p) {
      const float v = static_cast<float>(rgb.data<uint8_t>()[p * 3 + c] / 255.0);
      EXPECT_EQ(t.data<float>()[c * 24 + p],
                (v - n.mean[static_cast<size_t>(c)]) / n.stddev[static_cast<size_t>(c)]);
    }

  // Resized: every image of the folder to 8 x 12 (one batch of all four).
  ImageOptions r;
  r.height = 8;
  r.width = 12;
  r.class_subfolders = true;
  Batcher b(open_image_folder(kData + "images", r), {.batch_size = 4});
  const NamedTensors batch = *b.next();
  EXPECT_EQ(get(batch, "image").shape(), (Shape{4, 3, 8, 12}));
  const Tensor& labels = get(batch, "label");
  ASSERT_EQ(labels.shape(), (Shape{4}));
  EXPECT_EQ(labels.data<int64_t>()[3], 1);
  // A 2x upscale with half-pixel centres keeps the corner pixels exactly.
  const Tensor& big = get(batch, "image");
  EXPECT_EQ(big.data<float>()[0], static_cast<float>(rgb.data<uint8_t>()[0] / 255.0));
  EXPECT_EQ(big.data<float>()[8 * 12 - 1],
            static_cast<float>(rgb.data<uint8_t>()[(3 * 6 + 5) * 3] / 255.0));
  EXPECT_NE(big.data<float>()[1], big.data<float>()[0]);
}

class DataImageFiles : public TempDir {};

TEST_F(DataImageFiles, BadFoldersAndImagesAreErrors) {
  expect_error([&] { open_image_folder(path("missing")); }, Errc::kNotFound,
               {path("missing"), "does not exist"});
  fs::create_directories(path("empty"));
  write_bytes(path("empty/readme.txt"), "no images here");
  expect_error([&] { open_image_folder(path("empty")); }, Errc::kNotFound,
               {path("empty"), "contains no images"});
  expect_error([&] { open_calibration_data(path("empty")); }, Errc::kNotFound, {path("empty")});

  // A file named .png that isn't an image, after a good one.
  fs::copy_file(kData + "images/circle/a.png", path("bad/a.png"));
  write_bytes(path("bad/b.png"), "this is text, not a PNG");
  auto bad = open_image_folder(path("bad"));
  ASSERT_EQ(bad->size(), 2);
  EXPECT_EQ(bad->get(0)[0].second.shape(), (Shape{3, 4, 6}));
  expect_error([&] { bad->get(1); }, Errc::kCorrupt, {path("bad/b.png"), "not an image"});
  Batcher bb(bad, {.batch_size = 2});
  expect_error([&] { bb.next(); }, Errc::kCorrupt, {path("bad/b.png")});
  // ... and as the first image.
  write_bytes(path("bad_first/a.png"), std::string("\x89PNG\r\n\x1a\n", 8) + "truncated");
  expect_error([&] { open_image_folder(path("bad_first")); }, Errc::kCorrupt,
               {path("bad_first/a.png")});

  // Two sizes without resizing: the odd one is named; resizing fixes it.
  fs::copy_file(kData + "images/circle/a.png", path("mixed/a.png"));
  fs::copy_file(kData + "image_other_size.png", path("mixed/b.png"));
  auto mixed = open_image_folder(path("mixed"));
  expect_error([&] { mixed->get(1); }, Errc::kShapeMismatch,
               {path("mixed/b.png"), "5 x 5 pixels", "6 x 4"});
  ImageOptions r;
  r.height = r.width = 16;
  auto resized = open_image_folder(path("mixed"), r);
  EXPECT_EQ(resized->get(1)[0].second.shape(), (Shape{3, 16, 16}));

  // An image outside the class subfolders; bad options.
  fs::copy_file(kData + "images/circle/a.png", path("classes/cat/a.png"));
  fs::copy_file(kData + "images/circle/a.png", path("classes/stray.png"));
  ImageOptions c;
  c.class_subfolders = true;
  expect_error([&] { open_image_folder(path("classes"), c); }, Errc::kInvalidArgument,
               {path("classes/stray.png"), "outside the class subfolders"});
  ImageOptions m;
  m.mean = {0.1f, 0.2f};
  expect_error([&] { open_image_folder(path("mixed"), m); }, Errc::kInvalidArgument,
               {path("mixed"), "2 mean values"});
  ImageOptions z;
  z.stddev = {0.0f};
  expect_error([&] { open_image_folder(path("mixed"), z); }, Errc::kInvalidArgument, {"stddev"});
  ImageOptions h;
  h.height = 8;
  expect_error([&] { open_image_folder(path("mixed"), h); }, Errc::kInvalidArgument,
               {"resize to 8 x 0"});
}

// ================================================================ Batcher

std::shared_ptr<Dataset> counting(int64_t n) {
  std::vector<int64_t> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(i)] = i;
  std::vector<float> w(static_cast<size_t>(2 * n));
  for (int64_t i = 0; i < 2 * n; ++i) w[static_cast<size_t>(i)] = static_cast<float>(i);
  return tensor_dataset(
      {{"id", Tensor::from<int64_t>({n}, v)}, {"x", Tensor::from<float>({n, 2}, w)}}, "counting");
}

std::vector<int64_t> ids_in_batches(Batcher& b, std::vector<int64_t>* sizes = nullptr) {
  std::vector<int64_t> ids;
  while (auto batch = b.next()) {
    const Tensor& id = get(*batch, "id");
    const Tensor& x = get(*batch, "x");
    EXPECT_EQ(x.dim(0), id.dim(0));
    for (int64_t i = 0; i < id.numel(); ++i) {
      ids.push_back(id.data<int64_t>()[i]);
      // Each sample's row of x travels with its id.
      EXPECT_EQ(x.data<float>()[2 * i + 1], static_cast<float>(2 * id.data<int64_t>()[i] + 1));
    }
    if (sizes) sizes->push_back(id.dim(0));
  }
  return ids;
}

TEST(DataBatcher, SeededShuffleIsDeterministic) {
  auto ds = counting(100);
  Batcher a(ds, {.batch_size = 7, .shuffle = true, .seed = 42});
  Batcher again(ds, {.batch_size = 7, .shuffle = true, .seed = 42});
  Batcher other(ds, {.batch_size = 7, .shuffle = true, .seed = 43});
  EXPECT_EQ(a.order(), again.order());
  EXPECT_NE(a.order(), other.order());
  std::vector<int64_t> sorted = a.order();
  std::sort(sorted.begin(), sorted.end());
  for (int64_t i = 0; i < 100; ++i) ASSERT_EQ(sorted[static_cast<size_t>(i)], i);  // a permutation
  int64_t moved = 0;
  for (int64_t i = 0; i < 100; ++i) moved += a.order()[static_cast<size_t>(i)] != i;
  EXPECT_GT(moved, 80);
  // The batches follow the order, and rewinding replays them.
  const std::vector<int64_t> ids = ids_in_batches(a);
  EXPECT_EQ(ids, a.order());
  a.rewind();
  EXPECT_EQ(ids_in_batches(a), ids);
  // Pinned: the order for seed 7 over 10 samples, so that a change of
  // algorithm or platform shows. Computed independently with a pure-Python
  // MT19937-64 (Matsumoto & Nishimura's mt19937-64.c, checked against the
  // C++ standard's 10000th output 9981545732273789042) driving the same
  // Fisher-Yates: for i = n..2, j = r % i for the first r >= 2^64 mod i,
  // swap(order[i-1], order[j]).
  Batcher pinned(counting(10), {.shuffle = true, .seed = 7});
  EXPECT_EQ(pinned.order(), (std::vector<int64_t>{0, 7, 4, 9, 3, 1, 2, 8, 6, 5}));
  // Unshuffled: in order.
  Batcher plain(ds, {.batch_size = 30});
  EXPECT_EQ(plain.order()[99], 99);
}

TEST(DataBatcher, BatchSizesDropLastAndLimit) {
  auto ds = counting(10);
  std::vector<int64_t> sizes;
  Batcher all(ds, {.batch_size = 4});
  EXPECT_EQ(all.num_batches(), 3);
  EXPECT_EQ(ids_in_batches(all, &sizes), (std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}));
  EXPECT_EQ(sizes, (std::vector<int64_t>{4, 4, 2}));
  EXPECT_FALSE(all.next().has_value());

  sizes.clear();
  Batcher drop(ds, {.batch_size = 4, .drop_last = true});
  EXPECT_EQ(drop.num_batches(), 2);
  EXPECT_EQ(ids_in_batches(drop, &sizes).size(), 8u);
  EXPECT_EQ(sizes, (std::vector<int64_t>{4, 4}));

  sizes.clear();
  Batcher limited(ds, {.batch_size = 4, .limit = 5});
  EXPECT_EQ(ids_in_batches(limited, &sizes), (std::vector<int64_t>{0, 1, 2, 3, 4}));
  EXPECT_EQ(sizes, (std::vector<int64_t>{4, 1}));

  Batcher subset(ds, {.batch_size = 3, .shuffle = true, .seed = 1, .limit = 5});
  const std::vector<int64_t> ids = ids_in_batches(subset);
  EXPECT_EQ(ids.size(), 5u);
  EXPECT_EQ(std::set<int64_t>(ids.begin(), ids.end()).size(), 5u);
  Batcher full(ds, {.batch_size = 3, .shuffle = true, .seed = 1});
  EXPECT_TRUE(
      std::equal(ids.begin(), ids.end(), full.order().begin()));  // a prefix of the full order

  Batcher tiny(ds, {.batch_size = 16, .drop_last = true});
  EXPECT_EQ(tiny.num_batches(), 0);
  EXPECT_FALSE(tiny.next().has_value());

  // Stacked shapes: [B] and [B, 2].
  Batcher s(ds, {.batch_size = 3});
  const NamedTensors b = *s.next();
  EXPECT_EQ(get(b, "id").shape(), (Shape{3}));
  EXPECT_EQ(get(b, "x").shape(), (Shape{3, 2}));
  // Concatenated along axis 0 instead: [3 * 2].
  Batcher c(ds, {.batch_size = 3, .mode = BatchMode::kConcat});
  expect_error([&] { c.next(); }, Errc::kShapeMismatch, {"counting", "scalar"});

  expect_error([&] { Batcher bad(ds, {.batch_size = 0}); }, Errc::kInvalidArgument,
               {"batch_size = 0"});
  expect_error([&] { Batcher bad(ds, {.limit = -1}); }, Errc::kInvalidArgument, {"limit = -1"});
}

// Samples whose shapes differ: sample 2 is [3], the others [2].
class Ragged final : public Dataset {
 public:
  int64_t size() const override { return 4; }
  NamedTensors get(int64_t i) const override {
    return {{"v", Tensor(DType::kF32, i == 2 ? Shape{3} : Shape{2})}};
  }
  std::string describe() const override { return "ragged data"; }
};

TEST(DataBatcher, MismatchedSamplesAreErrorsNamingTheSample) {
  auto ds = std::make_shared<Ragged>();
  Batcher b(ds, {.batch_size = 2});
  EXPECT_EQ(b.next()->at(0).second.shape(), (Shape{2, 2}));
  expect_error([&] { b.next(); }, Errc::kShapeMismatch,
               {"sample 3 of ragged data", "f32[2]", "f32[3] as in sample 2"});
  Batcher one(ds, {.batch_size = 1});
  int64_t n = 0;
  while (one.next()) ++n;
  EXPECT_EQ(n, 4);
  // In-memory arrays need a shared first dimension.
  expect_error(
      [] {
        tensor_dataset({{"s", Tensor::from<float>({}, {1.0f})}}, "scalars");
      },
      Errc::kShapeMismatch, {"scalars", "array 's'", "no sample axis"});
  expect_error(
      [] {
        tensor_dataset({{"a", Tensor(DType::kF32, {3, 2})}, {"b", Tensor(DType::kF32, {4})}},
                       "uneven");
      },
      Errc::kShapeMismatch, {"uneven", "array 'b' has 4 samples, 'a' has 3"});
}

// ================================================================ calibration readers

TEST(DataCalibration, IdxFeedsTheBundledModel) {
  const std::string images = kFashion + "t10k-images-idx3-ubyte.gz";
  CalibrationOptions o;
  o.input_names = {"image"};
  o.batch = {.batch_size = 50, .shuffle = true, .seed = 3, .limit = 200};
  auto reader = open_calibration_data(images, o);
  int batches = 0;
  while (auto b = reader->next()) {
    ASSERT_EQ(names(*b), (std::vector<std::string>{"image"}));  // the label is no input
    EXPECT_EQ(b->at(0).second.shape(), (Shape{50, 1, 28, 28}));
    ++batches;
  }
  EXPECT_EQ(batches, 4);
  reader->rewind();
  EXPECT_TRUE(reader->next().has_value());

  // The batches are what the model was trained on: its accuracy on the
  // first 500 test images is near PyTorch's 86.8% on all 10000.
  const Session s(std::string(QFORGE_MODELS_DIR) + "/fashion_cnn.onnx");
  Batcher b(open_dataset(images), {.batch_size = 100, .limit = 500});
  int64_t right = 0, total = 0;
  while (auto batch = b.next()) {
    const std::vector<Tensor> logits = s.run({{"image", get(*batch, "image")}});
    const Tensor& label = get(*batch, "label");
    for (int64_t i = 0; i < label.numel(); ++i, ++total) {
      const float* row = logits[0].data<float>() + i * 10;
      right += std::max_element(row, row + 10) - row == label.data<int64_t>()[i];
    }
  }
  EXPECT_EQ(total, 500);
  EXPECT_GT(static_cast<double>(right) / static_cast<double>(total), 0.80);
}

TEST(DataCalibration, TensorsMapOntoModelInputs) {
  // By name, in the model's input order; other arrays are left out.
  CalibrationOptions o;
  o.input_names = {"ids", "image"};
  o.batch.batch_size = 2;
  auto r = open_calibration_data(kData + "npz/arrays_compressed.npz", o);
  NamedTensors b = *r->next();
  ASSERT_EQ(names(b), (std::vector<std::string>{"ids", "image"}));
  EXPECT_EQ(b[1].second.shape(), (Shape{2, 1, 4, 4}));
  EXPECT_EQ(b[0].second.data<int64_t>()[3], -4);  // row 1 of ids = [-4, -3, -2]
  // One array for a one-input model: by position.
  o.input_names = {"x"};
  b = *open_calibration_data(kData + "npz/single.npz", o)->next();
  ASSERT_EQ(names(b), (std::vector<std::string>{"x"}));
  EXPECT_EQ(b[0].second.shape(), (Shape{2, 2}));
  // Three arrays, none named like the input: an error naming the file.
  expect_error([&] { open_calibration_data(kData + "npz/arrays.npz", o); }, Errc::kInvalidArgument,
               {"arrays.npz", "[image, ids, flags]", "[x]"});
  // No input names: the data's names.
  o.input_names.clear();
  b = *open_calibration_data(kData + "npz/arrays.npz", o)->next();
  EXPECT_EQ(names(b), (std::vector<std::string>{"image", "ids", "flags"}));
  // An .npy is named by its stem; batch 2 of the bundled input is the input.
  const std::string npy = std::string(QFORGE_MODELS_DIR) + "/fashion_cnn.input.npy";
  b = *open_calibration_data(npy, o)->next();
  ASSERT_EQ(names(b), (std::vector<std::string>{"fashion_cnn.input"}));
  EXPECT_EQ(b[0].second.shape(), (Shape{2, 1, 28, 28}));
  EXPECT_EQ(std::memcmp(b[0].second.raw(), read_npy(npy).raw(), b[0].second.nbytes()), 0);
  // ONNX test data: by name (x, y) or, for other names, by position.
  o.input_names = {"a", "b"};
  b = *open_calibration_data(kOnnxData + "node/test_add", o)->next();
  ASSERT_EQ(names(b), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(b[0].second.shape(), (Shape{3, 4, 5}));
  // An image folder with class labels: the label stays out.
  o.input_names = {"pixels"};
  o.image.class_subfolders = true;
  b = *open_calibration_data(kData + "images", o)->next();
  ASSERT_EQ(names(b), (std::vector<std::string>{"pixels"}));
  EXPECT_EQ(b[0].second.shape(), (Shape{2, 3, 4, 6}));
  // What the factory doesn't know.
  expect_error(
      [&] { open_calibration_data(std::string(QFORGE_MODELS_DIR) + "/fashion_cnn.onnx", o); },
      Errc::kUnsupported, {"fashion_cnn.onnx", "not a kind of calibration data"});
  expect_error([&] { open_calibration_data("/no/such/data.bin", o); }, Errc::kNotFound,
               {"/no/such/data.bin"});
}

// A user's own data: two batches made on the fly.
class MyReader final : public CalibrationDataReader {
 public:
  std::optional<NamedTensors> next() override {
    if (n_ == 2) return std::nullopt;
    ++n_;
    return NamedTensors{{"image", Tensor(DType::kF32, {1, 1, 28, 28})}};
  }

 private:
  int n_ = 0;
};

TEST(DataCalibration, UserReaders) {
  MyReader r;
  CalibrationDataReader& base = r;
  int n = 0;
  while (auto b = base.next()) {
    EXPECT_EQ(b->at(0).first, "image");
    ++n;
  }
  EXPECT_EQ(n, 2);
  expect_error([&] { base.rewind(); }, Errc::kUnsupported, {"can't rewind"});
  // And a Dataset of one's own through the adapter, renamed.
  auto reader = make_calibration_reader(counting(5), {.batch_size = 5}, {{"input_ids", "id"}});
  const NamedTensors b = *reader->next();
  ASSERT_EQ(names(b), (std::vector<std::string>{"input_ids"}));
  EXPECT_EQ(b[0].second.shape(), (Shape{5}));
  EXPECT_FALSE(reader->next().has_value());
  auto wrong = make_calibration_reader(counting(5), {}, {{"input_ids", "nope"}});
  expect_error([&] { wrong->next(); }, Errc::kNotFound, {"input_ids", "'nope'"});
}

}  // namespace
}  // namespace qforge
