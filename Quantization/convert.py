# Florence-2 checkpoint -> Ocellus GGUF v3 model file (Quantization/FORMAT.md), the counterpart of
# the Swift loader in Sources/Florence2. Reads a checkpoint folder as transformers 5.x saves it
# (config.json, generation_config.json, model.safetensors, tokenizer.json and/or
# vocab.json + merges.txt, processor_config.json / preprocessor_config.json) or with the original
# `microsoft/Florence-2-*` key names (mapping learnt from transformers'
# convert_florence2_original_pytorch_to_hf.py), and writes every tensor either fp32 or int8
# (symmetric per output channel, packed panel16x4).
#
# Usage: python Quantization/convert.py HF_DIR OUT.gguf --precision int8|fp32 [--max-rel-error 0.02]
#        [--keep-fp32 REGEX]   (int8 only: linears or convs whose GGUF base name matches REGEX stay fp32)
#        [--int8-convs]        (int8 only: the DaViT stage convolutions int8 too; fp32 by default)
# Needs numpy, safetensors, gguf==0.19.0 (torch only for a pytorch_model.bin checkpoint).
import argparse
import json
import os
import re
import sys

import numpy as np
import gguf
from gguf import GGUFValueType

FORMAT_VERSION = 1
LAYER_NORM_EPS = 1e-5  # nn.LayerNorm default in both the DaViT and BART (no config key)
DEFAULT_MAX_REL_ERROR = 0.02  # relative Frobenius error allowed per int8 tensor


class ConvertError(Exception):
    pass


# MARK: - Reading the checkpoint


def load_json(path, required=True):
    if not os.path.exists(path):
        if required:
            raise ConvertError(f"missing {path}")
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def load_state_dict(d):
    """All checkpoint tensors as float32/other numpy arrays, by key (safetensors via numpy;
    pytorch_model.bin via torch)."""
    from safetensors import safe_open
    files = []
    index = os.path.join(d, "model.safetensors.index.json")
    if os.path.exists(index):
        files = sorted(set(load_json(index)["weight_map"].values()))
    elif os.path.exists(os.path.join(d, "model.safetensors")):
        files = ["model.safetensors"]
    tensors = {}
    if files:
        for name in files:
            with safe_open(os.path.join(d, name), framework="np") as f:
                for k in f.keys():
                    tensors[k] = f.get_tensor(k)
        return tensors
    binpath = os.path.join(d, "pytorch_model.bin")
    if not os.path.exists(binpath):
        raise ConvertError(f"{d}: no model.safetensors, model.safetensors.index.json or pytorch_model.bin")
    import torch
    sd = torch.load(binpath, map_location="cpu", weights_only=True)
    return {k: v.float().numpy() if v.is_floating_point() else v.numpy() for k, v in sd.items()}


# MARK: - Key renaming (HF v5 and Microsoft names -> FORMAT.md names)

IGNORED_TIED = "tied"            # must equal the shared embedding
IGNORED_TEMPORAL = "temporal"    # cosine table, recomputed by the engine (row 0 checked)
IGNORED_LOGITS_BIAS = "logits_bias"  # MS final_logits_bias (zeros; HF v5 drops it)

_MS_TO_HF = [
    # Microsoft remote-code names -> transformers 5.x names (convert_florence2_original_pytorch_to_hf.py)
    (r"^vision_tower\.convs\.(\d+)\.proj\.", r"model.vision_tower.convs.\1.conv."),
    (r"^vision_tower\.convs\.(\d+)\.norm\.", r"model.vision_tower.convs.\1.norm."),
    (r"^vision_tower\.blocks\.(\d+)\.(\d+)\.(spatial|channel)_block\.conv([12])\.fn\.dw\.", r"model.vision_tower.blocks.\1.\2.\3_block.conv\4."),
    (r"^vision_tower\.blocks\.(\d+)\.(\d+)\.spatial_block\.window_attn\.norm\.", r"model.vision_tower.blocks.\1.\2.spatial_block.norm1."),
    (r"^vision_tower\.blocks\.(\d+)\.(\d+)\.channel_block\.channel_attn\.norm\.", r"model.vision_tower.blocks.\1.\2.channel_block.norm1."),
    (r"^vision_tower\.blocks\.(\d+)\.(\d+)\.spatial_block\.window_attn\.fn\.", r"model.vision_tower.blocks.\1.\2.spatial_block.window_attn."),
    (r"^vision_tower\.blocks\.(\d+)\.(\d+)\.channel_block\.channel_attn\.fn\.", r"model.vision_tower.blocks.\1.\2.channel_block.channel_attn."),
    (r"^vision_tower\.blocks\.(\d+)\.(\d+)\.(spatial|channel)_block\.ffn\.norm\.", r"model.vision_tower.blocks.\1.\2.\3_block.norm2."),
    (r"^vision_tower\.blocks\.(\d+)\.(\d+)\.(spatial|channel)_block\.ffn\.fn\.net\.", r"model.vision_tower.blocks.\1.\2.\3_block.ffn."),
    (r"^image_projection$", r"model.multi_modal_projector.image_projection.weight"),  # [C3, P], transposed
    (r"^image_proj_norm\.", r"model.multi_modal_projector.image_proj_norm."),
    (r"^image_pos_embed\.", r"model.multi_modal_projector.image_position_embed."),
    (r"^visual_temporal_embed\.", r"model.multi_modal_projector.visual_temporal_embed."),
    (r"^language_model\.lm_head\.", r"lm_head."),
    (r"^language_model\.model\.", r"model.language_model."),
]

