# Rebuilds the real Florence-2 tokenizer (RoBERTa/BART byte-level BPE, 50265 base tokens, the
# 1024 Florence-2 added tokens and `<image>`) offline, from data shipped in two PyPI packages:
# the `openai-whisper` sdist (`whisper/assets/gpt2.tiktoken`: GPT-2 token bytes with merge ranks)
# and the `blingfire` wheel (`roberta.i2w`: RoBERTa id -> token bytes, read through its bundled
# `libblingfiretokdll.so`). Mirrors what `microsoft/Florence-2-base`'s processor builds on top of
# `facebook/bart-large`'s tokenizer, and what transformers' Florence-2 conversion adds.
#
# Usage: python Quantization/build_tokenizer.py OUT_DIR [--whisper-sdist PATH]
#   (download the sdist with
#    pip download --no-deps --no-binary :all: openai-whisper==20250625 -d /tmp/ow)
# Writes vocab.json, merges.txt, added_tokens.json, special_tokens_map.json,
# tokenizer_config.json and tokenizer.json, then verifies them with transformers.
import argparse
import base64
import ctypes
import glob
import json
import os
import sys
import tarfile

# MARK: - Byte-level alphabet (GPT-2)


def bytes_to_unicode():
    """GPT-2's reversible map from the 256 byte values to printable unicode characters."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {b: chr(c) for b, c in zip(printable, chars)}


BYTE_TO_CHAR = bytes_to_unicode()


def to_alphabet(token_bytes):
    return "".join(BYTE_TO_CHAR[b] for b in token_bytes)


# MARK: - Florence-2 added tokens (florence2.md 1.9)


def florence2_added_tokens():
    """The 1024 tokens the Florence-2 processor adds, in id order from 50265."""
    tokens = ["<od>", "</od>", "<ocr>", "</ocr>"]
    tokens += [f"<loc_{i}>" for i in range(1000)]
    tokens += ["<cap>", "</cap>", "<ncap>", "</ncap>", "<dcap>", "</dcap>", "<grounding>", "</grounding>",
               "<seg>", "</seg>", "<sep>", "<region_cap>", "</region_cap>", "<region_to_desciption>",
               "</region_to_desciption>", "<proposal>", "</proposal>", "<poly>", "</poly>", "<and>"]
    assert len(tokens) == 1024
    return tokens


BASE_VOCAB = 50265
IMAGE_TOKEN = "<image>"
IMAGE_TOKEN_ID = 51289

# MARK: - Sources


def read_gpt2_ranks(sdist):
    """token bytes -> rank from `whisper/assets/gpt2.tiktoken` inside the openai-whisper sdist."""
    with tarfile.open(sdist) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith("whisper/assets/gpt2.tiktoken"))
        text = tar.extractfile(member).read().decode("ascii")
    ranks = {}
    for line in text.splitlines():
        if line:
            b64, rank = line.split()
            ranks[base64.b64decode(b64)] = int(rank)
    return ranks


def read_roberta_id_bytes():
    """RoBERTa id -> token bytes for ids 0..50264, decoded with blingfire's `roberta.i2w`.

    blingfire renders a lone token without its leading space, so each id is decoded between two
    '.' tokens (id 4) and the dots are cut off. The control bytes 0x00-0x03 come out as a space
    and are returned as None (resolved by the caller)."""
    import blingfire
    lib = blingfire.blingfire
    h = blingfire.load_model(os.path.join(os.path.dirname(blingfire.__file__), "roberta.i2w"))
    ids = (ctypes.c_int32 * 3)()
    buf = ctypes.create_string_buffer(512)
    out = []
    for i in range(BASE_VOCAB):
        ids[0], ids[1], ids[2] = 4, i, 4
        n = lib.IdsToText(ctypes.c_void_p(h), ctypes.byref(ids), 3, ctypes.byref(buf), ctypes.c_int(512), ctypes.c_bool(False))
        raw = buf.raw[: n - 1]  # n counts the terminating NUL
        if not (raw.startswith(b".") and raw.endswith(b".")):
            sys.exit(f"blingfire decoded id {i} unexpectedly: {raw!r}")
        out.append(raw[1:-1])
    blingfire.free_model(h)
    return out


# MARK: - Building


def recover_merges(ranks):
    """GPT-2 merges in rank order: each multi-byte token is the merge of the two parts that
    byte-level BPE with only lower-ranked tokens leaves it in."""
    by_rank = sorted((r, t) for t, r in ranks.items() if len(t) > 1)
    merges = []
    for rank, token in by_rank:
        parts = [bytes([b]) for b in token]
        while len(parts) > 2:
            best = None
            for j in range(len(parts) - 1):
                r = ranks.get(parts[j] + parts[j + 1])
                if r is not None and r < rank and (best is None or r < best[0]):
                    best = (r, j)
            if best is None:
                break
            j = best[1]
            parts = parts[:j] + [parts[j] + parts[j + 1]] + parts[j + 2:]
        if len(parts) != 2:
            sys.exit(f"cannot recover the merge of GPT-2 token {token!r} (rank {rank})")
        merges.append((parts[0], parts[1]))
    return merges


def build_vocab(ranks, roberta):
    """vocab.json for ids 0..50264: specials and madeup words by text, GPT-2 tokens by bytes."""
    specials = {0: "<s>", 1: "<pad>", 2: "</s>", 3: "<unk>", 50260: "<|endoftext|>",
                50261: "madeupword0000", 50262: "madeupword0001", 50263: "madeupword0002", 50264: "<mask>"}
    vocab = {}
    unresolved = []
    used = set()
    for i, b in enumerate(roberta):
        if i in specials:
            if b != specials[i].encode():
                sys.exit(f"RoBERTa id {i} is {b!r}, expected {specials[i]}")
            vocab[specials[i]] = i
        elif b == b" " and i != 1437:
            unresolved.append(i)  # a control byte blingfire prints as a space
        else:
            if b not in ranks:
                sys.exit(f"RoBERTa id {i} ({b!r}) is not a GPT-2 token")
            vocab[to_alphabet(b)] = i
            used.add(b)
    missing = sorted((ranks[t], t) for t in ranks if t not in used and t != b"<|endoftext|>")
    if len(missing) != len(unresolved):
        sys.exit(f"{len(unresolved)} unresolved RoBERTa ids but {len(missing)} unused GPT-2 tokens")
    # Unverified order: the remaining single control bytes go to the unresolved ids in GPT-2 rank order.
    for i, (_, t) in zip(unresolved, missing):
        vocab[to_alphabet(t)] = i
    if sorted(vocab.values()) != list(range(BASE_VOCAB)):
        sys.exit("vocab ids are not exactly 0..50264")
    return vocab, [(i, t) for i, (_, t) in zip(unresolved, missing)]


def write_files(out, vocab, merges):
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(vocab, f, ensure_ascii=False)
    with open(os.path.join(out, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n")
        for a, b in merges:
            f.write(f"{to_alphabet(a)} {to_alphabet(b)}\n")
    added = florence2_added_tokens() + [IMAGE_TOKEN]
    # Build the tokenizers-backed BartTokenizer from vocab/merges, add the Florence-2 tokens as
    # special tokens (MS processor: `additional_special_tokens`), then `<image>` (HF conversion).
    from transformers import AddedToken, BartTokenizer
    merge_strings = [(to_alphabet(a), to_alphabet(b)) for a, b in merges]
    tok = BartTokenizer(vocab=dict(vocab), merges=merge_strings)
    tok.add_special_tokens({"extra_special_tokens": [AddedToken(t, special=True, normalized=False) for t in added[:-1]]})
    tok.add_tokens(AddedToken(IMAGE_TOKEN, special=True, normalized=False), special_tokens=True)
    # Named `image_token` (what Florence2Processor reads), registered only after every id is fixed.
    tok._set_model_specific_special_tokens({"image_token": IMAGE_TOKEN})
    tok.save_pretrained(out)
    with open(os.path.join(out, "added_tokens.json"), "w", encoding="utf-8") as f:
        json.dump({t: BASE_VOCAB + i for i, t in enumerate(added)}, f, ensure_ascii=False, indent=0)


# MARK: - Verification


def verify(out):
    from transformers import AutoTokenizer, BartTokenizer
    checks = []
    for cls in (AutoTokenizer, BartTokenizer):
        tok = cls.from_pretrained(out)
        ids = tok("<s>What does the image describe?</s>", add_special_tokens=False)["input_ids"]
        want = [0, 2264, 473, 5, 2274, 6190, 116, 2]
        if ids != want:
            sys.exit(f"{cls.__name__}: <CAPTION> prompt encodes to {ids}, expected {want}")
        for t, i in [("<loc_0>", 50269), ("<loc_999>", 51268), ("<od>", 50265), ("<and>", 51288), (IMAGE_TOKEN, IMAGE_TOKEN_ID),
                     ("<s>", 0), ("<pad>", 1), ("</s>", 2), ("<unk>", 3)]:
            got = tok.convert_tokens_to_ids(t)
            if got != i:
                sys.exit(f"{cls.__name__}: {t} is {got}, expected {i}")
        if len(tok) != IMAGE_TOKEN_ID + 1:
            sys.exit(f"{cls.__name__}: {len(tok)} tokens, expected {IMAGE_TOKEN_ID + 1}")
        text = "<s>car<loc_52><loc_333><loc_999><loc_0></s>"
        ids2 = tok(text, add_special_tokens=False)["input_ids"]
        if tok.decode(ids2, skip_special_tokens=False) != text or ids2[2:6] != [50269 + 52, 50269 + 333, 51268, 50269]:
            sys.exit(f"{cls.__name__}: loc round trip failed: {ids2}")
        # Round trip over arbitrary bytes (every byte value, a few scripts).
        sample = "Grüße, 東京! naïve café — émoji 🙂 \t\n" + "".join(chr(c) for c in range(32, 127))
        if tok.decode(tok(sample, add_special_tokens=False)["input_ids"]) != sample:
            sys.exit(f"{cls.__name__}: byte round trip failed")
        if getattr(tok, "image_token", None) != IMAGE_TOKEN or tok.image_token_id != IMAGE_TOKEN_ID:
            sys.exit(f"{cls.__name__}: image_token attribute missing")
        checks.append(cls.__name__)
    print(f"verified with {', '.join(checks)}: <CAPTION> -> [0, 2264, 473, 5, 2274, 6190, 116, 2], "
          f"<loc_0>=50269 <loc_999>=51268 <od>=50265 <and>=51288 <image>=51289, {IMAGE_TOKEN_ID + 1} tokens, round trips ok")


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("out")
    ap.add_argument("--whisper-sdist", default=None, help="openai-whisper-20250625 sdist (default: /tmp/ow/openai_whisper-*.tar.gz)")
    a = ap.parse_args()
    sdist = a.whisper_sdist or next(iter(sorted(glob.glob("/tmp/ow/openai_whisper-*.tar.gz"))), None)
    if not sdist:
        sys.exit("no openai-whisper sdist: pip download --no-deps --no-binary :all: openai-whisper==20250625 -d /tmp/ow")
    ranks = read_gpt2_ranks(sdist)
    if len(ranks) != 50256:
        sys.exit(f"gpt2.tiktoken has {len(ranks)} tokens, expected 50256")
    roberta = read_roberta_id_bytes()
    vocab, guessed = build_vocab(ranks, roberta)
    merges = recover_merges(ranks)
    print(f"{len(vocab)} base tokens, {len(merges)} merges; control bytes placed by rank order (unverified): "
          + ", ".join(f"{i}={t!r}" for i, t in guessed))
    write_files(a.out, vocab, merges)
    verify(a.out)


if __name__ == "__main__":
    main()
