#!/usr/bin/env python3
"""Goldens for the attention cores (Sources/Compute/Attention.swift, KVCache.swift).

Mirrors, in float64 numpy, the attention math of transformers 5.23.0 Florence-2 / BART:
Florence2VisionWindowAttention and Florence2VisionChannelAttention between qkv and proj, and BART
`eager_attention_forward` (bidirectional, causal, and decoding with a KV cache reordered by beam
search). Inputs are drawn seeded, rounded to float32, and the math runs in float64 on those float32
values; outputs are stored float32.

Usage (from the repository root):
    python3 Quantization/goldens_attention.py Tests/ComputeTests/Fixtures/attention
"""
import os
import sys

import numpy as np

SEED = 20261201


def softmax(x):
    x = x - x.max(axis=-1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=-1, keepdims=True)


def window_attention(qkv, heads):
    """qkv [nWin, T, 3C] laid out [3][heads][hd] -> [nWin, T, C]."""
    nwin, t, c3 = qkv.shape
    c = c3 // 3
    hd = c // heads
    x = qkv.reshape(nwin, t, 3, heads, hd).transpose(2, 0, 3, 1, 4)  # [3, nWin, H, T, hd]
    q, k, v = x[0], x[1], x[2]
    a = softmax(q @ k.transpose(0, 1, 3, 2) * hd ** -0.5)
    o = a @ v  # [nWin, H, T, hd]
    return o.transpose(0, 2, 1, 3).reshape(nwin, t, c)


