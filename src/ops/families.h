// The operator families; each file in src/ops registers its ops here.
#pragma once

namespace qforge::ops {
class OpRegistry;

void register_elementwise_ops(OpRegistry& r);  // elementwise.cpp: math, activations, logic, Cast, Where
void register_shape_ops(OpRegistry& r);        // shape.cpp: Reshape, Transpose, Concat, Slice, Gather, ...
void register_nn_ops(OpRegistry& r);           // nn.cpp: Conv, Gemm, MatMul, pooling, normalization, Softmax
void register_reduce_ops(OpRegistry& r);       // reduce.cpp: Reduce*, ArgMax/Min, TopK, CumSum, Resize, Einsum
void register_rnn_ops(OpRegistry& r);          // rnn.cpp: LSTM, GRU, RNN
void register_quant_rnn_ops(OpRegistry& r);    // rnn_quant.cpp: DynamicQuantizeLSTM, DynamicQuantizeGRU
void register_control_ops(OpRegistry& r);      // control.cpp: If, Loop
void register_quant_ops(OpRegistry& r);        // quant.cpp: QuantizeLinear, QLinearConv, MatMulInteger, ...
void register_lookup_ops(OpRegistry& r);       // lookup.cpp: ai.qforge QLinearLookup
}  // namespace qforge::ops
