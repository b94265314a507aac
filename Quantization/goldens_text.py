#!/usr/bin/env python3
"""Goldens for Florence2's text side: tokenizer, task prompts, post-processing.

Writes JSON files under Tests/Florence2Tests/Fixtures/text/ from transformers 5.23.0
(RobertaTokenizer = BartTokenizer on the `tokenizers` backend, Florence2Processor and its
Florence2PostProcessor). The Swift tests replay them.

    python Quantization/goldens_text.py OUT_DIR                        # small trained tokenizer
    python Quantization/goldens_text.py OUT_DIR --vocab V --merges M   # the real Florence-2 files

Needs transformers==5.23.0, tokenizers==0.23.3, numpy, pillow, torch (CPU) in the venv; see
Tests/Florence2Tests/Fixtures/README.md, section "text/".
"""

import argparse
import json
import os
import sys

import numpy as np
from PIL import Image
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AddedToken, CLIPImageProcessor, Florence2Processor, RobertaTokenizer

from build_tokenizer import bytes_to_unicode  # the same GPT-2 byte table the tokenizer rebuild uses

# MARK: - The Florence-2 added tokens (MS processor __init__, then the v5 conversion's <image>)

FLORENCE_TOKENS = (
    ["<od>", "</od>", "<ocr>", "</ocr>"]
    + [f"<loc_{x}>" for x in range(1000)]
    + ["<cap>", "</cap>", "<ncap>", "</ncap>", "<dcap>", "</dcap>", "<grounding>", "</grounding>",
       "<seg>", "</seg>", "<sep>", "<region_cap>", "</region_cap>", "<region_to_desciption>",
       "</region_to_desciption>", "<proposal>", "</proposal>", "<poly>", "</poly>", "<and>"]
)

# The post-processor configuration that transformers' convert_florence2_original_pytorch_to_hf.py
# writes into processor_config.json (the banned phrase-grounding list, verbatim).
BANNED_GROUNDING = [
    "it", "I", "me", "mine", "you", "your", "yours", "he", "him", "his", "she", "her", "hers",
    "they", "them", "their", "theirs", "one", "oneself", "we", "us", "our", "ours", "you", "your",
    "yours", "they", "them", "their", "theirs", "mine", "yours", "his", "hers", "its", "ours",
    "yours", "theirs", "myself", "yourself", "himself", "herself", "itself", "ourselves",
    "yourselves", "themselves", "this", "that", "these", "those", "who", "whom", "whose", "which",
    "what", "who", "whom", "whose", "which", "that", "all", "another", "any", "anybody", "anyone",
    "anything", "each", "everybody", "everyone", "everything", "few", "many", "nobody", "none",
    "one", "several", "some", "somebody", "someone", "something", "each other", "one another",
    "myself", "yourself", "himself", "herself", "itself", "ourselves", "yourselves", "themselves",
    "the image", "image", "images", "the", "a", "an", "a group", "other objects", "lots", "a set",
]
POST_PROCESSOR_CONFIG = {
    "ocr": {"pattern": r"(.+?)<loc_(\d+)><loc_(\d+)><loc_(\d+)><loc_(\d+)><loc_(\d+)><loc_(\d+)><loc_(\d+)><loc_(\d+)>",
            "area_threshold": 0.0},
    "phrase_grounding": {"banned_grounding_tokens": BANNED_GROUNDING},
    "pure_text": {}, "description_with_bboxes": {}, "description_with_polygons": {}, "polygons": {},
    "bboxes": {}, "description_with_bboxes_or_polygons": {},
}

# MARK: - A small byte-level BPE trained on a fixed corpus (stands in for the real vocabulary)

