# A seeded random Florence-2-base at the real size (florence2.md 1.0: DaViT 128/256/512/1024,
# depths 1/1/9/1, BART 768 d_model, 6+6 layers, 12 heads, FFN 3072, 1024 positions, the HF
# vocabulary of 51328 rows), saved by transformers 5.23.0 in the exact checkpoint layout
# (config.json, generation_config.json, model.safetensors, tokenizer, processor_config.json) for
# benchmarks and real-size engine tests. Not committed (about 925 MB).
#
# Usage: python Quantization/make_random_base.py OUT_DIR [--seed 42] [--init redraw|hf]
#   --init redraw (default): the fixtures' parameter redraw (biases and norms not trivial, unit-gain
#   weights); --init hf: transformers' own initialisation (normal 0.02, zero biases, unit norms).
import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import make_fixtures  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--init", choices=["redraw", "hf"], default="redraw")
    a = ap.parse_args()
    import torch
    from transformers import (AutoTokenizer, BartConfig, CLIPImageProcessorPil, Florence2Config,
                              Florence2ForConditionalGeneration, Florence2Processor, Florence2VisionConfig)
    torch.manual_seed(a.seed)
    vision = Florence2VisionConfig(embed_dim=[128, 256, 512, 1024], num_heads=[4, 8, 16, 32], num_groups=[4, 8, 16, 32],
                                   depths=[1, 1, 9, 1], patch_size=[7, 3, 3, 3], patch_stride=[4, 2, 2, 2],
                                   patch_padding=[3, 1, 1, 1], patch_prenorm=[False, True, True, True], window_size=12,
                                   mlp_ratio=4.0, projection_dim=768, max_position_embeddings=50, max_temporal_embeddings=100)
    text = BartConfig(d_model=768, encoder_layers=6, decoder_layers=6, encoder_attention_heads=12, decoder_attention_heads=12,
                      encoder_ffn_dim=3072, decoder_ffn_dim=3072, max_position_embeddings=1024, vocab_size=51328,
                      scale_embedding=False, activation_function="gelu", bos_token_id=0, eos_token_id=2, pad_token_id=1,
                      decoder_start_token_id=2, forced_eos_token_id=2)
    cfg = Florence2Config(vision_config=vision, text_config=text, image_token_id=51289)
    model = Florence2ForConditionalGeneration(cfg).eval()
    if a.init == "redraw":
        make_fixtures.redraw_parameters(model, a.seed + 1)
    for k, v in make_fixtures.GENERATION.items():
        setattr(model.generation_config, k, v)
    n = sum(p.numel() for p in model.parameters())
    os.makedirs(a.out, exist_ok=True)
    model.save_pretrained(a.out)
    ip = CLIPImageProcessorPil(size={"height": 768, "width": 768}, crop_size={"height": 768, "width": 768}, do_center_crop=False,
                               resample=3, image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225],
                               do_convert_rgb=True, image_seq_length=577)
    tok = AutoTokenizer.from_pretrained(make_fixtures.TOKENIZER_DIR)
    Florence2Processor(image_processor=ip, tokenizer=tok).save_pretrained(a.out)
    print(f"saved {a.out}: {n / 1e6:.2f}M parameters (seed {a.seed}, init {a.init})")


if __name__ == "__main__":
    main()
