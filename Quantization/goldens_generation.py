"""Goldens for Florence2/Generation.swift: transformers' own greedy and beam search run on a toy
decoder whose next-token logits are a fixed function of the sequence so far, so the Swift test can
compute the same logits and must reproduce the same ids.

Toy logits for the next token after ids[0..t] (float32):
    h = sum((j + 1) * ids[j] for j in 0..t) % 997
    logits[v] = 4 * sin(0.37 * h + 1.3 * v + 0.11 * t)       for v in 0..V-1

Run from the repository root with transformers 5.23.0 and torch 2.13.0+cpu:
    python Quantization/goldens_generation.py Tests/Florence2Tests/Fixtures/generation/toy.json
"""
import json
import math
import sys

import torch
from torch import nn
from transformers import GenerationConfig, PretrainedConfig, PreTrainedModel
from transformers.generation import GenerationMixin
from transformers.modeling_outputs import CausalLMOutput

V = 13


def toy_logits(ids):
    """[B, T] int64 → [B, T, V] float32 logits of the toy decoder."""
    b, t = ids.shape
    out = torch.zeros((b, t, V), dtype=torch.float32)
    for r in range(b):
        h = 0
        for j in range(t):
            h = (h + (j + 1) * int(ids[r, j])) % 997
            v = torch.arange(V, dtype=torch.float32)
            out[r, j] = 4 * torch.sin(torch.tensor(0.37 * h, dtype=torch.float32) + 1.3 * v + 0.11 * j)
    return out


class ToyConfig(PretrainedConfig):
    model_type = "ocellus_toy"

    def __init__(self, **kw):
        super().__init__(**kw)
        self.vocab_size = V
        self.num_hidden_layers = 1


class Toy(PreTrainedModel, GenerationMixin):
    config_class = ToyConfig

    def __init__(self, config):
        super().__init__(config)
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, input_ids=None, **kw):
        return CausalLMOutput(logits=toy_logits(input_ids))

    def prepare_inputs_for_generation(self, input_ids, **kw):
        return {"input_ids": input_ids}


def main(out_path):
    model = Toy(ToyConfig()).eval()
    cases = []
    settings = [
        dict(num_beams=1, max_new_tokens=12, min_new_tokens=0, no_repeat_ngram_size=0, early_stopping=True),
        dict(num_beams=1, max_new_tokens=12, min_new_tokens=5, no_repeat_ngram_size=3, early_stopping=True),
        dict(num_beams=3, max_new_tokens=12, min_new_tokens=0, no_repeat_ngram_size=3, early_stopping=True),
        dict(num_beams=3, max_new_tokens=15, min_new_tokens=6, no_repeat_ngram_size=3, early_stopping=True),
        dict(num_beams=3, max_new_tokens=10, min_new_tokens=0, no_repeat_ngram_size=2, early_stopping=False),
        dict(num_beams=2, max_new_tokens=9, min_new_tokens=0, no_repeat_ngram_size=0, early_stopping=True),
        dict(num_beams=4, max_new_tokens=14, min_new_tokens=3, no_repeat_ngram_size=3, early_stopping=False, length_penalty=0.5),
        dict(num_beams=3, max_new_tokens=11, min_new_tokens=2, no_repeat_ngram_size=1, early_stopping="never", length_penalty=2.0),
    ]
    for eos in (2, 5):
        for s in settings:
            cfg = GenerationConfig(
                do_sample=False, bos_token_id=0, eos_token_id=eos, pad_token_id=1, forced_bos_token_id=0,
                forced_eos_token_id=eos, decoder_start_token_id=2, length_penalty=s.get("length_penalty", 1.0),
                **{k: v for k, v in s.items() if k != "length_penalty"},
            )
            ids = model.generate(torch.tensor([[2]]), generation_config=cfg, use_cache=False)
            case = dict(s, eos_token_id=eos, length_penalty=s.get("length_penalty", 1.0), ids=ids[0].tolist())
            cases.append(case)
            print(case)
    versions = {"torch": torch.__version__, "transformers": __import__("transformers").__version__}
    with open(out_path, "w") as f:
        json.dump({"vocab": V, "versions": versions, "cases": cases}, f, indent=1)


if __name__ == "__main__":
    main(sys.argv[1])
