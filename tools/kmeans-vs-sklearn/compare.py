#!/usr/bin/env python3
"""Our k-means against scikit-learn's on real channel ranges, tap by tap.

For every (layer, R1..R5) of each statistics file (`rptq calibrate`) and every k, runs `rptq clusters STATS --layer L
--tap R --k K --json --stat minmax` (the clusters quantization forms: the same features, seed rule and restarts),
rebuilds the same features here from the file's plain max/min (as core/src/method/reorder.cpp builds them), and fits
`sklearn.cluster.KMeans(n_clusters=k, n_init=10, random_state=0)` on them as float32, per KV head for R2/R3, as the
reference (RPTQ4LLM) does.

Like with like: both partitions are scored the same way, as the inertia of the partition (each point's squared
distance to the mean of its cluster, in float64; R2/R3 summed over heads). sklearn's own `inertia_` (computed in
the data's dtype, float32, against its last centres) is printed beside it. Our score from the labels is checked to
equal the inertia `rptq clusters` reports (relative 1e-6), which proves the features here are the ones it clustered.

  compare.py --rptq build/app/rptq STATS.h5... [--ks 4,8,16,32,64] [--head-ks 2,4,8] [--cache sk.json]
             [--fixture OUT --fixture-cases FILE:LAYER:TAP:K,... [--fixture-only]]

Prints one line per case (file, layer, tap, k, heads, points, ours, sklearn, ratio ours/sklearn) and per file the
worst ratio. --cache keeps sklearn's results between runs (keyed by the features' bytes and k). --fixture writes
the named cases' features and sklearn's partition inertia as text, for tests/method/test_kmeans.cpp (--fixture-only:
only those cases are run).
"""
import argparse
import hashlib
import json
import math
import os
import subprocess
import sys
import time

import h5py
import numpy as np
import sklearn
from sklearn.cluster import KMeans

TAP_NAMES = {1: "attn_input", 4: "ffn_input", 5: "ffn_hidden"}


def partition_sse(x, labels):
    """Sum of squared distances of the points to the mean of their cluster, in float64."""
    x = x.astype(np.float64)
    total = 0.0
    for c in np.unique(labels):
        p = x[labels == c]
        total += float(((p - p.mean(axis=0)) ** 2).sum())
    return total


class Stats:
    def __init__(self, path):
        self.path = path
        self.f = h5py.File(path, "r")
        m = self.f["model"].attrs
        self.layers = int(m["layers"])
        self.heads = int(m["heads"])
        self.kv_heads = int(m["kv_heads"])
        self.hd = int(m["head_dim"])
        self.llama = str(m["model_type"]) != "opt"

    def tap(self, layer, name):
        g = self.f[f"layers/{layer}/{name}"]
        return g["max"][:].astype(np.float32), g["min"][:].astype(np.float32)

    def group_range(self, hi, lo, g, c):
        """Channel c of KV group g's query heads: (max of hi, min of lo), as reorder.cpp's group_range."""
        group = self.heads // self.kv_heads
        idx = np.arange(g * group, (g + 1) * group) * self.hd + c
        return hi[idx].max(), lo[idx].min()

    def features(self, layer, r):
        """List of per-head feature arrays [points, dims] (one array for R1/R4/R5), float32, as reorder.cpp."""
        if r in TAP_NAMES:
            hi, lo = self.tap(layer, TAP_NAMES[r])
            return [np.stack([hi, lo], axis=1)]
        hd = self.hd
        out = []
        if r == 2:
            qh_all, ql_all = self.tap(layer, "q")
            kh_all, kl_all = self.tap(layer, "k")
            scale = np.float32(1.0) if self.llama else np.sqrt(np.float32(hd))
            points = hd // 2 if self.llama else hd
            for g in range(self.kv_heads):
                x = np.zeros((points, 4), np.float32)
                for p in range(points):
                    qh, ql = self.group_range(qh_all, ql_all, g, p)
                    kh, kl = kh_all[g * hd + p], kl_all[g * hd + p]
                    if self.llama:
                        p2 = p + hd // 2
                        qh2, ql2 = self.group_range(qh_all, ql_all, g, p2)
                        qh, ql = max(qh, qh2), min(ql, ql2)
                        kh, kl = max(kh, kh_all[g * hd + p2]), min(kl, kl_all[g * hd + p2])
                    x[p] = [np.float32(qh) * scale, kh, np.float32(ql) * scale, kl]
                out.append(x)
        else:  # R3
            ah, al = self.tap(layer, "attn_output")
            for g in range(self.kv_heads):
                x = np.zeros((hd, 2), np.float32)
                for c in range(hd):
                    x[c] = self.group_range(ah, al, g, c)
                out.append(x)
        return out


def ours(rptq, stats, layer, r, k):
    cmd = [rptq, "clusters", stats, "--layer", str(layer), "--tap", f"R{r}", "--k", str(k), "--json",
           "--stat", "minmax"]
    j = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    return np.asarray(j["labels"], np.int64), float(j["inertia"])


