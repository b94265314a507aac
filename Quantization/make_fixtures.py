# Tiny seeded random Florence-2 fixtures for Tests/Florence2Tests: transformers 5.23.0's
# `Florence2ForConditionalGeneration` (the numerical oracle) at toy sizes, saved with
# save_pretrained plus the real tokenizer (Quantization/tokenizer) and processor config, converted
# with convert.py, and the reference outputs of one synthetic test image.
#
# Usage (repository root, venv of Quantization/requirements.txt, no torchvision installed):
#   python Quantization/make_fixtures.py [--out Tests/Florence2Tests/Fixtures] [--hf-root /work/models/fixtures-hf]
# Writes OUT/test-image.png (shared), and per fixture OUT/<name>/: the GGUF file(s),
# manifest.json (config, seeds, versions, tensor layouts), the reference tensors (.npy float32,
# C order, vision maps channels-last [H, W, C]) and ids.json (prompts, encoder ids, generated ids).
import argparse
import importlib.metadata
import json
import os
import platform
import shutil
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import convert  # noqa: E402

TOKENIZER_DIR = os.path.join(HERE, "tokenizer")
IMAGE_NAME = "test-image.png"
IMAGE_SIZE = (100, 75)  # (width, height) of the synthetic test image: each fixture resizes it (up, down, or both)

# MARK: - Fixture definitions
#
# d_model 8 everywhere: the real 51289-token vocabulary (+ padding to a multiple of 64) makes the
# embedding the largest tensor, and every GGUF carries the whole tokenizer (about 1.8 MB).

FIXTURES = [
    {
        # (a) every feature map (16, 8, 4, 2) is not a multiple of the window (3): the padding path.
        "name": "tiny-pad",
        "seed": 1001,
        "image": {"height": 64, "width": 64},
        "vision": dict(embed_dim=[8, 16, 24, 32], num_heads=[1, 2, 3, 4], num_groups=[1, 2, 3, 4], depths=[1, 1, 2, 1],
                       window_size=3),
        "text": dict(d_model=8, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2, decoder_attention_heads=2,
                     encoder_ffn_dim=16, decoder_ffn_dim=16, max_position_embeddings=300),
        "precisions": ["fp32"],
        "decoder_inputs": [2, 0, 50269 + 17],
    },
    {
        # (b) a 128x96 (W x H) image, not 768 and not square; channel counts 6 and 18 give K values
        # that are not multiples of 4, so the int8 file mixes int8 and fp32 linears.
        "name": "tiny-rect",
        "seed": 2002,
        "image": {"height": 96, "width": 128},
        "vision": dict(embed_dim=[6, 12, 18, 24], num_heads=[1, 2, 3, 2], num_groups=[2, 2, 3, 4], depths=[1, 1, 1, 1],
                       window_size=4),
        "text": dict(d_model=8, encoder_layers=1, decoder_layers=2, encoder_attention_heads=2, decoder_attention_heads=2,
                     encoder_ffn_dim=24, decoder_ffn_dim=24, max_position_embeddings=300),
        "precisions": ["fp32", "int8"],
        "decoder_inputs": [2, 0, 2264],
    },
    {
        # (c) unequal depths everywhere: vision (2, 1, 3, 1), 3 encoder layers with 2 heads and FFN 16,
        # 1 decoder layer with 1 head and FFN 32; feature maps 20, 10, 5, 3 with window 5 (only the
        # last stage pads).
        "name": "tiny-deep",
        "seed": 3003,
        "image": {"height": 80, "width": 80},
        "vision": dict(embed_dim=[8, 16, 32, 32], num_heads=[2, 2, 4, 4], num_groups=[1, 2, 2, 4], depths=[2, 1, 3, 1],
                       window_size=5),
        "text": dict(d_model=8, encoder_layers=3, decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=1,
                     encoder_ffn_dim=16, decoder_ffn_dim=32, max_position_embeddings=290),
        "precisions": ["fp32"],
        "decoder_inputs": [2, 0],
    },
]