_V = r"model\.vision_tower\."
_B = _V + r"blocks\.(\d+)\.(\d+)\."
_T = r"model\.language_model\."
_HF_TO_GGUF = [
    # (regex on the HF v5 key, GGUF name template, kind); kind "linear" marks a Linear.weight
    (_V + r"convs\.(\d+)\.conv\.weight", "v.conv{0}.w", "f32"),
    (_V + r"convs\.(\d+)\.conv\.bias", "v.conv{0}.b", "f32"),
    (_V + r"convs\.(\d+)\.norm\.weight", "v.conv{0}.ln.w", "f32"),
    (_V + r"convs\.(\d+)\.norm\.bias", "v.conv{0}.ln.b", "f32"),
    (_B + r"(spatial|channel)_block\.conv1\.(weight|bias)", "v.s{0}.b{1}.{2}.cpe0.{3}", "f32"),
    (_B + r"(spatial|channel)_block\.conv2\.(weight|bias)", "v.s{0}.b{1}.{2}.cpe1.{3}", "f32"),
    (_B + r"(spatial|channel)_block\.norm1\.(weight|bias)", "v.s{0}.b{1}.{2}.ln1.{3}", "f32"),
    (_B + r"(spatial|channel)_block\.norm2\.(weight|bias)", "v.s{0}.b{1}.{2}.ln2.{3}", "f32"),
    (_B + r"(spatial)_block\.window_attn\.(qkv|proj)\.weight", "v.s{0}.b{1}.{2}.{3}", "linear"),
    (_B + r"(spatial)_block\.window_attn\.(qkv|proj)\.bias", "v.s{0}.b{1}.{2}.{3}.bias", "f32"),
    (_B + r"(channel)_block\.channel_attn\.(qkv|proj)\.weight", "v.s{0}.b{1}.{2}.{3}", "linear"),
    (_B + r"(channel)_block\.channel_attn\.(qkv|proj)\.bias", "v.s{0}.b{1}.{2}.{3}.bias", "f32"),
    (_B + r"(spatial|channel)_block\.ffn\.(fc1|fc2)\.weight", "v.s{0}.b{1}.{2}.{3}", "linear"),
    (_B + r"(spatial|channel)_block\.ffn\.(fc1|fc2)\.bias", "v.s{0}.b{1}.{2}.{3}.bias", "f32"),
    (r"model\.multi_modal_projector\.image_position_embed\.column_embeddings\.weight", "p.col_emb", "f32"),
    (r"model\.multi_modal_projector\.image_position_embed\.row_embeddings\.weight", "p.row_emb", "f32"),
    (r"model\.multi_modal_projector\.image_projection\.weight", "p.proj", "linear"),
    (r"model\.multi_modal_projector\.image_proj_norm\.(weight|bias)", "p.ln.{0}", "f32"),
    (r"model\.multi_modal_projector\.visual_temporal_embed\.pos_idx_to_embed", None, IGNORED_TEMPORAL),
    (_T + r"shared\.weight", "t.embed", "linear"),
    (_T + r"(encoder|decoder)\.embed_tokens\.weight", None, IGNORED_TIED),
    (r"lm_head\.weight", None, IGNORED_TIED),
    (r"final_logits_bias", None, IGNORED_LOGITS_BIAS),
    (_T + r"(encoder|decoder)\.embed_positions\.weight", "t.{0}.pos", "f32"),
    (_T + r"(encoder|decoder)\.layernorm_embedding\.(weight|bias)", "t.{0}.ln_emb.{1}", "f32"),
    (_T + r"(encoder|decoder)\.layers\.(\d+)\.(self_attn|encoder_attn)\.(q|k|v|out)_proj\.weight", "t.{0}.{1}.{2}.{3}", "linear"),
    (_T + r"(encoder|decoder)\.layers\.(\d+)\.(self_attn|encoder_attn)\.(q|k|v|out)_proj\.bias", "t.{0}.{1}.{2}.{3}.bias", "f32"),
    (_T + r"(encoder|decoder)\.layers\.(\d+)\.(self_attn|encoder_attn)_layer_norm\.(weight|bias)", "t.{0}.{1}.{2}_ln.{3}", "f32"),
    (_T + r"(encoder|decoder)\.layers\.(\d+)\.(fc1|fc2)\.weight", "t.{0}.{1}.{2}", "linear"),
    (_T + r"(encoder|decoder)\.layers\.(\d+)\.(fc1|fc2)\.bias", "t.{0}.{1}.{2}.bias", "f32"),
    (_T + r"(encoder|decoder)\.layers\.(\d+)\.final_layer_norm\.(weight|bias)", "t.{0}.{1}.ffn_ln.{2}", "f32"),
]
_GROUP_WORDS = {"spatial": "sp", "channel": "ch", "weight": "w", "bias": "b", "encoder": "enc", "decoder": "dec",
                "self_attn": "sa", "encoder_attn": "ca", "out": "o"}


def rename(key):
    """Maps one checkpoint key (transformers 5.x or Microsoft remote-code naming) to
    (GGUF name or None, kind, transpose). kind is "linear" (a Linear.weight: name is its <base>),
    "f32", or one of the IGNORED_* markers. Unknown keys raise ConvertError naming the key."""
    hf = key
    transpose = False
    if not key.startswith(("model.", "lm_head.")):
        if key == "language_model.final_logits_bias":
            hf = "final_logits_bias"
        for pat, rep in _MS_TO_HF:
            new = re.sub(pat, rep, hf)
            if new != hf:
                transpose = pat == r"^image_projection$"
                hf = new
                break
        else:
            if hf != "final_logits_bias":
                raise ConvertError(f"unknown checkpoint tensor '{key}'")
    for pat, template, kind in _HF_TO_GGUF:
        m = re.fullmatch(pat, hf)
        if m:
            if template is None:
                return None, kind, False
            groups = [_GROUP_WORDS.get(g, g) for g in m.groups()]
            return template.format(*groups), kind, transpose
    raise ConvertError(f"unknown checkpoint tensor '{key}'")


