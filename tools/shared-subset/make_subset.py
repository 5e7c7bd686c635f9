#!/usr/bin/env python3
"""Writes tests/data/shared: the part of ../shared that the tests need, small enough to carry in the repo.

Usage (from anywhere; plain Python 3, no packages):
    tools/shared-subset/make_subset.py [--shared ../shared] [--out tests/data/shared]
    tools/shared-subset/make_subset.py --check build/app/rptq [--shared ../shared] [--out tests/data/shared]

The first form rewrites the folder from ../shared: small reference files copied byte for byte, the first rows of
the tiny-opt-16m logits, and the first lines of three test texts (see tests/data/README.md). The cuts are fixed
here (ROWS, HEADS), so the same ../shared gives the same bytes. The second form checks, with the `rptq` command
line, that every text head tokenizes (tiny-opt-16m, one BOS) to exactly the first tokens of its whole file and to
at least the tokens the tests use; tests/test_shared_subset.cpp checks the same whenever ../shared is present.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Copied unchanged (paths relative to ../shared).
COPIES = [
    "reference/tokenizer-opt.json",
    "reference/tokenizer-stories260k.json",
    "reference/perplexity.json",
    "reference/logits-stories260k.json",
    "reference/logits-stories260k.f32",
]

# logits-tiny-opt-16m.f32 is 16 x 50272 float32 (3.2 MB): its first ROWS rows (the logits of the first ROWS ids:
# the model is causal, so they are what a pass over those ids alone gives).
ROWS = 8

# The first `lines` lines of each text, each with its newline: the fewest whole lines that tokenize (tiny-opt-16m,
# with BOS) to at least `tokens` tokens, the first tokens of the whole file: 20,480 = 40 windows of 512 (the
# perplexity rows' max_windows x seqlen) plus a margin of 64. Not ptb-test.txt: the Penn Treebank text is under
# LDC's terms (../shared/data/SOURCES.md), so the repo does not redistribute it.
HEADS = [
    {"name": "wikitext2-test", "lines": 298, "tokens": 20480 + 64},
    {"name": "c4-test", "lines": 395, "tokens": 20480 + 64},
]


def read(path):
    with open(path, "rb") as f:
        return f.read()


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def head_bytes(text, lines):
    parts = text.split(b"\n")
    if len(parts) <= lines:
        sys.exit("fewer than %d lines" % lines)
    return b"\n".join(parts[:lines]) + b"\n"


def make(shared, out):
    for rel in COPIES:
        write(os.path.join(out, rel), read(os.path.join(shared, rel)))
        print("copied", rel)

    meta = json.loads(read(os.path.join(shared, "reference/logits-tiny-opt-16m.json")))
    tokens, vocab = meta["shape"]
    raw = read(os.path.join(shared, "reference/logits-tiny-opt-16m.f32"))
    assert len(raw) == tokens * vocab * 4 and len(meta["ids"]) == tokens and ROWS <= tokens
    meta["ids"] = meta["ids"][:ROWS]
    meta["shape"] = [ROWS, vocab]
    meta["cut"] = "the first %d of the %d rows of ../shared/reference/logits-tiny-opt-16m.f32 (%s)" % (
        ROWS, tokens, os.path.basename(__file__))
    name = "reference/logits-tiny-opt-16m-head%d" % ROWS
    write(os.path.join(out, name + ".json"), (json.dumps(meta, indent=1) + "\n").encode())
    write(os.path.join(out, name + ".f32"), raw[: ROWS * vocab * 4])
    print("cut", name, "(%d of %d rows)" % (ROWS, tokens))

    for h in HEADS:
        text = read(os.path.join(shared, "data", h["name"] + ".txt"))
        cut = head_bytes(text, h["lines"])
        assert text.startswith(cut)
        write(os.path.join(out, "data", h["name"] + "-head.txt"), cut)
        print("cut data/%s-head.txt (%d of %d bytes)" % (h["name"], len(cut), len(text)))


def check(rptq, shared, out):
    model = os.path.join(ROOT, "resources/models/tiny-opt-16m")

    def ids(path):
        r = subprocess.run([rptq, "tokenize", model, "--file", path, "--json"], capture_output=True, check=True)
        return json.loads(r.stdout)["ids"]

    ok = True
    for h in HEADS:
        head = ids(os.path.join(out, "data", h["name"] + "-head.txt"))
        whole = ids(os.path.join(shared, "data", h["name"] + ".txt"))
        prefix = head == whole[: len(head)]
        enough = len(head) >= h["tokens"]
        print("%s-head.txt: %d tokens, whole file %d; prefix of the whole file's: %s; at least %d: %s"
              % (h["name"], len(head), len(whole), prefix, h["tokens"], enough))
        ok = ok and prefix and enough
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", default=os.path.join(os.path.dirname(ROOT), "shared"))
    ap.add_argument("--out", default=os.path.join(ROOT, "tests/data/shared"))
    ap.add_argument("--check", metavar="RPTQ", help="check the text heads with this rptq binary; write nothing")
    a = ap.parse_args()
    if a.check:
        sys.exit(0 if check(a.check, a.shared, a.out) else 1)
    make(a.shared, a.out)


if __name__ == "__main__":
    main()
