#include "ops/families.h"
#include "ops/op_util.h"

namespace qforge::ops {

void register_shape_ops(OpRegistry& r) { (void)r; }

}  // namespace qforge::ops
