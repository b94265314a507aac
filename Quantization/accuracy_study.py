# int8 accuracy study (issue #3): converts int8 candidates of one checkpoint (each keeping the
# linears that match a --keep-fp32 regex at fp32, and giving those that match a --residual regex a
# second int8 level), runs `ocellus bench accuracy` for each against
# the fp32 file on a fixed image set x <CAPTION>,<OD>,<OCR> x N teacher-forced tokens, and prints
# pooled top-1 agreement with a bootstrap 95 % interval over cases, the paired difference against
# the first candidate (same cases, same fp32 token sequences) and the per-stage NMSE.
#
# Usage: python Quantization/accuracy_study.py HF_DIR FP32.gguf --ocellus PATH/TO/ocellus \
#            --work DIR [--tokens 40] [--threads 2] [--images IMG...] \
#            --candidate NAME=KEEP[@RESIDUAL] ...   (KEEP: --keep-fp32, '' = none; RESIDUAL: --residual,
#                                                    '' = none, absent = convert.py's default)
#        python Quantization/accuracy_study.py --report DIR [--base NAME]   (the table from DIR/res/*.json)
# Writes DIR/img/*.png (deterministic test images, plus any --images), DIR/NAME.gguf,
# DIR/res/NAME.json (the bench output). Existing files are reused, so a study can be resumed.
import argparse
import glob
import json
import os
import shutil
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
TEST_IMAGE = os.path.join(HERE, "..", "Tests", "Florence2Tests", "Fixtures", "test-image.png")
TASKS = "<CAPTION>,<OD>,<OCR>"


