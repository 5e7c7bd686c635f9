#!/usr/bin/env python3
"""Run the RPTQ authors' own code (hahnyuan/RPTQ4LLM) on the CPU, on exactly our windows.

A development aid for issue 14 ("match the authors' numbers"): it is not part of the product, the product never
imports it, and none of the authors' code is copied into ours. It drives a local clone of RPTQ4LLM:

  * `tools/reference/rptq4llm-cpu.patch` is applied to the clone (git apply; see that file and README.md in
    docs/results/authors/ for the five hunks P1-P5: two result caches removed, two CUDA-only calls guarded, the
    GPTQ weight stored in the model's dtype instead of a hard-coded .half());
  * the authors' `main.main()` is then called with their own command-line flags for each preset, so the weight,
    activation, Q/K/V, LayerNorm-output and softmax quantizer parameters are built by their main.py, and their
    `opt_reorder_quantize` / GPTQ / quantizers do all the work. Run-time monkey-patches (all in this file,
    function `install_monkeypatches`) replace only the I/O around it:
      M1 `lm_evaluation.lm_eval` (zero-shot tasks, unused with --tasks "") is stubbed: it needs `datasets`,
         `sqlitedict`, ... and the network;
      M2 `main.net_choices` gets "tiny-opt-16m" so argparse accepts the name;
      M3 `main.OPTClass` loads the local model folder (no hub) in FP32 on the CPU (theirs: torch_dtype="auto",
         i.e. FP16 on a GPU; FP16 GEMMs are not supported by PyTorch 1.13 on the CPU), slow tokenizer as theirs;
      M4 `main.get_loaders` returns our calibration windows: `/calibration/tokens` [N, seqlen] of our statistics
         file, as their (input, target) pairs;
      M5 `main.evaluate` is replaced: our WikiText-2 convention (whole file tokenized once with the model's slow
         tokenizer, one BOS; non-overlapping windows; first W windows; ppl = exp(mean of the windows' mean NLL)),
         computed with their loop body (decoder -> lm_head -> CrossEntropyLoss). Their evaluate() reads the HF
         datasets and, with --limit, divides the NLL of limit+1 windows by the token count of all windows;
      M6 (instrumentation only) R1_reorder..R5_reorder are wrapped to record each layer's reorder index and
         cluster counts, for the per-tap quantizer dump.
    Off by default, for the diagnostic variants only (named in the output file names):
      M7 --stable-argsort: `torch.argsort(labels)` in reorder_utils.tensor_calc_reorder_index becomes a stable
         sort, so channels keep their original order inside a cluster (theirs is PyTorch's default unstable sort:
         the order inside a cluster, hence GPTQ's column order, depends on the sort implementation);
      M8 --kmeans-seed N: sklearn KMeans(random_state=N) instead of their random_state=0.

Usage (one preset per process, since the authors' code keeps module-level state):
  python run_rptq4llm.py --preset W4A8 --out-dir DIR [--dump-layer 1]
  python run_rptq4llm.py --all --out-dir DIR      # every preset, each in a subprocess, logs + summary.json
"""
import argparse
import hashlib
import json
import math
import os
import platform
import subprocess
import sys
import time
import types

