# Self-checks of convert.py against independent readings of its output (PyPI gguf's GGUFReader)
# and a Microsoft-layout copy of a checkpoint.
#
# Usage: python Quantization/test_convert.py HF_DIR   (e.g. /work/models/fixtures-hf/tiny-rect,
#   written by make_fixtures.py). Exits non-zero on the first failed check.
# Checks:
#   1. fp32 output: every tensor equals the checkpoint tensor it came from (by FORMAT.md name).
#   2. int8 output: qweight unpacked with FORMAT.md's byte formula, times scale, is within
#      scale/2 of the fp32 weight; rows past N are zero; scale = amax/127; the linears the default
#      --residual names (text encoder, decoder self-attention and FFN) also carry qresidual/rscale, and q*scale + r*rscale is
#      within rscale/2 of the weight.
#   3. The same checkpoint rewritten with Microsoft remote-code key names (image_projection
#      transposed, tied copies of the embedding, zero final_logits_bias, Microsoft config fields,
#      preprocessor_config.json, vocab.json + merges.txt) converts to identical tensors and metadata.
#      Also: 51289 embedding rows, a float16 pytorch_model.bin, sharded safetensors.
#   4. Refusals: an unknown key, an untied lm_head, a too-strict error threshold (exit 1, no file).
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import gguf

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import convert  # noqa: E402


def fail(msg):
    sys.exit(f"FAIL: {msg}")


def read_gguf(path):
    r = gguf.GGUFReader(path)
    tensors = {t.name: np.array(t.data) for t in r.tensors}
    meta = {}
    for k, f in r.fields.items():
        if k.startswith("GGUF.") or k == "general.name":
            continue
        meta[k] = ([gguf.GGUFValueType(t).name for t in f.types], f.contents())
    return tensors, meta


def run_convert(hf, out, prec, extra=()):
    return subprocess.run([sys.executable, os.path.join(HERE, "convert.py"), hf, out, "--precision", prec, *extra],
                          capture_output=True, text=True)


# MARK: - Microsoft layout


def hf_to_ms_key(k):
    """The inverse of transformers' conversion mapping (for the test only)."""
    import re
    rules = [
        (r"^model\.vision_tower\.convs\.(\d+)\.conv\.", r"vision_tower.convs.\1.proj."),
        (r"^model\.vision_tower\.convs\.(\d+)\.norm\.", r"vision_tower.convs.\1.norm."),
        (r"^model\.vision_tower\.blocks\.(\d+)\.(\d+)\.(spatial|channel)_block\.conv([12])\.", r"vision_tower.blocks.\1.\2.\3_block.conv\4.fn.dw."),
        (r"^model\.vision_tower\.blocks\.(\d+)\.(\d+)\.spatial_block\.norm1\.", r"vision_tower.blocks.\1.\2.spatial_block.window_attn.norm."),
        (r"^model\.vision_tower\.blocks\.(\d+)\.(\d+)\.channel_block\.norm1\.", r"vision_tower.blocks.\1.\2.channel_block.channel_attn.norm."),
        (r"^model\.vision_tower\.blocks\.(\d+)\.(\d+)\.spatial_block\.window_attn\.", r"vision_tower.blocks.\1.\2.spatial_block.window_attn.fn."),
        (r"^model\.vision_tower\.blocks\.(\d+)\.(\d+)\.channel_block\.channel_attn\.", r"vision_tower.blocks.\1.\2.channel_block.channel_attn.fn."),
        (r"^model\.vision_tower\.blocks\.(\d+)\.(\d+)\.(spatial|channel)_block\.norm2\.", r"vision_tower.blocks.\1.\2.\3_block.ffn.norm."),
        (r"^model\.vision_tower\.blocks\.(\d+)\.(\d+)\.(spatial|channel)_block\.ffn\.", r"vision_tower.blocks.\1.\2.\3_block.ffn.fn.net."),
        (r"^model\.multi_modal_projector\.image_projection\.weight$", r"image_projection"),
        (r"^model\.multi_modal_projector\.image_position_embed\.", r"image_pos_embed."),
        (r"^model\.multi_modal_projector\.", r""),
        (r"^model\.language_model\.", r"language_model.model."),
    ]
    for pat, rep in rules:
        new = re.sub(pat, rep, k)
        if new != k:
            return new
    fail(f"no Microsoft name for {k}")


