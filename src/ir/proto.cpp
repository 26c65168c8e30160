#include "ir/proto.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <limits>

namespace qforge::ir {
namespace {

// Copies a typed repeated field into t's storage, converting each element.
template <typename T, typename Field>
void copy_field(const Field& f, Tensor& t, const std::string& subject) {
  check(static_cast<int64_t>(f.size()) == t.numel(), Errc::kCorrupt, subject,
        "has " + std::to_string(f.size()) + " values for dims " + shape_str(t.shape()),
        std::to_string(t.numel()) + " values");
  T* d = static_cast<T*>(t.raw());
  for (int i = 0; i < f.size(); ++i) d[i] = static_cast<T>(f.Get(i));
}

// Packed 4-bit types travel two per int32 in int32_data (low nibble first).
void copy_packed(const google::protobuf::RepeatedField<int32_t>& f, Tensor& t,
                 const std::string& subject) {
  const int64_t bytes = static_cast<int64_t>(t.nbytes());
  check(f.size() == bytes, Errc::kCorrupt, subject,
        "has " + std::to_string(f.size()) + " packed values", std::to_string(bytes));
  auto* d = static_cast<uint8_t*>(t.raw());
  for (int i = 0; i < f.size(); ++i) d[i] = static_cast<uint8_t>(f.Get(i));
}

}  // namespace

std::shared_ptr<Storage> ExternalData::map(const std::string& location, int64_t offset,
                                           int64_t length, const std::string& subject) {
  check(!location.empty() && location[0] != '/' && location.find("..") == std::string::npos,
        Errc::kInvalidArgument, subject,
        "has external data location '" + location + "'",
        "a relative path inside the model's directory");
  auto it = files_.find(location);
  if (it == files_.end()) {
    const std::string path = base_dir_.empty() ? location : base_dir_ + "/" + location;
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    check(fd >= 0, Errc::kIo, subject,
          "has its data in '" + path + "', which can't be opened: " + std::strerror(errno));
    struct stat st {};
    ::fstat(fd, &st);
    Mapping m;
    m.size = static_cast<int64_t>(st.st_size);
    if (m.size > 0) {
      void* p = ::mmap(nullptr, static_cast<size_t>(m.size), PROT_READ, MAP_PRIVATE, fd, 0);
      ::close(fd);
      check(p != MAP_FAILED, Errc::kIo, subject, "can't map '" + path + "': " + std::strerror(errno));
      const size_t sz = static_cast<size_t>(m.size);
      m.owner = std::shared_ptr<void>(p, [sz](void* q) { ::munmap(q, sz); });
      m.data = static_cast<char*>(p);
    } else {
      ::close(fd);
    }
    it = files_.emplace(location, std::move(m)).first;
  }
  const Mapping& m = it->second;
  check(offset >= 0 && length >= 0 && offset <= m.size && length <= m.size - offset,
        Errc::kCorrupt, subject,
        "has external data [" + std::to_string(offset) + ", +" + std::to_string(length) +
            ") beyond the end of '" + location + "' (" + std::to_string(m.size) + " bytes)");
  return Storage::wrap(m.data + offset, static_cast<size_t>(length), m.owner);
}

Shape checked_shape(const google::protobuf::RepeatedField<int64_t>& dims, DType dt,
                    const std::string& subject, int64_t max_bytes) {
  Shape shape;
  int64_t n = 1;
  for (int64_t d : dims) {
    check(d >= 0, Errc::kCorrupt, subject, "has a negative dimension " + std::to_string(d),
          "dimensions >= 0");
    if (d != 0 && n > std::numeric_limits<int64_t>::max() / 8 / d)
      throw Error(Errc::kCorrupt, subject, "has absurd dimensions (more than 2^60 elements)");
    n *= d;
    shape.push_back(d);
  }
  check(storage_bytes(dt, n) <= max_bytes, Errc::kCorrupt, subject,
        "would need " + std::to_string(storage_bytes(dt, n)) + " bytes for " +
            std::string(dtype_name(dt)) + shape_str(shape),
        "at most " + std::to_string(max_bytes) + " bytes (LoadOptions::max_tensor_bytes)");
  return shape;
}

Tensor tensor_from_proto(onnx::TensorProto& p, const std::string& subject, ExternalData* ext,
                         int64_t max_bytes) {
  check(p.has_data_type() && p.data_type() != 0, Errc::kCorrupt, subject, "has no data type");
  check(p.data_type() != onnx::TensorProto::STRING, Errc::kUnsupported, subject,
        "holds strings", "numeric tensors");
  const DType dt = dtype_from_onnx(p.data_type());
  const Shape shape = checked_shape(p.dims(), dt, subject, max_bytes);
  const size_t bytes = static_cast<size_t>(storage_bytes(dt, shape_numel(shape)));

  if (p.data_location() == onnx::TensorProto::EXTERNAL) {
    check(ext != nullptr, Errc::kUnsupported, subject, "uses external data",
          "inline data here (external data is read by the model loader)");
    std::string location;
    int64_t offset = 0, length = -1;
    for (const auto& kv : p.external_data()) {
      try {
        if (kv.key() == "location") location = kv.value();
        else if (kv.key() == "offset") offset = std::stoll(kv.value());
        else if (kv.key() == "length") length = std::stoll(kv.value());
      } catch (const std::exception&) {
        throw Error(Errc::kCorrupt, subject,
                    "has external_data " + kv.key() + " = '" + kv.value() + "'", "an integer");
      }
    }
    if (length < 0) length = static_cast<int64_t>(bytes);
    check(static_cast<size_t>(length) == bytes, Errc::kCorrupt, subject,
          "has " + std::to_string(length) + " bytes of external data for " +
              std::string(dtype_name(dt)) + shape_str(shape),
          std::to_string(bytes) + " bytes");
    Tensor t = Tensor::view(dt, shape, ext->map(location, offset, length, subject));
    t.set_name(p.name());
    return t;
  }

  if (p.has_raw_data()) {
    check(p.raw_data().size() == bytes, Errc::kCorrupt, subject,
          "raw_data has " + std::to_string(p.raw_data().size()) + " bytes for " +
              std::string(dtype_name(dt)) + shape_str(shape),
          std::to_string(bytes) + " bytes");
    Tensor t;
    if (bytes >= 4096) {
      // Take the bytes over from the message instead of copying them.
      auto owned = std::make_shared<std::string>(std::move(*p.mutable_raw_data()));
      p.clear_raw_data();
      void* data = owned->data();
      t = Tensor::view(dt, shape, Storage::wrap(data, bytes, owned));
    } else {
      t = Tensor(dt, shape);
      if (bytes) std::memcpy(t.raw(), p.raw_data().data(), bytes);
    }
    t.set_name(p.name());
    return t;
  }

  Tensor t(dt, shape);
  t.set_name(p.name());
  switch (dt) {
    case DType::kF32: copy_field<float>(p.float_data(), t, subject); break;
    case DType::kF64: copy_field<double>(p.double_data(), t, subject); break;
    case DType::kI64: copy_field<int64_t>(p.int64_data(), t, subject); break;
    case DType::kI32: copy_field<int32_t>(p.int32_data(), t, subject); break;
    case DType::kI16: copy_field<int16_t>(p.int32_data(), t, subject); break;
    case DType::kU16:
    case DType::kF16:
    case DType::kBF16:  // 16-bit floats travel as their bit patterns in int32_data
      copy_field<uint16_t>(p.int32_data(), t, subject);
      break;
    case DType::kI8: copy_field<int8_t>(p.int32_data(), t, subject); break;
    case DType::kU8:
    case DType::kBool: copy_field<uint8_t>(p.int32_data(), t, subject); break;
    case DType::kI4:
    case DType::kU4: copy_packed(p.int32_data(), t, subject); break;
    default:
      throw Error(Errc::kUnsupported, subject,
                  "typed-field data for " + std::string(dtype_name(dt)), "raw_data");
  }
  return t;
}

void tensor_to_proto(const Tensor& t, const std::string& name, onnx::TensorProto* p) {
  const int onnx_type = dtype_info(t.dtype()).onnx;
  check(onnx_type != 0, Errc::kUnsupported, t.describe(), "has no ONNX data type",
        "a type ONNX can store");
  p->set_data_type(onnx_type);
  p->set_name(name);
  for (int64_t d : t.shape()) p->add_dims(d);
  p->set_raw_data(std::string(static_cast<const char*>(t.raw()), t.nbytes()));
}

}  // namespace qforge::ir