CORPUS = [
    "What is the text in the image?", "What is the text in the image, with regions?",
    "What does the image describe?", "Describe in detail what is shown in the image.",
    "Describe with a paragraph what is shown in the image.",
    "Locate the objects with category name in the image.",
    "Locate the objects in the image, with their descriptions.",
    "Locate the region proposals in the image.", "Locate the phrases in the caption:",
    "in the image with mask", "What is the polygon mask of region", "What is the region",
    "What does the region describe?", "What text is in the region?",
    "A green car parked in front of a yellow building. The car's doors are closed.",
    "Two people are walking a dog along the beach at sunset; the dog is running ahead.",
    "A red stop sign stands at the corner of the street, next to a blue mailbox.",
    "The kitchen has white cabinets, a stainless steel refrigerator and a wooden table.",
    "There are 3 cats sleeping on the sofa and 12 birds outside the window.",
    "She said: \"I'll be there at 10:30, don't wait.\" They're late, we've waited, it's fine.",
    "In 2024 the camera recorded 1,234,567 frames at 30 fps (about 11.4 hours).",
    "def main():\n    print('hello, world')\n    return 0\n",
    "Tabs\tand  double  spaces   and\nnew lines\n\nare whitespace.",
    "Café, naïve, résumé, façade, Ångström, Straße, Œuvre.",
    "Здравствуйте, мир! Привет, как дела?", "こんにちは世界、カメラの画像です。", "你好，世界！这是一张图片。",
    "안녕하세요 세계", "مرحبا بالعالم", "שלום עולם", "Γειά σου Κόσμε", "नमस्ते दुनिया",
    "Emoji: 😀 🚗 🐶 👍🏽 ❤️ 🇫🇷", "Math: x² + y² = z², ∑ i = n(n+1)/2, π ≈ 3.14159",
    "Prices: $5.99, €10, £7.50, ¥1000", "email@example.com https://example.org/path?q=1&r=2",
    "UPPER CASE LETTERS AND lower case letters And Mixed Case",
    "the quick brown fox jumps over the lazy dog " * 3,
    "person, car, bicycle, motorcycle, bus, truck, traffic light, bench, bird, cat, dog, horse",
    "a man wearing a hat, a woman holding an umbrella, a child on a bicycle",
]