# MARK: - Configuration


def read_config(d):
    """The FORMAT.md configuration from config.json (HF v5 or Microsoft field names)."""
    cfg = load_json(os.path.join(d, "config.json"))
    if cfg.get("model_type") != "florence2":
        raise ConvertError(f"{d}/config.json: model_type is {cfg.get('model_type')!r}, expected 'florence2'")
    v, t = cfg["vision_config"], cfg["text_config"]

    def vget(*names, default=None):
        for n in names:
            if n in v:
                return v[n]
        if default is None:
            raise ConvertError(f"config.json vision_config has none of {names}")
        return default

    max_pos = v.get("max_position_embeddings", v.get("max_pos_embeddings", (v.get("image_pos_embed") or {}).get("max_pos_embeddings", 50)))
    max_temp = v.get("max_temporal_embeddings", (v.get("visual_temporal_embedding") or {}).get("max_temporal_embeddings", 100))
    c = {
        "vision.embed_dim": [int(x) for x in vget("embed_dim", "dim_embed")],
        "vision.num_heads": [int(x) for x in vget("num_heads")],
        "vision.num_groups": [int(x) for x in vget("num_groups")],
        "vision.depths": [int(x) for x in vget("depths")],
        "vision.patch_size": [int(x) for x in vget("patch_size", default=[7, 3, 3, 3])],
        "vision.patch_stride": [int(x) for x in vget("patch_stride", default=[4, 2, 2, 2])],
        "vision.patch_padding": [int(x) for x in vget("patch_padding", default=[3, 1, 1, 1])],
        "vision.patch_prenorm": [bool(x) for x in vget("patch_prenorm", default=[False, True, True, True])],
        "vision.window_size": int(vget("window_size", default=12)),
        "vision.mlp_ratio": float(vget("mlp_ratio", default=4.0)),
        "vision.max_pos_embeddings": int(max_pos),
        "vision.max_temporal_embeddings": int(max_temp),
        "projection_dim": int(vget("projection_dim")),
        "image_token_id": int(cfg.get("image_token_id", 51289)),
        "text.d_model": int(t["d_model"]),
        "text.encoder_layers": int(t["encoder_layers"]),
        "text.decoder_layers": int(t["decoder_layers"]),
        "text.encoder_heads": int(t["encoder_attention_heads"]),
        "text.decoder_heads": int(t["decoder_attention_heads"]),
        "text.encoder_ffn_dim": int(t["encoder_ffn_dim"]),
        "text.decoder_ffn_dim": int(t["decoder_ffn_dim"]),
        "text.max_position_embeddings": int(t["max_position_embeddings"]),
        "text.vocab_size": int(t["vocab_size"]),
        "text.scale_embedding": bool(t.get("scale_embedding", False)),
    }
    for key in ("activation_function",):
        if t.get(key, "gelu") != "gelu" or v.get(key, "gelu") != "gelu":
            raise ConvertError(f"config.json: {key} must be 'gelu' (exact erf GELU)")
    if v.get("qkv_bias", True) is not True:
        raise ConvertError("config.json: vision qkv_bias false is not supported by FORMAT.md")
    if t.get("add_final_layer_norm", False) or t.get("normalize_before", False):
        raise ConvertError("config.json: BART pre-LN / final layer norm variants are not supported by FORMAT.md")
    if not cfg.get("tie_word_embeddings", t.get("tie_word_embeddings", True)):
        raise ConvertError("config.json: untied word embeddings are not supported by FORMAT.md (t.embed is the LM head)")
    return cfg, c


GEN_U32 = ["decoder_start_token_id", "bos_token_id", "eos_token_id", "pad_token_id", "forced_bos_token_id",
           "forced_eos_token_id", "num_beams", "no_repeat_ngram_size", "max_length"]


def read_generation(d, cfg):
    """generation_config.json; without that file, the generation keys of config.json / its
    text_config (what transformers' GenerationConfig.from_model_config would take). Absent keys stay
    absent; null values count as absent."""
    g = load_json(os.path.join(d, "generation_config.json"), required=False)
    source = "generation_config.json"
    if g is None:
        g = dict(cfg.get("text_config", {}))
        g.update({k: v for k, v in cfg.items() if k in GEN_U32 + ["early_stopping", "length_penalty"]})
        source = "config.json"
    out = {}
    for k in GEN_U32:
        if g.get(k) is not None:
            val = g[k]
            if isinstance(val, list):
                raise ConvertError(f"{source}: {k} is a list ({val}); FORMAT.md stores one u32")
            out[k] = ("u32", int(val))
    if g.get("early_stopping") is not None:
        es = g["early_stopping"]
        if not isinstance(es, bool):
            raise ConvertError(f"{source}: early_stopping={es!r} is not a bool (FORMAT.md stores a bool)")
        out["early_stopping"] = ("bool", es)
    if g.get("length_penalty") is not None:
        out["length_penalty"] = ("f32", float(g["length_penalty"]))
    return out, source


