#!/usr/bin/python3
"""Writes the small files tests/unit/test_data.cpp reads, under tests/data/:

  npz/arrays.npz             numpy.savez (entries stored): image f32[5,1,4,4],
                             ids i64[5,3], flags u8[5]
  npz/arrays_compressed.npz  numpy.savez_compressed (entries deflated), same arrays
  npz/arrays_zip64.npz       the same arrays, written with zip64 central
                             directory entries and a zip64 end record (as
                             numpy writes archives over 4 GiB)
  npz/single.npz             numpy.savez(path, a): one array, arr_0 f32[3,2]
  npz/bad_entry.npz          a zip whose x.npy entry is not an NPY file
  npz/not_npy.npz            a zip with a valid x.npy and a readme.txt
  idx/i16-idx2-ubyte.gz      gzipped IDX, type 0x0B (i16) [2,3], big-endian
  idx/claims_too_much-idx1-ubyte.gz   gzipped IDX whose header claims 2^31
                             bytes of data but which holds 10
  images/circle/a.png        RGB 6x4 PNG
  images/circle/b.jpg        RGB 6x4 JPEG (quality 95, no chroma subsampling)
  images/square/c.png        grayscale 6x4 PNG
  images/square/d.png        RGBA 6x4 PNG
  images/square/notes.txt    not an image: image folders skip it
  image_other_size.png       RGB 5x5 PNG, for the mismatched-size test
  images_expected.npz        the four images decoded by Pillow to RGB u8
                             [4,6,3], keyed circle_a, circle_b, square_c, square_d

The array values follow formulas the test restates (see make_arrays).

Run: /usr/bin/python3 scripts/make_test_data.py   (needs python3-numpy, python3-pil)
"""
import gzip
import os
import struct
import zipfile

import numpy as np
from PIL import Image

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data")


WRITTEN = []


def out(*parts):
    p = os.path.join(ROOT, *parts)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    if p not in WRITTEN:
        WRITTEN.append(p)
    return p


def make_arrays():
    return {
        "image": (np.arange(80, dtype=np.float32) * 0.25).reshape(5, 1, 4, 4),  # value i * 0.25
        "ids": (np.arange(15, dtype=np.int64) - 7).reshape(5, 3),                 # value i - 7
        "flags": (np.arange(5, dtype=np.uint8) * 50),                             # value i * 50
    }


def write_npz():
    a = make_arrays()
    np.savez(out("npz", "arrays.npz"), **a)
    np.savez_compressed(out("npz", "arrays_compressed.npz"), **a)
    # zipfile writes zip64 records for sizes and offsets above ZIP64_LIMIT and
    # counts above ZIP_FILECOUNT_LIMIT; lowering them gives a small zip64 file.
    saved = (zipfile.ZIP64_LIMIT, zipfile.ZIP_FILECOUNT_LIMIT)
    zipfile.ZIP64_LIMIT, zipfile.ZIP_FILECOUNT_LIMIT = 0, 0
    try:
        np.savez(out("npz", "arrays_zip64.npz"), **a)
    finally:
        zipfile.ZIP64_LIMIT, zipfile.ZIP_FILECOUNT_LIMIT = saved
    np.savez(out("npz", "single.npz"), np.arange(6, dtype=np.float32).reshape(3, 2))
    with zipfile.ZipFile(out("npz", "bad_entry.npz"), "w") as z:
        z.writestr("x.npy", b"this is not an NPY file")
    with zipfile.ZipFile(out("npz", "not_npy.npz"), "w") as z:
        with z.open("x.npy", "w") as f:
            np.lib.format.write_array(f, np.zeros(3, np.float32))
        z.writestr("readme.txt", b"hello")
    # Check they read back as written.
    for name in ["arrays.npz", "arrays_compressed.npz", "arrays_zip64.npz"]:
        with np.load(out("npz", name)) as f:
            assert list(f.keys()) == list(a.keys()), name
            for k in a:
                assert np.array_equal(f[k], a[k]), (name, k)
    with zipfile.ZipFile(out("npz", "arrays_zip64.npz")) as z:
        with open(out("npz", "arrays_zip64.npz"), "rb") as f:
            assert b"PK\x06\x06" in f.read(), "no zip64 end record"
    assert zipfile.ZipFile(out("npz", "arrays.npz")).infolist()[0].compress_type == zipfile.ZIP_STORED
    assert zipfile.ZipFile(out("npz", "arrays_compressed.npz")).infolist()[0].compress_type == zipfile.ZIP_DEFLATED


def write_idx():
    v = np.array([[1, -2, 300], [-32768, 32767, 0]], dtype=">i2")
    with open(out("idx", "i16-idx2-ubyte.gz"), "wb") as f:  # mtime=0: the same bytes every run
        f.write(gzip.compress(bytes([0, 0, 0x0B, 2]) + struct.pack(">II", 2, 3) + v.tobytes(), mtime=0))
    with open(out("idx", "claims_too_much-idx1-ubyte.gz"), "wb") as f:
        f.write(gzip.compress(bytes([0, 0, 0x08, 1]) + struct.pack(">I", 1 << 31) + bytes(10), mtime=0))


def pattern(h, w, seed):
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([(x * 40 + y * 10 + seed) % 256, (y * 60 + 7 * seed) % 256, (x * y * 9 + 100) % 256],
                    axis=-1).astype(np.uint8)


def write_images():
    h, w = 4, 6
    Image.fromarray(pattern(h, w, 1), "RGB").save(out("images", "circle", "a.png"))
    # A smooth image, so that JPEG decoders agree closely.
    y, x = np.mgrid[0:h, 0:w]
    smooth = np.stack([60 + 10 * x, 90 + 12 * y, 200 - 5 * x - 5 * y], axis=-1).astype(np.uint8)
    Image.fromarray(smooth, "RGB").save(out("images", "circle", "b.jpg"), quality=95, subsampling=0)
    Image.fromarray(pattern(h, w, 2)[:, :, 0], "L").save(out("images", "square", "c.png"))
    rgba = np.concatenate([pattern(h, w, 3), np.full((h, w, 1), 128, np.uint8)], axis=-1)
    Image.fromarray(rgba, "RGBA").save(out("images", "square", "d.png"))
    with open(out("images", "square", "notes.txt"), "w") as f:
        f.write("not an image: image folders skip files without an image extension\n")
    Image.fromarray(pattern(5, 5, 4), "RGB").save(out("image_other_size.png"))
    expected = {}
    for cls, name in [("circle", "a.png"), ("circle", "b.jpg"), ("square", "c.png"), ("square", "d.png")]:
        expected[f"{cls}_{name[0]}"] = np.asarray(Image.open(out("images", cls, name)).convert("RGB"))
    np.savez(out("images_expected.npz"), **expected)


def main():
    write_npz()
    write_idx()
    write_images()
    for p in sorted(WRITTEN):
        print(f"tests/data/{os.path.relpath(p, ROOT)}: {os.path.getsize(p)} bytes")


if __name__ == "__main__":
    main()
