# Image goldens: Pillow's decoders and `Image.resize` as the reference for Capture's image files
# and Florence-2's image processor (transformers' PIL path: convert("RGB"), resize BICUBIC,
# float64 × 1/255 → float32, (x − mean) / std in float32).
# Run from the repository root in a venv with `pip install pillow==13.0.0 numpy==2.4.6`:
#   python Quantization/goldens_image.py
# Writes Tests/CaptureTests/Fixtures/{jpeg,png,ppm,expected}/ and Tests/Florence2Tests/Fixtures/image/.
import hashlib
import io
import json
import os
import struct
import zlib

import numpy as np
import PIL
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CAP = os.path.join(ROOT, "Tests/CaptureTests/Fixtures")
F2 = os.path.join(ROOT, "Tests/Florence2Tests/Fixtures/image")

# MARK: - Deterministic test pictures (the Swift tests build the same bytes)


def lcg_bytes(n, seed):
    """n bytes from the LCG state = (state·1103515245 + 12345) mod 2^31, byte = (state >> 16) & 255."""
    out = np.empty(n, dtype=np.uint8)
    s = seed & 0x7FFFFFFF
    for i in range(n):
        s = (s * 1103515245 + 12345) & 0x7FFFFFFF
        out[i] = (s >> 16) & 0xFF
    return out


