// Times ONNX Runtime (npm onnxruntime-node 1.30, CPU provider) on one model:
//   node ort_bench.js MODEL f32|i64 SHAPE THREADS [SECONDS]     e.g. SHAPE=32,1,28,28
// The model's first input gets uniform [-1, 1) floats, or token ids in
// [0, 1000) for i64. After 5 warm-up runs it times runs for SECONDS
// (default 2, at least 10 runs) and prints one JSON line with the median.
'use strict';
const path = require('path');
const {ort, createSession, timeRuns} = require('./ort_common');

async function main() {
  const [model, dtype, shapeArg, threadsArg, secondsArg] = process.argv.slice(2);
  const shape = shapeArg.split(',').map(Number);
  const threads = Number(threadsArg), seconds = Number(secondsArg || 2);
  const session = await createSession(model, threads);
  const n = shape.reduce((a, b) => a * b, 1);
  let tensor;
  if (dtype === 'i64') {
    const data = new BigInt64Array(n);
    for (let i = 0; i < n; ++i) data[i] = BigInt(Math.floor(Math.random() * 1000));
    tensor = new ort.Tensor('int64', data, shape);
  } else {
    const data = new Float32Array(n);
    for (let i = 0; i < n; ++i) data[i] = Math.random() * 2 - 1;
    tensor = new ort.Tensor('float32', data, shape);
  }
  const feeds = {[session.inputNames[0]]: tensor};
  const {ms_median, runs} = await timeRuns(session, feeds, seconds);
  console.log(JSON.stringify({runtime: 'onnxruntime', model: path.basename(model), shape, threads, ms_median, runs}));
}
main().catch((e) => { console.error('ort_bench: ' + e.message); process.exit(1); });