def read_preprocessing(d):
    """processor_config.json["image_processor"] (transformers 5.x) or preprocessor_config.json."""
    p = load_json(os.path.join(d, "processor_config.json"), required=False)
    ip = (p or {}).get("image_processor")
    source = "processor_config.json"
    if ip is None:
        ip = load_json(os.path.join(d, "preprocessor_config.json"), required=False)
        source = "preprocessor_config.json"
    if ip is None:
        raise ConvertError(f"{d}: neither processor_config.json (with image_processor) nor preprocessor_config.json")
    size = ip.get("size") or {}
    if "height" not in size or "width" not in size:
        raise ConvertError(f"{source}: size must be {{height, width}} (got {size})")
    if ip.get("do_center_crop"):
        raise ConvertError(f"{source}: do_center_crop true is not supported")
    for flag in ("do_resize", "do_rescale", "do_normalize"):
        if ip.get(flag, True) is not True:
            raise ConvertError(f"{source}: {flag} false is not supported")
    mean, std = ip.get("image_mean", [0.485, 0.456, 0.406]), ip.get("image_std", [0.229, 0.224, 0.225])
    if len(mean) != 3 or len(std) != 3:
        raise ConvertError(f"{source}: image_mean/image_std need 3 values")
    return {
        "height": ("u32", int(size["height"])),
        "width": ("u32", int(size["width"])),
        "mean": ("f32[]", [float(x) for x in mean]),
        "std": ("f32[]", [float(x) for x in std]),
        "rescale_factor": ("f32", float(ip.get("rescale_factor", 1 / 255))),
        "resample": ("u32", int(ip.get("resample", 3))),
        "seq_length": ("u32", int(ip.get("image_seq_length", 577))),
    }, source


# MARK: - Tokenizer


def read_tokenizer(d):
    """Tokens by id (byte-to-unicode alphabet), merges in rank order, token types, special ids.
    From tokenizer.json, else vocab.json + merges.txt + added_tokens.json / tokenizer_config.json."""
    tj = load_json(os.path.join(d, "tokenizer.json"), required=False)
    added = []  # (id, content, special)
    if tj is not None:
        model = tj["model"]
        if model.get("type") != "BPE":
            raise ConvertError(f"tokenizer.json: model type {model.get('type')}, expected BPE")
        vocab = model["vocab"]
        merges = [m if isinstance(m, str) else f"{m[0]} {m[1]}" for m in model["merges"]]
        added = [(a["id"], a["content"], bool(a.get("special", False))) for a in tj.get("added_tokens", [])]
        source = "tokenizer.json"
    else:
        vocab = load_json(os.path.join(d, "vocab.json"))
        with open(os.path.join(d, "merges.txt"), encoding="utf-8") as f:
            merges = [line.rstrip("\n") for line in f if line.strip() and not line.startswith("#version")]
        tc = load_json(os.path.join(d, "tokenizer_config.json"), required=False) or {}
        for i, a in (tc.get("added_tokens_decoder") or {}).items():
            added.append((int(i), a["content"], bool(a.get("special", False))))
        at = load_json(os.path.join(d, "added_tokens.json"), required=False) or {}
        known = {i for i, _, _ in added}
        specials = set(tc.get("extra_special_tokens") or tc.get("additional_special_tokens") or [])
        specials |= {tc.get(k) for k in ("bos_token", "eos_token", "unk_token", "pad_token", "mask_token", "sep_token",
                                         "cls_token", "image_token") if isinstance(tc.get(k), str)}
        for content, i in at.items():
            if i not in known:
                added.append((int(i), content, content in specials))
                known.add(int(i))
        for content in specials:  # named special tokens that live in vocab.json (<s>, <pad>, </s>, <unk>, <mask>)
            if content in vocab and vocab[content] not in known:
                added.append((int(vocab[content]), content, True))
        source = "vocab.json + merges.txt"
    id_to_tok = {}
    for tok, i in vocab.items():
        id_to_tok[int(i)] = tok
    types = {}
    for i, content, special in added:
        if i in id_to_tok and id_to_tok[i] != content:
            raise ConvertError(f"{source}: added token {content!r} clashes with vocab id {i} ({id_to_tok[i]!r})")
        id_to_tok[i] = content
        types[i] = 3 if special else 4
    n = max(id_to_tok) + 1
    missing = [i for i in range(n) if i not in id_to_tok]
    if missing:
        raise ConvertError(f"{source}: token ids have holes, e.g. {missing[:5]}")
    tokens = [id_to_tok[i] for i in range(n)]
    token_type = [types.get(i, 1) for i in range(n)]
    for m in merges:
        if len(m.split(" ")) != 2:
            raise ConvertError(f"{source}: merge {m!r} is not 'left right'")
    # A Microsoft checkpoint's tokenizer files are facebook/bart-large's (50265 tokens): its
    # processor adds the 1024 Florence-2 tokens at run time. Add them (and `<image>`) here.
    from build_tokenizer import BASE_VOCAB, IMAGE_TOKEN, florence2_added_tokens
    extra = florence2_added_tokens()
    if len(tokens) == BASE_VOCAB:
        tokens += extra
        token_type += [3] * len(extra)
        source += " + the 1024 Florence-2 tokens"
    if len(tokens) == BASE_VOCAB + len(extra) and tokens[BASE_VOCAB:] == extra:
        tokens.append(IMAGE_TOKEN)
        token_type.append(3)
        source += " + <image>"
    if tokens[BASE_VOCAB:BASE_VOCAB + len(extra)] != extra:
        raise ConvertError(f"{source}: ids {BASE_VOCAB}.. are not the Florence-2 added tokens")
    tok_to_id = {t: i for i, t in enumerate(tokens)}
    special = {}
    for name, text in (("bos_token_id", "<s>"), ("eos_token_id", "</s>"), ("padding_token_id", "<pad>"), ("unknown_token_id", "<unk>")):
        if text not in tok_to_id:
            raise ConvertError(f"{source}: no {text} token")
        special[name] = tok_to_id[text]
    return tokens, merges, token_type, special, source


