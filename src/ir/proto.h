// Conversions between ONNX protobuf messages and qforge types, shared by the
// model loader, the model writer and the tensor-file reader.
#pragma once

#include <map>
#include <memory>
#include <string>

#include <onnx/onnx_pb.h>

#include "qforge/ir.h"
#include "qforge/tensor.h"

namespace qforge::ir {

// Where external tensor data is read from: files relative to the model's
// directory, each memory-mapped once and shared by the tensors in it.
class ExternalData {
 public:
  explicit ExternalData(std::string base_dir) : base_dir_(std::move(base_dir)) {}
  // A view of [offset, offset + length) of `location`, without copying.
  std::shared_ptr<Storage> map(const std::string& location, int64_t offset, int64_t length,
                               const std::string& subject);

 private:
  struct Mapping {
    std::shared_ptr<void> owner;  // unmaps when the last tensor using it goes
    char* data = nullptr;
    int64_t size = 0;
  };
  std::string base_dir_;
  std::map<std::string, Mapping> files_;
};

// Checks dims (non-negative, numel without overflow, bytes within the
// limit) and returns the shape. `subject` names the tensor in errors.
Shape checked_shape(const google::protobuf::RepeatedField<int64_t>& dims, DType dt,
                    const std::string& subject, int64_t max_bytes);

// Converts a TensorProto. Large raw_data is moved out of the message, not
// copied (the message loses it). `ext` may be null (external data refused).
Tensor tensor_from_proto(onnx::TensorProto& p, const std::string& subject, ExternalData* ext,
                         int64_t max_bytes);
void tensor_to_proto(const Tensor& t, const std::string& name, onnx::TensorProto* p);

}  // namespace qforge::ir