class SkCache:
    def __init__(self, path):
        self.path = path
        self.data = {}
        if path and os.path.exists(path):
            with open(path) as f:
                self.data = json.load(f)
        self.dirty = False

    def fit(self, x, k):
        key = hashlib.sha256(x.tobytes() + np.int64(x.shape[1]).tobytes()).hexdigest()[:32] + f":{k}"
        if key not in self.data:
            km = KMeans(n_clusters=k, n_init=10, random_state=0).fit(x)
            self.data[key] = [partition_sse(x, km.labels_), float(km.inertia_)]
            self.dirty = True
        return self.data[key]

    def save(self):
        if self.path and self.dirty:
            with open(self.path + ".tmp", "w") as f:
                json.dump(self.data, f)
            os.replace(self.path + ".tmp", self.path)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("stats", nargs="+")
    ap.add_argument("--rptq", default="build/app/rptq")
    ap.add_argument("--ks", default="4,8,16,32,64")
    ap.add_argument("--head-ks", default="2,4,8")
    ap.add_argument("--taps", default="1,2,3,4,5")
    ap.add_argument("--cache", default="")
    ap.add_argument("--fixture", default="")
    ap.add_argument("--fixture-cases", default="", help="FILE:LAYER:TAP:K,... (FILE: the stats file's base name)")
    ap.add_argument("--fixture-only", action="store_true", help="run only the --fixture-cases")
    a = ap.parse_args()
    ks = [int(v) for v in a.ks.split(",")]
    head_ks = [int(v) for v in a.head_ks.split(",")]
    taps = [int(v) for v in a.taps.split(",")]
    wanted = set(a.fixture_cases.split(",")) if a.fixture_cases else set()
    fixture = []
    cache = SkCache(a.cache)
    print(f"# sklearn {sklearn.__version__}, numpy {np.__version__}; KMeans(n_clusters=k, n_init=10, random_state=0) "
          "on float32 features")
    print("# score: inertia of the partition (squared distances to the cluster means, float64), summed over heads; "
          "sk_own: sklearn's inertia_ (float32)")
    print(f"# {'file':<10} {'layer':>5} {'tap':>3} {'k':>3} {'heads':>5} {'points':>6} {'ours':>14} {'sklearn':>14} "
          f"{'sk_own':>14} {'ratio':>8}")
    worst = {}
    t0 = time.time()
    for path in a.stats:
        st = Stats(path)
        base = os.path.splitext(os.path.basename(path))[0]
        for layer in range(st.layers):
            for r in taps:
                if a.fixture_only and not any(w.startswith(f"{base}:{layer}:R{r}:") for w in wanted):
                    continue
                feats = st.features(layer, r)
                points = feats[0].shape[0]
                for k in (ks if r in TAP_NAMES else head_ks):
                    if k > points:
                        continue  # k is capped by the points (per head for R2/R3)
                    if a.fixture_only and f"{base}:{layer}:R{r}:{k}" not in wanted:
                        continue
                    labels, reported = ours(a.rptq, path, layer, r, k)
                    width = st.hd if r in (2, 3) else points  # channels per head in the labels
                    mine = sk = sk_own = 0.0
                    for g, x in enumerate(feats):
                        mine += partition_sse(x, labels[g * width:g * width + x.shape[0]])
                        s, so = cache.fit(x, k)
                        sk += s
                        sk_own += so
                    if abs(mine - reported) > 1e-6 * max(abs(reported), 1e-30):
                        sys.exit(f"{base} layer {layer} R{r} k {k}: inertia from the labels {mine!r} != reported "
                                 f"{reported!r}: the features here are not the ones rptq clustered")
                    ratio = mine / sk if sk > 0 else (1.0 if mine == 0 else math.inf)
                    print(f"  {base:<10} {layer:>5} R{r:<2} {k:>3} {len(feats):>5} {points:>6} {mine:>14.7g} "
                          f"{sk:>14.7g} {sk_own:>14.7g} {ratio:>8.5f}", flush=True)
                    w = worst.get(base)
                    if w is None or ratio > w[0]:
                        worst[base] = (ratio, layer, r, k)
                    if f"{base}:{layer}:R{r}:{k}" in wanted:
                        fixture.append((f"{base}:{layer}:R{r}:{k}", k, feats, sk))
        cache.save()
    cache.save()
    print(f"# worst ratio per file ({time.time() - t0:.0f} s):")
    for base, (ratio, layer, r, k) in worst.items():
        print(f"#   {base}: {ratio:.5f} (layer {layer} R{r} k {k})")
    if a.fixture:
        with open(a.fixture, "w") as f:
            f.write("# k-means cases from real calibration ranges (tools/kmeans-vs-sklearn/compare.py --fixture):\n"
                    "# 'case NAME K HEADS SKLEARN_INERTIA', then per head 'head POINTS DIMS' and one point per line\n"
                    "# (float32 values, exact). SKLEARN_INERTIA: partition inertia of KMeans(n_init=10, random_state=0)"
                    f" (sklearn {sklearn.__version__}), float64, summed over heads.\n")
            for name, k, feats, sk in fixture:
                f.write(f"case {name} {k} {len(feats)} {sk!r}\n")
                for x in feats:
                    f.write(f"head {x.shape[0]} {x.shape[1]}\n")
                    for row in x:
                        f.write(" ".join(f"{float(v):.9g}" for v in row) + "\n")
        print(f"# wrote {len(fixture)} cases to {a.fixture}")


if __name__ == "__main__":
    main()
