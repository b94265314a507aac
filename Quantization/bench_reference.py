# PyTorch fp32 reference timings of Florence-2 (transformers 5.23.0) for one 768x768 image and
# `<CAPTION>` with exactly 20 new tokens, the figures our engine is compared with
# (machine.md's table). Prints one JSON object.
#
# Usage: python Quantization/bench_reference.py HF_DIR [--threads 2] [--repeats 3] [--image PNG]
#   HF_DIR e.g. /work/models/florence2-base-random (make_random_base.py). Timings are the best of
#   --repeats runs after one warm-up; decoder_step_ms = (greedy 20 tokens - greedy 1 token) / 19.
import argparse
import json
import os
import resource
import time

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_IMAGE = os.path.join(HERE, "..", "Tests", "Florence2Tests", "Fixtures", "test-image.png")


def best_of(fn, repeats):
    fn()  # warm-up
    times = []
    out = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), times, out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("hf_dir")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--image", default=DEFAULT_IMAGE)
    ap.add_argument("--new-tokens", type=int, default=20)
    a = ap.parse_args()
    import torch
    import transformers
    from PIL import Image
    from transformers import AutoProcessor, Florence2ForConditionalGeneration
    torch.set_num_threads(a.threads)
    torch.set_num_interop_threads(1)
    model = Florence2ForConditionalGeneration.from_pretrained(a.hf_dir, dtype=torch.float32).eval()
    processor = AutoProcessor.from_pretrained(a.hf_dir)
    image = Image.open(a.image).convert("RGB")
    inp = processor(images=image, text="<CAPTION>", return_tensors="pt")
    px, ids, mask = inp["pixel_values"], inp["input_ids"], inp["attention_mask"]
    m = model.model
    n = a.new_tokens

    with torch.inference_mode():
        t_vision, vision_runs, vt_out = best_of(lambda: m.vision_tower(px).last_hidden_state, a.repeats)
        t_proj, _, feats = best_of(lambda: m.multi_modal_projector(vt_out), a.repeats)

        def encoder():
            emb = m.get_input_embeddings()(ids)
            emb = emb.masked_scatter((ids == model.config.image_token_id).unsqueeze(-1).expand_as(emb), feats)
            return m.language_model.encoder(inputs_embeds=emb, attention_mask=mask).last_hidden_state

        t_enc, _, enc = best_of(encoder, a.repeats)

        def generate(tokens, beams):
            return model.generate(input_ids=ids, attention_mask=mask, pixel_values=px, min_new_tokens=tokens,
                                  max_new_tokens=tokens, num_beams=beams, do_sample=False)

        t_g1, _, _ = best_of(lambda: generate(1, 1), a.repeats)
        t_greedy, greedy_runs, g = best_of(lambda: generate(n, 1), a.repeats)
        t_beam, beam_runs, b = best_of(lambda: generate(n, 3), a.repeats)
    assert g.shape[1] == n + 1 and b.shape[1] == n + 1, (g.shape, b.shape)
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = {
        "model": os.path.abspath(a.hf_dir),
        "parameters_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
        "task": "<CAPTION>", "image": f"{px.shape[3]}x{px.shape[2]}", "encoder_tokens": int(ids.shape[1]),
        "new_tokens": n, "threads": a.threads, "repeats": a.repeats,
        "vision_tower_s": round(t_vision, 4), "projector_s": round(t_proj, 4),
        "vision_encoder_s": round(t_vision + t_proj, 4),
        "text_encoder_s": round(t_enc, 4),
        "decoder_step_ms": round((t_greedy - t_g1) / (n - 1) * 1000, 2),
        "caption_greedy_s": round(t_greedy, 4), "caption_beam3_s": round(t_beam, 4),
        "runs_s": {"vision_tower": [round(x, 4) for x in vision_runs], "greedy": [round(x, 4) for x in greedy_runs],
                   "beam3": [round(x, 4) for x in beam_runs]},
        "peak_rss_mb": round(peak_kb / 1024, 1),
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
        "note": "best of repeats after a warm-up; the machine may be shared, so treat as rough",
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