def make_images(out):
    """The committed test image and seven deterministic synthetic ones (sizes and aspect ratios vary)."""
    from PIL import Image, ImageDraw, ImageFilter, ImageFont
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(123)
    shutil.copy(TEST_IMAGE, os.path.join(out, "00-test-image.png"))
    W, H = 640, 480
    x = np.linspace(0, 1, W)[None, :, None]
    y = np.linspace(0, 1, H)[:, None, None]
    g = np.concatenate([np.broadcast_to(x, (H, W, 1)), np.broadcast_to(y, (H, W, 1)), np.broadcast_to(1 - x * y, (H, W, 1))], 2)
    Image.fromarray((g * 255).astype(np.uint8)).save(os.path.join(out, "01-gradient.png"))
    im = Image.new("RGB", (800, 600), (230, 230, 220))
    d = ImageDraw.Draw(im)
    for i in range(12):
        x0, y0 = rng.integers(0, 700), rng.integers(0, 500)
        s = rng.integers(30, 150)
        col = tuple(int(c) for c in rng.integers(0, 255, 3))
        [d.rectangle, d.ellipse][i % 2]([x0, y0, x0 + s, y0 + s], fill=col, outline=(0, 0, 0), width=3)
    im.save(os.path.join(out, "02-shapes.png"))
    Image.fromarray(rng.integers(0, 256, (512, 512, 3), dtype=np.uint8)).save(os.path.join(out, "03-noise.png"))
    im = Image.new("RGB", (768, 384), "white")
    d = ImageDraw.Draw(im)
    try:
        f = ImageFont.load_default(size=40)
    except TypeError:
        f = ImageFont.load_default()
    for i, t in enumerate(["OCELLUS EDGE 2026", "int8 vs fp32 test", "Florence-2 base", "STOP  EXIT  42"]):
        d.text((20, 20 + i * 90), t, fill=(0, 0, 0), font=f)
    im.save(os.path.join(out, "04-text.png"))
    c = ((np.indices((600, 900)) // 50).sum(0) % 2 * 255).astype(np.uint8)
    Image.fromarray(np.stack([c, 255 - c, c // 2], 2)).save(os.path.join(out, "05-checker.png"))
    a = rng.normal(0, 1, (96, 128, 3))
    im = Image.fromarray(((a - a.min()) / (a.max() - a.min()) * 255).astype(np.uint8)).resize((1024, 768), Image.BICUBIC)
    im.filter(ImageFilter.GaussianBlur(8)).save(os.path.join(out, "06-blobs.jpg"), quality=90)
    im = Image.new("RGB", (400, 700), (20, 40, 80))
    d = ImageDraw.Draw(im)
    for i in range(0, 700, 35):
        d.rectangle([0, i, 400, i + 15], fill=(200, 120, 40))
    for i in range(6):
        d.ellipse([50 + i * 20, 100 + i * 80, 150 + i * 20, 200 + i * 80], fill=(250, 250, 250))
    im.save(os.path.join(out, "07-stripes.png"))


def report(work, base_name=None, boot=10000):
    res = {}
    for p in sorted(glob.glob(os.path.join(work, "res", "*.json"))):
        try:
            res[os.path.basename(p)[:-5]] = json.load(open(p))
        except ValueError:  # a run still writing (or failed)
            print(f"skipped {p}: not JSON", file=sys.stderr)
    if not res:
        sys.exit(f"no results in {work}/res")
    order = json.load(open(os.path.join(work, "order.json"))) if os.path.exists(os.path.join(work, "order.json")) else sorted(res)
    order = [n for n in order if n in res]
    base = res[base_name or order[0]]
    rng = np.random.default_rng(0)
    print(f"{'candidate':<12} {'MB':>5} {'pos':>5} {'top1 %':>6} {'95 % CI':>13} {'paired diff (95 % CI)':>23} "
          f"{'logits':>8} {'encoder':>8} {'project':>8} {'stage2':>8} {'stage3':>8}")
    bkey = {(c["image"], c["task"]): c["top1_agreement"] * c["positions"] for c in base["cases"]}
    for name in order:
        j = res[name]
        cases = j["cases"]
        hits = np.array([c["top1_agreement"] * c["positions"] for c in cases])
        n = np.array([c["positions"] for c in cases])
        idx = rng.integers(0, len(cases), (boot, len(cases)))
        lo, hi = np.percentile(hits[idx].sum(1) / n[idx].sum(1), [2.5, 97.5])
        diff = np.array([h - bkey[(c["image"], c["task"])] for h, c in zip(hits, cases)])
        dl, dh = np.percentile(diff[idx].sum(1) / n[idx].sum(1), [2.5, 97.5])
        mb = f"{os.path.getsize(j['model']) / 1e6:.0f}" if os.path.exists(j["model"]) else "?"
        print(f"{name:<12} {mb:>5} {int(n.sum()):>5} {j['top1_agreement'] * 100:6.1f} ({lo * 100:5.1f},{hi * 100:5.1f}) "
              f"{diff.sum() / n.sum() * 100:+6.1f} ({dl * 100:+5.1f},{dh * 100:+5.1f}) "
              f"{j['nmse_logits']:8.2e} {j['nmse_encoder']:8.2e} {j['nmse_projector']:8.2e} {j['nmse_stage2']:8.2e} {j['nmse_stage3']:8.2e}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("hf_dir", nargs="?")
    ap.add_argument("fp32", nargs="?")
    ap.add_argument("--ocellus")
    ap.add_argument("--work", required=False)
    ap.add_argument("--tokens", type=int, default=40)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--images", nargs="*", default=[])
    ap.add_argument("--candidate", action="append", default=[], metavar="NAME=KEEP[@RESIDUAL]")
    ap.add_argument("--report", metavar="DIR")
    ap.add_argument("--base", metavar="NAME", help="with --report: the candidate the paired differences refer to")
    a = ap.parse_args()
    if a.report:
        report(a.report, a.base)
        return
    if not (a.hf_dir and a.fp32 and a.ocellus and a.work and a.candidate):
        ap.error("HF_DIR, FP32.gguf, --ocellus, --work and at least one --candidate are needed")
    img = os.path.join(a.work, "img")
    if not os.path.isdir(img):
        make_images(img)
        for p in a.images:
            shutil.copy(p, img)
    images = sorted(glob.glob(os.path.join(img, "*")))
    os.makedirs(os.path.join(a.work, "res"), exist_ok=True)
    names = []
    for cand in a.candidate:
        name, _, spec = cand.partition("=")
        regex, at, residual = spec.partition("@")
        names.append(name)
        model = os.path.join(a.work, name + ".gguf")
        if not os.path.exists(model):
            cmd = [sys.executable, os.path.join(HERE, "convert.py"), a.hf_dir, model, "--precision", "int8", "--keep-fp32", regex]
            if at:
                cmd += ["--residual", residual]
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        out = os.path.join(a.work, "res", name + ".json")
        if not os.path.exists(out):
            r = subprocess.run([a.ocellus, "bench", "accuracy", "--model", model, "--reference", a.fp32, "--task", TASKS,
                                "--tokens", str(a.tokens), "--threads", str(a.threads), *images],
                               check=True, capture_output=True, text=True)
            with open(out, "w") as f:
                f.write(r.stdout)
        print(f"done {name}", file=sys.stderr)
    json.dump(names, open(os.path.join(a.work, "order.json"), "w"))
    report(a.work)


if __name__ == "__main__":
    main()
