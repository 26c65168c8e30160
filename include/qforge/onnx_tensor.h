// ONNX TensorProto <-> qforge Tensor, for .pb tensor files (the ONNX backend
// test data, `qforge run` inputs). Model import is in the IR (later issue);
// this is the tensor part it stands on.
#pragma once

#include <string>

#include "qforge/tensor.h"

namespace qforge {

// Reads a serialized onnx.TensorProto. Supports raw_data and the typed
// fields (float_data, int32_data, int64_data, double_data) for every dtype
// qforge has an ONNX mapping for. External data is refused with an Error.
// Throws Error naming the file on a missing file, a parse failure, an
// unsupported type or a size that does not match the dims.
Tensor read_tensor_pb(const std::string& path);
// Writes a Tensor as a TensorProto (raw_data) through a temporary file.
void write_tensor_pb(const std::string& path, const Tensor& t);

}  // namespace qforge