def picture(kind, w, h, seed):
    """[h, w, 3] uint8. "noise": LCG bytes. "scene": gradients plus 5-bit noise with a white block
    on a black band (hard edges make the bicubic overshoot clip)."""
    noise = lcg_bytes(w * h * 3, seed).reshape(h, w, 3).astype(np.int64)
    if kind == "noise":
        return noise.astype(np.uint8)
    y, x, c = np.meshgrid(np.arange(h), np.arange(w), np.arange(3), indexing="ij")
    v = ((x * 251) // w + (y * 127) // h + c * 85) & 255
    v = v ^ (noise & 31)
    band = (y >= h // 4) & (y < h // 2)
    v = np.where(band, 0, v)
    block = band & (x >= w // 3) & (x < w // 3 + max(1, w // 5))
    v = np.where(block, 255, v)
    return v.astype(np.uint8)


def fnv1a64(data):
    h = 0xCBF29CE484222325
    for b in data:
        h ^= b
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def fnv1a64_fast(arr):
    # Same hash, vectorised over chunks would not be simpler; bytes() loop is fine at these sizes.
    return "%016x" % fnv1a64(arr.tobytes())


# MARK: - Resize goldens (Florence2Tests/Fixtures/image)

RESIZE_CASES = [
    # name, kind, seed, w, h, out_w, out_h, filter, rows to store (None = all)
    ("down_37x23_16x16", "noise", 1, 37, 23, 16, 16, 3, None),
    ("up_13x29_40x24", "scene", 2, 13, 29, 40, 24, 3, None),
    ("bilinear_37x23_16x16", "noise", 1, 37, 23, 16, 16, 2, None),
    ("bilinear_13x29_40x24", "scene", 2, 13, 29, 40, 24, 2, None),
    ("one_1x1_5x3", "noise", 3, 1, 1, 5, 3, 3, None),
    ("row_7x1_1x9", "noise", 4, 7, 1, 1, 9, 3, None),
    ("col_1x9_4x1", "noise", 5, 1, 9, 4, 1, 3, None),
    ("same_5x5_5x5", "noise", 6, 5, 5, 5, 5, 3, None),
    ("vonly_64x48_64x20", "scene", 7, 64, 48, 64, 20, 3, None),
    ("honly_64x48_20x48", "scene", 8, 64, 48, 20, 48, 3, None),
    ("bigdown_200x150_7x5", "scene", 9, 200, 150, 7, 5, 3, None),
    ("tiny_2x2_768x768", "noise", 10, 2, 2, 768, 768, 3, [0, 1, 383, 384, 767]),
    ("florence_300x200_768x768", "scene", 11, 300, 200, 768, 768, 3, [0, 1, 97, 383, 500, 766, 767]),
    ("camera_1280x720_768x768", "scene", 12, 1280, 720, 768, 768, 3, [0, 5, 359, 767]),
    # Pillow 13's pass order: vertical first only when the height shrinks by more than 2x the width's shrink.
    ("order_hfirst_40x30_30x10", "noise", 13, 40, 30, 30, 10, 3, None),
    ("order_vfirst_40x30_35x10", "noise", 14, 40, 30, 35, 10, 3, None),
]

MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]


def normalize(u8):
    """transformers `rescale` then `normalize` (image_transforms.py), channels-last."""
    x = (u8.astype(np.float64) * (1 / 255)).astype(np.float32)
    return (x - np.array(MEAN, dtype=np.float32)) / np.array(STD, dtype=np.float32)


def resize_goldens():
    os.makedirs(F2, exist_ok=True)
    manifest = {"pillow": PIL.__version__, "numpy": np.__version__, "cases": []}
    for name, kind, seed, w, h, ow, oh, flt, rows in RESIZE_CASES:
        src = picture(kind, w, h, seed)
        out = np.array(Image.fromarray(src, "RGB").resize((ow, oh), flt))
        entry = {"name": name, "kind": kind, "seed": seed, "width": w, "height": h, "out_width": ow,
                 "out_height": oh, "filter": flt, "fnv1a64": fnv1a64_fast(out)}
        if rows is None:
            np.save(os.path.join(F2, name + ".npy"), out)
            if w * h <= 64 * 64:
                np.save(os.path.join(F2, name + ".input.npy"), src)  # lets the test check its generator
        else:
            entry["rows"] = rows
            np.save(os.path.join(F2, name + ".rows.npy"), out[rows])
        manifest["cases"].append(entry)
    # Seeded random size pairs (1..60 each way, both filters), checked by whole-output hash.
    rng = np.random.RandomState(20261201)
    pairs = []
    for i in range(80):
        w, h, ow, oh = (int(v) for v in rng.randint(1, 61, size=4))
        flt = 3 if i % 4 else 2
        src = picture("noise", w, h, 1000 + i)
        out = np.array(Image.fromarray(src, "RGB").resize((ow, oh), flt))
        pairs.append({"width": w, "height": h, "out_width": ow, "out_height": oh, "filter": flt, "seed": 1000 + i,
                      "fnv1a64": fnv1a64_fast(out)})
    manifest["random_pairs"] = pairs
    # The processor's fp32 output: one whole small image, rows of the Florence-sized one.
    src = picture("noise", 37, 23, 1)
    out = np.array(Image.fromarray(src, "RGB").resize((16, 16), Image.BICUBIC))
    np.save(os.path.join(F2, "processed_37x23_16x16.npy"), normalize(out).astype(np.float32))
    src = picture("scene", 300, 200, 11)
    out = np.array(Image.fromarray(src, "RGB").resize((768, 768), Image.BICUBIC))
    rows = [0, 383, 767]
    np.save(os.path.join(F2, "processed_300x200_768x768.rows.npy"), normalize(out[rows]).astype(np.float32))
    manifest["processed_rows"] = rows
    with open(os.path.join(F2, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)


# MARK: - PNG writer (for what Pillow cannot save: 16-bit RGB, 2/4-bit gray, Adam7)


def png_chunk(tag, data):
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def filter_row(ftype, row, prev, bpp):
    out = bytearray(len(row))
    for i in range(len(row)):
        a = row[i - bpp] if i >= bpp else 0
        b = prev[i] if prev is not None else 0
        c = prev[i - bpp] if (prev is not None and i >= bpp) else 0
        if ftype == 0:
            p = 0
        elif ftype == 1:
            p = a
        elif ftype == 2:
            p = b
        elif ftype == 3:
            p = (a + b) // 2
        else:
            pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
            p = a if (pa <= pb and pa <= pc) else (b if pb <= pc else c)
        out[i] = (row[i] - p) & 0xFF
    return bytes([ftype]) + bytes(out)


def pack_rows(samples, bitdepth):
    """samples [h, w·channels] ints → packed scanline bytes per row."""
    rows = []
    for r in samples:
        if bitdepth == 16:
            rows.append(b"".join(struct.pack(">H", int(v)) for v in r))
        elif bitdepth == 8:
            rows.append(bytes(int(v) for v in r))
        else:
            per = 8 // bitdepth
            bs = bytearray()
            for i in range(0, len(r), per):
                byte = 0
                for j in range(per):
                    v = int(r[i + j]) if i + j < len(r) else 0
                    byte |= v << (8 - bitdepth * (j + 1))
                bs.append(byte)
            rows.append(bytes(bs))
    return rows


def write_png(path, samples, w, h, bitdepth, ctype, channels, extra=b"", interlace=False):
    bpp = max(1, channels * bitdepth // 8)
    raw = b""
    if not interlace:
        passes = [(samples, w, h)]
    else:
        passes = []
        for x0, y0, dx, dy in [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]:
            sub = samples.reshape(h, w, channels)[y0::dy, x0::dx]
            if sub.size:
                passes.append((sub.reshape(sub.shape[0], -1), sub.shape[1], sub.shape[0]))
    n = 0
    for sub, sw, sh in passes:
        prev = None
        for row in pack_rows(sub, bitdepth):
            raw += filter_row(n % 5, row, prev, bpp)
            prev = row
            n += 1
    ihdr = struct.pack(">IIBBBBB", w, h, bitdepth, ctype, 0, 0, 1 if interlace else 0)
    data = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + extra + png_chunk(b"IDAT", zlib.compress(raw, 9)) + png_chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(data)


# MARK: - Capture fixtures


def capture_fixtures():
    for d in ("jpeg", "png", "ppm", "expected"):
        os.makedirs(os.path.join(CAP, d), exist_ok=True)
    rgb = picture("scene", 19, 13, 21)
    rgba = np.concatenate([rgb, lcg_bytes(19 * 13, 22).reshape(13, 19, 1)], axis=2)
    gray = rgb[..., 1].copy()
    files = []

    def save(sub, name, fn):
        path = os.path.join(CAP, sub, name)
        fn(path)
        files.append((sub, name))

    # JPEG (Pillow's bundled libjpeg-turbo)
    im = Image.fromarray(rgb, "RGB")
    save("jpeg", "rgb420_q90.jpg", lambda p: im.save(p, quality=90))
    save("jpeg", "rgb444_q95.jpg", lambda p: im.save(p, quality=95, subsampling=0))
    save("jpeg", "progressive.jpg", lambda p: im.save(p, quality=85, progressive=True))
    save("jpeg", "gray.jpg", lambda p: Image.fromarray(gray, "L").save(p, quality=90))
    save("jpeg", "cmyk.jpg", lambda p: Image.fromarray(rgba, "CMYK").save(p, quality=92))
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90° CW to display; Pillow ignores it on open
    save("jpeg", "exif_orientation6.jpg", lambda p: im.save(p, quality=90, exif=exif))
    # PNG: Pillow's writer where it can, ours for the rest
    save("png", "rgb8.png", lambda p: im.save(p))
    save("png", "rgba8.png", lambda p: Image.fromarray(rgba, "RGBA").save(p))
    save("png", "gray8.png", lambda p: Image.fromarray(gray, "L").save(p))
    save("png", "ga8.png", lambda p: Image.fromarray(np.stack([gray, rgba[..., 3]], axis=2), "LA").save(p))
    pal = Image.fromarray(rgb, "RGB").quantize(colors=13)
    save("png", "palette8_trns.png", lambda p: pal.save(p, transparency=2))
    save("png", "gray1.png", lambda p: Image.fromarray(gray > 128).save(p))
    # Even rows stay below 256 (kept as is), odd rows span 0..65535 (Pillow clips them to 255).
    g16 = np.where((np.arange(13) % 2 == 0)[:, None], gray.astype(np.uint16), gray.astype(np.uint16) * 257)
    save("png", "gray16.png", lambda p: Image.fromarray(g16.astype(np.uint16)).save(p))
    rgb16 = rgb.astype(np.uint16) * 257 + lcg_bytes(19 * 13 * 3, 23).reshape(13, 19, 3) % 200
    save("png", "rgb16.png", lambda p: write_png(p, rgb16.reshape(13, -1), 19, 13, 16, 2, 3))
    rgba16 = rgba.astype(np.uint16) * 257
    save("png", "rgba16.png", lambda p: write_png(p, rgba16.reshape(13, -1), 19, 13, 16, 6, 4))
    ga16 = np.stack([gray, rgba[..., 3]], axis=2).astype(np.uint16) * 256 + 17
    save("png", "ga16.png", lambda p: write_png(p, ga16.reshape(13, -1), 19, 13, 16, 4, 2))
    save("png", "gray2.png", lambda p: write_png(p, (gray >> 6).reshape(13, -1), 19, 13, 2, 0, 1))
    save("png", "gray4.png", lambda p: write_png(p, (gray >> 4).reshape(13, -1), 19, 13, 4, 0, 1))
    plte = png_chunk(b"PLTE", bytes(lcg_bytes(16 * 3, 24)))
    save("png", "palette4.png", lambda p: write_png(p, (gray >> 4).reshape(13, -1), 19, 13, 4, 3, 1, extra=plte))
    save("png", "rgb8_adam7.png", lambda p: write_png(p, rgb.reshape(13, -1), 19, 13, 8, 2, 3, interlace=True))
    save("png", "rgba16_adam7.png", lambda p: write_png(p, rgba16.reshape(13, -1), 19, 13, 16, 6, 4, interlace=True))
    # PPM / PGM
    def pnm(path, magic, maxval, samples, header_comment=False):
        w = samples.shape[1]
        h = samples.shape[0]
        head = magic + b"\n" + (b"# made by goldens_image.py\n" if header_comment else b"")
        head += b"%d %d\n%d\n" % (w, h, maxval)
        body = samples.astype(">u2").tobytes() if maxval > 255 else samples.astype(np.uint8).tobytes()
        with open(path, "wb") as f:
            f.write(head + body)

    save("ppm", "p6_255.ppm", lambda p: pnm(p, b"P6", 255, rgb, header_comment=True))
    save("ppm", "p6_100.ppm", lambda p: pnm(p, b"P6", 100, rgb.astype(np.int64) * 100 // 255))
    save("ppm", "p6_1000.ppm", lambda p: pnm(p, b"P6", 1000, rgb.astype(np.int64) * 1000 // 255 + 1))
    save("ppm", "p5_255.pgm", lambda p: pnm(p, b"P5", 255, gray))
    save("ppm", "p5_15.pgm", lambda p: pnm(p, b"P5", 15, gray >> 4))
    save("ppm", "p5_1000.pgm", lambda p: pnm(p, b"P5", 1000, gray.astype(np.int64) * 4))
    save("ppm", "p5_65535.pgm", lambda p: pnm(p, b"P5", 65535, gray.astype(np.int64) * 3))
    index = []
    for sub, name in files:
        path = os.path.join(CAP, sub, name)
        with Image.open(path) as im2:
            mode = im2.mode
            arr = np.array(im2.convert("RGB"))
        np.save(os.path.join(CAP, "expected", name + ".npy"), arr)
        index.append({"file": sub + "/" + name, "mode": mode, "width": arr.shape[1], "height": arr.shape[0]})
    # What the JPEG snapshot encoder is checked against: the input it encodes.
    with open(os.path.join(CAP, "index.json"), "w") as f:
        json.dump({"pillow": PIL.__version__, "numpy": np.__version__, "files": index}, f, indent=1)


if __name__ == "__main__":
    resize_goldens()
    capture_fixtures()
    print("wrote", F2, "and", CAP)
