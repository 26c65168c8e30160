// IDX files (LeCun's MNIST format, also Fashion-MNIST's): a magic of two
// zero bytes, a type byte and a dimension count, then the dimensions as
// big-endian uint32, then the data, big-endian, row-major. Read through
// zlib's gzFile, which decompresses gzip and passes other files through.
#include <zlib.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "data/data_internal.h"
#include "qforge/data.h"

namespace qforge {
namespace {

using data_detail::checked_mul;
using data_detail::file_subject;

struct IdxType {
  unsigned code;
  DType dtype;
  int size;
};
constexpr IdxType kIdxTypes[] = {
    {0x08, DType::kU8, 1},  {0x09, DType::kI8, 1},  {0x0B, DType::kI16, 2},
    {0x0C, DType::kI32, 4}, {0x0D, DType::kF32, 4}, {0x0E, DType::kF64, 8},
};
// Deflate cannot expand data by more than 1032:1, so a gzip file of F bytes
// holds at most this many; a header claiming more is refused before anything
// is allocated.
constexpr int64_t kMaxDeflateRatio = 1032;

std::string hex_bytes(const unsigned char* b, size_t n) {
  static const char* kHex = "0123456789abcdef";
  std::string s;
  for (size_t i = 0; i < n; ++i) {
    if (i) s += ' ';
    s += kHex[b[i] >> 4];
    s += kHex[b[i] & 15];
  }
  return s;
}

class GzReader {
 public:
  GzReader(const std::string& path, std::string subject) : path_(path), subj_(std::move(subject)) {
    f_ = gzopen(path.c_str(), "rb");
    check(f_ != nullptr, Errc::kIo, subj_, std::string("can't be opened: ") + std::strerror(errno));
    gzbuffer(f_, 1u << 17);
  }
  ~GzReader() {
    if (f_) gzclose(f_);
  }
  GzReader(const GzReader&) = delete;
  GzReader& operator=(const GzReader&) = delete;

  // Reads up to n bytes; fewer only at the end of the data. A corrupt or
  // cut-short gzip stream is an Error.
  size_t read(void* dst, size_t n) {
    size_t done = 0;
    while (done < n) {
      const auto chunk = static_cast<unsigned>(std::min<size_t>(n - done, size_t{1} << 30));
      const int r = gzread(f_, static_cast<char*>(dst) + done, chunk);
      if (r < 0) fail();
      if (r == 0) break;
      done += static_cast<size_t>(r);
    }
    if (done < n) {
      int err = Z_OK;
      gzerror(f_, &err);
      if (err != Z_OK) fail();
    }
    return done;
  }
  bool compressed() const { return gzdirect(f_) == 0; }

 private:
  [[noreturn]] void fail() {
    int err = Z_OK;
    const char* msg = gzerror(f_, &err);
    if (err == Z_BUF_ERROR)
      throw Error(Errc::kCorrupt, subj_, "is truncated: its gzip stream ends early",
                  "a complete gzip file");
    std::string why = msg ? msg : "unknown zlib error";
    if (why.rfind(path_ + ": ", 0) == 0) why.erase(0, path_.size() + 2);  // zlib prefixes the path
    throw Error(Errc::kCorrupt, subj_, "is a corrupt gzip file (" + why + ")",
                "a valid gzip stream");
  }

