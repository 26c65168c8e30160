// Makes tests/golden/dynamic_quantize_lstm_ort.json: com.microsoft
// DynamicQuantizeLSTM outputs computed by ONNX Runtime (npm onnxruntime-node
// 1.30, CPU provider), the reference the unit test
// DynamicQuantizeLstm.MatchesOnnxRuntime holds qforge's op to.
//
//   node scripts/gen_dqlstm_golden.js [OUT.json]
//
// Needs build-peers/ort/node_modules/onnxruntime-node (scripts/setup.sh
// --peers, or `npm install --ignore-scripts onnxruntime-node@1.30.0` there).
// For each case it writes a one-node model (every input a graph input; see
// onnx_proto.js), feeds seeded random inputs and records inputs and outputs.
// Weights are random codes with random scales (not a float LSTM quantized):
// this pins the op's arithmetic, the quantizer is tested elsewhere.
//
// The session has one intra-op thread: with more, ONNX Runtime splits the
// batch over threads and each part quantizes its own rows of H, so its
// results would depend on the thread count. Run on a CPU with AVX-512 VNNI
// or AVX-VNNI: there ONNX Runtime's u8 x s8 products are exact (its
// AVX2-only kernel can saturate 16-bit pair sums with vpmaddubsw).
//
// ONNX Runtime's own limits shape the cases: per-column zero points must be
// all 0 (s8) or all equal (u8), and Y is always asked for (without it, ONNX
// Runtime's hidden-state rows of ended entries keep their last state rather
// than zeros, and so enter later steps' ranges).
'use strict';
const fs = require('fs');
const path = require('path');
const ort = require(path.join(__dirname, '../build-peers/ort/node_modules/onnxruntime-node'));
const {oneNodeModel, mulberry32} = require('./onnx_proto');

const rnd = mulberry32(20250211);
const int = (lo, hi) => lo + Math.floor(rnd() * (hi - lo + 1));
const count = (shape) => shape.reduce((a, b) => a * b, 1);
const floats = (shape, lo, hi) =>
  ({type: 'float32', shape, data: Array.from({length: count(shape)}, () => Math.fround(lo + (hi - lo) * rnd()))});
const ints = (type, shape, lo, hi) => ({type, shape, data: Array.from({length: count(shape)}, () => int(lo, hi))});

const NAMES = ['X', 'W', 'R', 'B', 'sequence_lens', 'initial_h', 'initial_c', 'P',
               'W_scale', 'W_zero_point', 'R_scale', 'R_zero_point'];

// Weight codes with their scale and zero point: s8 with zero point 0, or u8
// around `zps` (one per direction, or one for all columns: ORT's limit).
function weights(D, K, N, type, perColumn) {
  const pshape = perColumn ? [D, N] : [D];
  const scale = floats(pshape, 0.002, 0.008);
  if (type === 'int8') return {w: ints('int8', [D, K, N], -127, 127), scale, zp: ints('int8', pshape, 0, 0)};
  const zpd = Array.from({length: D}, () => int(118, 138));
  const zp = {type: 'uint8', shape: pshape,
              data: perColumn ? Array(D * N).fill(zpd[0]) : zpd};
  const w = {type: 'uint8', shape: [D, K, N], data: []};
  for (let d = 0; d < D; ++d)
    for (let i = 0; i < K * N; ++i) w.data.push(Math.min(255, Math.max(0, zp.data[perColumn ? 0 : d] + int(-127, 127))));
  return {w, scale, zp};
}

function makeCase(name, o) {
  const {seq, batch, input, hidden, direction = 'forward', wType = 'int8', perColumn = true, lens = null,
         withH0 = false, withC0 = false, withP = false, clip = null, inputForget = 0, activations = null} = o;
  const D = direction === 'bidirectional' ? 2 : 1, N = 4 * hidden;
  const X = floats([seq, batch, input], -1, 1);
  if (lens) {
    // Times no sequence reaches: far outside the range of the others, so
    // that quantizing them too would show.
    const maxLen = Math.max(...lens);
    for (let i = maxLen * batch * input; i < X.data.length; ++i) X.data[i] = Math.fround(X.data[i] * 4);
  }
  const w = weights(D, input, N, wType, perColumn), r = weights(D, hidden, N, wType, perColumn);
  const inputs = [
    X, w.w, r.w, floats([D, 8 * hidden], -0.5, 0.5),
    lens ? {type: 'int32', shape: [batch], data: lens} : null,
    withH0 ? floats([D, batch, hidden], -1, 1) : null,
    withC0 ? floats([D, batch, hidden], -1, 1) : null,
    withP ? floats([D, 3 * hidden], -0.5, 0.5) : null,
    w.scale, w.zp, r.scale, r.zp,
  ];
  const attrs = [['direction', {string: direction}], ['hidden_size', {int: hidden}]];
  if (clip !== null) attrs.push(['clip', {float: clip}]);
  if (inputForget) attrs.push(['input_forget', {int: inputForget}]);
  if (activations) attrs.push(['activations', {strings: activations}]);
  return {name, attrs, inputs, outShapes: [[seq, D, batch, hidden], [D, batch, hidden], [D, batch, hidden]]};
}

