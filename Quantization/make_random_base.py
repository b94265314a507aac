# A seeded random Florence-2-base at the real size (florence2.md 1.0: DaViT 128/256/512/1024,
# heads and groups 4/8/16/32, depths 1/1/9/1, window 12; BART d_model 768, 6+6 layers, 12 heads,
# FFN 3072, 1024 positions; the HF vocabulary of 51328 rows), saved by transformers 5.23.0 in the
# exact checkpoint layout (config.json, generation_config.json, model.safetensors, tokenizer,
# processor_config.json), converted to int8 and fp32 GGUF, with the same reference outputs as the
# tiny fixtures for the 768x768 test image. For benchmarks and real-size engine checks; not
# committed (the checkpoint is about 925 MB).
#
# Usage: python Quantization/make_random_base.py OUT_DIR [--seed 42] [--ref-dir DIR] [--gguf-prefix PREFIX]
#   defaults: reference outputs in OUT_DIR-ref, GGUF files PREFIX-int8.gguf and PREFIX-fp32.gguf with
#   PREFIX = /work/models/florence2-base-random.
import argparse
import importlib.metadata
import json
import os
import platform
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import make_fixtures  # noqa: E402

BASE_SPEC = {
    "name": "florence2-base-random",
    "image": {"height": 768, "width": 768},
    "vision": dict(embed_dim=[128, 256, 512, 1024], num_heads=[4, 8, 16, 32], num_groups=[4, 8, 16, 32], depths=[1, 1, 9, 1],
                   window_size=12),
    "text": dict(d_model=768, encoder_layers=6, decoder_layers=6, encoder_attention_heads=12, decoder_attention_heads=12,
                 encoder_ffn_dim=3072, decoder_ffn_dim=3072, max_position_embeddings=1024),
    "precisions": ["fp32", "int8"],
    "decoder_inputs": [2, 0, 2264],
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--ref-dir", default=None)
    ap.add_argument("--gguf-prefix", default="/work/models/florence2-base-random")
    a = ap.parse_args()
    import numpy as np
    import torch
    import transformers
    import PIL
    torch.set_num_threads(2)
    spec = dict(BASE_SPEC, seed=a.seed)
    ref = a.ref_dir or a.out.rstrip("/") + "-ref"
    versions = {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
                "numpy": np.__version__, "pillow": PIL.__version__, "gguf": importlib.metadata.version("gguf")}
    image = os.path.join(HERE, "..", "Tests", "Florence2Tests", "Fixtures", make_fixtures.IMAGE_NAME)
    m = make_fixtures.make_fixture(spec, ref, a.out, image, versions,
                                   gguf_paths={p: f"{a.gguf_prefix}-{p}.gguf" for p in ("fp32", "int8")})
    c = m["conversion"]["int8"]
    print(json.dumps({"checkpoint": a.out, "reference": ref, "gguf": [m["conversion"][p]["file"] for p in ("fp32", "int8")],
                      "seed": a.seed, "int8_worst_rel_error": c["worst_rel_error"], "int8_worst_tensor": c["worst_tensor"],
                      "kept_fp32": c["kept_fp32"]}, indent=1))


if __name__ == "__main__":
    main()