# Florence-2's hub generation_config.json (florence2.md 1.6).
GENERATION = dict(decoder_start_token_id=2, forced_bos_token_id=0, forced_eos_token_id=2, bos_token_id=0,
                  eos_token_id=2, pad_token_id=1, num_beams=3, no_repeat_ngram_size=3, early_stopping=True)
MIN_NEW_TOKENS, MAX_NEW_TOKENS = 8, 16  # random weights would emit </s> at once
PROMPTS = ["<OD>", "<CAPTION>"]

# MARK: - Test image


def dump_json(obj, path):
    """Indented JSON with every list of numbers on one line."""
    import re
    text = json.dumps(obj, indent=1)
    text = re.sub(r"\[[-0-9.eE,\s]*\]", lambda m: re.sub(r"\s+", "", m.group(0)).replace(",", ", "), text)
    with open(path, "w") as f:
        f.write(text + "\n")


def write_test_image(path):
    """A deterministic 100x75 RGB image: smooth gradients, a disc, stripes and a few hard edges."""
    from PIL import Image
    w, h = IMAGE_SIZE
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 255 * x / (w - 1)
    g = 255 * y / (h - 1)
    b = 127.5 + 127.5 * np.sin(x / 5.0) * np.cos(y / 7.0)
    disc = (x - 62) ** 2 + (y - 30) ** 2 < 15 ** 2
    r[disc], g[disc], b[disc] = 250, 30, 40
    stripes = (x < 30) & (y > 45) & ((x // 3) % 2 == 0)
    r[stripes], g[stripes], b[stripes] = 10, 10, 10
    box = (x > 80) & (x < 95) & (y > 50) & (y < 70)
    r[box], g[box], b[box] = 255, 255, 255
    img = np.stack([r, g, b], axis=-1).round().clip(0, 255).astype(np.uint8)
    Image.fromarray(img, "RGB").save(path, format="PNG")


# MARK: - Model


def build_model(spec):
    import torch
    from transformers import BartConfig, Florence2Config, Florence2ForConditionalGeneration, Florence2VisionConfig
    torch.manual_seed(spec["seed"])
    vision = dict(spec["vision"])
    vision["projection_dim"] = spec["text"]["d_model"]
    text = dict(spec["text"])
    text.update(vocab_size=51328, scale_embedding=False, activation_function="gelu",
                bos_token_id=0, eos_token_id=2, pad_token_id=1, decoder_start_token_id=2, forced_eos_token_id=2)
    cfg = Florence2Config(vision_config=Florence2VisionConfig(**vision), text_config=BartConfig(**text), image_token_id=51289)
    model = Florence2ForConditionalGeneration(cfg).eval()
    redraw_parameters(model, spec["seed"] + 1)
    for k, v in GENERATION.items():
        setattr(model.generation_config, k, v)
    return model


def redraw_parameters(model, seed):
    """Re-draws every parameter so that nothing is trivially 0 or 1 (HF zero-inits biases and sets
    norms to 1, which would hide a swapped weight/bias) and attention logits are O(1)."""
    import torch
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if name.endswith("bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            elif p.dim() == 1:  # layer-norm weights
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
            elif "embed" in name or "shared" in name:
                p.copy_(torch.randn(p.shape, generator=g))
            else:  # linear / conv weights: unit gain
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=g) / fan_in ** 0.5)
    model.tie_weights()


def feature_sides(spec):
    v = spec["vision"]
    ks, st, pd = [7, 3, 3, 3], [4, 2, 2, 2], [3, 1, 1, 1]
    h, w = spec["image"]["height"], spec["image"]["width"]
    out = []
    for s in range(4):
        h = (h + 2 * pd[s] - ks[s]) // st[s] + 1
        w = (w + 2 * pd[s] - ks[s]) // st[s] + 1
        out.append((h, w))
    return out


# MARK: - One fixture


def hwc(t):
    """[1, C, H, W] torch -> [H, W, C] float32 C-order numpy (our engine is channels-last)."""
    return np.ascontiguousarray(t[0].permute(1, 2, 0).detach().cpu().numpy().astype(np.float32))


def make_fixture(spec, out, hf, image_path, versions, gguf_paths=None):
    """Builds spec's model, saves it (HF layout) to `hf`, writes the reference outputs to `out` and
    converts it; each GGUF goes to gguf_paths[precision] if given, else to `out` for the
    precisions the spec commits and to `hf` for the others."""
    import torch
    from PIL import Image
    from transformers import AutoTokenizer, CLIPImageProcessorPil, Florence2Processor
    name = spec["name"]
    for d in (out, hf):
        if os.path.exists(d):
            shutil.rmtree(d)
        os.makedirs(d)
    sides = feature_sides(spec)
    n_img = sides[-1][0] * sides[-1][1] + 1
    h, w = spec["image"]["height"], spec["image"]["width"]
    model = build_model(spec)
    ip = CLIPImageProcessorPil(size={"height": h, "width": w}, crop_size={"height": h, "width": w}, do_center_crop=False,
                               do_resize=True, resample=3, do_rescale=True, rescale_factor=1 / 255, do_normalize=True,
                               image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225], do_convert_rgb=True,
                               image_seq_length=n_img)
    tok = AutoTokenizer.from_pretrained(TOKENIZER_DIR)
    processor = Florence2Processor(image_processor=ip, tokenizer=tok)
    model.save_pretrained(hf)
    processor.save_pretrained(hf)

    image = Image.open(image_path).convert("RGB")
    tensors, ids = {}, {"prompts": {}}
    layouts = {}

    def save(key, arr, layout):
        arr = np.ascontiguousarray(np.asarray(arr, dtype=np.float32))
        np.save(os.path.join(out, key + ".npy"), arr)
        layouts[key + ".npy"] = {"shape": list(arr.shape), "layout": layout}

    # Vision tower, stage by stage (hooks on each ConvEmbed and on the last block of each stage).
    captured = {}
    hooks = []
    vt = model.model.vision_tower
    for s in range(4):
        hooks.append(vt.convs[s].register_forward_hook(lambda m, i, o, s=s: captured.__setitem__(f"conv{s}", o)))
        if len(vt.blocks[s]) > 0:
            hooks.append(vt.blocks[s][-1].register_forward_hook(lambda m, i, o, s=s: captured.__setitem__(f"stage{s}", o)))
    with torch.no_grad():
        enc_inputs = {}
        for prompt in PROMPTS:
            enc_inputs[prompt] = processor(images=image, text=prompt, return_tensors="pt")
        px = enc_inputs[PROMPTS[0]]["pixel_values"]
        for prompt in PROMPTS[1:]:
            assert torch.equal(px, enc_inputs[prompt]["pixel_values"])
        save("pixel_values", hwc(px), "[H, W, 3] channels-last (PyTorch gives [1, 3, H, W]); resized with PIL bicubic, rescaled, normalized")
        # The processor's PIL path: uint8 RGB resized by PIL bicubic, then x/255, then (x - mean)/std.
        from PIL import Image as PILImage
        resized = np.asarray(image.resize((w, h), PILImage.Resampling.BICUBIC), dtype=np.float32)
        mean, std = np.array([0.485, 0.456, 0.406], np.float32), np.array([0.229, 0.224, 0.225], np.float32)
        recovered = (hwc(px) * std + mean) * 255
        if np.abs(recovered - resized).max() > 1e-3:
            sys.exit(f"{name}: pixel_values are not PIL bicubic of the image (max diff {np.abs(recovered - resized).max()})")
        save("resized_rgb", resized, "[H, W, 3] channels-last: PIL bicubic resize of the uint8 image (integer values 0..255, "
             "before rescale and normalize)")
        feats = model.model.get_image_features(px).pooler_output
        for s in range(4):
            hh, ww = sides[s]
            c = spec["vision"]["embed_dim"][s]
            save(f"conv{s}", hwc(captured[f"conv{s}"]), f"[H, W, C] = [{hh}, {ww}, {c}] channels-last: ConvEmbed {s} output (after its norm)")
            stage = captured.get(f"stage{s}", captured[f"conv{s}"])
            save(f"stage{s}", hwc(stage), f"[H, W, C] = [{hh}, {ww}, {c}] channels-last: output of stage {s} (its last block)")
        save("projector", feats[0].numpy(), f"[{n_img}, P]: multi-modal projector output (mean token first), tokens in row-major (y, x) order")
        for hk in hooks:
            hk.remove()

        for prompt in PROMPTS:
            inp = enc_inputs[prompt]
            key = prompt.strip("<>").lower()
            input_ids = inp["input_ids"][0].tolist()
            dec = torch.tensor([spec["decoder_inputs"]])
            o = model(input_ids=inp["input_ids"], attention_mask=inp["attention_mask"], pixel_values=px, decoder_input_ids=dec)
            save(f"encoder_{key}", o.encoder_last_hidden_state[0].numpy(), "[L, d]: BART encoder output (image tokens first, then <s> prompt </s>)")
            if prompt == "<CAPTION>":
                save(f"decoder_logits_{key}", o.logits[0].numpy(), f"[T, V]: decoder logits for the fixed decoder inputs {spec['decoder_inputs']}")
            gens = {}
            common = dict(input_ids=inp["input_ids"], attention_mask=inp["attention_mask"], pixel_values=px,
                          min_new_tokens=MIN_NEW_TOKENS, max_new_tokens=MAX_NEW_TOKENS, do_sample=False,
                          return_dict_in_generate=True, output_scores=True)
            for mode, kw in (("greedy", dict(num_beams=1)), ("beam3", dict(num_beams=3))):
                r = model.generate(**common, **kw)
                seq = r.sequences[0].tolist()
                entry = {"ids": seq, "text": tok.decode(seq, skip_special_tokens=False),
                         "settings": dict(num_beams=kw["num_beams"], no_repeat_ngram_size=GENERATION["no_repeat_ngram_size"],
                                          min_new_tokens=MIN_NEW_TOKENS, max_new_tokens=MAX_NEW_TOKENS,
                                          forced_bos_token_id=0, forced_eos_token_id=2, decoder_start_token_id=2,
                                          early_stopping=True, length_penalty=1.0, do_sample=False)}
                if mode == "beam3":
                    entry["sequence_score"] = float(r.sequences_scores[0])
                gens[mode] = entry
            ids["prompts"][prompt] = {"encoder_input_ids": input_ids,
                                      "prompt_ids": [i for i in input_ids if i != 51289],
                                      "image_tokens": sum(1 for i in input_ids if i == 51289),
                                      "generate": gens}
        ids["decoder_inputs"] = spec["decoder_inputs"]

    dump_json(ids, os.path.join(out, "ids.json"))
    # Convert with convert.py (the same code path as users), fp32 and/or int8.
    conv_log = {}
    for prec in ("fp32", "int8"):
        lines = []
        if gguf_paths:
            target = gguf_paths[prec]
        elif prec in spec["precisions"]:
            target = os.path.join(out, f"{name}-{prec}.gguf")
        else:
            target = os.path.join(hf, f"{name}-{prec}.gguf")
        info = convert.convert(hf, target, prec, convert.DEFAULT_MAX_REL_ERROR, log=lines.append)
        in_out = os.path.dirname(target) == out
        conv_log[prec] = {"file": os.path.relpath(target, out) if in_out else (target if gguf_paths else None),
                          "worst_rel_error": info["worst_rel_error"], "worst_tensor": info["worst_tensor"],
                          "kept_fp32": info["kept_fp32"]}
        if prec == "int8":
            conv_log[prec]["residual"] = info["residual"]
            int8_lines = [l for l in lines if l.startswith("int8 ") and not l.startswith("int8 with a residual level")]
            conv_log[prec]["int8_tensors"] = len(int8_lines)
    if "int8" in spec["precisions"]:
        int8_path = gguf_paths["int8"] if gguf_paths else os.path.join(out, f"{name}-int8.gguf")
        int8_weight_reference(model, int8_path, px, enc_inputs["<CAPTION>"], spec, save)
    manifest = {
        "fixture": name,
        "seed": spec["seed"], "parameter_seed": spec["seed"] + 1,
        "image": IMAGE_NAME, "image_size_processed": spec["image"],
        "feature_sides_hw": sides, "image_tokens": n_img,
        "vision_config": spec["vision"], "text_config": spec["text"], "vocab_size": 51328,
        "generation_config": GENERATION,
        "tensors": layouts,
        "conversion": conv_log,
        "versions": versions,
        "command": "python Quantization/make_fixtures.py",
    }
    dump_json(manifest, os.path.join(out, "manifest.json"))
    return manifest