def train_small_tokenizer():
    """Byte-level BPE with RoBERTa's id layout: <s> <pad> </s> <unk> first, <mask> last."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=1200, min_frequency=1, show_progress=False,
        special_tokens=["<s>", "<pad>", "</s>", "<unk>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(CORPUS * 4, trainer=trainer)
    model = json.loads(tok.to_str())["model"]
    vocab = dict(model["vocab"])
    vocab["<mask>"] = len(vocab)
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    return vocab, merges


def load_real_tokenizer(vocab_path, merges_path):
    with open(vocab_path, encoding="utf-8") as f:
        vocab = json.load(f)
    with open(merges_path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    merges = [l for l in lines if l and not l.startswith("#version")]
    return vocab, merges


def build_hf_tokenizer(vocab, merges, user_tokens=()):
    """RobertaTokenizer (v5 BartTokenizer) plus the Florence-2 tokens, added as the MS processor does;
    `user_tokens` are non-special added tokens (the small tokenizer has two, to test that path)."""
    # RoBERTa/BART ship <mask> with lstrip=True (it eats the spaces before it).
    pairs = [tuple(m.split(" ")) for m in merges]
    tok = RobertaTokenizer(vocab=vocab, merges=pairs,
                           mask_token=AddedToken("<mask>", lstrip=True, rstrip=False, normalized=False, special=True))
    tok.add_special_tokens({"additional_special_tokens": FLORENCE_TOKENS})
    tok.add_tokens(AddedToken("<image>", special=True, normalized=False), special_tokens=True)
    if user_tokens:
        tok.add_tokens(list(user_tokens))
    tok.image_token = "<image>"
    tok.image_token_id = tok.convert_tokens_to_ids("<image>")
    return tok


def token_table(tok):
    """tokens by id, token types as the GGUF stores them (1 normal, 3 control, 4 user-defined), lstrip/rstrip."""
    n = len(tok)
    added = tok._tokenizer.get_added_tokens_decoder()
    vocab = tok._tokenizer.get_vocab(with_added_tokens=True)
    by_id = [None] * n
    for t, i in vocab.items():
        by_id[i] = t
    assert all(t is not None for t in by_id), "vocabulary has holes"
    types, lstrip, rstrip = [], [], []
    for i in range(n):
        a = added.get(i)
        if a is None:
            types.append(1)
        else:
            types.append(3 if a.special else 4)
            if a.lstrip:
                lstrip.append(by_id[i])
            if a.rstrip:
                rstrip.append(by_id[i])
    return by_id, types, lstrip, rstrip


# MARK: - Tokenizer cases

# Non-special added tokens of the small tokenizer: one with a space and non-ASCII letters, whose
# characters are outside the byte-level alphabet (the decoder then uses their own UTF-8).
SMALL_USER_TOKENS = ["hello world", "ñandú"]

ENCODE_TEXTS = [
    "", " ", "  ", "\n", "\n\n", "\t", " \t\n ", "a", " a", "a ", "a  b", "a   b", "a \nb", "a\n b",
    "Hello world", " Hello world", "Hello  world  ", "hello\nworld\n", "Hello, World!",
    "What does the image describe?", "Describe in detail what is shown in the image.",
    "Locate the objects with category name in the image.",
    "I'll", "they're", "we've", "it's", "don't", "I'm", "she'd", "'s", "'S", "IT'S", " 's", "x's'", "''",
    "12345", "3.14159", "1,000,000", "a1b2c3", "2024-12-01T19:05:58Z", " 42", "１２３", "½ ¾ ⅓", "Ⅻ",
    "!!!", "...", "?!", "(a)", "[x]", "{y}", "a-b_c", "#hashtag", "@user", "~/path/to/file.txt",
    "café", "naïve résumé", "Straße", "Ångström", "Здравствуйте, мир!", "こんにちは世界",
    "你好，世界！", "안녕하세요", "مرحبا بالعالم", "שלום", "नमस्ते", "Γειά σου",
    "😀", "🚗🚗", "👍🏽", "❤️", "🇫🇷", "👨‍👩‍👧", "a😀b", " 😀 ", "e\u0301", "\u00a0", "a\u00a0b",
    "a\u3000b", "a\u2003b", "\u200b", "a\u200bb", "\x00", "\x01\x02\x03", "\x1c\x1f", "\x7f", "\r\n",
    "\u2028", "\u0085", "\ufeffBOM", "\U0001F600\U0001F601", "ǅ", "ʰ", "Ⓐ", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
    "<s>", "</s>", "<pad>", "<unk>", "<s>hello</s>", "<s> hello </s>", "x<s>y",
    "<mask>", "a <mask>", "a   <mask> b", "<mask>  b",
    "<loc_0>", "<loc_999>", "<loc_12>", "<loc_1><loc_2>", "<loc_1000>", "<loc_-1>", "<loc_12",
    "<loc_52><loc_333><loc_932><loc_774>", "car<loc_52><loc_333><loc_932><loc_774>",
    "What is the region <loc_52><loc_333><loc_932><loc_774>?",
    "What is the polygon mask of region <loc_1><loc_2><loc_3><loc_4>",
    " <loc_5> ", "a<loc_5>b", "<poly><loc_1><loc_2><sep><loc_3></poly>", "<od>cat</od>",
    "<region_to_desciption>", "<image>", "<image><image>", "<IMAGE>", "<<loc_1>>", "<loc_1 >",
    "Locate the phrases in the caption: A green car parked in front of a yellow building.",
    "hello world", "say hello world!", "hello  world", "ñandú", "un ñandú<loc_3>", "hello world<s>ñandú",
    "The quick brown fox jumps over the lazy dog. " * 4,
    "x" * 200, "ab" * 60, " " * 33 + "end",
]


# Pieces for seeded random strings: every class of the pre-tokenizer pattern and its edges
# (combining marks, modifier letters, letter/other numbers, the Unicode spaces, controls),
# fragments of added tokens, and words of the vocabulary.
FUZZ_PIECES = [
    "a", "Z", "the", " the", "image", "ing", " ", "  ", "\t", "\n", "\r\n", "\x0b", "\x0c", "\x1c", "\x85",
    "\u00a0", "\u1680", "\u2002", "\u200a", "\u2028", "\u202f", "\u205f", "\u3000", "\u200b", "\u180e", "\ufeff",
    "'", "'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'x", "0", "42", "\u0663", "\u2167", "\u00b2", "\u00bd",
    ".", ",", "!", "?", "-", "_", "$", "\u20ac", "\u00e9", "e\u0301", "\u0301", "\u02b0", "\u01c5", "\u00df",
    "\u4e16", "\u3042", "\uac00", "\u0645", "\u05e9", "\u0928\u094d", "\U0001F600", "\U0001F3FD", "\u200d",
    "\U0001D518", "\x00", "\x7f", "<", ">", "<loc_", "<loc_7>", "<s>", "</s", "<pad>", "<mask>", "<sep>", "<poly>",
]


def fuzz_texts(n=200, seed=1234):
    import random
    rng = random.Random(seed)
    return ["".join(rng.choice(FUZZ_PIECES) for _ in range(rng.randrange(1, 20))) for _ in range(n)]


def decode_cases(tok, encoded):
    """id sequences to decode: every encoded case, Florence-2 outputs, split multi-byte characters."""
    cases = [ids for ids in encoded if ids]
    loc = tok.convert_tokens_to_ids
    byte_token = {}
    enc = pre_tokenizers.ByteLevel.alphabet()  # noqa: F841 (documentation: every byte has a token)
    bu = bytes_to_unicode()
    for b in range(256):
        byte_token[b] = tok.convert_tokens_to_ids(bu[b])
    cases += [
        [2, 0] + tok.encode("car", add_special_tokens=False)
        + [loc("<loc_52>"), loc("<loc_333>"), loc("<loc_932>"), loc("<loc_774>"), 2],
        [0, 1, 2, 3], [1, 1, 1], [loc("<image>")], [loc("<mask>")],
        [byte_token[b] for b in "😀".encode()[:2]],                      # truncated 4-byte sequence
        [byte_token[b] for b in "😀".encode()[1:]],                      # continuation bytes alone
        [byte_token[b] for b in b"a\xffb"],                              # invalid byte
        [byte_token[b] for b in b"\xe2\x82"] + tok.encode("x", add_special_tokens=False),
        [byte_token[b] for b in b"\xc0\xaf"],                            # overlong encoding
        [byte_token[b] for b in b"\xed\xa0\x80"],                        # encoded surrogate
        [byte_token[b] for b in b"\xf4\x90\x80\x80"],                    # above U+10FFFF
        [byte_token[b] for b in b"\xf0\x9f\x98"] + [loc("<loc_1>")] + [byte_token[0x80]],
        [byte_token[b] for b in "é".encode()] + [loc("</s>")] + [byte_token[b] for b in "😀".encode()],
        [len(tok) + 5, 0, len(tok) + 100],                                # ids past the vocabulary
    ]
    return cases


# MARK: - Processor: task prompts and post-processing

def build_processor(tok):
    ip = CLIPImageProcessor(size={"height": 768, "width": 768}, do_center_crop=False, image_seq_length=577)
    return Florence2Processor(image_processor=ip, tokenizer=tok, post_processor_config=POST_PROCESSOR_CONFIG)


TASK_INPUTS = [
    ("<OCR>", None), ("<OCR_WITH_REGION>", None), ("<CAPTION>", None), ("<DETAILED_CAPTION>", None),
    ("<MORE_DETAILED_CAPTION>", None), ("<OD>", None), ("<DENSE_REGION_CAPTION>", None),
    ("<REGION_PROPOSAL>", None),
    ("<CAPTION_TO_PHRASE_GROUNDING>", "A green car parked in front of a yellow building."),
    ("<CAPTION_TO_PHRASE_GROUNDING>", "  padded caption\n"),
    ("<REFERRING_EXPRESSION_SEGMENTATION>", "the dog on the left"),
    ("<REGION_TO_SEGMENTATION>", "<loc_702><loc_575><loc_866><loc_772>"),
    ("<OPEN_VOCABULARY_DETECTION>", "a green car"),
    ("<REGION_TO_CATEGORY>", "<loc_52><loc_333><loc_932><loc_774>"),
    ("<REGION_TO_DESCRIPTION>", "<loc_0><loc_0><loc_999><loc_999>"),
    ("<REGION_TO_OCR>", " <loc_10><loc_20><loc_30><loc_40> "),
]


def task_cases(proc, tok):
    image = Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8))
    out = []
    for task, text in TASK_INPUTS:
        raw = task if text is None else task + text
        prompt = proc._construct_prompts(raw)[0]
        ids = proc(text=raw, images=image)["input_ids"][0]
        ids = [int(i) for i in ids]
        assert ids[:577] == [tok.image_token_id] * 577
        out.append({"task": task, "input": text, "prompt": prompt, "encoder_ids": ids[577:]})
    return out


def L(*bins):
    return "".join(f"<loc_{b}>" for b in bins)


# Handcrafted decoder outputs (as decode(skip_special_tokens=False) prints them), per task.
POST_CASES = [
    ("<CAPTION>", "</s><s>A green car parked in front of a yellow building.</s>", (640, 480)),
    ("<OCR>", "<s>  STOP  </s><pad><pad>", (640, 480)),
    ("<REGION_TO_CATEGORY>", "</s><s>car" + L(52, 333, 932, 774) + "</s>", (640, 480)),
    ("<OD>", "</s><s>car" + L(52, 333, 932, 774) + "door" + L(100, 400, 200, 600) + L(300, 400, 350, 650) + "</s>", (640, 480)),
    ("<OD>", "<s>wheel" + L(0, 0, 999, 999) + "café sign" + L(1, 2, 3, 4) + "  person  " + L(10, 20, 30, 40) + L(5, 6) + "</s>", (1000, 1000)),
    ("<OD>", "<s>" + L(1, 2, 3, 4) + "dog" + L(5, 6, 7) + "cat" + L(8, 9, 10, 11, 12, 13, 14, 15, 16) + "</s>", (333, 777)),
    ("<DENSE_REGION_CAPTION>", "</s><s>a green car" + L(52, 333, 932, 774) + "<obj>a wheel" + L(60, 600, 200, 770) + "</s>", (1920, 1080)),
    ("<DENSE_REGION_CAPTION>", "<s><ground>a person<od>" + L(1, 2, 3, 4) + "</od></s>", (100, 100)),
    ("<REGION_PROPOSAL>", "</s><s>" + L(52, 333, 932, 774) + L(0, 0, 10, 10) + "x" + L(1, 1, 2, 2) + "</s>", (640, 480)),
    ("<REGION_PROPOSAL>", "<s></s>", (640, 480)),
    ("<OCR_WITH_REGION>", "</s><s>STOP" + L(10, 20, 110, 20, 110, 80, 10, 80) + "Main St." + L(500, 500, 900, 510, 900, 600, 500, 590) + "</s>", (640, 480)),
    ("<OCR_WITH_REGION>", "<s>" + L(1, 2, 3, 4, 5, 6, 7, 8) + "  ünïcode  " + L(9, 9, 9, 9, 9, 9, 9, 9) + "tail" + L(1, 2, 3) + "</s>", (1280, 720)),
    ("<CAPTION_TO_PHRASE_GROUNDING>", "</s><s>A green car" + L(52, 333, 932, 774) + "a yellow building" + L(0, 0, 999, 600) + L(10, 10, 20, 20) + "</s>", (640, 480)),
    ("<CAPTION_TO_PHRASE_GROUNDING>", "<s>it" + L(1, 2, 3, 4) + "the image" + L(5, 6, 7, 8) + "The image" + L(9, 10, 11, 12) + " a " + L(13, 14, 15, 16) + "</s>", (500, 400)),
    ("<REFERRING_EXPRESSION_SEGMENTATION>", "</s><s>" + L(100, 200, 300, 200, 300, 400, 100, 400) + "</s>", (640, 480)),
    ("<REFERRING_EXPRESSION_SEGMENTATION>", "<s>" + L(1, 2, 3, 4, 5) + "<sep>" + L(6, 7, 8, 9, 10, 11) + "</s>", (640, 480)),
    ("<REGION_TO_SEGMENTATION>", "<s><poly>" + L(1, 2, 3, 4, 5, 6) + "<sep>" + L(7, 8, 9, 10, 11, 12, 13) + "</poly><poly>" + L(20, 21, 22, 23) + "</poly></s>", (800, 600)),
    ("<REGION_TO_SEGMENTATION>", "<s>" + L(999, 999, 0, 0) + "</s>", (3, 5)),
    ("<OPEN_VOCABULARY_DETECTION>", "</s><s>a green car" + L(52, 333, 932, 774) + "</s>", (640, 480)),
    ("<OPEN_VOCABULARY_DETECTION>", "</s><s>a green car" + L(52, 333, 932, 774) + L(1, 2, 3, 4) + "wheel" + L(5, 6, 7, 8) + "</s>", (640, 480)),
    ("<OPEN_VOCABULARY_DETECTION>", "<s>a green car<poly>" + L(1, 2, 3, 4, 5, 6) + "</poly>wheel<poly>" + L(7, 8, 9, 10, 11, 12) + "<sep>" + L(13, 14, 15, 16) + "</poly></s>", (640, 480)),
    ("<OPEN_VOCABULARY_DETECTION>", "<s>green car" + L(1, 2, 3, 4, 5, 6) + "</s>", (640, 480)),
    ("<OD>", "<s>\n  dog " + L(1, 2, 3, 4) + "a\ncat" + L(5, 6, 7, 8) + "\u00e9 x" + L(9, 9, 9, 9) + "</s>", (640, 480)),
    ("<OD>", "<s>cat<loc_\u0661><loc_2><loc_3><loc_4></s>", (640, 480)),
    ("<OD>", "<<s>s>bird" + L(1, 2, 3, 4) + "</<s>s>", (640, 480)),
    ("<CAPTION>", "<<s>s> x \u3000", (640, 480)),
    ("<OCR_WITH_REGION>", "<s>line one\nline two" + L(1, 2, 3, 4, 5, 6, 7, 8) + "\n" + L(1, 2, 3, 4, 5, 6, 7, 8) + "</s>", (640, 480)),
    ("<REFERRING_EXPRESSION_SEGMENTATION>", "<s>" + L(5) + "<sep>" + L(1, 2, 3) + "<sep><sep>" + L(7, 8) + "</s>", (640, 480)),
    ("<REGION_TO_SEGMENTATION>", "<s><poly>" + L(1, 2, 3, 4) + "</poly>" + L(9, 9) + "</s>", (640, 480)),
    ("<OPEN_VOCABULARY_DETECTION>", "<s>" + L(1, 2, 3, 4) + "<poly>" + L(5, 6, 7, 8) + "</poly></s>", (640, 480)),
]


# Pieces for seeded random decoder outputs: loc tokens (most often), words, the markers the
# parsers look for or remove, whitespace and newlines.
POST_FUZZ_PIECES = (
    ["<loc_%d>" % b for b in (0, 1, 5, 52, 333, 500, 774, 932, 999)] * 6
    + ["<loc_10><loc_20><loc_110><loc_20>", "<loc_500><loc_52><loc_999><loc_0>"] * 4
    + ["car", "a dog", " the image", "it", " wheel ", "caf\u00e9", "\u00fc", " ", "  ", "\n", "\t", "<s>", "</s>",
       "<pad>", "<sep>", "<poly>", "</poly>", "<od>", "</od>", "<obj>", "<ground>", "<", ">", "loc_", "<loc_", "_3>"]
)


def post_fuzz_cases(n_per_task=10, seed=99):
    import random
    rng = random.Random(seed)
    tasks = [t for t, _ in TASK_INPUTS[:8]] + [t for t, _ in TASK_INPUTS[8:] if t != "<CAPTION_TO_PHRASE_GROUNDING>"] + ["<CAPTION_TO_PHRASE_GROUNDING>"]
    sizes = [(640, 480), (1920, 1080), (333, 777), (1, 1), (4032, 3024)]
    out = []
    for task in tasks:
        for _ in range(n_per_task):
            text = "".join(rng.choice(POST_FUZZ_PIECES) for _ in range(rng.randrange(1, 40)))
            out.append((task, text, rng.choice(sizes)))
    return out


def post_cases(proc, tok):
    out = []
    for task, text, size in POST_CASES + post_fuzz_cases():
        ids = tok.encode(text, add_special_tokens=False)
        decoded = tok.decode(ids, skip_special_tokens=False)
        assert decoded == text, (decoded, text)
        result = proc.post_process_generation(text, task=task, image_size=size)[task]
        out.append({"task": task, "ids": ids, "text": text, "image_size": list(size), "expected": result})
    return out


# MARK: - Main

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out_dir")
    ap.add_argument("--vocab")
    ap.add_argument("--merges")
    ap.add_argument("--name", default=None, help="file prefix (default: small, or florence2 with --vocab)")
    args = ap.parse_args()
    os.makedirs(args.out_dir, exist_ok=True)

    if args.vocab:
        vocab, merges = load_real_tokenizer(args.vocab, args.merges)
        name = args.name or "florence2"
    else:
        vocab, merges = train_small_tokenizer()
        name = args.name or "small"
    tok = build_hf_tokenizer(vocab, merges, user_tokens=() if args.vocab else SMALL_USER_TOKENS)
    tokens, types, lstrip, rstrip = token_table(tok)

    def dump(fname, obj):
        path = os.path.join(args.out_dir, fname)
        with open(path, "w", encoding="utf-8") as f:
            json.dump(obj, f, ensure_ascii=True, separators=(",", ":"))
            f.write("\n")
        print(f"wrote {path} ({os.path.getsize(path)} bytes)")

    dump(f"{name}_tokenizer.json", {"tokens": tokens, "merges": merges, "token_types": types,
                                        "lstrip": lstrip, "rstrip": rstrip})

    texts = ENCODE_TEXTS + fuzz_texts()
    encoded = [tok.encode(t, add_special_tokens=False) for t in texts]
    dec = decode_cases(tok, encoded[:len(ENCODE_TEXTS)])
    dump(f"{name}_tokenizer_goldens.json", {
        "vocab_size": len(tok),
        "encode": [{"text": t, "ids": ids} for t, ids in zip(texts, encoded)],
        "decode": [{"ids": ids,
                    "text": tok.decode(ids, skip_special_tokens=False),
                    "text_skip_special": tok.decode(ids, skip_special_tokens=True)} for ids in dec],
    })
    proc = build_processor(tok)
    dump(f"{name}_tasks_goldens.json", task_cases(proc, tok))
    dump(f"{name}_postprocess_goldens.json", {
        "banned_grounding_tokens": sorted(proc.post_processor.banned_grounding_tokens),
        "cases": post_cases(proc, tok),
    })


if __name__ == "__main__":
    sys.exit(main())
