#!/usr/bin/python3
"""The Markdown tables of scripts/bench_int8.sh, from the raw results it left
in OUT (build-peers/int8):

  int8_tables.py peak|gemm|models OUT

Each figure is the median over the rounds of one runtime's median; ratios
are time ratios qforge / peer (below 1: qforge faster).
"""
import glob
import json
import re
import statistics
import sys
from collections import defaultdict


def gbench_rows(path):
    return json.load(open(path))["benchmarks"]


def peak_gops(out):
    """{(benchmark, threads): (best GOPS, label)} from peak.json: the best of the
    repetitions, as other load on the machine can only lower a peak."""
    res = {}
    for b in gbench_rows(f"{out}/peak.json"):
        if "error_occurred" in b or b.get("run_type") == "aggregate" or "GOPS" not in b:
            continue
        m = re.match(r"(BM_\w+)(?:/real_time)?(?:/threads:(\d+))?", b["run_name"])
        key = (m.group(1), int(m.group(2) or 1))
        # The GOPS counters count 1e-9 operations and are rates: GOPS as is.
        if key not in res or b["GOPS"] > res[key][0]:
            res[key] = (b["GOPS"], b.get("label", ""))
    return res


def read_gbps(paths):
    """{threads: median GB/s} of BM_PeakReadBandwidth over the Google Benchmark
    results in paths (empty if it wasn't measured)."""
    res = defaultdict(list)
    for path in paths:
        for b in gbench_rows(path):
            if b["run_name"].startswith("BM_PeakReadBandwidth") and "GBps" in b and "error_occurred" not in b \
                    and b.get("run_type") != "aggregate":
                m = re.search(r"/threads:(\d+)", b["run_name"])
                res[int(m.group(1)) if m else 1].append(b["GBps"])
    return {t: statistics.median(v) for t, v in res.items()}


def peak(out):
    print("| instruction | threads | GOPS (best of the rounds) | GOPS per core |")
    print("|---|---:|---:|---:|")
    for (name, threads), (g, label) in sorted(peak_gops(out).items()):
        print(f"| {label} (`{name}`) | {threads} | {g:.0f} | {g / threads:.0f} |")
    bw = read_gbps([f"{out}/peak.json"])
    if bw:
        print("\nRead bandwidth (`BM_PeakReadBandwidth`, 16 MiB, median of the rounds): "
              + ", ".join(f"{g:.0f} GB/s on {t} thread{'s' if t > 1 else ''}" for t, g in sorted(bw.items())) + ".")


def med(values):
    return statistics.median(values) if values else float("nan")


def ratio(a, b):
    return f"{a / b:.2f}" if a == a and b == b and b > 0 else "n/a"


