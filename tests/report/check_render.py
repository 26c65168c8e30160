#!/usr/bin/env python3
"""Renders a qforge report in headless Chromium and checks what a reader sees.

  check_render.py REPORT.html OUT_DIR

1. --dump-dom: the rendered page has the summary table with one row per model
   (3: float, static, dynamic), the accuracy-vs-size and accuracy-vs-latency
   charts with a dot per model, the per-layer SQNR chart with a bar per
   tensor, and nothing that would be fetched (no http:// or https:// src/href).
2. --screenshot: the PNG shows the charts: pixels of each model's dot colour
   and of the SQNR bars' colour are there (decoded here with zlib, no PIL).
Exits 1 with a message naming what is missing.
"""
import html.parser
import os
import re
import struct
import subprocess
import sys
import zlib

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def fail(msg):
    print(f"check_render: {msg}", file=sys.stderr)
    sys.exit(1)


def chromium(args, user_dir):
    exe = next((p for p in ("/usr/bin/chromium", "/usr/bin/chromium-browser") if os.path.exists(p)), None)
    if exe is None:
        fail("Chromium is not installed (scripts/setup.sh installs Debian's chromium)")
    return subprocess.run([exe, *CHROMIUM_FLAGS, f"--user-data-dir={user_dir}", *args],
                          capture_output=True, text=True, timeout=120)


class Dom(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.stack, self.tables, self.svgs, self.fetches = [], {}, {}, []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for k in ("src", "href"):
            if re.match(r"https?://", a.get(k, "") or ""):
                self.fetches.append(a[k])
        if tag == "table":
            self.stack.append(("table", a.get("id", "")))
            self.tables[a.get("id", "")] = 0
        elif tag == "svg":
            self.stack.append(("svg", a.get("id", "")))
            self.svgs[a.get("id", "")] = {"circle": 0, "rect": 0}
        elif self.stack and tag == "tr" and self.stack[-1][0] == "table":
            self.tables[self.stack[-1][1]] += 1
        elif self.stack and tag in ("circle", "rect") and self.stack[-1][0] == "svg":
            self.svgs[self.stack[-1][1]][tag] += 1

    def handle_endtag(self, tag):
        if tag in ("table", "svg") and self.stack:
            self.stack.pop()


def png_pixels(path):
    data = open(path, "rb").read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        fail(f"{path} is not a PNG")
    pos, idat, width = 8, b"", 0
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            width, height, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", body)
            if depth != 8 or ctype not in (2, 6) or interlace:
                fail(f"{path}: unexpected PNG format (depth {depth}, colour type {ctype})")
            bpp = 3 if ctype == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    raw = zlib.decompress(idat)
    stride = width * bpp
    prev = bytearray(stride)
    counts = {}
    for y in range(height):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            left = line[i - bpp] if i >= bpp else 0
            up, ul = prev[i], prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + left) & 255
            elif f == 2:
                line[i] = (line[i] + up) & 255
            elif f == 3:
                line[i] = (line[i] + (left + up) // 2) & 255
            elif f == 4:
                p = left + up - ul
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - ul)
                line[i] = (line[i] + (left if pa <= pb and pa <= pc else up if pb <= pc else ul)) & 255
        for x in range(0, stride, bpp):
            c = bytes(line[x:x + 3])
            counts[c] = counts.get(c, 0) + 1
        prev = line
    return counts


def main():
    if len(sys.argv) != 3:
        fail("usage: check_render.py REPORT.html OUT_DIR")
    report, out = os.path.abspath(sys.argv[1]), sys.argv[2]
    os.makedirs(out, exist_ok=True)
    url = "file://" + report
    dom = chromium(["--dump-dom", url], os.path.join(out, "chromium-dom"))
    if dom.returncode != 0 or "<html" not in dom.stdout:
        fail(f"Chromium could not render {report}: {dom.stderr[-400:]}")
    d = Dom()
    d.feed(dom.stdout)
    if d.fetches:
        fail(f"the page fetches {d.fetches[:3]}: it must be self-contained")
    rows = d.tables.get("summary", 0)
    if rows != 4:
        fail(f"summary table has {rows} rows, expected a header and 3 models")
    for chart, kind, want in (("size-chart", "circle", 3), ("latency-chart", "circle", 3), ("sqnr-chart", "rect", 3)):
        got = d.svgs.get(chart, {}).get(kind, 0)
        if got < want:
            fail(f"chart #{chart} has {got} {kind}s, expected at least {want}")
    png = os.path.join(out, "report.png")
    shot = chromium([f"--screenshot={png}", "--window-size=1200,2400", "--hide-scrollbars", url],
                    os.path.join(out, "chromium-shot"))
    if shot.returncode != 0 or not os.path.exists(png):
        fail(f"Chromium could not take a screenshot: {shot.stderr[-400:]}")
    counts = png_pixels(png)
    # The models' dot colours (report.cpp kColors) and the SQNR bars' colour.
    for name, rgb in (("float dot", "1f6fb4"), ("static dot", "e0661b"), ("dynamic dot", "2a9d3a")):
        n = counts.get(bytes.fromhex(rgb), 0)
        if n < 50:
            fail(f"the screenshot has {n} pixels of the {name} colour #{rgb}: a chart is missing")
    print(f"check_render: {report}: table of {rows - 1} models, charts "
          f"{', '.join(sorted(k for k in d.svgs if k))} rendered; screenshot {png}")


main()