def int8_weight_reference(model, gguf_path, px, inp, spec, save):
    """Reference outputs of the same model with every int8 linear replaced by its dequantized
    weights (q * scale, plus r * rscale where the file has a residual level; read back from the
    GGUF file), activations in fp32: what an int8 engine computes apart from its activation
    quantization."""
    import torch
    import gguf
    r = gguf.GGUFReader(gguf_path)
    t = {x.name: np.array(x.data) for x in r.tensors}
    replaced = 0
    with torch.no_grad():
        params = dict(model.named_parameters())
        for key, p in params.items():
            base, kind, _ = convert.rename(key)
            if kind != "linear" or base + ".qweight" not in t:
                continue
            n, k = p.shape
            q = convert.unpack_panel16x4(t[base + ".qweight"], n, k)
            deq = q.astype(np.float32) * t[base + ".scale"][:, None]
            if base + ".qresidual" in t:
                rq = convert.unpack_panel16x4(t[base + ".qresidual"], n, k)
                deq = deq + rq.astype(np.float32) * t[base + ".rscale"][:, None]
            p.copy_(torch.from_numpy(deq))
            replaced += 1
        captured = {}
        vt = model.model.vision_tower
        hooks = [vt.blocks[s][-1].register_forward_hook(lambda m, i, o, s=s: captured.__setitem__(s, o))
                 for s in range(4) if len(vt.blocks[s]) > 0]
        feats = model.model.get_image_features(px).pooler_output
        for hk in hooks:
            hk.remove()
        for s_, o in sorted(captured.items()):
            save(f"int8w_stage{s_}", hwc(o), "[H, W, C] channels-last: stage output with dequantized int8 weights")
        save("int8w_projector", feats[0].numpy(), "[image tokens, P]: projector output with dequantized int8 weights")
        o = model(input_ids=inp["input_ids"], attention_mask=inp["attention_mask"], pixel_values=px,
                  decoder_input_ids=torch.tensor([spec["decoder_inputs"]]))
        save("int8w_encoder_caption", o.encoder_last_hidden_state[0].numpy(), "[L, d]: encoder output with dequantized int8 weights")
        save("int8w_decoder_logits_caption_last", o.logits[0, -1].numpy(),
             f"[V]: logits at the last of the decoder inputs {spec['decoder_inputs']}, dequantized int8 weights")
    return replaced


