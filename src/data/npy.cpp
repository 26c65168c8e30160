#include "qforge/npy.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <unistd.h>

#include "data/data_internal.h"

namespace qforge {
namespace {

struct NpyType {
  const char* descr;
  DType dtype;
};
// '<' little-endian, '|' not applicable (1 byte), '=' native (little here).
constexpr NpyType kTypes[] = {
    {"f4", DType::kF32}, {"f8", DType::kF64}, {"f2", DType::kF16}, {"i8", DType::kI64},
    {"i4", DType::kI32}, {"i2", DType::kI16}, {"u2", DType::kU16}, {"i1", DType::kI8},
    {"u1", DType::kU8},  {"b1", DType::kBool},
};

using data_detail::file_subject;

// Returns the value text after 'key': in a header dict, up to the next
// top-level comma or closing brace.
std::string dict_value(const std::string& header, const std::string& key, const std::string& subj) {
  const std::string k = "'" + key + "'";
  auto pos = header.find(k);
  check(pos != std::string::npos, Errc::kCorrupt, subj,
        "NPY header has no " + k + " entry", "a header with descr, fortran_order and shape");
  pos = header.find(':', pos + k.size());
  check(pos != std::string::npos, Errc::kCorrupt, subj, "malformed NPY header");
  ++pos;
  while (pos < header.size() && header[pos] == ' ') ++pos;
  size_t end = pos;
  int depth = 0;
  while (end < header.size()) {
    const char c = header[end];
    if (c == '(') ++depth;
    if (c == ')') --depth;
    if (depth == 0 && (c == ',' || c == '}')) break;
    ++end;
  }
  return header.substr(pos, end - pos);
}

}  // namespace

namespace data_detail {

size_t IstreamSource::read(void* dst, size_t n) {
  in_.read(static_cast<char*>(dst), static_cast<std::streamsize>(n));
  return static_cast<size_t>(in_.gcount());
}

Tensor read_npy_from(ByteSource& src, const std::string& subj, int64_t available) {
  char magic[8];
  check(src.read(magic, 8) == 8 && std::memcmp(magic, "\x93NUMPY", 6) == 0, Errc::kCorrupt, subj,
        "is not an NPY file (bad magic)", "the bytes \\x93NUMPY");
  const int major = static_cast<unsigned char>(magic[6]);
  check(major >= 1 && major <= 3, Errc::kUnsupported, subj,
        "NPY format version " + std::to_string(major), "version 1, 2 or 3");
  uint32_t hlen = 0;
  unsigned char lb[4] = {0, 0, 0, 0};
  const size_t len_bytes = major == 1 ? 2 : 4;
  check(src.read(lb, len_bytes) == len_bytes, Errc::kCorrupt, subj, "truncated NPY header");
  hlen = lb[0] | (lb[1] << 8) | (static_cast<uint32_t>(lb[2]) << 16) | (static_cast<uint32_t>(lb[3]) << 24);
  check(hlen < (1u << 20), Errc::kCorrupt, subj, "NPY header of " + std::to_string(hlen) + " bytes",
        "a header under 1 MiB");
  std::string header(hlen, '\0');
  check(src.read(header.data(), hlen) == hlen, Errc::kCorrupt, subj, "truncated NPY header");

  std::string descr = dict_value(header, "descr", subj);
  check(descr.size() >= 4 && (descr[0] == '\'' || descr[0] == '"'), Errc::kCorrupt, subj,
        "NPY descr " + descr + " is not a string");
  descr = descr.substr(1, descr.size() - 2);
  check(descr[0] != '>', Errc::kUnsupported, subj, "is big-endian (" + descr + ")", "little-endian data");
  const std::string code = descr.substr(1);
  const NpyType* type = nullptr;
  for (const auto& t : kTypes)
    if (code == t.descr) type = &t;
  check(type != nullptr, Errc::kUnsupported, subj, "NPY dtype '" + descr + "'",
        "one of <f4 <f8 <f2 <i8 <i4 <i2 <u2 |i1 |u1 |b1");
  check(dict_value(header, "fortran_order", subj) == "False", Errc::kUnsupported, subj,
        "is stored in Fortran order", "C order (fortran_order: False)");

  const std::string shape_text = dict_value(header, "shape", subj);
  Shape shape;
  {
    std::string digits;
    for (char c : shape_text) {
      if (c >= '0' && c <= '9') {
        digits += c;
      } else if (!digits.empty()) {
        check(digits.size() <= 18, Errc::kCorrupt, subj,
              "dimension " + digits + " in shape " + shape_text, "dimensions below 10^18");
        shape.push_back(std::stoll(digits));
        digits.clear();
      }
    }
    check(digits.empty(), Errc::kCorrupt, subj, "malformed shape " + shape_text);
  }
  // The data size, checked against what the source holds before allocating.
  int64_t nbytes = dtype_bits(type->dtype) / 8;
  for (int64_t d : shape) nbytes = data_detail::checked_mul(nbytes, d);
  check(nbytes >= 0, Errc::kCorrupt, subj, "shape " + shape_str(shape) + " is too large");
  if (available >= 0) {
    const int64_t left = available - static_cast<int64_t>(8 + len_bytes + hlen);
    check(left >= nbytes, Errc::kCorrupt, subj,
          "has " + std::to_string(left < 0 ? 0 : left) + " bytes of data for shape " +
              shape_str(shape) + " " + descr,
          std::to_string(nbytes) + " bytes");
  }
  Tensor t(type->dtype, shape);
  const size_t got = src.read(t.raw(), t.nbytes());
  check(got == t.nbytes(), Errc::kCorrupt, subj,
        "has " + std::to_string(got) + " bytes of data for shape " + shape_str(shape) + " " + descr,
        std::to_string(t.nbytes()) + " bytes");
  return t;
}

}  // namespace data_detail

Tensor read_npy(const std::string& path) {
  const std::string subj = file_subject(path);
  std::ifstream f(path, std::ios::binary);
  check(f.good(), Errc::kIo, subj, std::string("can't be opened: ") + std::strerror(errno));
  std::error_code ec;
  const auto size = std::filesystem::file_size(path, ec);
  data_detail::IstreamSource src(f);
  return data_detail::read_npy_from(src, subj, ec ? -1 : static_cast<int64_t>(size));
}

void write_file_atomic(const std::string& path, const std::string& bytes) {
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  FILE* f = std::fopen(tmp.c_str(), "wb");
  check(f != nullptr, Errc::kIo, file_subject(path),
        std::string("can't be written: ") + std::strerror(errno), "a writable directory");
  const bool ok = std::fwrite(bytes.data(), 1, bytes.size(), f) == bytes.size();
  const bool closed = std::fclose(f) == 0;
  if (!ok || !closed || std::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string why = std::strerror(errno);
    std::remove(tmp.c_str());
    throw Error(Errc::kIo, file_subject(path), "write failed: " + why);
  }
}

void write_npy(const std::string& path, const Tensor& t) {
  const char* code = nullptr;
  for (const auto& k : kTypes)
    if (k.dtype == t.dtype()) code = k.descr;
  check(code != nullptr, Errc::kUnsupported, t.describe(),
        "has no NumPy dtype to be saved as .npy", "f32 f64 f16 i64 i32 i16 u16 i8 u8 bool");
  const char order = dtype_bits(t.dtype()) == 8 ? '|' : '<';
  std::ostringstream h;
  h << "{'descr': '" << order << code << "', 'fortran_order': False, 'shape': (";
  for (size_t i = 0; i < t.shape().size(); ++i) h << t.shape()[i] << (t.shape().size() == 1 ? "," : (i + 1 < t.shape().size() ? ", " : ""));
  h << "), }";
  std::string header = h.str();
  // Pad with spaces so that magic + length + header + '\n' is a multiple of 64.
  const size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header += '\n';
  std::string out("\x93NUMPY\x01\x00", 8);
  out += static_cast<char>(header.size() & 0xff);
  out += static_cast<char>((header.size() >> 8) & 0xff);
  out += header;
  out.append(static_cast<const char*>(t.raw()), t.nbytes());
  write_file_atomic(path, out);
}

}  // namespace qforge
