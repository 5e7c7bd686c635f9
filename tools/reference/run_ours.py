#!/usr/bin/env python3
"""Run our `rptq eval` on the same setting as run_rptq4llm.py, every preset, and tabulate both.

Stdlib only. For each preset it stores the raw stdout (`--json`) as ours_<preset>.json and stderr as
ours_<preset>.stderr in --out-dir, plus ours_summary.json (commands, binary, ppl). With --table it prints the
markdown comparison against authors_summary.json from run_rptq4llm.py in the same folder.

  python3 tools/reference/run_ours.py --stats STATS --out-dir docs/results/authors
  python3 tools/reference/run_ours.py --out-dir docs/results/authors --table
"""
import argparse
import hashlib
import json
import os
import subprocess
import sys
import time

# Our flags for the authors' settings (names as in run_rptq4llm.py).
PRESETS = {
    "FP": None,  # no --stats: the unquantized model
    "W16A16": ["--preset", "W16A16"],
    "W4A16": ["--preset", "W4A16"],
    "W4A8": ["--preset", "W4A8"],
    "W4A4": ["--preset", "W4A4"],
    "W4A4KV": ["--preset", "W4A4KV"],
    "W4A3KV": ["--preset", "W4A3KV"],
    "W3A3KV": ["--preset", "W3A3KV"],
    "W16A8": ["--wbits", "16", "--abits", "8"],
    "W4A4-1cluster": ["--preset", "W4A4", "--clusters", "1"],
}
ORDER = list(PRESETS)
# diagnostics (docs/results/authors/diagnostics): k-means out of the comparison, or another k-means seed
DIAGNOSTIC = {
    "W4A16-1cluster": ["--preset", "W4A16", "--clusters", "1"],
    "W16A8-1cluster": ["--wbits", "16", "--abits", "8", "--clusters", "1"],
    "W4A16-seed0": ["--preset", "W4A16", "--kmeans-seed", "0"],
    "W4A16-seed1": ["--preset", "W4A16", "--kmeans-seed", "1"],
    "W4A16-seed2": ["--preset", "W4A16", "--kmeans-seed", "2"],
}
PRESETS.update(DIAGNOSTIC)
LABEL = {"FP": "FP (no quantization pass)", "W4A4-1cluster": "W4A4, 1 cluster per tap"}


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sh(cmd, cwd=None):
    r = subprocess.run(cmd, shell=True, capture_output=True, text=True, cwd=cwd)
    return r.stdout.strip()


def run_preset(opts, name):
    cmd = [opts.rptq, "eval", opts.model, "--data", opts.eval_data]
    if PRESETS[name] is not None:
        cmd += ["--stats", opts.stats] + PRESETS[name] + ["--grid", "reference"]
    cmd += ["--seqlen", str(opts.seqlen), "--max-windows", str(opts.windows), "--threads", str(opts.threads),
            "--json"]
    binary_before = sha256(opts.rptq)
    for attempt in range(opts.retries + 1):
        t0 = time.time()
        try:
            r = subprocess.run(cmd, capture_output=True, text=True)
            rc, out, err = r.returncode, r.stdout, r.stderr
        except OSError as e:  # binary being relinked (ETXTBSY) or briefly missing
            rc, out, err = -1, "", f"OSError: {e}"
        if rc == 0:
            break
        print(f"  {name}: rc {rc} (attempt {attempt + 1}), retrying in {opts.retry_wait} s: {err[-300:]}",
              flush=True)
        time.sleep(opts.retry_wait)
    wall = time.time() - t0
    with open(os.path.join(opts.out_dir, f"ours_{name}.json"), "w") as f:
        f.write(out)
    with open(os.path.join(opts.out_dir, f"ours_{name}.stderr"), "w") as f:
        f.write("$ " + " ".join(cmd) + "\n" + err)
    res = {"rc": rc, "command": " ".join(cmd), "wall_seconds": wall, "binary_sha256": binary_before}
    if sha256(opts.rptq) != binary_before:
        res["binary_changed_during_run"] = True  # relinked meanwhile: rerun this preset
    if rc == 0:
        j = json.loads(out)
        res["ppl"] = j["ppl"]
        res["description"] = j.get("quantization", {}).get("description")
    return res


def run_all(opts):
    os.makedirs(opts.out_dir, exist_ok=True)
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(opts.rptq))))
    summary = {
        "binary": {"path": opts.rptq, "sha256": sha256(opts.rptq), "mtime": time.ctime(os.path.getmtime(opts.rptq)),
                   "version": sh(f"{opts.rptq} --version")},
        "source_tree": {"path": repo, "head": sh("git rev-parse HEAD", repo),
                        "dirty_files": sh("git status --porcelain --untracked-files=no", repo).splitlines(),
                        "note": "the binary was built by another engineer from this tree, possibly with "
                                "uncommitted changes (listed)"},
        "settings": {"model": opts.model, "stats": opts.stats, "stats_sha256": sha256(opts.stats),
                     "eval_data": opts.eval_data, "seqlen": opts.seqlen, "windows": opts.windows,
                     "threads": opts.threads},
        "environment": {"nproc": sh("nproc"), "lscpu_head": sh("lscpu | head -20"),
                        "loadavg_start": sh("cat /proc/loadavg")},
        "presets": {},
    }
    presets = opts.presets.split(",") if opts.presets else ORDER
    for p in presets:
        res = run_preset(opts, p)
        print(f"{p}: {res}", flush=True)
        summary["presets"][p] = res
    summary["environment"]["loadavg_end"] = sh("cat /proc/loadavg")
    with open(os.path.join(opts.out_dir, opts.summary), "w") as f:
        json.dump(summary, f, indent=1)


def table(opts):
    with open(os.path.join(opts.out_dir, "authors_summary.json")) as f:
        a = json.load(f)["presets"]
    with open(os.path.join(opts.out_dir, "ours_summary.json")) as f:
        o = json.load(f)["presets"]
    lines = ["| preset | authors' code | rptq | difference |", "|---|---|---|---|"]
    for p in ORDER:
        if p not in a or p not in o or "ppl" not in a[p] or "ppl" not in o[p]:
            continue
        pa, po = a[p]["ppl"], o[p]["ppl"]
        lines.append(f"| {LABEL.get(p, p)} | {pa:.2f} | {po:.2f} | {100 * (po - pa) / pa:+.2f}% |")
    print("\n".join(lines))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rptq", default=os.path.join(os.path.dirname(__file__), "..", "..", "build", "app", "rptq"))
    ap.add_argument("--model", default="/work/shared/models/tiny-opt-16m")
    ap.add_argument("--stats", help="statistics file from `rptq calibrate` (the one given to run_rptq4llm.py)")
    ap.add_argument("--eval-data", default="/work/shared/data/wikitext2-test.txt")
    ap.add_argument("--seqlen", type=int, default=512)
    ap.add_argument("--windows", type=int, default=40)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--presets", help="comma-separated subset")
    ap.add_argument("--retries", type=int, default=10)
    ap.add_argument("--retry-wait", type=int, default=30)
    ap.add_argument("--out-dir", required=True)
    ap.add_argument("--summary", default="ours_summary.json", help="summary file name")
    ap.add_argument("--table", action="store_true", help="only print the markdown table from the summaries")
    opts = ap.parse_args()
    opts.rptq = os.path.abspath(opts.rptq)
    if opts.table:
        table(opts)
        return
    if not opts.stats:
        sys.exit("--stats is required")
    run_all(opts)


if __name__ == "__main__":
    main()
