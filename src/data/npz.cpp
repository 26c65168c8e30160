// NPZ files: zip archives of .npy files (numpy.savez stores them,
// numpy.savez_compressed deflates them). The zip structure is read here from
// the central directory (PKWARE APPNOTE.TXT: end of central directory
// record, zip64 end record and locator, central directory headers, zip64
// extra field 0x0001, local file headers); deflate is zlib's raw inflate.
// Each entry streams into the NPY parser, so an array is never held twice.
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>

#include "data/data_internal.h"
#include "qforge/data.h"

namespace qforge {
namespace {

using data_detail::ByteSource;
using data_detail::checked_mul;

constexpr uint32_t kEocdSig = 0x06054b50, kZip64EocdSig = 0x06064b50, kZip64LocatorSig = 0x07064b50,
                   kCentralSig = 0x02014b50, kLocalSig = 0x04034b50;
constexpr int64_t kMaxDeflateRatio = 1032;  // deflate never expands data more than this

uint64_t le(const unsigned char* p, int n) {
  uint64_t v = 0;
  for (int i = n - 1; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

struct Entry {
  std::string name;
  uint16_t flags = 0, method = 0;
  uint32_t crc = 0;
  uint64_t csize = 0, usize = 0, offset = 0;
};

class ZipFile {
 public:
  ZipFile(const std::string& path, std::string subject) : subj_(std::move(subject)) {
    std::error_code ec;
    check(std::filesystem::exists(path, ec), Errc::kNotFound, subj_, "does not exist");
    f_.open(path, std::ios::binary);
    check(f_.good(), Errc::kIo, subj_, std::string("can't be opened: ") + std::strerror(errno));
    f_.seekg(0, std::ios::end);
    size_ = static_cast<uint64_t>(f_.tellg());
  }
  uint64_t size() const { return size_; }
  const std::string& subject() const { return subj_; }

  // Reads exactly n bytes at offset, or throws "truncated".
  std::vector<unsigned char> read_at(uint64_t offset, uint64_t n, const char* what) {
    check(offset <= size_ && n <= size_ - offset, Errc::kCorrupt, subj_,
          std::string("is truncated or not a zip archive: its ") + what +
              " lies beyond the end of the file");
    std::vector<unsigned char> b(static_cast<size_t>(n));
    f_.clear();
    f_.seekg(static_cast<std::streamoff>(offset));
    f_.read(reinterpret_cast<char*>(b.data()), static_cast<std::streamsize>(n));
    check(static_cast<uint64_t>(f_.gcount()) == n, Errc::kIo, subj_,
          std::string("can't read its ") + what);
    return b;
  }
  std::ifstream& stream() { return f_; }

 private:
  std::ifstream f_;
  uint64_t size_ = 0;
  std::string subj_;
};

// The stored bytes of an entry, [offset, offset + n) of the file.
class StoredSource final : public ByteSource {
 public:
  StoredSource(ZipFile& z, uint64_t offset, uint64_t n) : z_(z), left_(n) {
    z_.stream().clear();
    z_.stream().seekg(static_cast<std::streamoff>(offset));
  }
  size_t read(void* dst, size_t n) override {
    const auto want = static_cast<size_t>(std::min<uint64_t>(n, left_));
    z_.stream().read(static_cast<char*>(dst), static_cast<std::streamsize>(want));
    const auto got = static_cast<size_t>(z_.stream().gcount());
    check(got == want, Errc::kIo, z_.subject(), "can't be read (short read)");
    left_ -= got;
    return got;
  }

 private:
  ZipFile& z_;
  uint64_t left_;
};

// The raw-deflated bytes of an entry, inflated as they are read. At most
// `limit` bytes come out; the stream must end within the entry's bytes.
class InflateSource final : public ByteSource {
 public:
  InflateSource(ZipFile& z, uint64_t offset, uint64_t n, uint64_t limit, std::string subject)
      : z_(z), left_in_(n), left_out_(limit), subj_(std::move(subject)), in_(size_t{1} << 16) {
    std::memset(&zs_, 0, sizeof zs_);
    check(inflateInit2(&zs_, -MAX_WBITS) == Z_OK, Errc::kInternal, subj_,
          "zlib's inflateInit2 failed");
    z_.stream().clear();
    z_.stream().seekg(static_cast<std::streamoff>(offset));
  }
  ~InflateSource() override { inflateEnd(&zs_); }
  InflateSource(const InflateSource&) = delete;
  InflateSource& operator=(const InflateSource&) = delete;

  size_t read(void* dst, size_t n) override {
    auto* out = static_cast<unsigned char*>(dst);
    size_t done = 0;
    while (done < n && !ended_) {
      if (zs_.avail_in == 0 && left_in_ > 0) {
        const auto want = static_cast<size_t>(std::min<uint64_t>(in_.size(), left_in_));
        z_.stream().read(reinterpret_cast<char*>(in_.data()), static_cast<std::streamsize>(want));
        check(static_cast<size_t>(z_.stream().gcount()) == want, Errc::kIo, z_.subject(),
              "can't be read (short read)");
        left_in_ -= want;
        zs_.next_in = in_.data();
        zs_.avail_in = static_cast<uInt>(want);
      }
      const auto chunk = static_cast<uInt>(std::min<size_t>(n - done, size_t{1} << 30));
      zs_.next_out = out + done;
      zs_.avail_out = chunk;
      const int r = inflate(&zs_, Z_NO_FLUSH);
      const size_t produced = chunk - zs_.avail_out;
      check(produced <= left_out_, Errc::kCorrupt, subj_,
            "inflates to more bytes than the zip directory gives",
            "the directory's uncompressed size");
      left_out_ -= produced;
      done += produced;
      if (r == Z_STREAM_END) {
        ended_ = true;
      } else if (r == Z_BUF_ERROR && zs_.avail_in == 0 && left_in_ == 0) {
        throw Error(Errc::kCorrupt, subj_, "has deflate data that end early",
                    "a complete deflate stream");
      } else if (r != Z_OK && r != Z_BUF_ERROR) {
        throw Error(
            Errc::kCorrupt, subj_,
            std::string("has corrupt deflate data (") + (zs_.msg ? zs_.msg : "zlib error") + ")",
            "a valid deflate stream");
      }
    }
    return done;
  }

 private:
  ZipFile& z_;
  uint64_t left_in_, left_out_;
  std::string subj_;
  std::vector<unsigned char> in_;
  z_stream zs_;
  bool ended_ = false;
};

// Passes bytes through and keeps their CRC-32 and count.
class CrcSource final : public ByteSource {
 public:
  explicit CrcSource(ByteSource& in) : in_(in) {}
  size_t read(void* dst, size_t n) override {
    const size_t got = in_.read(dst, n);
    const auto* p = static_cast<const unsigned char*>(dst);
    for (size_t done = 0; done < got;) {
      const auto chunk = static_cast<uInt>(std::min<size_t>(got - done, size_t{1} << 30));
      crc_ = crc32(crc_, p + done, chunk);
      done += chunk;
    }
    count_ += got;
    return got;
  }
  uint32_t crc() const { return static_cast<uint32_t>(crc_); }
  uint64_t count() const { return count_; }

 private:
  ByteSource& in_;
  uLong crc_ = crc32(0L, Z_NULL, 0);
  uint64_t count_ = 0;
};

std::vector<Entry> central_directory(ZipFile& z) {
  const std::string& subj = z.subject();
  const uint64_t size = z.size();
  check(size >= 22, Errc::kCorrupt, subj,
        "is not a zip archive (" + std::to_string(size) + " bytes)",
        "an NPZ file, as numpy.savez writes");
  // The end record is the last 22 bytes plus a comment of up to 65535.
  const uint64_t tail_len = std::min<uint64_t>(size, 22 + 65535);
  const std::vector<unsigned char> tail = z.read_at(size - tail_len, tail_len, "end");
  int64_t at = -1;
  for (int64_t i = static_cast<int64_t>(tail_len) - 22; i >= 0; --i) {
    const unsigned char* p = &tail[static_cast<size_t>(i)];
    if (le(p, 4) == kEocdSig && static_cast<uint64_t>(i) + 22 + le(p + 20, 2) <= tail_len) {
      at = i;
      break;
    }
  }
  check(at >= 0, Errc::kCorrupt, subj, "is not a zip archive (no end of central directory record)",
        "an NPZ file, as numpy.savez writes");
  const unsigned char* e = &tail[static_cast<size_t>(at)];
  const uint64_t eocd_pos = size - tail_len + static_cast<uint64_t>(at);
  check(le(e + 4, 2) == 0 && le(e + 6, 2) == 0, Errc::kUnsupported, subj,
        "is a multi-disk zip archive", "a single-file archive");
  uint64_t count = le(e + 10, 2), cd_size = le(e + 12, 4), cd_offset = le(e + 16, 4);
  // zip64: a locator just before the end record points to the zip64 end record.
  if (eocd_pos >= 20) {
    const std::vector<unsigned char> loc = z.read_at(eocd_pos - 20, 20, "zip64 locator");
    if (le(loc.data(), 4) == kZip64LocatorSig) {
      const std::vector<unsigned char> r = z.read_at(le(loc.data() + 8, 8), 56, "zip64 end record");
      check(le(r.data(), 4) == kZip64EocdSig, Errc::kCorrupt, subj,
            "has a bad zip64 end of central directory record");
      count = le(r.data() + 32, 8);
      cd_size = le(r.data() + 40, 8);
      cd_offset = le(r.data() + 48, 8);
    }
  }
  check(cd_offset <= eocd_pos && cd_size <= eocd_pos - cd_offset, Errc::kCorrupt, subj,
        "has a central directory outside the file", "a complete zip archive");
  check(count <= cd_size / 46, Errc::kCorrupt, subj,
        "claims " + std::to_string(count) + " entries in a central directory of " +
            std::to_string(cd_size) + " bytes");
  const std::vector<unsigned char> cd = z.read_at(cd_offset, cd_size, "central directory");
  std::vector<Entry> entries;
  size_t p = 0;
  for (uint64_t i = 0; i < count; ++i) {
    check(p + 46 <= cd.size() && le(&cd[p], 4) == kCentralSig, Errc::kCorrupt, subj,
          "has a corrupt central directory (entry " + std::to_string(i) + ")");
    const unsigned char* h = &cd[p];
    Entry en;
    en.flags = static_cast<uint16_t>(le(h + 8, 2));
    en.method = static_cast<uint16_t>(le(h + 10, 2));
    en.crc = static_cast<uint32_t>(le(h + 16, 4));
    en.csize = le(h + 20, 4);
    en.usize = le(h + 24, 4);
    const size_t name_len = le(h + 28, 2), extra_len = le(h + 30, 2), comment_len = le(h + 32, 2);
    en.offset = le(h + 42, 4);
    check(p + 46 + name_len + extra_len + comment_len <= cd.size(), Errc::kCorrupt, subj,
          "has a corrupt central directory (entry " + std::to_string(i) + ")");
    en.name.assign(reinterpret_cast<const char*>(h + 46), name_len);
    // zip64 extra field: the 64-bit values of the fields saturated above, in order.
    const unsigned char* x = h + 46 + name_len;
    for (size_t q = 0; q + 4 <= extra_len;) {
      const uint64_t id = le(x + q, 2), len = le(x + q + 2, 2);
      if (q + 4 + len > extra_len) break;
      if (id == 1) {
        size_t r = q + 4;
        auto take = [&](uint64_t& v) {
          if (v != 0xFFFFFFFFu) return;
          check(r + 8 <= q + 4 + len, Errc::kCorrupt, subj,
                "entry '" + en.name + "' has a short zip64 extra field");
          v = le(x + r, 8);
          r += 8;
        };
        take(en.usize);
        take(en.csize);
        take(en.offset);
      }
      q += 4 + static_cast<size_t>(len);
    }
    entries.push_back(std::move(en));
    p += 46 + name_len + extra_len + comment_len;
  }
  return entries;
}

Tensor read_entry(ZipFile& z, const Entry& en, const std::string& esubj) {
  check((en.flags & 1) == 0, Errc::kUnsupported, esubj, "is encrypted", "an unencrypted entry");
  check(en.method == 0 || en.method == 8, Errc::kUnsupported, esubj,
        "uses zip compression method " + std::to_string(en.method), "0 (stored) or 8 (deflate)");
  const std::vector<unsigned char> lh = z.read_at(en.offset, 30, "local header");
  check(le(lh.data(), 4) == kLocalSig, Errc::kCorrupt, esubj,
        "has no local file header where the directory says");
  const uint64_t data = en.offset + 30 + le(lh.data() + 26, 2) + le(lh.data() + 28, 2);
  check(data <= z.size() && en.csize <= z.size() - data, Errc::kCorrupt, esubj,
        "has " + std::to_string(en.csize) + " bytes of data beyond the end of the file",
        "a complete archive");
  std::unique_ptr<ByteSource> raw;
  if (en.method == 0) {
    check(en.csize == en.usize, Errc::kCorrupt, esubj,
          "is stored with different compressed and uncompressed sizes");
    raw = std::make_unique<StoredSource>(z, data, en.csize);
  } else {
    const int64_t most = checked_mul(
        static_cast<int64_t>(std::min<uint64_t>(en.csize, INT64_MAX / 2)), kMaxDeflateRatio);
    check(most < 0 || en.usize <= static_cast<uint64_t>(most) + 1024, Errc::kCorrupt, esubj,
          "claims " + std::to_string(en.usize) + " bytes from " + std::to_string(en.csize) +
              " deflated bytes",
          "at most 1032 times the deflated size");
    raw = std::make_unique<InflateSource>(z, data, en.csize, en.usize, esubj);
  }
  CrcSource src(*raw);
  check(en.usize <= static_cast<uint64_t>(INT64_MAX), Errc::kCorrupt, esubj, "is too large");
  Tensor t = data_detail::read_npy_from(src, esubj, static_cast<int64_t>(en.usize));
  unsigned char extra[64];
  uint64_t after = 0;
  for (size_t got; (got = src.read(extra, sizeof extra)) > 0;) after += got;
  check(after == 0, Errc::kCorrupt, esubj,
        "has " + std::to_string(after) + " bytes after its array");
  check(src.count() == en.usize, Errc::kCorrupt, esubj,
        "holds " + std::to_string(src.count()) + " bytes, the zip directory says " +
            std::to_string(en.usize));
  check(src.crc() == en.crc, Errc::kCorrupt, esubj,
        "fails its CRC-32 check (the data are damaged)");
  return t;
}

}  // namespace

NamedTensors read_npz(const std::string& path) {
  ZipFile z(path, data_detail::file_subject(path));
  const std::vector<Entry> entries = central_directory(z);
  NamedTensors out;
  std::set<std::string> seen;
  for (const Entry& en : entries) {
    const std::string esubj = z.subject() + ", entry '" + en.name + "'";
    check(en.name.size() > 4 && en.name.compare(en.name.size() - 4, 4, ".npy") == 0,
          Errc::kUnsupported, esubj, "is not a .npy array",
          "only .npy entries, as numpy.savez writes");
    std::string name = en.name.substr(0, en.name.size() - 4);
    check(seen.insert(name).second, Errc::kCorrupt, esubj, "appears twice in the archive");
    Tensor t = read_entry(z, en, esubj);
    t.set_name(name);
    out.emplace_back(std::move(name), std::move(t));
  }
  check(!out.empty(), Errc::kNotFound, z.subject(), "holds no arrays", "at least one .npy entry");
  return out;
}

}  // namespace qforge
