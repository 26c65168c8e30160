// Makes tests/golden/qgemm_ort.json: com.microsoft QGemm outputs computed by
// ONNX Runtime (npm onnxruntime-node 1.30, CPU provider), the reference the
// unit test Int8GemmOps.QGemmMatchesOnnxRuntime holds qforge's QGemm to.
//
//   node scripts/gen_qgemm_golden.js [OUT.json]
//
// Needs build-peers/ort/node_modules/onnxruntime-node (scripts/setup.sh
// --peers). For each case it writes a one-node ONNX model (every input a
// graph input) with the small protobuf encoder of onnx_proto.js, feeds
// seeded random inputs, and records inputs and output. Run on a CPU with AVX-512 VNNI or
// AVX-VNNI: there ONNX Runtime's u8 x s8 products are exact (its AVX2-only
// kernel can saturate 16-bit pair sums with vpmaddubsw, so values computed
// there could differ from the exact definition).
//
// ONNX Runtime's kernels take A u8 with B u8 or s8 and a u8 (or float)
// output, or A, B and output s8; only those combinations are made here.
'use strict';
const fs = require('fs');
const path = require('path');
const ort = require(path.join(__dirname, '../build-peers/ort/node_modules/onnxruntime-node'));

const {oneNodeModel, mulberry32} = require('./onnx_proto');

function modelBytes(c, inputNames, outType, outShape) {
  return oneNodeModel({
    opType: 'QGemm', domain: 'com.microsoft', nodeName: 'qgemm',
    attrs: [['alpha', {float: c.alpha}], ['transA', {int: c.transA}], ['transB', {int: c.transB}]],
    inputs: c.inputs.map((t, i) => (t ? {name: inputNames[i], type: t.type, shape: t.shape} : null)),
    outputs: [{name: 'Y', type: outType, shape: outShape}],
    opsets: [['', 17], ['com.microsoft', 1]], producer: 'gen_qgemm_golden'});
}

// ---- seeded inputs ----

const rnd = mulberry32(20240607);
const int = (lo, hi) => lo + Math.floor(rnd() * (hi - lo + 1));
// Codes of an 8-bit type: over the whole range, or within `spread` of its
// middle (zero points of a quantized output stay near the middle, so that
// results don't all saturate), or within `spread` of `around`.
const codes = (type, shape, spread = 128, around = null) => {
  const n = shape.reduce((a, b) => a * b, 1);
  const mid = around !== null ? around : (type === 'int8' ? 0 : 128);
  const lo = Math.max(mid - spread, type === 'int8' ? -128 : 0);
  const hi = Math.min(mid + spread - 1, type === 'int8' ? 127 : 255);
  return {type, shape, data: Array.from({length: n}, () => int(lo, hi))};
};
const floats = (shape, lo, hi) => {
  const n = shape.reduce((a, b) => a * b, 1);
  return {type: 'float32', shape, data: Array.from({length: n}, () => Math.fround(lo + (hi - lo) * rnd()))};
};
const ints32 = (shape, lo, hi) => {
  const n = shape.reduce((a, b) => a * b, 1);
  return {type: 'int32', shape, data: Array.from({length: n}, () => int(lo, hi))};
};

// One case: sizes, types, attributes, which optional inputs, C's shape.
function makeCase(name, o) {
  const {M, K, N, ta = 'uint8', tb = 'int8', quantized, perColumn = false, cShape = null,
         transA = 0, transB = 0, alpha = 1, yScaleOnly = false, ties = false} = o;
  const typical = 74 * 74 * Math.sqrt(Math.max(K, 1));
  const aScale = ties ? floats([], 1, 1) : floats([], 0.01, 0.05);
  const bShape = perColumn ? [N] : [];
  const bScale = ties ? floats(bShape, 1, 1) : floats(bShape, 0.01, 0.05);
  // Quantized cases: zero points near the middle; ties: operands within 6 of them.
  const zpSpread = quantized ? 10 : 128;
  const aZp = codes(ta, [], zpSpread), bZp = codes(tb, bShape, zpSpread);
  const a = ties ? codes(ta, transA ? [K, M] : [M, K], 6, aZp.data[0]) : codes(ta, transA ? [K, M] : [M, K]);
  const b = ties ? codes(tb, transB ? [N, K] : [K, N], 6, bZp.data[0]) : codes(tb, transB ? [N, K] : [K, N]);
  const inputs = [a, aScale, aZp, b, bScale, bZp, cShape ? ints32(cShape, -2000, 2000) : null];
  if (quantized || yScaleOnly) {
    const s = ties ? 2 : Math.fround(Math.abs(alpha) * aScale.data[0] * bScale.data[0] * typical / 40);
    inputs.push({type: 'float32', shape: [], data: [Math.fround(s)]});
  }
  if (quantized) inputs.push(codes(ta, [], 20));  // y has A's type in ORT's kernels
  while (inputs.length && inputs[inputs.length - 1] === null) inputs.pop();
  return {name, transA, transB, alpha, inputs};
}

