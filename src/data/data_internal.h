// Internal to src/data: a byte source the NPY parser reads from (a file, a
// stored or deflated zip entry), and helpers the readers share.
#pragma once

#include <cstddef>
#include <cstdint>
#include <istream>
#include <string>

#include "qforge/data.h"
#include "qforge/tensor.h"

namespace qforge::data_detail {

// Bytes in order. read() returns fewer than n bytes only at the end of the
// data; it throws Error on a failure (corrupt compressed data).
class ByteSource {
 public:
  virtual ~ByteSource() = default;
  virtual size_t read(void* dst, size_t n) = 0;
};

class IstreamSource final : public ByteSource {
 public:
  explicit IstreamSource(std::istream& in) : in_(in) {}
  size_t read(void* dst, size_t n) override;

 private:
  std::istream& in_;
};

// Reads one NPY array from src; `subject` names it in errors ("file 'a.npy'").
// `available` is the number of bytes src holds (or -1 when unknown): a header
// asking for more data than that is an error before anything is allocated.
// Reads no further than the end of the array's data.
Tensor read_npy_from(ByteSource& src, const std::string& subject, int64_t available);

inline std::string file_subject(const std::string& path) {
  return "file '" + path + "'";
}

// a * b, or -1 when a or b is negative or the product overflows int64.
inline int64_t checked_mul(int64_t a, int64_t b) {
  if (a < 0 || b < 0) return -1;
  if (a != 0 && b > INT64_MAX / a) return -1;
  return a * b;
}

// Throws unless 0 <= i < n (a sample index of the dataset `desc`).
inline void check_index(int64_t i, int64_t n, const std::string& desc) {
  if (i < 0 || i >= n)
    throw Error(Errc::kInvalidArgument, desc, "has no sample " + std::to_string(i),
                "0 <= i < " + std::to_string(n));
}

// Row i of t along its first axis: a view sharing t's storage.
Tensor row_view(const Tensor& t, int64_t i);

// Images larger than this (pixels) are refused before decoding: 8192 x 8192.
inline constexpr int64_t kMaxImagePixels = int64_t{1} << 26;

// Checks ImageOptions for images of `channels` channels; subject names
// what they are for.
void validate_image_options(const ImageOptions& o, int64_t channels, const std::string& subject);

// One 8-bit image, HWC, to float as ImageOptions says (resize, scale,
// mean / stddev, layout). out holds channels * out_h * out_w floats, where
// out_h / out_w are o.height / o.width or h / w when those are 0.
void image_to_float(const uint8_t* hwc, int64_t h, int64_t w, int64_t channels,
                    const ImageOptions& o, float* out);

}  // namespace qforge::data_detail