# MARK: - int8 quantization and the panel16x4 layout


def quantize_rows(w):
    """Symmetric per-output-channel int8: scale = amax/127 (0 for an all-zero row),
    q = round(w/scale) clamped to [-127, 127]."""
    amax = np.abs(w).max(axis=1)
    scale = (amax / 127.0).astype(np.float32)
    safe = np.where(scale > 0, scale, 1.0).astype(np.float32)
    q = np.clip(np.rint(w / safe[:, None]), -127, 127).astype(np.int8)
    q[scale == 0] = 0
    return q, scale


def pack_panel16x4(q):
    """[N, K] int8 -> [ceil(N/16), K*16]: byte (n, k) at ((n/16)*(K/4) + k/4)*64 + (n%16)*4 + k%4;
    rows n >= N are zero."""
    n, k = q.shape
    assert k % 4 == 0
    panels = (n + 15) // 16
    padded = np.zeros((panels * 16, k), dtype=np.int8)
    padded[:n] = q
    return np.ascontiguousarray(padded.reshape(panels, 16, k // 4, 4).transpose(0, 2, 1, 3).reshape(panels, k * 16))


def unpack_panel16x4(packed, n, k):
    """Inverse of pack_panel16x4, written from the byte-offset formula itself (an independent check)."""
    flat = packed.reshape(-1)
    nn, kk = np.meshgrid(np.arange(n), np.arange(k), indexing="ij")
    offsets = ((nn // 16) * (k // 4) + kk // 4) * 64 + (nn % 16) * 4 + kk % 4
    out = flat[offsets]
    # every byte not addressed by a real row must be zero
    mask = np.ones(flat.shape, dtype=bool)
    mask[offsets.reshape(-1)] = False
    if np.any(flat[mask] != 0):
        raise ConvertError("panel16x4 padding rows are not zero")
    return out


# MARK: - Conversion


def expected_shapes(c):
    """Every tensor FORMAT.md requires for configuration c: {name or linear base: (shape, kind)}."""
    e = {}
    dims, depths = c["vision.embed_dim"], c["vision.depths"]
    ks, pre = c["vision.patch_size"], c["vision.patch_prenorm"]
    mlp = lambda C: int(round(C * c["vision.mlp_ratio"]))
    for s, C in enumerate(dims):
        cin = 3 if s == 0 else dims[s - 1]
        e[f"v.conv{s}.w"] = ((C, cin, ks[s], ks[s]), "f32")
        e[f"v.conv{s}.b"] = ((C,), "f32")
        e[f"v.conv{s}.ln.w"] = ((cin if pre[s] else C,), "f32")
        e[f"v.conv{s}.ln.b"] = ((cin if pre[s] else C,), "f32")
        for b in range(depths[s]):
            for blk in ("sp", "ch"):
                p = f"v.s{s}.b{b}.{blk}."
                for cpe in ("cpe0", "cpe1"):
                    e[p + cpe + ".w"] = ((C, 1, 3, 3), "f32")
                    e[p + cpe + ".b"] = ((C,), "f32")
                for ln in ("ln1", "ln2"):
                    e[p + ln + ".w"] = ((C,), "f32")
                    e[p + ln + ".b"] = ((C,), "f32")
                for lin, shape in (("qkv", (3 * C, C)), ("proj", (C, C)), ("fc1", (mlp(C), C)), ("fc2", (C, mlp(C)))):
                    e[p + lin] = (shape, "linear")
                    e[p + lin + ".bias"] = ((shape[0],), "f32")
    C3, P = dims[-1], c["projection_dim"]
    e["p.col_emb"] = ((c["vision.max_pos_embeddings"], C3 // 2), "f32")
    e["p.row_emb"] = ((c["vision.max_pos_embeddings"], C3 // 2), "f32")
    e["p.proj"] = ((P, C3), "linear")
    e["p.ln.w"] = ((P,), "f32")
    e["p.ln.b"] = ((P,), "f32")
    d, V, mp = c["text.d_model"], c["text.vocab_size"], c["text.max_position_embeddings"]
    e["t.embed"] = ((V, d), "linear")
    for side, layers, ffn in (("enc", c["text.encoder_layers"], c["text.encoder_ffn_dim"]),
                              ("dec", c["text.decoder_layers"], c["text.decoder_ffn_dim"])):
        e[f"t.{side}.pos"] = ((mp + 2, d), "f32")
        e[f"t.{side}.ln_emb.w"] = ((d,), "f32")
        e[f"t.{side}.ln_emb.b"] = ((d,), "f32")
        for l in range(layers):
            p = f"t.{side}.{l}."
            atts = ("sa", "ca") if side == "dec" else ("sa",)
            for a in atts:
                for proj in ("q", "k", "v", "o"):
                    e[p + f"{a}.{proj}"] = ((d, d), "linear")
                    e[p + f"{a}.{proj}.bias"] = ((d,), "f32")
                e[p + f"{a}_ln.w"] = ((d,), "f32")
                e[p + f"{a}_ln.b"] = ((d,), "f32")
            e[p + "fc1"] = ((ffn, d), "linear")
            e[p + "fc1.bias"] = ((ffn,), "f32")
            e[p + "fc2"] = ((d, ffn), "linear")
            e[p + "fc2.bias"] = ((d,), "f32")
            e[p + "ffn_ln.w"] = ((d,), "f32")
            e[p + "ffn_ln.b"] = ((d,), "f32")
    return e


def map_tensors(state, c, log):
    """Renames and checks every checkpoint tensor; returns {gguf name/base: (array, kind)}."""
    out = {}
    shared_key = None
    tied, temporal, logits_bias = [], None, None
    for key in sorted(state):
        name, kind, transpose = rename(key)
        arr = state[key]
        if kind == IGNORED_TIED:
            tied.append(key)
            continue
        if kind == IGNORED_TEMPORAL:
            temporal = (key, arr)
            continue
        if kind == IGNORED_LOGITS_BIAS:
            logits_bias = (key, arr)
            continue
        if not np.issubdtype(arr.dtype, np.floating):
            raise ConvertError(f"checkpoint tensor '{key}' has dtype {arr.dtype}, expected floating point")
        arr = np.asarray(arr, dtype=np.float32)
        if transpose:
            arr = arr.T
        if name in out:
            raise ConvertError(f"checkpoint tensor '{key}' maps to '{name}', which another key already gave")
        if name == "t.embed":
            shared_key = key
        out[name] = (np.ascontiguousarray(arr), kind)
    expected = expected_shapes(c)
    for name, (arr, kind) in out.items():
        if name not in expected:
            raise ConvertError(f"tensor '{name}' does not belong to this configuration (depths/layers in config.json disagree with the checkpoint)")
        shape, ekind = expected[name]
        if tuple(arr.shape) != shape or kind != ekind:
            raise ConvertError(f"tensor '{name}' has shape {tuple(arr.shape)}, config.json implies {shape}")
    missing = sorted(set(expected) - set(out))
    if missing:
        raise ConvertError(f"checkpoint lacks {len(missing)} tensors, first '{missing[0]}'")
    emb = out["t.embed"][0]
    for key in tied:
        a = np.asarray(state[key], dtype=np.float32)
        if a.shape != emb.shape or not np.array_equal(a, emb):
            raise ConvertError(f"'{key}' is not tied to '{shared_key}' (FORMAT.md has one shared embedding/LM head)")
        log(f"ignored {key}: identical to {shared_key} (tied)")
    if temporal is not None:
        key, a = temporal
        C3 = c["vision.embed_dim"][-1]
        row0 = np.zeros(C3, dtype=np.float32)
        row0[1::2] = 1.0
        if a.shape != (c["vision.max_temporal_embeddings"], C3) or not np.allclose(np.asarray(a[0], np.float32), row0, atol=1e-3):
            raise ConvertError(f"'{key}' row 0 is not the cosine table's [0,1,0,1,...] that the engine uses")
        log(f"ignored {key}: fixed cosine table, the engine adds its row 0 [0,1,0,1,...] (checked)")
    if logits_bias is not None:
        key, a = logits_bias
        mx = float(np.abs(np.asarray(a, np.float32)).max()) if a.size else 0.0
        if mx != 0.0:
            log(f"WARNING: ignored {key} although it is not zero (max |b| = {mx:g}); transformers 5.x drops it too")
        else:
            log(f"ignored {key}: all zeros (transformers 5.x has no such bias)")
    return out


CONV_WEIGHT = re.compile(r"^v\.conv\d+\.w$")


def write_int8(w, base, arr, note, log, errors, max_rel_error, residual=False):
    """Quantizes `arr` [N, K] per output channel, packs it panel16x4, checks the round trip,
    reports its error (appending to `errors` past `max_rel_error`) and writes `base`.qweight and
    `base`.scale; with `residual`, also quantizes what the first level left, `arr - q*scale`, by the
    same rule and writes it as `base`.qresidual and `base`.rscale (FORMAT.md "Weights"). The error
    checked is that of everything written. Returns (relative Frobenius error, bytes written)."""
    n, k = arr.shape
    q, scale = quantize_rows(arr)
    packed = pack_panel16x4(q)
    if not np.array_equal(unpack_panel16x4(packed, n, k), q):
        raise ConvertError(f"{base}: panel16x4 round trip does not reproduce the quantized matrix")
    deq = q.astype(np.float32) * scale[:, None]
    norm = float(np.linalg.norm(arr))
    first = float(np.linalg.norm(arr - deq)) / norm if norm > 0 else 0.0
    extra, nbytes = "", packed.nbytes + scale.nbytes
    if residual:
        r, rscale = quantize_rows((arr - deq).astype(np.float32))
        rpacked = pack_panel16x4(r)
        if not np.array_equal(unpack_panel16x4(rpacked, n, k), r):
            raise ConvertError(f"{base}: panel16x4 round trip does not reproduce the quantized residual")
        deq = deq + r.astype(np.float32) * rscale[:, None]
        extra = f"  (first level {first * 100:.3f} %, + residual)"
        nbytes += rpacked.nbytes + rscale.nbytes
    rel = float(np.linalg.norm(arr - deq)) / norm if norm > 0 else 0.0
    mx = float(np.abs(arr - deq).max()) if arr.size else 0.0
    log(f"int8 {base:<28} [{n}, {k}]{note}  rel_frobenius {rel * 100:.3f} %  max_abs {mx:.3g}{extra}")
    if rel > max_rel_error:
        errors.append(f"{base}: {rel * 100:.3f} %")
    w.add_tensor(base + ".qweight", packed)
    w.add_tensor(base + ".scale", scale)
    if residual:
        w.add_tensor(base + ".qresidual", rpacked)
        w.add_tensor(base + ".rscale", rscale)
    return rel, nbytes


# Linears stored int8 with a second int8 level for what the first leaves (FORMAT.md "Weights"): the
# text encoder's, and the decoder's self-attention and feed-forward ones (not its cross-attention,
# not the tied embedding / LM head). On the random Florence-2-base this moves teacher-forced top-1
# agreement from 97.3 % to 99.4 % for +33 % of file size (Quantization/README.md, "int8 accuracy").
DEFAULT_RESIDUAL = r"^t\.enc\.\d+\.|^t\.dec\.\d+\.(sa\.|fc[12]$)"


def convert(hf_dir, out_path, precision, max_rel_error, log=print, keep_fp32=None, int8_convs=False,
            residual=DEFAULT_RESIDUAL):
    cfg, c = read_config(hf_dir)
    gen, gen_source = read_generation(hf_dir, cfg)
    pre, pre_source = read_preprocessing(hf_dir)
    tokens, merges, token_type, special, tok_source = read_tokenizer(hf_dir)
    state = load_state_dict(hf_dir)
    # The embedding may be padded beyond the configured vocabulary (HF pads 51290 to 51328 rows).
    emb_rows = None
    for k in state:
        if rename(k)[0] == "t.embed":
            emb_rows = state[k].shape[0]
    if emb_rows is not None and emb_rows != c["text.vocab_size"]:
        raise ConvertError(f"config.json text_config.vocab_size {c['text.vocab_size']} but the embedding has {emb_rows} rows")
    # Tokens beyond the embedding rows: only `<image>` of a Microsoft checkpoint (51289 rows), which
    # the engine never embeds (image features take its positions) and never generates.
    if len(tokens) > c["text.vocab_size"] and not (len(tokens) == c["text.vocab_size"] + 1 and tokens[-1] == "<image>"):
        raise ConvertError(f"{tok_source}: {len(tokens)} tokens exceed vocab_size {c['text.vocab_size']}")
    if len(tokens) > c["text.vocab_size"]:
        log(f"note: <image> ({len(tokens) - 1}) has no embedding row ({c['text.vocab_size']} rows, Microsoft layout)")
    if c["image_token_id"] >= len(tokens) or tokens[c["image_token_id"]] != "<image>":
        raise ConvertError(f"{tok_source}: image_token_id {c['image_token_id']} is not the '<image>' token")
    tensors = map_tensors(state, c, log)

    w = gguf.GGUFWriter(out_path, arch="florence2")
    w.add_name(os.path.basename(os.path.normpath(hf_dir)))
    w.add_uint32("ocellus.format_version", FORMAT_VERSION)
    w.add_string("ocellus.precision", precision)
    w.add_string("ocellus.weight_layout", "panel16x4")

    def u32s(key, vals):
        w.add_key_value(key, [int(x) for x in vals], GGUFValueType.ARRAY, sub_type=GGUFValueType.UINT32)

    for k in ("embed_dim", "num_heads", "num_groups", "depths", "patch_size", "patch_stride", "patch_padding"):
        u32s(f"florence2.vision.{k}", c[f"vision.{k}"])
    w.add_key_value("florence2.vision.patch_prenorm", c["vision.patch_prenorm"], GGUFValueType.ARRAY, sub_type=GGUFValueType.BOOL)
    w.add_uint32("florence2.vision.window_size", c["vision.window_size"])
    w.add_float32("florence2.vision.mlp_ratio", c["vision.mlp_ratio"])
    w.add_uint32("florence2.vision.max_pos_embeddings", c["vision.max_pos_embeddings"])
    w.add_uint32("florence2.vision.max_temporal_embeddings", c["vision.max_temporal_embeddings"])
    w.add_uint32("florence2.projection_dim", c["projection_dim"])
    w.add_uint32("florence2.image_token_id", c["image_token_id"])
    for k in ("d_model", "encoder_layers", "decoder_layers", "encoder_heads", "decoder_heads", "encoder_ffn_dim",
              "decoder_ffn_dim", "max_position_embeddings", "vocab_size"):
        w.add_uint32(f"florence2.text.{k}", c[f"text.{k}"])
    w.add_bool("florence2.text.scale_embedding", c["text.scale_embedding"])
    w.add_float32("florence2.layer_norm_eps", LAYER_NORM_EPS)
    for k, (typ, val) in gen.items():
        key = f"florence2.generation.{k}"
        {"u32": w.add_uint32, "bool": w.add_bool, "f32": w.add_float32}[typ](key, val)
    for k, (typ, val) in pre.items():
        key = f"florence2.image.{k}"
        if typ == "f32[]":
            w.add_key_value(key, val, GGUFValueType.ARRAY, sub_type=GGUFValueType.FLOAT32)
        else:
            {"u32": w.add_uint32, "f32": w.add_float32}[typ](key, val)
    w.add_string("tokenizer.ggml.model", "gpt2")
    w.add_key_value("tokenizer.ggml.tokens", tokens, GGUFValueType.ARRAY, sub_type=GGUFValueType.STRING)
    w.add_key_value("tokenizer.ggml.merges", merges, GGUFValueType.ARRAY, sub_type=GGUFValueType.STRING)
    w.add_key_value("tokenizer.ggml.token_type", token_type, GGUFValueType.ARRAY, sub_type=GGUFValueType.INT32)
    for k, v in special.items():
        w.add_uint32(f"tokenizer.ggml.{k}", v)

    # Weights, in a deterministic order (sorted by name).
    errors, kept_fp32, with_residual, worst = [], [], [], (0.0, "")
    total_bytes = 0
    for name in sorted(tensors):
        arr, kind = tensors[name]
        if kind == "linear" and precision == "int8":
            n, k = arr.shape
            if keep_fp32 is not None and re.search(keep_fp32, name):
                kept_fp32.append(f"{name} (--keep-fp32)")
                w.add_tensor(name + ".weight", arr)
                total_bytes += arr.nbytes
                continue
            if k % 4 != 0:
                kept_fp32.append(f"{name} (K={k})")
                w.add_tensor(name + ".weight", arr)
                total_bytes += arr.nbytes
                continue
            two = residual is not None and re.search(residual, name) is not None
            rel, nbytes = write_int8(w, name, arr, "", log, errors, max_rel_error, residual=two)
            if two:
                with_residual.append(name)
            worst = max(worst, (rel, name))
            total_bytes += nbytes
        elif kind == "linear":
            w.add_tensor(name + ".weight", arr)
            total_bytes += arr.nbytes
        elif precision == "int8" and CONV_WEIGHT.match(name) and int8_convs \
                and (keep_fp32 is None or not re.search(keep_fp32, name[: -len(".w")])):
            # A stage convolution as a linear over its flattened patch [Cout, Cin·k·k] (the engine
            # runs it as im2col + int8 GEMM); the stem's 3·7·7 = 147 is not a multiple of 4 and stays F32.
            base = name[: -len(".w")]
            flat = np.ascontiguousarray(arr.reshape(arr.shape[0], -1))
            n, k = flat.shape
            if k % 4 != 0:
                kept_fp32.append(f"{base} (K={k})")
                w.add_tensor(name, arr)
                total_bytes += arr.nbytes
                continue
            two = residual is not None and re.search(residual, base) is not None
            rel, nbytes = write_int8(w, base, flat, " (conv)", log, errors, max_rel_error, residual=two)
            if two:
                with_residual.append(base)
            worst = max(worst, (rel, base))
            total_bytes += nbytes
        else:
            w.add_tensor(name, arr)
            total_bytes += arr.nbytes
    if errors:
        raise ConvertError(f"refusing to write {out_path}: {len(errors)} int8 tensors exceed the {max_rel_error * 100:g} % "
                           f"relative error threshold: " + "; ".join(errors[:10]))
    if kept_fp32:
        log(f"kept fp32: {', '.join(kept_fp32)}")
    if with_residual:
        log(f"int8 with a residual level ({len(with_residual)}): {', '.join(with_residual)}")
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    log(f"wrote {out_path}: {len(tensors)} weights, {total_bytes / 1e6:.2f} MB of tensor data, precision {precision}; "
        f"generation from {gen_source}, preprocessing from {pre_source}, tokenizer from {tok_source} "
        f"({len(tokens)} tokens, {len(merges)} merges)"
        + (f"; worst int8 error {worst[0] * 100:.3f} % ({worst[1]})" if precision == "int8" else ""))
    return {"worst_rel_error": worst[0], "worst_tensor": worst[1], "kept_fp32": kept_fp32, "residual": with_residual}


def main():
    ap = argparse.ArgumentParser(description="Florence-2 checkpoint folder -> Ocellus GGUF (Quantization/FORMAT.md)")
    ap.add_argument("hf_dir")
    ap.add_argument("out")
    ap.add_argument("--precision", choices=["int8", "fp32"], required=True)
    ap.add_argument("--max-rel-error", type=float, default=DEFAULT_MAX_REL_ERROR,
                    help="largest relative Frobenius error of an int8 tensor before refusing to write (default 0.02)")
    ap.add_argument("--keep-fp32", metavar="REGEX", default=None,
                    help="with --precision int8: linears whose GGUF name (e.g. 't.dec.0.fc2', 'v.s3.b0.ch.qkv') matches REGEX (re.search) stay fp32; '' keeps none (the default). "
                         "Quantization/README.md, 'int8 accuracy', has measured candidates")
    ap.add_argument("--int8-convs", action="store_true",
                    help="with --precision int8: store the DaViT stage convolutions int8 too (where K %% 4 == 0); "
                         "about 8 %% faster vision, but on a random Florence-2-base it cut teacher-forced top-1 "
                         "agreement from 72 %% to 62 %% (one image, <CAPTION>, 100 positions), so they stay fp32 by default")
    ap.add_argument("--residual", metavar="REGEX", default=DEFAULT_RESIDUAL,
                    help="with --precision int8: int8 linears whose GGUF name matches REGEX (re.search) also store a second "
                         "int8 level for the first level's error (weight error about 250x smaller, 2x those layers' bytes "
                         "and int8 work; in decoder steps the engine also splits their activations in two levels); default %(default)s "
                         "(the text encoder, the decoder's self-attention and FFN; see Quantization/README.md 'int8 accuracy'), '' for none")
    a = ap.parse_args()
    if a.residual == "":
        a.residual = None
    if a.keep_fp32 == "":
        a.keep_fp32 = None  # '' keeps nothing (an empty regex would match every name)
    for flag, value in (("--keep-fp32", a.keep_fp32), ("--residual", a.residual)):
        if value is not None:
            try:
                re.compile(value)
            except re.error as e:
                print(f"convert.py: error: {flag} is not a regular expression: {e}", file=sys.stderr)
                sys.exit(2)
    try:
        convert(a.hf_dir, a.out, a.precision, a.max_rel_error, keep_fp32=a.keep_fp32, int8_convs=a.int8_convs,
                residual=a.residual)
    except ConvertError as e:
        if os.path.exists(a.out):
            os.remove(a.out)
        print(f"convert.py: error: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