TOKENIZER_TEXTS = [
    "What does the image describe?", " leading space", "two  spaces and\ttab\nnewline\n\n", "trailing space ",
    "Don't you're we'll it's I'd they've", "numbers 1234567 3.14159 2026-12-01", "UPPER lower MiXeD",
    "Grüße aus München, naïve café", "東京タワーと富士山", "emoji 🙂👍🏽 and symbols ©®™ — “quotes”",
    "a car<loc_52><loc_333><loc_999><loc_0>", "<s>prompt</s><pad><unk>", "<od>person</od><poly><sep></poly>",
    "a red car parked next to a white building", "STOP sign, 'SLOW' sign; (parens) [brackets] {braces}",
    "   ", "", "x" * 40, "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "<image><image>The", "café<loc_5>straße", "line1\r\nline2", "ñ", "\u00a0nbsp\u2003emspace",
]
TASKS = ["<OCR>", "<OCR_WITH_REGION>", "<CAPTION>", "<DETAILED_CAPTION>", "<MORE_DETAILED_CAPTION>", "<OD>",
         "<DENSE_REGION_CAPTION>", "<REGION_PROPOSAL>", "<CAPTION_TO_PHRASE_GROUNDING>A green car parked in front of a yellow building.",
         "<REFERRING_EXPRESSION_SEGMENTATION>a green car", "<REGION_TO_SEGMENTATION><loc_702><loc_575><loc_866><loc_772>",
         "<OPEN_VOCABULARY_DETECTION>a green car", "<REGION_TO_CATEGORY><loc_52><loc_332><loc_932><loc_774>",
         "<REGION_TO_DESCRIPTION><loc_52><loc_332><loc_932><loc_774>", "<REGION_TO_OCR><loc_1><loc_2><loc_3><loc_4>",
         "What is this?"]


