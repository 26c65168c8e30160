// Times ONNX Runtime's int8 GEMM (npm onnxruntime-node 1.30, CPU provider) on
// one-node MatMulInteger models, the peer of qforge's BM_Int8Gemm:
//   node ort_gemm.js DIR THREADS SECONDS M,K,N [M,K,N ...]
// For each shape, DIR/matmulinteger_MxKxN.onnx (written once, with
// scripts/onnx_proto.js) computes Y = (A - 128) * B: A u8 [M, K] a graph input
// with zero point 128, B s8 [K, N] an initializer (so ORT prepacks it) with
// zero point 0, Y int32, as qforge's benchmark does. Prints one JSON line
// per shape: the median ms of session.run over SECONDS (timeRuns,
// ort_common.js) and GOPS = 2*M*N*K / median. The median includes
// session.run's own cost through Node (tensor wrapping, output allocation),
// which a tiny shape such as 1,4,4 shows.
'use strict';
const fs = require('fs');
const path = require('path');
const {ort, createSession, timeRuns} = require('./ort_common');
const {oneNodeModel, mulberry32} = require('../../scripts/onnx_proto');

function writeModel(file, M, K, N) {
  const rand = mulberry32(K * 7919 + N);
  const B = Buffer.alloc(K * N);
  for (let i = 0; i < B.length; ++i) B[i] = Math.floor(rand() * 256);  // any byte: an s8 value
  const bytes = oneNodeModel({
    opType: 'MatMulInteger', nodeName: 'mm', producer: 'qforge bench/peers/ort_gemm.js', opsets: [['', 13]],
    inputs: [{name: 'A', type: 'uint8', shape: [M, K]}, {name: 'B', type: 'int8', shape: [K, N]},
      {name: 'a_zp', type: 'uint8', shape: []}, {name: 'b_zp', type: 'int8', shape: []}],
    outputs: [{name: 'Y', type: 'int32', shape: [M, N]}],
    initializers: [{name: 'B', type: 'int8', shape: [K, N], raw: B},
      {name: 'a_zp', type: 'uint8', shape: [], raw: Buffer.from([128])},
      {name: 'b_zp', type: 'int8', shape: [], raw: Buffer.from([0])}],
  });
  fs.writeFileSync(file, bytes);
}

async function main() {
  const [dir, threadsArg, secondsArg, ...shapes] = process.argv.slice(2);
  if (!dir || !shapes.length) throw new Error('usage: node ort_gemm.js DIR THREADS SECONDS M,K,N ...');
  const threads = Number(threadsArg), seconds = Number(secondsArg);
  fs.mkdirSync(dir, {recursive: true});
  for (const s of shapes) {
    const [M, K, N] = s.split(',').map(Number);
    const file = path.join(dir, `matmulinteger_${M}x${K}x${N}.onnx`);
    if (!fs.existsSync(file)) writeModel(file, M, K, N);
    const session = await createSession(file, threads);
    const A = new Uint8Array(M * K);
    const rand = mulberry32(1);
    for (let i = 0; i < A.length; ++i) A[i] = Math.floor(rand() * 256);
    const {ms_median, runs} = await timeRuns(session, {A: new ort.Tensor('uint8', A, [M, K])}, seconds);
    console.log(JSON.stringify({runtime: 'onnxruntime', op: 'MatMulInteger', M, K, N, threads, ms_median, runs,
      gops: (2 * M * N * K) / (ms_median * 1e6)}));
  }
}
main().catch((e) => { console.error('ort_gemm: ' + e.message); process.exit(1); });
