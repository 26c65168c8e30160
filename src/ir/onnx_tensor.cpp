#include "qforge/onnx_tensor.h"

#include <fstream>
#include <sstream>

#include "ir/proto.h"
#include "qforge/npy.h"

namespace qforge {

Tensor read_tensor_pb(const std::string& path) {
  const std::string subject = "tensor file '" + path + "'";
  std::ifstream f(path, std::ios::binary);
  check(f.good(), Errc::kIo, subject, "can't be opened");
  std::stringstream ss;
  ss << f.rdbuf();
  onnx::TensorProto p;
  check(p.ParseFromString(ss.str()), Errc::kCorrupt, subject, "is not a valid ONNX TensorProto");
  return ir::tensor_from_proto(p, subject, nullptr, int64_t{16} << 30);
}

void write_tensor_pb(const std::string& path, const Tensor& t) {
  onnx::TensorProto p;
  ir::tensor_to_proto(t, t.name(), &p);
  write_file_atomic(path, p.SerializeAsString());
}

}  // namespace qforge
