// Shared by the ONNX Runtime peer scripts: the onnxruntime-node package that
// scripts/bench_float.sh and scripts/bench_int8.sh install under
// build-peers/ort, and the timing loop.
'use strict';
const path = require('path');
const ort = require(path.join(__dirname, '../../build-peers/ort/node_modules/onnxruntime-node'));

// A CPU session with `threads` intra-op threads, sequential execution, all
// graph optimizations.
function createSession(model, threads) {
  return ort.InferenceSession.create(model, {
    intraOpNumThreads: threads, interOpNumThreads: 1, executionMode: 'sequential',
    graphOptimizationLevel: 'all',
  });
}

// After 5 warm-up runs, times session.run(feeds) for `seconds` (at least 10
// runs); returns {ms_median, runs}.
async function timeRuns(session, feeds, seconds) {
  for (let i = 0; i < 5; ++i) await session.run(feeds);
  const times = [];
  const end = Date.now() + seconds * 1000;
  while (Date.now() < end || times.length < 10) {
    const t0 = process.hrtime.bigint();
    await session.run(feeds);
    times.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  times.sort((a, b) => a - b);
  return {ms_median: times[Math.floor(times.length / 2)], runs: times.length};
}

module.exports = {ort, createSession, timeRuns};
