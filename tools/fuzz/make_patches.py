#!/usr/bin/env python3
"""Turns rptq-fuzz findings (same-size mutations of one seed) into the byte patches of a regression test.

usage: make_patches.py SEED FINDING... > cases.json
Each case: {"found": "<finding file name>", "patches": [[offset, byte], ...]}.
"""
import json
import os
import sys

seed = open(sys.argv[1], "rb").read()
cases = []
for path in sys.argv[2:]:
    b = open(path, "rb").read()
    if len(b) != len(seed):
        sys.exit(f"{path}: not the seed's length (found without --same-size?)")
    patches = [[i, b[i]] for i in range(len(b)) if b[i] != seed[i]]
    cases.append({"found": os.path.basename(path), "patches": patches})
sys.stdout.write("[\n" + ",\n".join(json.dumps(c) for c in cases) + "\n]\n")