# The authors' flags for each setting (README usage of RPTQ4LLM; main.py maps them to quantizer params).
PRESETS = {
    "FP": None,  # the unmodified model, evaluated without the authors' quantization pass (sanity check)
    "W16A16": ["--wbits", "16", "--abits", "16"],
    "W4A16": ["--wbits", "4", "--abits", "16"],
    "W4A8": ["--wbits", "4", "--abits", "8"],
    "W4A4": ["--wbits", "4", "--abits", "4"],
    "W4A4KV": ["--wbits", "4", "--abits", "4", "--only_quant_kv"],
    "W4A3KV": ["--wbits", "4", "--abits", "3", "--only_quant_kv"],
    "W3A3KV": ["--wbits", "3", "--abits", "3", "--only_quant_kv"],
    "W16A8": ["--wbits", "16", "--abits", "8"],
    "W4A4-1cluster": ["--wbits", "4", "--abits", "4", "--R1_clusters", "1", "--R2_clusters", "1",
                      "--R3_clusters", "1", "--R4_clusters", "1", "--R5_clusters", "1"],
    # diagnostics: one cluster per tap takes k-means out of the comparison
    "W4A16-1cluster": ["--wbits", "4", "--abits", "16", "--R1_clusters", "1", "--R2_clusters", "1",
                       "--R3_clusters", "1", "--R4_clusters", "1", "--R5_clusters", "1"],
    "W16A8-1cluster": ["--wbits", "16", "--abits", "8", "--R1_clusters", "1", "--R2_clusters", "1",
                       "--R3_clusters", "1", "--R4_clusters", "1", "--R5_clusters", "1"],
}
ORDER = ["FP", "W16A16", "W4A16", "W4A8", "W4A4", "W4A4KV", "W4A3KV", "W3A3KV", "W16A8", "W4A4-1cluster"]
DIAGNOSTIC = ["W4A16-1cluster", "W16A8-1cluster"]
EXPECTED_COMMIT = "96190691f02be6b27ba24d5a73574dbf9a8336c6"
HERE = os.path.dirname(os.path.abspath(__file__))
PATCH = os.path.join(HERE, "rptq4llm-cpu.patch")


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def prepare_clone(repo):
    """Check the clone's commit and apply the CPU patch once (idempotent)."""
    head = subprocess.run(["git", "-C", repo, "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
    head = head.stdout.strip()
    if head != EXPECTED_COMMIT:
        print(f"warning: clone at {head}, patch made for {EXPECTED_COMMIT}", file=sys.stderr)
    rev = subprocess.run(["git", "-C", repo, "apply", "--reverse", "--check", PATCH], capture_output=True)
    if rev.returncode == 0:
        return head  # already applied
    subprocess.run(["git", "-C", repo, "apply", PATCH], check=True)
    return head


def load_calibration(stats):
    import h5py
    import numpy as np

    with h5py.File(stats, "r") as f:
        toks = np.asarray(f["/calibration/tokens"][:], dtype=np.int64)
        attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f["calibration"].attrs.items()}
    return toks, attrs


def tokenize_eval(tokenizer, path, cache_dir):
    """The whole file, one call, as their datautils does (`tokenizer(text)`: one BOS)."""
    import torch

    key = sha256(path)[:16]
    cache = os.path.join(cache_dir, f"eval_ids_{key}.pt") if cache_dir else None
    if cache and os.path.exists(cache):
        return torch.load(cache)
    with open(path, encoding="utf-8", newline="") as f:
        text = f.read()
    ids = tokenizer(text, return_tensors="pt").input_ids
    if cache:
        os.makedirs(cache_dir, exist_ok=True)
        torch.save(ids, cache)
    return ids


def install_monkeypatches(opts, record):
    import numpy as np
    import torch

    # M1: lm_evaluation needs packages and data we do not use (--tasks is "").
    for name in ["lm_evaluation", "lm_evaluation.lm_eval"]:
        mod = types.ModuleType(name)
        mod.__path__ = []
        sys.modules[name] = mod
    sys.modules["lm_evaluation.lm_eval"].tasks = types.SimpleNamespace()
    sys.modules["lm_evaluation.lm_eval"].evaluator = types.SimpleNamespace()
    sys.modules["lm_evaluation"].lm_eval = sys.modules["lm_evaluation.lm_eval"]

    import main as authors_main
    import models.opt as authors_opt
    import quantize.opt_reorder_quantize as orq
    from transformers import AutoTokenizer, OPTForCausalLM

    # M2
    authors_main.net_choices.append("tiny-opt-16m")

    # M3: their OPTClass.__init__, loading our folder in FP32 on the CPU.
    class LocalOPT(authors_opt.OPTClass):
        def __init__(self, args):
            authors_opt.BaseLM.__init__(self)
            self.args = args
            self._device = torch.device("cpu")
            self.model_name = args.model
            self.batch_size_per_gpu = args.batch_size
            self.model_config = args.model
            self.model = OPTForCausalLM.from_pretrained(opts.model, torch_dtype=torch.float32)
            self.seqlen = self.model.config.max_position_embeddings
            self.model.eval()
            self.tokenizer = AutoTokenizer.from_pretrained(opts.model, use_fast=False)
            self.vocab_size = self.tokenizer.vocab_size
            print("OPT vocab size: ", self.vocab_size)

    authors_main.OPTClass = LocalOPT

    # M4: our calibration windows.
    toks, cal_attrs = load_calibration(opts.stats)
    record["calibration"] = {"stats": opts.stats, "stats_sha256": sha256(opts.stats), "shape": list(toks.shape),
                             "attrs": {k: (v.item() if hasattr(v, "item") else v) for k, v in cal_attrs.items()}}

    def get_loaders(name, nsamples=128, seed=0, seqlen=2048, model="", cache_dir=""):
        assert toks.shape[0] >= nsamples, (toks.shape, nsamples)
        assert toks.shape[1] == seqlen, f"calibration windows have {toks.shape[1]} tokens, model seqlen {seqlen}"
        loader = []
        for i in range(nsamples):
            inp = torch.from_numpy(toks[i : i + 1].copy())
            tar = inp.clone()
            tar[:, :-1] = -100
            loader.append((inp, tar))
        print(f"[run_rptq4llm] calibration: {nsamples} windows of {seqlen} tokens from {opts.stats}")
        return loader, None

    authors_main.get_loaders = get_loaders

    # M6: record reorder indices per layer (no behaviour change).
    calls = {}
    for rname in ["R1_reorder", "R2_reorder", "R3_reorder", "R4_reorder", "R5_reorder"]:
        orig = getattr(orq, rname)

        def wrapped(*a, __orig=orig, __r=rname[:2], **kw):
            index, counts = a[-2], a[-1]
            layer = calls.get(__r, 0)
            calls[__r] = layer + 1
            record.setdefault("reorder", {}).setdefault(layer, {})[__r] = {
                "index": [int(x) for x in index.tolist()],
                "counts": [int(x) for x in np.asarray(counts).tolist()],
            }
            return __orig(*a, **kw)

        setattr(orq, rname, wrapped)

    import quantize.reorder_utils as ru

    if opts.stable_argsort:  # M7
        class _StableArgsortTorch:
            def __getattr__(self, name):
                return getattr(torch, name)

            @staticmethod
            def argsort(x, *a, **kw):
                return torch.argsort(x, *a, stable=True, **kw)

        ru.torch = _StableArgsortTorch()
    if opts.kmeans_seed is not None:  # M8
        _KMeans = ru.KMeans

        def seeded_kmeans(*a, **kw):
            kw["random_state"] = opts.kmeans_seed
            return _KMeans(*a, **kw)

        ru.KMeans = seeded_kmeans

    # M5: our evaluation convention, their loop body.
    @torch.no_grad()
    def evaluate(lm, args):
        if opts.dump_layer is not None:
            record["quantizers"] = dump_quantizers(lm, opts.dump_layer, record)
        return evaluate_windows(lm, opts, record)

    authors_main.evaluate = evaluate
    return authors_main, LocalOPT


def evaluate_windows(lm, opts, record):
    import torch
    import torch.nn as nn

    ids = tokenize_eval(lm.tokenizer, opts.eval_data, opts.cache_dir)
    record["eval"] = {"data": opts.eval_data, "data_sha256": sha256(opts.eval_data), "tokens": int(ids.numel()),
                      "first_ids": [int(x) for x in ids[0, :16].tolist()]}
    if opts.ours_ids:
        with open(opts.ours_ids) as f:
            ours = json.load(f)["ids"]
        same = len(ours) == ids.numel() and ours == ids[0].tolist()
        record["eval"]["ids_equal_ours"] = bool(same)
        record["eval"]["ours_tokens"] = len(ours)
        print(f"[run_rptq4llm] token ids equal ours ({opts.ours_ids}): {same}")
    seqlen = opts.seqlen
    assert seqlen == lm.seqlen or seqlen <= lm.seqlen
    nwin = min(ids.numel() // seqlen, opts.windows)
    lm.model.config.use_cache = False
    lm.model.eval()
    nlls = []
    t0 = time.time()
    with torch.no_grad():
        for i in range(nwin):
            batch = ids[:, i * seqlen : (i + 1) * seqlen].to(lm.device)
            outputs = lm.model.model.decoder(batch)
            hidden_states = outputs[0]
            logits = lm.model.lm_head(hidden_states)
            shift_logits = logits[:, :-1, :]
            shift_labels = batch[:, 1:]
            loss = nn.CrossEntropyLoss()(shift_logits.reshape(-1, shift_logits.size(-1)).float(),
                                         shift_labels.reshape(-1))
            nlls.append(float(loss))
    ppl = math.exp(sum(nlls) / len(nlls))
    record["eval"].update({"windows": nwin, "seqlen": seqlen, "window_nll": nlls, "ppl": ppl,
                           "eval_seconds": time.time() - t0})
    print(f"wikitext2 {ppl}")
    return {"wikitext2": ppl}


def dump_quantizers(lm, layer_idx, record):
    """Per-cluster scale / round_zero_point of every activation quantizer of one layer after calibration."""
    import torch

    layer = lm.model.model.decoder.layers[layer_idx]
    attn = layer.self_attn
    reorder = record.get("reorder", {}).get(layer_idx, {})
    taps = [
        ("attn_input", "R1", "self_attn_layer_norm.out_quantizer", layer.self_attn_layer_norm.out_quantizer,
         "output of self_attn_layer_norm, gathered by R1 (input of q/k/v)"),
        ("q", "R2", "self_attn.qkt_matmul.x1_quantizer", attn.qkt_matmul.x1_quantizer,
         "q_proj output *after* the head_dim**-0.5 scaling (clusters were computed before it)"),
        ("k", "R2", "self_attn.qkt_matmul.x2_quantizer", attn.qkt_matmul.x2_quantizer, "k_proj output"),
        ("v", "R3", "self_attn.pv_matmul.x2_quantizer", attn.pv_matmul.x2_quantizer, "v_proj output"),
        ("attn_output", "R3", "self_attn.out_proj.act_quantizer", attn.out_proj.act_quantizer,
         "input of out_proj (attention output)"),
        ("ffn_input", "R4", "final_layer_norm.out_quantizer", layer.final_layer_norm.out_quantizer,
         "output of final_layer_norm, gathered by R4 (input of fc1)"),
        ("ffn_hidden", "R5", "fc2.act_quantizer", layer.fc2.act_quantizer, "input of fc2 (after ReLU)"),
    ]
    out = {"layer": layer_idx, "taps": {},
           "softmax": {"module": "self_attn.pv_matmul.x1_quantizer",
                       "metric": attn.pv_matmul.x1_quantizer.metric,
                       "n_bits": attn.pv_matmul.x1_quantizer.n_bits,
                       "note": "fix0to1: round(p*255)/255 whatever n_bits (< 16)"}}
    for tap, rname, modname, q, desc in taps:
        entry = {"module": modname, "reorder": rname, "description": desc, "n_bits": q.n_bits,
                 "metric": q.metric, "dynamic": q.dynamic}
        if q.n_bits >= 16 or q.scale is None:
            entry["quantized"] = False
            out["taps"][tap] = entry
            continue
        counts = [int(c) for c in q.cluster_counts] if q.cluster_counts is not None else None
        scale = q.scale.detach().float().reshape(-1)
        rzp = q.round_zero_point.detach().float().reshape(-1)
        zp = q.zero_point.detach().float().reshape(-1)
        starts = [0]
        for c in (counts or [scale.numel()])[:-1]:
            starts.append(starts[-1] + c)
        n = 2 ** q.n_bits
        clusters = []
        for k, st in enumerate(starts):
            s, z, zr = float(scale[st]), float(zp[st]), float(rzp[st])
            clusters.append({
                "count": (counts[k] if counts else scale.numel()), "scale": s, "zero_point": z,
                "round_zero_point": zr,
                # the EMA'd range it came from: scale = (max - min) / 2^n, zero_point = -(max + min) / (2 scale)
                "range_min": (-n * s - 2 * z * s) / 2, "range_max": (n * s - 2 * z * s) / 2,
                "scale_clamped": s <= 1e-4 * (1 + 1e-6) or s >= 1e4,
            })
        entry.update({"quantized": True, "cluster_counts": counts, "clusters": clusters,
                      "channel_index": reorder.get(rname, {}).get("index"),
                      "per_channel_shape": list(q.scale.shape)})
        out["taps"][tap] = entry
    out["note"] = ("channel_index[k] = original channel at reordered position k (their index_select order); "
                   "clusters are consecutive runs of cluster_counts in that order. For R2/R3 the index and counts "
                   "are per head, concatenated (head h's channels are h*head_dim..). range_min/max are recovered "
                   "from scale and the unrounded zero_point (valid unless scale_clamped).")
    return out


def variant(opts):
    return opts.preset + ("-stable" if opts.stable_argsort else "") + (
        f"-seed{opts.kmeans_seed}" if opts.kmeans_seed is not None else "")


def run_one(opts):
    import torch

    record = {"preset": opts.preset, "variant": variant(opts), "flags": PRESETS[opts.preset],
              "stable_argsort": opts.stable_argsort, "kmeans_seed": opts.kmeans_seed}
    head = prepare_clone(opts.repo)
    record["authors_commit"] = head
    sys.path.insert(0, opts.repo)
    os.chdir(opts.repo)
    torch.set_num_threads(opts.threads)
    authors_main, LocalOPT = install_monkeypatches(opts, record)
    t0 = time.time()
    if PRESETS[opts.preset] is None:
        args = types.SimpleNamespace(model="facebook/tiny-opt-16m", batch_size=1)
        lm = LocalOPT(args)
        authors_main.evaluate(lm, args)
    else:
        cache_dir = os.path.join(opts.cache_dir or "/tmp", f"rptq4llm-models-{os.getpid()}")
        argv = ["main.py", "tiny-opt-16m", "--eval_ppl", "--nsamples", str(opts.nsamples),
                "--calib_dataset", "c4", "--cache_dir", cache_dir, "--output_path", opts.main_output_dir] \
            + PRESETS[opts.preset]
        record["argv"] = argv
        print("[run_rptq4llm] argv:", " ".join(argv), flush=True)
        sys.argv = argv
        authors_main.main()
    record["seconds"] = time.time() - t0
    record["ppl"] = record["eval"]["ppl"]
    os.makedirs(opts.out_dir, exist_ok=True)
    with open(os.path.join(opts.out_dir, f"authors_{variant(opts)}.json"), "w") as f:
        json.dump(record, f, indent=1)
    if opts.dump_layer is not None and "quantizers" in record:
        with open(os.path.join(opts.out_dir, f"authors_{variant(opts)}_layer{opts.dump_layer}_quantizers.json"),
                  "w") as f:
            json.dump(record["quantizers"], f, indent=1)
    print(f"[run_rptq4llm] {variant(opts)}: ppl {record['ppl']:.6f} ({record['seconds']:.1f} s)")


def environment():
    def cmd(c):
        try:
            return subprocess.run(c, shell=True, capture_output=True, text=True).stdout
        except Exception as e:  # noqa: BLE001
            return str(e)

    import numpy
    import sklearn
    import torch
    import transformers

    return {"python": sys.version, "executable": sys.executable, "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "transformers": transformers.__version__,
            "sklearn": sklearn.__version__, "numpy": numpy.__version__, "platform": platform.platform(),
            "nproc": cmd("nproc").strip(), "lscpu_head": cmd("lscpu | head -20"),
            "loadavg": cmd("cat /proc/loadavg").strip()}


def run_all(opts):
    os.makedirs(opts.out_dir, exist_ok=True)
    summary = {"environment": environment(), "presets": {}, "settings": {
        "model": opts.model, "stats": opts.stats, "stats_sha256": sha256(opts.stats), "eval_data": opts.eval_data,
        "seqlen": opts.seqlen, "windows": opts.windows, "nsamples": opts.nsamples, "threads": opts.threads,
        "patch": os.path.relpath(PATCH, os.path.join(HERE, "..", "..")), "patch_sha256": sha256(PATCH)}}
    presets = opts.presets.split(",") if opts.presets else ORDER
    summary_path = os.path.join(opts.out_dir, opts.summary)
    if os.path.exists(summary_path):  # add to an earlier summary (e.g. diagnostics after the main run)
        with open(summary_path) as f:
            old = json.load(f)
        old["presets"].update(summary["presets"])
        summary["presets"] = old["presets"]
        summary.setdefault("earlier_environments", []).append(old.get("environment"))
    for p in presets:
        name = p + ("-stable" if opts.stable_argsort else "") + (
            f"-seed{opts.kmeans_seed}" if opts.kmeans_seed is not None else "")
        log = os.path.join(opts.out_dir, f"authors_{name}.log")
        cmd = [sys.executable, os.path.abspath(__file__), "--preset", p] + passthrough(opts)
        if p == "W4A8" and opts.dump_layer is not None:
            cmd += ["--dump-layer", str(opts.dump_layer)]
        print(f"== {p}: {' '.join(cmd)}", flush=True)
        t0 = time.time()
        with open(log, "w") as f:
            f.write("$ " + " ".join(cmd) + "\n")
            f.flush()
            rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT).returncode
        res = {"rc": rc, "wall_seconds": time.time() - t0, "log": os.path.basename(log)}
        jpath = os.path.join(opts.out_dir, f"authors_{name}.json")
        if rc == 0 and os.path.exists(jpath):
            with open(jpath) as f:
                r = json.load(f)
            res.update({"ppl": r["ppl"], "flags": r["flags"], "argv": r.get("argv"),
                        "ids_equal_ours": r["eval"].get("ids_equal_ours"), "windows": r["eval"]["windows"]})
        print(f"   -> {res}", flush=True)
        summary["presets"][name] = res
        with open(summary_path, "w") as f:
            json.dump(summary, f, indent=1)


def passthrough(opts):
    out = ["--repo", opts.repo, "--model", opts.model, "--stats", opts.stats, "--eval-data", opts.eval_data,
           "--seqlen", str(opts.seqlen), "--windows", str(opts.windows), "--nsamples", str(opts.nsamples),
           "--out-dir", opts.out_dir, "--threads", str(opts.threads), "--main-output-dir", opts.main_output_dir]
    if opts.cache_dir:
        out += ["--cache-dir", opts.cache_dir]
    if opts.ours_ids:
        out += ["--ours-ids", opts.ours_ids]
    if opts.stable_argsort:
        out += ["--stable-argsort"]
    if opts.kmeans_seed is not None:
        out += ["--kmeans-seed", str(opts.kmeans_seed)]
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--preset", choices=ORDER + DIAGNOSTIC)
    g.add_argument("--all", action="store_true", help="every preset (or --presets), one subprocess each")
    ap.add_argument("--presets", help="comma-separated subset for --all")
    ap.add_argument("--repo", default="/work/rptq4llm", help="clone of hahnyuan/RPTQ4LLM")
    ap.add_argument("--model", default="/work/shared/models/tiny-opt-16m")
    ap.add_argument("--stats", required=True, help="our statistics file (its /calibration/tokens are used)")
    ap.add_argument("--eval-data", default="/work/shared/data/wikitext2-test.txt")
    ap.add_argument("--ours-ids", help="`rptq tokenize --json` output of the same file, to check the ids")
    ap.add_argument("--seqlen", type=int, default=512)
    ap.add_argument("--windows", type=int, default=40)
    ap.add_argument("--nsamples", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dump-layer", type=int, default=None)
    ap.add_argument("--stable-argsort", action="store_true", help="diagnostic M7 (see above)")
    ap.add_argument("--kmeans-seed", type=int, default=None, help="diagnostic M8 (see above)")
    ap.add_argument("--summary", default="authors_summary.json", help="summary file name for --all")
    ap.add_argument("--out-dir", required=True)
    ap.add_argument("--cache-dir", default=None, help="where tokenized eval ids and scratch go")
    ap.add_argument("--main-output-dir", default="/tmp/rptq4llm-output",
                    help="their main.py appends a results line to <dir>/<net>.txt")
    opts = ap.parse_args()
    for k in ["repo", "model", "stats", "eval_data", "ours_ids", "out_dir", "cache_dir", "main_output_dir"]:
        if getattr(opts, k):
            setattr(opts, k, os.path.abspath(getattr(opts, k)))
    if opts.all:
        run_all(opts)
    else:
        run_one(opts)


if __name__ == "__main__":
    main()