def gemm(out):
    peak1 = peak_gops(out)[("BM_PeakInt8Dot", 1)][0]
    q = defaultdict(list)  # (variant, M, K, N, threads) -> GOPS per round
    # (M, K, N, threads) -> per round, qforge's GOPS over the int8 peak on as
    # many threads measured in the same round (where the round has it)
    of_round_peak = defaultdict(list)
    for path in glob.glob(f"{out}/gemm/r*.qforge.json"):
        rows = [b for b in gbench_rows(path) if "error_occurred" not in b and b.get("run_type") != "aggregate"]
        round_peak = {}
        for b in rows:
            m = re.fullmatch(r"BM_PeakInt8Dot(?:/real_time)?(?:/threads:(\d+))?", b["name"])
            if m and "GOPS" in b:
                round_peak[int(m.group(1) or 1)] = b["GOPS"]
        for b in rows:
            m = re.match(r"BM_(Int8Gemm|Int8GemmRequant)/M:(\d+)/N:(\d+)/K:(\d+)/threads:(\d+)/", b["name"])
            if m:
                M, N, K, t = map(int, m.group(2, 3, 4, 5))
                q[(m.group(1), M, K, N, t)].append(b["GOPS"])
                if m.group(1) == "Int8Gemm" and t in round_peak:
                    of_round_peak[(M, K, N, t)].append(b["GOPS"] / round_peak[t])
    peer = defaultdict(list)  # (runtime/engine, M, K, N, threads) -> GOPS; ms for the floor
    for path in glob.glob(f"{out}/gemm/r*.ort.jsonl") + glob.glob(f"{out}/gemm/r*.torch.jsonl"):
        for line in open(path):
            r = json.loads(line)
            who = r.get("engine", "ort")
            value = r["ms_median"] if (r["M"], r["K"], r["N"]) == (1, 4, 4) else r["gops"]
            peer[(who, r["M"], r["K"], r["N"], r["threads"])].append(value)
    print("| M x K x N | threads | qforge GOPS | % of peak | % of the round's peak | ORT MatMulInteger GOPS "
          "| qforge / ORT | qforge requant GOPS | PyTorch onednn GOPS | qforge / onednn | PyTorch qnnpack GOPS "
          "| qforge / qnnpack |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for M, K, N in [(1, 768, 768), (32, 768, 768), (128, 768, 3072), (512, 1024, 1024), (1, 4096, 4096)]:
        for t in (1, 2):
            g = med(q[("Int8Gemm", M, K, N, t)])
            gr = med(q[("Int8GemmRequant", M, K, N, t)])
            o, d, p = (med(peer[(w, M, K, N, t)]) for w in ("ort", "onednn", "qnnpack"))
            # time ratio qforge / peer = peer GOPS / qforge GOPS
            rp = med(of_round_peak[(M, K, N, t)])
            rps = f"{100 * rp:.0f}%" if rp == rp else "n/a"
            print(f"| {M} x {K} x {N} | {t} | {g:.0f} | {100 * g / (peak1 * t):.0f}% | {rps} "
                  f"| {o:.0f} | {ratio(o, g)} "
                  f"| {gr:.0f} | {d:.0f} | {ratio(d, gr)} | {p:.0f} | {ratio(p, gr)} |")
    floor = {t: med(peer[("ort", 1, 4, 4, t)]) for t in (1, 2)}
    bw = read_gbps(glob.glob(f"{out}/gemm/r*.qforge.json"))  # in the GEMMs' rounds
    if bw:
        # M = 1 reads each byte of B once per call and makes 2 operations of
        # it: no kernel passes 2 x the read bandwidth in GOPS.
        parts = []
        for t in sorted(bw):
            bound = 2 * bw[t]
            g, o = med(q[("Int8Gemm", 1, 4096, 4096, t)]), med(peer[("ort", 1, 4096, 4096, t)])
            parts.append(f"{t} thread{'s' if t > 1 else ''}: {bw[t]:.0f} GB/s, so at most {bound:.0f} GOPS; "
                         f"qforge {100 * g / bound:.0f}% of it, ORT {100 * o / bound:.0f}%, "
                         f"twice ORT would be {100 * 2 * o / bound:.0f}%")
        print("\nRead bandwidth (BM_PeakReadBandwidth, 16 MiB, the size of 1 x 4096 x 4096's B; median of "
              "the rounds, measured beside the GEMMs), the bound of 1 x 4096 x 4096: " + "; ".join(parts) + ".")
    print(f"\nPeak: {peak1:.0f} GOPS per core (vpdpbusd zmm, 1 thread); % of peak = qforge GOPS / (peak x threads); % of "
          f"the round's peak = per round, qforge GOPS / the peak on as many threads (BM_PeakInt8Dot) measured in "
          f"the same round, median of the rounds (it follows the host's phase, as a 2-vCPU guest's second core "
          f"may run slower than the first). ORT's figures include a session.run through Node: a 1 x 4 x 4 MatMulInteger takes "
          f"{1000 * floor[1]:.1f} us (1 thread) / {1000 * floor[2]:.1f} us (2 threads). PyTorch's include a "
          f"Python call. qforge / ORT compares the int32-output kernels; qforge / PyTorch the u8-output "
          f"(requantizing) ones.")


def models(out):
    ort = defaultdict(list)
    for line in open(f"{out}/models/ort.jsonl"):
        r = json.loads(line)
        ort[(r["name"], r["batch"], r["ort"]["threads"])].append(r["ort"]["ms_median"])
    qf, qi = defaultdict(list), defaultdict(list)
    for path in glob.glob(f"{out}/models/*.qforge.json"):
        m = re.search(r"/(\w+)\.b(\d+)\.t(\d+)\.r\d+\.qforge\.json$", path)
        name, batch, t = m.group(1), int(m.group(2)), int(m.group(3))
        rows = json.load(open(path))["models"]
        qf[(name, batch, t)].append(rows[0]["p50_ms"])
        qi[(name, batch, t)].append(rows[1]["p50_ms"])
    pt = defaultdict(list)
    for line in open(f"{out}/models/torch.jsonl"):
        r = json.loads(line)
        pt[(r["engine"], r["model"], r["batch"], r["threads"])].append(r["ms_median"])
    modes = {"lstm": "dynamic", "transformer4": "dynamic"}
    print("| model (qforge int8) | batch | threads | qforge fp32 ms | qforge int8 ms | int8 speed-up | ORT int8 ms "
          "| qforge / ORT | PyTorch onednn ms | qforge / onednn | PyTorch qnnpack ms | qforge / qnnpack "
          "| qforge / fastest of ORT, onednn |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name in ["mlp", "cnn_bn", "dwsep_cnn", "vit", "lstm", "transformer4"]:
        for batch in (1, 32):
            for t in (1, 2):
                if not qi[(name, batch, t)]:
                    continue  # not measured (MODELS= left it out)
                f, i = med(qf[(name, batch, t)]), med(qi[(name, batch, t)])
                o = med(ort[(name, batch, t)])
                d, p = med(pt[("onednn", name, batch, t)]), med(pt[("qnnpack", name, batch, t)])
                print(f"| {name} ({modes.get(name, 'static')}) | {batch} | {t} | {f:.3f} | {i:.3f} | {f / i:.2f}x "
                      f"| {o:.3f} | {ratio(i, o)} | {d:.3f} | {ratio(i, d)} | {p:.3f} | {ratio(i, p)} "
                      f"| {ratio(i, min(o, d))} |")


def main():
    what, out = sys.argv[1], sys.argv[2]
    {"peak": peak, "gemm": gemm, "models": models}[what](out)


if __name__ == "__main__":
    main()