def channel_attention(qkv, groups):
    """qkv [N, 3C] laid out (3, G, C/G) -> [N, C], as Microsoft's ChannelAttention."""
    n, c3 = qkv.shape
    c = c3 // 3
    x = qkv.reshape(n, 3, groups, c // groups).transpose(1, 2, 0, 3)  # [3, G, N, cg]
    q, k, v = x[0], x[1], x[2]
    q = q * n ** -0.5
    a = softmax(q.transpose(0, 2, 1) @ k)  # [G, cg, cg]
    o = (a @ v.transpose(0, 2, 1)).transpose(0, 2, 1)  # [G, N, cg]
    return o.transpose(1, 0, 2).reshape(n, c)


def mha(q, k, v, heads, causal):
    """q [Tq, d], k, v [Tk, d] -> [Tq, d]; causal: query i sees keys 0..i + (Tk - Tq)."""
    tq, d = q.shape
    tk = k.shape[0]
    hd = d // heads
    qh = q.reshape(tq, heads, hd).transpose(1, 0, 2)
    kh = k.reshape(tk, heads, hd).transpose(1, 0, 2)
    vh = v.reshape(tk, heads, hd).transpose(1, 0, 2)
    s = qh @ kh.transpose(0, 2, 1) * hd ** -0.5
    if causal:
        off = tk - tq
        allowed = np.arange(tk)[None, :] <= (np.arange(tq)[:, None] + off)
        s = np.where(allowed[None], s, -np.inf)
    return (softmax(s) @ vh).transpose(1, 0, 2).reshape(tq, d)


def f32(rng, *shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def main(out_dir):
    os.makedirs(out_dir, exist_ok=True)
    rng = np.random.default_rng(SEED)
    files = {}

    # Window attention: 3 windows of 16 tokens, C = 16, 2 heads (head_dim 8).
    qkv = f32(rng, 3, 16, 48, scale=1.5)
    files["window_qkv"] = qkv
    files["window_out"] = window_attention(qkv.astype(np.float64), heads=2)

    # Channel attention: N = 37 tokens, C = 16, G = 2 groups (8 channels each).
    qkv = f32(rng, 37, 48, scale=1.5)
    files["channel_qkv"] = qkv
    files["channel_out"] = channel_attention(qkv.astype(np.float64), groups=2)

    # BART attention, d = 32, 4 heads: bidirectional with Tq != Tk (cross-attention shape), and
    # causal prefill of 5 queries after 7 cached positions (Tk = 12).
    q, k, v = f32(rng, 9, 32, scale=1.5), f32(rng, 13, 32, scale=1.5), f32(rng, 13, 32)
    files["mha_q"], files["mha_k"], files["mha_v"] = q, k, v
    files["mha_out"] = mha(*(a.astype(np.float64) for a in (q, k, v)), heads=4, causal=False)
    q, k, v = f32(rng, 5, 32, scale=1.5), f32(rng, 12, 32, scale=1.5), f32(rng, 12, 32)
    files["causal_q"], files["causal_k"], files["causal_v"] = q, k, v
    files["causal_out"] = mha(*(a.astype(np.float64) for a in (q, k, v)), heads=4, causal=True)

    # Decoding with a KV cache: 3 rows (beams), d = 32, 4 heads, 7 steps. After step t the rows
    # are reordered by sources[t] (-1 padded; all -1 = no reorder): repeats, a drop to 2 rows,
    # a swap (a cycle) and a merge.
    steps, rows0, d, heads = 7, 3, 32, 4
    sources = np.full((steps, rows0), -1, dtype=np.int32)
    sources[1, :3] = [2, 0, 0]
    sources[3, :2] = [1, 2]
    sources[4, :2] = [1, 0]
    sources[5, :2] = [0, 0]
    dq, dk, dv = f32(rng, steps, rows0, d, scale=1.5), f32(rng, steps, rows0, d, scale=1.5), f32(rng, steps, rows0, d)
    dout = np.zeros((steps, rows0, d))
    rows = rows0
    hist = [[] for _ in range(rows)]  # per row: list of (step, slot) whose q/k/v made each position
    for t in range(steps):
        for r in range(rows):
            hist[r].append((t, r))
            ks = np.stack([dk[s, j] for s, j in hist[r]]).astype(np.float64)
            vs = np.stack([dv[s, j] for s, j in hist[r]]).astype(np.float64)
            dout[t, r] = mha(dq[t, r][None].astype(np.float64), ks, vs, heads, causal=False)[0]
        src = [int(s) for s in sources[t] if s >= 0]
        if src:
            hist = [list(hist[s]) for s in src]
            rows = len(src)
    # Self-check: each final row's step outputs equal full causal attention over its lineage.
    lineage_q, lineage_k, lineage_v, lineage_out = [], [], [], []
    for r in range(rows):
        lq = np.stack([dq[s, j] for s, j in hist[r]])
        lk = np.stack([dk[s, j] for s, j in hist[r]])
        lv = np.stack([dv[s, j] for s, j in hist[r]])
        full = mha(lq.astype(np.float64), lk.astype(np.float64), lv.astype(np.float64), heads, causal=True)
        steps_out = np.stack([dout[s, j] for s, j in hist[r]])
        assert np.abs(full - steps_out).max() < 1e-12, "incremental decode differs from full causal attention"
        lineage_q.append(lq), lineage_k.append(lk), lineage_v.append(lv), lineage_out.append(full)
    files["decode_q"], files["decode_k"], files["decode_v"] = dq, dk, dv
    files["decode_sources"] = sources
    files["decode_out"] = dout
    files["decode_lineage_q"] = np.stack(lineage_q)  # [finalRows, steps, d]
    files["decode_lineage_k"] = np.stack(lineage_k)
    files["decode_lineage_v"] = np.stack(lineage_v)
    files["decode_lineage_out"] = np.stack(lineage_out)

    total = 0
    for name, a in files.items():
        a = np.ascontiguousarray(a if a.dtype == np.int32 else a.astype(np.float32))
        path = os.path.join(out_dir, name + ".npy")
        np.save(path, a)
        total += os.path.getsize(path)
    print(f"wrote {len(files)} files, {total} bytes, to {out_dir} (numpy {np.__version__}, seed {SEED})")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "Tests/ComputeTests/Fixtures/attention")