  gzFile f_ = nullptr;
  std::string path_, subj_;
};

void byteswap_elements(void* data, int64_t n, int size) {
  auto* p = static_cast<unsigned char*>(data);
  for (int64_t i = 0; i < n; ++i, p += size) std::reverse(p, p + size);
}

}  // namespace

Tensor read_idx(const std::string& path) {
  namespace fs = std::filesystem;
  const std::string subj = file_subject(path);
  std::error_code ec;
  const fs::file_status st = fs::status(path, ec);
  check(fs::exists(st), Errc::kNotFound, subj, "does not exist");
  check(fs::is_regular_file(st), Errc::kIo, subj, "is not a regular file");
  const auto file_size = static_cast<int64_t>(fs::file_size(path, ec));
  check(!ec, Errc::kIo, subj, "can't be read: " + ec.message());

  GzReader in(path, subj);
  unsigned char head[4] = {0, 0, 0, 0};
  const size_t got_head = in.read(head, 4);
  const std::string what = in.compressed() ? "gzipped IDX" : "IDX";
  check(got_head == 4 && head[0] == 0 && head[1] == 0, Errc::kCorrupt, subj,
        "is not an IDX file (magic " + hex_bytes(head, got_head) + ")",
        "00 00, a type byte and a dimension count");
  const IdxType* type = nullptr;
  for (const auto& t : kIdxTypes)
    if (t.code == head[2]) type = &t;
  check(type != nullptr, Errc::kCorrupt, subj,
        "has unknown IDX type byte " + hex_bytes(head + 2, 1),
        "08 (u8), 09 (i8), 0b (i16), 0c (i32), 0d (f32) or 0e (f64)");
  const int ndim = head[3];
  check(ndim >= 1, Errc::kCorrupt, subj, "has an IDX header with 0 dimensions", "1 or more");

  std::vector<unsigned char> dims_raw(static_cast<size_t>(4 * ndim));
  check(in.read(dims_raw.data(), dims_raw.size()) == dims_raw.size(), Errc::kCorrupt, subj,
        "is truncated inside its " + what + " header (" + std::to_string(ndim) + " dimensions)");
  Shape shape;
  int64_t nbytes = type->size;
  for (int i = 0; i < ndim; ++i) {
    const unsigned char* b = &dims_raw[static_cast<size_t>(4 * i)];
    const int64_t d = (int64_t{b[0]} << 24) | (int64_t{b[1]} << 16) | (int64_t{b[2]} << 8) | b[3];
    shape.push_back(d);
    nbytes = checked_mul(nbytes, d);
  }
  const std::string desc = std::string(dtype_name(type->dtype)) + shape_str(shape);
  check(nbytes >= 0, Errc::kCorrupt, subj, "has an IDX header for " + desc + ": too large");
  const int64_t header_bytes = 4 + 4 * int64_t{ndim};

  // Sizes first, so that a lying header allocates nothing.
  if (!in.compressed()) {
    const int64_t have = file_size - header_bytes;
    check(have >= nbytes, Errc::kCorrupt, subj,
          "is truncated: " + std::to_string(have) + " bytes of data for " + desc,
          std::to_string(nbytes) + " bytes");
    check(have == nbytes, Errc::kCorrupt, subj,
          "has " + std::to_string(have - nbytes) + " bytes after the data for " + desc,
          std::to_string(nbytes) + " bytes of data and nothing after");
  } else {
    const int64_t most = checked_mul(file_size, kMaxDeflateRatio);
    check(most < 0 || header_bytes + nbytes <= most + 1024, Errc::kCorrupt, subj,
          "has an IDX header for " + desc + " (" + std::to_string(nbytes) +
              " bytes), more than a gzip file of " + std::to_string(file_size) + " bytes can hold");
  }

  Tensor t(type->dtype, shape);
  const size_t got = in.read(t.raw(), t.nbytes());
  check(got == t.nbytes(), Errc::kCorrupt, subj,
        "is truncated: " + std::to_string(got) + " bytes of data for " + desc,
        std::to_string(nbytes) + " bytes");
  unsigned char extra = 0;
  // Also makes zlib read the gzip trailer and check the CRC.
  check(in.read(&extra, 1) == 0, Errc::kCorrupt, subj, "has more data than its header's " + desc,
        std::to_string(nbytes) + " bytes of data and nothing after");
  if constexpr (std::endian::native == std::endian::little)
    if (type->size > 1) byteswap_elements(t.raw(), t.numel(), type->size);
  return t;
}

Tensor idx_images_to_float(const Tensor& images, const ImageOptions& opts) {
  check(images.dtype() == DType::kU8 && images.rank() == 3, Errc::kInvalidArgument,
        images.describe(), "is not a stack of 8-bit images", "u8[N, H, W]");
  data_detail::validate_image_options(opts, 1, "image options for " + images.describe());
  const int64_t n = images.dim(0), h = images.dim(1), w = images.dim(2);
  const int64_t oh = opts.height > 0 ? opts.height : h, ow = opts.width > 0 ? opts.width : w;
  Tensor out(DType::kF32, opts.layout == Layout::kNCHW ? Shape{n, 1, oh, ow} : Shape{n, oh, ow, 1});
  const auto* src = images.data<uint8_t>();
  float* dst = out.data<float>();
  for (int64_t i = 0; i < n; ++i)
    data_detail::image_to_float(src + i * h * w, h, w, 1, opts, dst + i * oh * ow);
  return out;
}

namespace {

// An IDX file loaded whole; u8 [N, H, W] files are images converted one
// sample at a time.
class IdxDataset final : public Dataset {
 public:
  IdxDataset(Tensor data, Tensor labels, ImageOptions opts, std::string desc)
      : data_(std::move(data)),
        labels_(std::move(labels)),
        opts_(std::move(opts)),
        desc_(std::move(desc)) {
    images_ = data_.dtype() == DType::kU8 && data_.rank() == 3;
  }
  int64_t size() const override { return data_.dim(0); }
  NamedTensors get(int64_t i) const override {
    data_detail::check_index(i, size(), desc_);
    NamedTensors s;
    if (images_) {
      const Tensor img = idx_images_to_float(
          data_detail::row_view(data_, i).reshape({1, data_.dim(1), data_.dim(2)}), opts_);
      Shape sh(img.shape().begin() + 1, img.shape().end());
      s.emplace_back("image", img.reshape(std::move(sh)));
    } else {
      s.emplace_back("data", data_detail::row_view(data_, i));
    }
    if (!labels_.empty()) s.emplace_back("label", data_detail::row_view(labels_, i));
    return s;
  }
  std::string describe() const override { return desc_; }

