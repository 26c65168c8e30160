// A minimal ONNX ModelProto writer for the golden-data scripts
// (gen_qgemm_golden.js, gen_dqlstm_golden.js) and the int8 GEMM peer
// benchmark (bench/peers/ort_gemm.js): one node whose inputs are graph
// inputs or initializers, written with a small protobuf encoder so that the
// scripts need nothing but onnxruntime-node.
'use strict';

function varint(n) {
  let v = BigInt(n);
  if (v < 0n) v += 1n << 64n;  // int64 two's complement
  const out = [];
  do {
    let b = Number(v & 0x7fn);
    v >>= 7n;
    if (v !== 0n) b |= 0x80;
    out.push(b);
  } while (v !== 0n);
  return out;
}
const key = (field, wire) => varint((field << 3) | wire);
const vfield = (field, n) => [...key(field, 0), ...varint(n)];
const bfield = (field, bytes) => [...key(field, 2), ...varint(bytes.length), ...bytes];
const sfield = (field, s) => bfield(field, [...Buffer.from(s, 'utf8')]);
function ffield(field, f) {
  const b = Buffer.alloc(4);
  b.writeFloatLE(f);
  return [...key(field, 5), ...b];
}

const ELEM = {float32: 1, uint8: 2, int8: 3, int32: 6};

// ValueInfoProto of a tensor: name, elem type, fixed shape.
function valueInfo(name, type, shape) {
  const dims = shape.map((d) => bfield(1, vfield(1, d))).flat();  // Dimension.dim_value
  const tensorType = [...vfield(1, ELEM[type]), ...bfield(2, dims)];  // elem_type, shape
  return [...sfield(1, name), ...bfield(2, bfield(1, tensorType))];  // name, type.tensor_type
}

// AttributeProto: {float: x} {int: n} {string: s} {floats: [...]} {ints: [...]} {strings: [...]}.
function attribute(name, a) {
  const n = sfield(1, name);
  if ('float' in a) return [...n, ...ffield(2, a.float), ...vfield(20, 1)];
  if ('int' in a) return [...n, ...vfield(3, a.int), ...vfield(20, 2)];
  if ('string' in a) return [...n, ...sfield(4, a.string), ...vfield(20, 3)];
  if ('floats' in a) return [...n, ...a.floats.map((f) => ffield(7, f)).flat(), ...vfield(20, 6)];
  if ('ints' in a) return [...n, ...a.ints.map((i) => vfield(8, i)).flat(), ...vfield(20, 7)];
  if ('strings' in a) return [...n, ...a.strings.map((s) => sfield(9, s)).flat(), ...vfield(20, 8)];
  throw new Error('attribute ' + name + ': unknown kind');
}

// TensorProto with raw little-endian data (a Buffer): dims, data_type, name, raw_data.
function tensorProto(name, type, shape, raw) {
  const head = [...shape.map((d) => vfield(1, d)).flat(), ...vfield(2, ELEM[type]), ...sfield(8, name),
    ...key(9, 2), ...varint(raw.length)];
  return Buffer.concat([Buffer.from(head), raw]);
}
// A length-delimited field around a Buffer (for bodies too big to spread).
const bufField = (field, buf) => Buffer.concat([Buffer.from([...key(field, 2), ...varint(buf.length)]), buf]);

// A model of one node. inputs: [{name, type, shape} or null (absent)];
// outputs: [{name, type, shape} or null]; attrs: [[name, attribute]];
// initializers: [{name, type, shape, raw: Buffer}], constant inputs: list
// them in `inputs` too; they become node inputs but not graph inputs (an
// initializer that is also a graph input may be overridden, so runtimes
// don't treat it as a constant, e.g. ONNX Runtime doesn't prepack it).
function oneNodeModel({opType, domain = '', nodeName, attrs = [], inputs, outputs, opsets, producer,
  initializers = []}) {
  const node = [
    ...inputs.map((t) => sfield(1, t ? t.name : '')).flat(),
    ...outputs.map((t) => sfield(2, t ? t.name : '')).flat(),
    ...sfield(3, nodeName), ...sfield(4, opType),
    ...attrs.map(([k, a]) => bfield(5, attribute(k, a))).flat(),
    ...(domain ? sfield(7, domain) : []),
  ];
  const constant = new Set(initializers.map((t) => t.name));
  const graph = Buffer.concat([
    Buffer.from([
      ...bfield(1, node), ...sfield(2, 'g'),
      ...inputs.filter((t) => t && !constant.has(t.name))
          .map((t) => bfield(11, valueInfo(t.name, t.type, t.shape))).flat(),
      ...outputs.map((t) => (t ? bfield(12, valueInfo(t.name, t.type, t.shape)) : [])).flat(),
    ]),
    ...initializers.map((t) => bufField(5, tensorProto(t.name, t.type, t.shape, t.raw))),
  ]);
  const imports = opsets.map(([d, v]) => bfield(8, [...sfield(1, d), ...vfield(2, v)])).flat();
  return new Uint8Array(Buffer.concat([Buffer.from([...vfield(1, 8), ...sfield(2, producer)]), bufField(7, graph),
    Buffer.from(imports)]));
}

// Seeded uniform [0, 1) numbers (mulberry32), so golden data replay.
function mulberry32(seed) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = seed;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

module.exports = {ELEM, oneNodeModel, mulberry32};
