#include "qforge/onnx_tensor.h"

#include <cstring>
#include <fstream>
#include <sstream>

#include <onnx/onnx_pb.h>

#include "qforge/npy.h"
#include "qforge/quant.h"

namespace qforge {
namespace {

// Copies a typed repeated field into t's storage, converting each element.
template <typename Field, typename T>
void copy_field(const Field& f, Tensor& t, const std::string& subject) {
  check(static_cast<int64_t>(f.size()) == t.numel(), Errc::kCorrupt, subject,
        "has " + std::to_string(f.size()) + " values for dims " + shape_str(t.shape()),
        std::to_string(t.numel()) + " values");
  T* d = static_cast<T*>(t.raw());
  for (int i = 0; i < f.size(); ++i) d[i] = static_cast<T>(f.Get(i));
}

Tensor from_proto(const onnx::TensorProto& p, const std::string& subject) {
  check(p.data_location() != onnx::TensorProto::EXTERNAL, Errc::kUnsupported, subject,
        "uses external data", "inline data (external data is read by the model loader)");
  const DType dt = dtype_from_onnx(p.data_type());
  Shape shape(p.dims().begin(), p.dims().end());
  Tensor t(dt, shape);
  if (!p.name().empty()) t.set_name(p.name());
  if (p.has_raw_data()) {
    check(p.raw_data().size() == t.nbytes(), Errc::kCorrupt, subject,
          "raw_data has " + std::to_string(p.raw_data().size()) + " bytes for " +
              std::string(dtype_name(dt)) + shape_str(shape),
          std::to_string(t.nbytes()) + " bytes");
    std::memcpy(t.raw(), p.raw_data().data(), t.nbytes());
    return t;
  }
  switch (dt) {
    case DType::kF32: copy_field<decltype(p.float_data()), float>(p.float_data(), t, subject); break;
    case DType::kF64: copy_field<decltype(p.double_data()), double>(p.double_data(), t, subject); break;
    case DType::kI64: copy_field<decltype(p.int64_data()), int64_t>(p.int64_data(), t, subject); break;
    case DType::kI32: copy_field<decltype(p.int32_data()), int32_t>(p.int32_data(), t, subject); break;
    case DType::kI16: copy_field<decltype(p.int32_data()), int16_t>(p.int32_data(), t, subject); break;
    case DType::kU16:
    case DType::kF16:
    case DType::kBF16:  // 16-bit floats travel as their bit patterns in int32_data
      copy_field<decltype(p.int32_data()), uint16_t>(p.int32_data(), t, subject);
      break;
    case DType::kI8: copy_field<decltype(p.int32_data()), int8_t>(p.int32_data(), t, subject); break;
    case DType::kU8:
    case DType::kBool: copy_field<decltype(p.int32_data()), uint8_t>(p.int32_data(), t, subject); break;
    default:
      throw Error(Errc::kUnsupported, subject,
                  "typed-field data for " + std::string(dtype_name(dt)), "raw_data");
  }
  return t;
}

}  // namespace

Tensor read_tensor_pb(const std::string& path) {
  const std::string subject = "tensor file '" + path + "'";
  std::ifstream f(path, std::ios::binary);
  check(f.good(), Errc::kIo, subject, "can't be opened");
  std::stringstream ss;
  ss << f.rdbuf();
  onnx::TensorProto p;
  check(p.ParseFromString(ss.str()), Errc::kCorrupt, subject, "is not a valid ONNX TensorProto");
  return from_proto(p, subject);
}

void write_tensor_pb(const std::string& path, const Tensor& t) {
  const int onnx_type = dtype_info(t.dtype()).onnx;
  check(onnx_type != 0, Errc::kUnsupported, t.describe(), "has no ONNX data type",
        "a type ONNX can store");
  onnx::TensorProto p;
  p.set_data_type(onnx_type);
  p.set_name(t.name());
  for (int64_t d : t.shape()) p.add_dims(d);
  p.set_raw_data(std::string(static_cast<const char*>(t.raw()), t.nbytes()));
  write_file_atomic(path, p.SerializeAsString());
}

}  // namespace qforge