const cases = [
  makeCase('u8s8 float, no C', {M: 3, K: 5, N: 4, quantized: false}),
  makeCase('u8s8 u8, C [N], transB, per column',
           {M: 6, K: 19, N: 7, quantized: true, cShape: [7], transB: 1, perColumn: true}),
  makeCase('u8u8 u8, C [M, N], transA, alpha 0.5',
           {M: 5, K: 33, N: 9, tb: 'uint8', quantized: true, cShape: [5, 9], transA: 1, alpha: 0.5}),
  makeCase('s8s8 s8, C [M, 1], per column, alpha 2',
           {M: 8, K: 17, N: 20, ta: 'int8', quantized: true, cShape: [8, 1], perColumn: true, alpha: 2}),
  makeCase('s8s8 float, C scalar, transA transB',
           {M: 4, K: 12, N: 3, ta: 'int8', quantized: false, cShape: [], transA: 1, transB: 1}),
  makeCase('u8s8 u8 17x70x37, C [1, N], per column',
           {M: 17, K: 70, N: 37, quantized: true, cShape: [1, 37], perColumn: true}),
  makeCase('u8s8 u8 1x1x1', {M: 1, K: 1, N: 1, quantized: true, cShape: [1]}),
  makeCase('u8s8 u8 ties (multiplier 0.5)', {M: 4, K: 2, N: 6, quantized: true, ties: true}),
  makeCase('s8s8 float, negative alpha, per column',
           {M: 9, K: 40, N: 33, ta: 'int8', quantized: false, perColumn: true, alpha: -0.75}),
  makeCase('u8s8 float divided by y_scale (no y_zero_point)',
           {M: 3, K: 8, N: 5, quantized: false, yScaleOnly: true}),
];

async function main() {
  const out = process.argv[2] || path.join(__dirname, '../tests/golden/qgemm_ort.json');
  const names = ['A', 'a_scale', 'a_zero_point', 'B', 'b_scale', 'b_zero_point', 'C', 'y_scale',
                 'y_zero_point'];
  const TYPED = {float32: Float32Array, uint8: Uint8Array, int8: Int8Array, int32: Int32Array};
  for (const c of cases) {
    const quantized = c.inputs.length > 8;
    const M = c.transA ? c.inputs[0].shape[1] : c.inputs[0].shape[0];
    const N = c.transB ? c.inputs[3].shape[0] : c.inputs[3].shape[1];
    const outType = quantized ? c.inputs[8].type : 'float32';
    const inputNames = c.inputs.map((t, i) => (t ? names[i] : ''));
    const session = await ort.InferenceSession.create(modelBytes(c, inputNames, outType, [M, N]), {
      intraOpNumThreads: 1, graphOptimizationLevel: 'disabled'});
    const feeds = {};
    c.inputs.forEach((t, i) => {
      if (t) feeds[names[i]] = new ort.Tensor(t.type, TYPED[t.type].from(t.data), t.shape);
    });
    const y = (await session.run(feeds)).Y;
    c.output = {type: y.type, shape: y.dims.map(Number), data: Array.from(y.data, Number)};
    while (c.inputs.length < 9) c.inputs.push(null);
  }
  const doc = {
    about: 'com.microsoft QGemm computed by ONNX Runtime ' + require(path.join(__dirname,
        '../build-peers/ort/node_modules/onnxruntime-node/package.json')).version +
        ' (CPU provider); made by scripts/gen_qgemm_golden.js. Inputs in QGemm order (null: absent).',
    cases,
  };
  // One line per case: diffs stay readable.
  fs.writeFileSync(out, '{"about": ' + JSON.stringify(doc.about) + ',\n "cases": [\n' +
                            cases.map((c) => '  ' + JSON.stringify(c)).join(',\n') + '\n]}\n');
  console.log('wrote ' + out + ' (' + cases.length + ' cases)');
}
main().catch((e) => { console.error('gen_qgemm_golden: ' + (e.stack || e)); process.exit(1); });