def write_ms_checkpoint(hf, ms):
    from safetensors.numpy import save_file
    state = convert.load_state_dict(hf)
    out = {}
    for k, v in state.items():
        mk = hf_to_ms_key(k)
        out[mk] = v.T.copy() if mk == "image_projection" else v
    emb = out["language_model.model.shared.weight"]
    out["language_model.model.encoder.embed_tokens.weight"] = emb.copy()
    out["language_model.model.decoder.embed_tokens.weight"] = emb.copy()
    out["language_model.lm_head.weight"] = emb.copy()
    out["language_model.final_logits_bias"] = np.zeros((1, emb.shape[0]), dtype=np.float32)
    save_file(out, os.path.join(ms, "model.safetensors"))
    cfg = json.load(open(os.path.join(hf, "config.json")))
    v = dict(cfg["vision_config"])
    msv = {"model_type": "davit", "dim_embed": v["embed_dim"], "num_heads": v["num_heads"], "num_groups": v["num_groups"],
           "depths": v["depths"], "patch_size": v["patch_size"], "patch_stride": v["patch_stride"],
           "patch_padding": v["patch_padding"], "patch_prenorm": v["patch_prenorm"], "window_size": v["window_size"],
           "projection_dim": v["projection_dim"], "enable_checkpoint": False,
           "image_feature_source": ["spatial_avg_pool", "temporal_avg_pool"],
           "image_pos_embed": {"type": "learned_abs_2d", "max_pos_embeddings": v["max_position_embeddings"]},
           "visual_temporal_embedding": {"type": "COSINE", "max_temporal_embeddings": v["max_temporal_embeddings"]}}
    t = dict(cfg["text_config"])
    gen = json.load(open(os.path.join(hf, "generation_config.json")))
    for k in ("num_beams", "no_repeat_ngram_size", "early_stopping", "forced_bos_token_id"):
        if k in gen:
            t[k] = gen[k]
    t["model_type"] = "florence2_language"
    ms_cfg = {"model_type": "florence2", "architectures": ["Florence2ForConditionalGeneration"],
              "vision_config": msv, "text_config": t, "vocab_size": t["vocab_size"], "is_encoder_decoder": True,
              "image_token_id": cfg["image_token_id"]}
    json.dump(ms_cfg, open(os.path.join(ms, "config.json"), "w"), indent=1)
    shutil.copy(os.path.join(hf, "generation_config.json"), ms)
    proc = json.load(open(os.path.join(hf, "processor_config.json")))
    pre = dict(proc["image_processor"])
    pre["processor_class"] = "Florence2Processor"
    json.dump(pre, open(os.path.join(ms, "preprocessor_config.json"), "w"), indent=1)
    # facebook/bart-large's tokenizer files, as the Microsoft repositories ship them: the
    # Florence-2 tokens are added by the Microsoft processor at run time, not stored.
    for f in ("vocab.json", "merges.txt"):
        shutil.copy(os.path.join(HERE, "tokenizer", f), ms)
    json.dump({"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>", "mask_token": "<mask>",
               "sep_token": "</s>", "cls_token": "<s>", "tokenizer_class": "BartTokenizer"},
              open(os.path.join(ms, "tokenizer_config.json"), "w"))


# MARK: - Checks


