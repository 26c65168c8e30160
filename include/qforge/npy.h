// NumPy .npy files (format versions 1, 2 and 3), C order, little-endian.
// dtypes: <f4 <f8 <f2 <i8 <i4 <i2 <u2 |i1 |u1 |b1 (and their '=' forms).
#pragma once

#include <string>

#include "qforge/tensor.h"

namespace qforge {

// Throws Error naming the file and what is wrong: missing, truncated, bad
// magic, Fortran order, big-endian or unsupported dtype, size mismatch.
Tensor read_npy(const std::string& path);
// Writes through a temporary file renamed into place, so a failure never
// leaves a half-written file. Packed types (i4, u4, i2, u2) and bf16 have no
// NumPy dtype and are refused.
void write_npy(const std::string& path, const Tensor& t);

// Writes `bytes` to path atomically (temporary file in the same directory,
// then rename). Throws Error(kIo) naming the path on failure.
void write_file_atomic(const std::string& path, const std::string& bytes);

}  // namespace qforge