 private:
  Tensor data_, labels_;
  ImageOptions opts_;
  std::string desc_;
  bool images_ = false;
};

}  // namespace

std::shared_ptr<Dataset> open_idx_dataset(const std::string& images_path,
                                          const std::string& labels_path,
                                          const ImageOptions& opts) {
  Tensor data = read_idx(images_path);
  const std::string desc = file_subject(images_path);
  if (data.dtype() == DType::kU8 && data.rank() == 3)
    data_detail::validate_image_options(opts, 1, "image options for " + desc);
  Tensor labels;
  if (!labels_path.empty()) {
    const Tensor raw = read_idx(labels_path);
    const std::string lsubj = file_subject(labels_path);
    check(raw.rank() == 1 && dtype_is_integer(raw.dtype()), Errc::kShapeMismatch, lsubj,
          "holds " + std::string(dtype_name(raw.dtype())) + shape_str(raw.shape()) + ", not labels",
          "integer labels [N]");
    check(raw.dim(0) == data.dim(0), Errc::kShapeMismatch, lsubj,
          "has " + std::to_string(raw.dim(0)) + " labels for the " + std::to_string(data.dim(0)) +
              " samples of " + desc,
          "one label per sample");
    labels = Tensor(DType::kI64, raw.shape());
    int64_t* l = labels.data<int64_t>();
    for (int64_t i = 0; i < raw.numel(); ++i) {
      switch (raw.dtype()) {
        case DType::kU8:
          l[i] = raw.data<uint8_t>()[i];
          break;
        case DType::kI8:
          l[i] = raw.data<int8_t>()[i];
          break;
        case DType::kI16:
          l[i] = raw.data<int16_t>()[i];
          break;
        default:
          l[i] = raw.data<int32_t>()[i];
          break;
      }
    }
  }
  return std::make_shared<IdxDataset>(std::move(data), std::move(labels), opts, desc);
}

}  // namespace qforge