def main():
    hf = sys.argv[1]
    tmp = tempfile.mkdtemp(prefix="ocellus-convert-test-")
    try:
        f32, i8 = os.path.join(tmp, "fp32.gguf"), os.path.join(tmp, "int8.gguf")
        for path, prec in ((f32, "fp32"), (i8, "int8")):
            r = run_convert(hf, path, prec)
            if r.returncode != 0:
                fail(f"convert {prec}: {r.stderr}")
        t32, m32 = read_gguf(f32)
        t8, m8 = read_gguf(i8)
        state = convert.load_state_dict(hf)
        cfg, c = convert.read_config(hf)
        # 1. fp32 tensors equal the checkpoint.
        n = 0
        for k, v in state.items():
            name, kind, transpose = convert.rename(k)
            if name is None:
                continue
            gname = name + ".weight" if kind == "linear" else name
            if gname not in t32:
                fail(f"fp32 file lacks {gname}")
            want = v.T if transpose else v
            if t32[gname].shape != want.shape or not np.array_equal(t32[gname], want.astype(np.float32)):
                fail(f"fp32 {gname} differs from checkpoint {k}")
            n += 1
        if n != len(t32):
            fail(f"fp32 file has {len(t32)} tensors, checkpoint gave {n}")
        print(f"ok 1: fp32 file, {n} tensors equal to the checkpoint")
        # 2. int8 tensors decode by FORMAT.md's formula (and residual levels where convert.py's default puts them).
        checked = residuals = 0
        for gname, w in t32.items():
            if convert.CONV_WEIGHT.match(gname):  # stage convolutions: int8 over the flattened patch
                base, w = gname[: -len(".w")], w.reshape(w.shape[0], -1)
            elif gname.endswith(".weight"):
                base = gname[: -len(".weight")]
            else:
                continue
            if base + ".qweight" not in t8:
                conv_default = convert.CONV_WEIGHT.match(gname) is not None  # convs stay fp32 unless --int8-convs
                if not np.array_equal(np.asarray(t8.get(gname)).reshape(w.shape), w) or (w.shape[1] % 4 == 0 and not conv_default):
                    fail(f"{base}: neither int8 nor a legitimate fp32 fallback")
                continue
            q, s = t8[base + ".qweight"].reshape(-1), t8[base + ".scale"]
            N, K = w.shape
            if t8[base + ".qweight"].shape != ((N + 15) // 16, K * 16) or s.shape != (N,):
                fail(f"{base}: qweight/scale shapes {t8[base + '.qweight'].shape} {s.shape}")
            nn, kk = np.meshgrid(np.arange(N), np.arange(K), indexing="ij")
            off = ((nn // 16) * (K // 4) + kk // 4) * 64 + (nn % 16) * 4 + kk % 4
            deq = q[off].astype(np.float32) * s[:, None]
            seen = np.zeros(q.shape, dtype=bool)
            seen[off.reshape(-1)] = True
            if np.any(q[~seen] != 0):
                fail(f"{base}: padding bytes not zero")
            if not np.allclose(s, np.abs(w).max(axis=1) / 127, rtol=1e-6, atol=0):
                fail(f"{base}: scale is not amax/127")
            if np.any(np.abs(deq - w) > s[:, None] * 0.5 * (1 + 1e-5) + 1e-12):
                fail(f"{base}: dequantized weight off by more than half a step")
            wants_residual = re.search(convert.DEFAULT_RESIDUAL, base) is not None
            if wants_residual != (base + ".qresidual" in t8) or (base + ".qresidual" in t8) != (base + ".rscale" in t8):
                fail(f"{base}: residual level present {base + '.qresidual' in t8}, expected {wants_residual}")
            if wants_residual:
                rq, rs = t8[base + ".qresidual"].reshape(-1), t8[base + ".rscale"]
                if t8[base + ".qresidual"].shape != t8[base + ".qweight"].shape or rs.shape != (N,) or np.any(rq[~seen] != 0):
                    fail(f"{base}: qresidual/rscale shapes or padding")
                left = w - deq
                if not np.allclose(rs, np.abs(left).max(axis=1) / 127, rtol=1e-6, atol=0):
                    fail(f"{base}: rscale is not amax(w - q*scale)/127")
                if np.any(np.abs(deq + rq[off].astype(np.float32) * rs[:, None] - w) > rs[:, None] * 0.5 * (1 + 1e-5) + 1e-12):
                    fail(f"{base}: weight with its residual level off by more than half a residual step")
                residuals += 1
            checked += 1
        if residuals == 0:
            fail("no linear has a residual level (convert.py's default --residual names the text encoder and decoder)")
        print(f"ok 2: int8 file, {checked} linears decode by the panel16x4 formula within half a step, "
              f"{residuals} with a residual level within half a residual step")
        if m8["ocellus.precision"][1] != "int8" or m32["ocellus.precision"][1] != "fp32":
            fail("ocellus.precision")
        for k, (types, _) in m32.items():
            if types[0] == "ARRAY" and types[1] == "INT32" and k != "tokenizer.ggml.token_type":
                fail(f"{k} stored as i32 array")
        # 3. Microsoft layout converts identically.
        ms = os.path.join(tmp, "ms")
        os.makedirs(ms)
        write_ms_checkpoint(hf, ms)
        ms32 = os.path.join(tmp, "ms-fp32.gguf")
        r = run_convert(ms, ms32, "fp32")
        if r.returncode != 0:
            fail(f"convert Microsoft layout: {r.stderr}")
        tm, mm = read_gguf(ms32)
        if set(tm) != set(t32) or any(not np.array_equal(tm[k], t32[k]) for k in tm):
            fail("Microsoft layout gives different tensors")
        diff = {k for k in set(mm) | set(m32) if k not in mm or k not in m32 or mm[k][0] != m32[k][0] or
                json.dumps(mm[k][1], default=str) != json.dumps(m32[k][1], default=str)}
        if diff:
            fail(f"Microsoft layout gives different metadata: {sorted(diff)}")
        for line in ("ignored language_model.final_logits_bias", "ignored language_model.lm_head.weight"):
            if line not in r.stdout:
                fail(f"convert did not report '{line}'")
        # 3b. Microsoft vocabulary size: 51289 embedding rows, <image> without a row.
        ms2 = os.path.join(tmp, "ms51289")
        shutil.copytree(ms, ms2)
        from safetensors.numpy import save_file
        st = convert.load_state_dict(ms2)
        for k in ("language_model.model.shared.weight", "language_model.model.encoder.embed_tokens.weight",
                  "language_model.model.decoder.embed_tokens.weight", "language_model.lm_head.weight"):
            st[k] = np.ascontiguousarray(st[k][:51289])
        st["language_model.final_logits_bias"] = np.zeros((1, 51289), np.float32)
        save_file(st, os.path.join(ms2, "model.safetensors"))
        mc = json.load(open(os.path.join(ms2, "config.json")))
        mc["text_config"]["vocab_size"] = mc["vocab_size"] = 51289
        json.dump(mc, open(os.path.join(ms2, "config.json"), "w"))
        out2 = os.path.join(tmp, "ms51289.gguf")
        r = run_convert(ms2, out2, "int8")
        if r.returncode != 0:
            fail(f"convert Microsoft 51289-row layout: {r.stderr}")
        t2, m2 = read_gguf(out2)
        if m2["florence2.text.vocab_size"][1] != 51289 or len(m2["tokenizer.ggml.tokens"][1]) != 51290 \
                or m2["tokenizer.ggml.tokens"][1][51289] != "<image>" or t2["t.embed.scale"].shape != (51289,):
            fail("Microsoft 51289-row layout: wrong vocabulary metadata")
        # 3c. Microsoft pytorch_model.bin in float16 (as the hub checkpoint) and a sharded HF safetensors.
        import torch
        from safetensors.numpy import save_file as save_np
        ms_bin = os.path.join(tmp, "msbin")
        shutil.copytree(ms, ms_bin)
        os.remove(os.path.join(ms_bin, "model.safetensors"))
        st16 = {k: torch.from_numpy(v).half() for k, v in convert.load_state_dict(ms).items()}
        torch.save(st16, os.path.join(ms_bin, "pytorch_model.bin"))
        out3 = os.path.join(tmp, "msbin.gguf")
        r = run_convert(ms_bin, out3, "fp32")
        if r.returncode != 0:
            fail(f"convert pytorch_model.bin: {r.stderr}")
        t3, _ = read_gguf(out3)
        if set(t3) != set(t32) or any(not np.array_equal(t3[k], t32[k].astype(np.float16).astype(np.float32)) for k in t3):
            fail("pytorch_model.bin (float16) does not give the float16-rounded tensors")
        shard = os.path.join(tmp, "sharded")
        shutil.copytree(hf, shard, ignore=shutil.ignore_patterns("*.gguf", "model.safetensors"))
        keys = sorted(state)
        halves = {"model-00001-of-00002.safetensors": keys[: len(keys) // 2], "model-00002-of-00002.safetensors": keys[len(keys) // 2:]}
        for fname, ks in halves.items():
            save_np({k: state[k] for k in ks}, os.path.join(shard, fname))
        json.dump({"metadata": {}, "weight_map": {k: f for f, ks in halves.items() for k in ks}},
                  open(os.path.join(shard, "model.safetensors.index.json"), "w"))
        out4 = os.path.join(tmp, "sharded.gguf")
        r = run_convert(shard, out4, "fp32")
        if r.returncode != 0:
            fail(f"convert sharded: {r.stderr}")
        t4, m4 = read_gguf(out4)
        if set(t4) != set(t32) or any(not np.array_equal(t4[k], t32[k]) for k in t4):
            fail("sharded safetensors give different tensors")
        print("ok 3: Microsoft key names, transposed image_projection, tied copies, zero final_logits_bias, "
              "preprocessor_config.json and bart-large vocab.json+merges.txt (Florence-2 tokens added by the converter) "
              "give identical tensors and metadata; 51289 embedding rows with <image> past them convert; "
              "a float16 pytorch_model.bin and a sharded safetensors checkpoint convert")
        # 4. Refusals.
        out = os.path.join(tmp, "refused.gguf")
        r = run_convert(hf, out, "int8", ["--max-rel-error", "1e-6"])
        if r.returncode != 1 or os.path.exists(out) or "refusing to write" not in r.stderr:
            fail(f"strict threshold not refused: rc={r.returncode} {r.stderr}")
        from safetensors.numpy import save_file
        bad = os.path.join(tmp, "bad")
        shutil.copytree(ms, bad)
        st = convert.load_state_dict(ms)
        st["vision_tower.head.weight"] = np.zeros((2, 2), np.float32)
        save_file(st, os.path.join(bad, "model.safetensors"))
        r = run_convert(bad, out, "fp32")
        if r.returncode != 1 or "vision_tower.head.weight" not in r.stderr or os.path.exists(out):
            fail(f"unknown key not refused: {r.stderr}")
        st.pop("vision_tower.head.weight")
        st["language_model.lm_head.weight"] = st["language_model.lm_head.weight"] + 1
        save_file(st, os.path.join(bad, "model.safetensors"))
        r = run_convert(bad, out, "fp32")
        if r.returncode != 1 or "not tied" not in r.stderr:
            fail(f"untied lm_head not refused: {r.stderr}")
        print("ok 4: refuses a too-strict int8 threshold, an unknown key (named) and an untied lm_head, writing nothing")
    finally:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
