#!/usr/bin/env python3
"""Goldens for the fp32 ops in Sources/Compute/Ops.swift (mirrors torch.nn.LayerNorm, nn.GELU,
torch.softmax, nn.Conv2d dense and depthwise, DaViT window partition and the spatial average pool).

Small seeded random inputs (float32) and references computed in float64 from exactly those
float32 values, then stored as float32, channels-last like the engine ([H, W, C], [T, C]);
weights in PyTorch order. Needs numpy and scipy (no torch).

    python3 Quantization/goldens_ops.py [--out Tests/ComputeTests/Fixtures/ops]
"""
import argparse
import os

import numpy as np
from scipy.special import erf

SEED = 20261201


# MARK: - References (float64)

def layer_norm(x, w, b, eps):
    x = x.astype(np.float64)
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)  # biased, like torch.nn.LayerNorm
    return (x - mean) / np.sqrt(var + eps) * w.astype(np.float64) + b.astype(np.float64)


def gelu(x):
    x = x.astype(np.float64)
    return 0.5 * x * (1.0 + erf(x / np.sqrt(2.0)))


def softmax(x):
    x = x.astype(np.float64)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def conv2d_hwc(x, w, b, stride, pad):
    """x [H, W, Cin], w [Cout, Cin, k, k], b [Cout] -> [Ho, Wo, Cout]; zero padding."""
    x = x.astype(np.float64)
    w = w.astype(np.float64)
    h, wd, cin = x.shape
    cout, _, k, _ = w.shape
    xp = np.zeros((h + 2 * pad, wd + 2 * pad, cin))
    xp[pad:pad + h, pad:pad + wd] = x
    ho = (h + 2 * pad - k) // stride + 1
    wo = (wd + 2 * pad - k) // stride + 1
    out = np.zeros((ho, wo, cout))
    for oy in range(ho):
        for ox in range(wo):
            patch = xp[oy * stride:oy * stride + k, ox * stride:ox * stride + k, :]  # [k, k, Cin]
            out[oy, ox] = np.einsum("yxc,ocyx->o", patch, w)
    return out + b.astype(np.float64)


def depthwise3x3_hwc(x, w, b, residual):
    """x [H, W, C], w [C, 1, 3, 3], b [C]; stride 1, pad 1; optional residual x + dw(x)."""
    x64 = x.astype(np.float64)
    h, wd, c = x.shape
    xp = np.zeros((h + 2, wd + 2, c))
    xp[1:1 + h, 1:1 + wd] = x64
    out = np.zeros((h, wd, c)) + b.astype(np.float64)
    for ky in range(3):
        for kx in range(3):
            out += xp[ky:ky + h, kx:kx + wd, :] * w[:, 0, ky, kx].astype(np.float64)
    return out + x64 if residual else out


def window_partition_hwc(x, ws):
    """x [H, W, C] -> [nWin, ws*ws, C], zero pad right/bottom, (row-block, col-block) order."""
    h, wd, c = x.shape
    pad_r = (ws - wd % ws) % ws
    pad_b = (ws - h % ws) % ws
    xp = np.pad(x, ((0, pad_b), (0, pad_r), (0, 0)))
    hp, wp = xp.shape[:2]
    v = xp.reshape(hp // ws, ws, wp // ws, ws, c).transpose(0, 2, 1, 3, 4)
    return v.reshape(-1, ws * ws, c)


# MARK: - Writing

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "Tests", "ComputeTests", "Fixtures", "ops"))
    out_dir = ap.parse_args().out
    os.makedirs(out_dir, exist_ok=True)
    rng = np.random.default_rng(SEED)
    f32 = lambda a: np.ascontiguousarray(a, dtype=np.float32)

    def save(name, a):
        np.save(os.path.join(out_dir, name + ".npy"), f32(a))

    # Layer norm: 7 rows of 40 (not a multiple of 16: exercises the tail), offset and scaled.
    x = f32(rng.standard_normal((7, 40)) * 3.0 + 1.5)
    w = f32(rng.standard_normal(40) * 0.5 + 1.0)
    b = f32(rng.standard_normal(40) * 0.2)
    save("layernorm_x", x); save("layernorm_w", w); save("layernorm_b", b)
    save("layernorm_y", layer_norm(x, w, b, 1e-5))

    # GELU: a dense grid over [-12, 12] plus random values.
    x = f32(np.concatenate([np.linspace(-12, 12, 1201), rng.standard_normal(799) * 4.0]))
    save("gelu_x", x); save("gelu_y", gelu(x))

    # Softmax: 6 rows of 37; one row with a large common offset, one with a -inf entry.
    x = f32(rng.standard_normal((6, 37)) * 5.0)
    x[2] += 80.0
    x[4, 7] = -np.inf
    save("softmax_x", x); save("softmax_y", softmax(x))

    # Conv 7x7 stride 4 pad 3 (Florence-2 stage-0 stem): 29x31x3 -> 8x8x8.
    x = f32(rng.standard_normal((29, 31, 3)))
    w = f32(rng.standard_normal((8, 3, 7, 7)) * 0.1)
    b = f32(rng.standard_normal(8) * 0.1)
    save("conv7_x", x); save("conv7_w", w); save("conv7_b", b)
    save("conv7_y", conv2d_hwc(x, w, b, 4, 3))

    # Conv 3x3 stride 2 pad 1 (stage downsampling), odd sizes: 11x13x6 -> 6x7x12.
    x = f32(rng.standard_normal((11, 13, 6)))
    w = f32(rng.standard_normal((12, 6, 3, 3)) * 0.2)
    b = f32(rng.standard_normal(12) * 0.1)
    save("conv3_x", x); save("conv3_w", w); save("conv3_b", b)
    save("conv3_y", conv2d_hwc(x, w, b, 2, 1))

    # Depthwise 3x3 with residual (ConvPosEnc): 9x11x20.
    x = f32(rng.standard_normal((9, 11, 20)))
    w = f32(rng.standard_normal((20, 1, 3, 3)) * 0.3)
    b = f32(rng.standard_normal(20) * 0.1)
    save("dwconv_x", x); save("dwconv_w", w); save("dwconv_b", b)
    save("dwconv_y", depthwise3x3_hwc(x, w, b, residual=True))

    # Window partition with padding: 13x17x5, ws 6 -> 9 windows of 36 tokens.
    x = f32(rng.standard_normal((13, 17, 5)))
    save("window_x", x); save("window_y", window_partition_hwc(x, 6))

    # Spatial average pool: mean over 50 tokens of 24 channels.
    x = f32(rng.standard_normal((50, 24)) + 0.5)
    save("meanrows_x", x); save("meanrows_y", x.astype(np.float64).mean(axis=0))

    print("wrote", len(os.listdir(out_dir)), "files to", os.path.abspath(out_dir), "numpy", np.__version__)


if __name__ == "__main__":
    main()