def write_tokenizer_cases(path, versions):
    """Encode/decode cases of the real tokenizer and the processor's task-prompt expansion."""
    from transformers import AutoTokenizer, CLIPImageProcessorPil, Florence2Processor
    tok = AutoTokenizer.from_pretrained(TOKENIZER_DIR)
    proc = Florence2Processor(image_processor=CLIPImageProcessorPil(image_seq_length=577), tokenizer=tok)
    encode = []
    for text in TOKENIZER_TEXTS:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        encode.append({"text": text, "ids": ids, "tokens": tok.convert_ids_to_tokens(ids),
                       "decoded": tok.decode(ids, skip_special_tokens=False)})
    prompts = []
    for task in TASKS:
        expanded = proc._construct_prompts(task)[0]
        ids = tok(tok.bos_token + expanded + tok.eos_token, add_special_tokens=False)["input_ids"]
        prompts.append({"task": task, "prompt": expanded, "ids": ids})
    decode = []
    for ids in ([2, 0, 2335, 50269 + 52, 50269 + 333, 50269 + 999, 50269, 2], [0, 574, 22486, 5, 2274, 2, 1, 1],
                [2, 0, 50265, 621, 50266, 51285, 50269 + 7, 50279, 51279, 51286, 2], [0, 10, 1437, 1437, 5, 2], [50108, 50109, 50110, 50111]):
        decode.append({"ids": ids, "with_special": tok.decode(ids, skip_special_tokens=False),
                       "without_special": tok.decode(ids, skip_special_tokens=True)})
    dump_json({"tokenizer": "Quantization/tokenizer (build_tokenizer.py)", "versions": versions,
               "encode_note": "ids of tokenizer(text, add_special_tokens=False)",
               "prompt_note": "Florence2Processor task expansion, then '<s>' + prompt + '</s>' tokenized without added specials",
               "encode": encode, "prompts": prompts, "decode": decode}, path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="Tests/Florence2Tests/Fixtures")
    ap.add_argument("--hf-root", default="/work/models/fixtures-hf", help="where the HF checkpoints (not committed) go")
    ap.add_argument("--only", default=None)
    a = ap.parse_args()
    import torch
    import transformers
    import PIL
    try:
        import torchvision  # noqa: F401
        sys.exit("torchvision is installed: the image processor would use its resize, not PIL's; use a venv without it")
    except ImportError:
        pass
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    versions = {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
                "numpy": np.__version__, "pillow": PIL.__version__, "gguf": importlib.metadata.version("gguf")}
    os.makedirs(a.out, exist_ok=True)
    image_path = os.path.join(a.out, IMAGE_NAME)
    write_test_image(image_path)
    write_tokenizer_cases(os.path.join(a.out, "tokenizer-cases.json"), versions)
    for spec in FIXTURES:
        if a.only and spec["name"] != a.only:
            continue
        m = make_fixture(spec, os.path.join(a.out, spec["name"]), os.path.join(a.hf_root, spec["name"]), image_path, versions)
        c = m["conversion"]
        print(f"{spec['name']}: feature maps {m['feature_sides_hw']}, {m['image_tokens']} image tokens; int8 worst error "
              f"{c['int8']['worst_rel_error'] * 100:.3f} % ({c['int8']['worst_tensor']}), kept fp32: {c['int8']['kept_fp32'] or 'none'}")
    print(json.dumps(versions))


if __name__ == "__main__":
    main()
