"""Checks that the converted SmolLM2 folder's linear weights are Q4_1 values: in every row, every block of 32
consecutive input channels (in the source order) holds at most 16 levels min + k * (max - min) / 15, k = 0..15.

Usage: check_q4_1_grid.py MODEL_DIR/model.safetensors  (numpy and safetensors; prints one JSON line per linear
kind with the share of blocks on such a grid, then the total). Output of 2026-12-07:
docs/results/smollm2/q4_1-grid.txt.
"""
import sys, json, numpy as np
from safetensors.numpy import load_file
t = load_file(sys.argv[1])
tot = ongrid = 0
per = {}
for name, w in sorted(t.items()):
    if w.ndim != 2 or "embed" in name: continue
    w = w.astype(np.float64)
    out, inn = w.shape
    b = w.reshape(out, inn // 32, 32)
    mn = b.min(-1, keepdims=True); mx = b.max(-1, keepdims=True)
    d = (mx - mn) / 15
    q = np.where(d > 0, (b - mn) / np.where(d > 0, d, 1), 0)
    err = np.abs(q - np.round(q)).max(-1)
    ok = err < 1e-2
    kind = name.split(".")[-2]
    a, c = per.get(kind, (0, 0)); per[kind] = (a + ok.sum(), c + ok.size)
    tot += ok.size; ongrid += ok.sum()
print(json.dumps({k: round(a / c, 6) for k, (a, c) in per.items()}))
print("all linears: %d of %d blocks of 32 input channels lie on a 16-level grid (%.4f)" % (ongrid, tot, ongrid / tot))