const cases = [
  makeCase('forward, batch 1, s8 per column', {seq: 5, batch: 1, input: 6, hidden: 8}),
  makeCase('reverse, batch 3, sequence_lens below seq, s8 per column, initial_h',
           {seq: 6, batch: 3, input: 5, hidden: 4, direction: 'reverse', lens: [4, 2, 3], withH0: true}),
  makeCase('bidirectional, s8 per direction, initial_h/c, peepholes, clip',
           {seq: 4, batch: 2, input: 3, hidden: 5, direction: 'bidirectional', perColumn: false,
            withH0: true, withC0: true, withP: true, clip: 1.5}),
  makeCase('bidirectional, u8 per direction, sequence_lens with 0, input_forget',
           {seq: 5, batch: 3, input: 4, hidden: 6, direction: 'bidirectional', wType: 'uint8', perColumn: false,
            lens: [3, 0, 5], withH0: true, withC0: true, inputForget: 1}),
  makeCase('forward, u8 per column, HardSigmoid/Tanh/Relu',
           {seq: 4, batch: 2, input: 7, hidden: 3, wType: 'uint8', activations: ['HardSigmoid', 'Tanh', 'Relu']}),
  makeCase('larger: 24 inputs, hidden 20, batch 4, bidirectional, s8 per column',
           {seq: 6, batch: 4, input: 24, hidden: 20, direction: 'bidirectional', withH0: true, withC0: true}),
];

async function main() {
  const out = process.argv[2] || path.join(__dirname, '../tests/golden/dynamic_quantize_lstm_ort.json');
  const TYPED = {float32: Float32Array, uint8: Uint8Array, int8: Int8Array, int32: Int32Array};
  for (const c of cases) {
    const outputs = ['Y', 'Y_h', 'Y_c'].map((n, i) => ({name: n, type: 'float32', shape: c.outShapes[i]}));
    const model = oneNodeModel({
      opType: 'DynamicQuantizeLSTM', domain: 'com.microsoft', nodeName: 'lstm', attrs: c.attrs,
      inputs: c.inputs.map((t, i) => (t ? {name: NAMES[i], type: t.type, shape: t.shape} : null)),
      outputs, opsets: [['', 17], ['com.microsoft', 1]], producer: 'gen_dqlstm_golden'});
    const session = await ort.InferenceSession.create(model, {intraOpNumThreads: 1, graphOptimizationLevel: 'disabled'});
    const feeds = {};
    c.inputs.forEach((t, i) => {
      if (t) feeds[NAMES[i]] = new ort.Tensor(t.type, TYPED[t.type].from(t.data), t.shape);
    });
    const y = await session.run(feeds);
    c.outputs = ['Y', 'Y_h', 'Y_c'].map((n) => ({shape: y[n].dims.map(Number), data: Array.from(y[n].data, Number)}));
    c.attrs = Object.fromEntries(c.attrs.map(([k, a]) => [k, Object.values(a)[0]]));
    delete c.outShapes;
  }
  const version = require(path.join(__dirname, '../build-peers/ort/node_modules/onnxruntime-node/package.json')).version;
  const about = 'com.microsoft DynamicQuantizeLSTM computed by ONNX Runtime ' + version +
      ' (CPU provider, one intra-op thread); made by scripts/gen_dqlstm_golden.js. Inputs in the op\'s order ' +
      '(null: absent), outputs Y, Y_h, Y_c.';
  // One line per case: diffs stay readable.
  fs.writeFileSync(out, '{"about": ' + JSON.stringify(about) + ',\n "cases": [\n' +
                            cases.map((c) => '  ' + JSON.stringify(c)).join(',\n') + '\n]}\n');
  console.log('wrote ' + out + ' (' + cases.length + ' cases)');
}
main().catch((e) => { console.error('gen_dqlstm_golden: ' + (e.stack || e)); process.exit(1); });
