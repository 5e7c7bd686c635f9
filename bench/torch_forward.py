#!/usr/bin/python3
"""PyTorch eager fp32 forward pass of an OPT model folder, timed like bench_forward.

    /usr/bin/python3 bench/torch_forward.py MODEL_DIR [--seqlen 512] [--batch 1] [--threads N] [--repeats 5]
                     [--warmup 1] [--seed 1234] [--check-logits FILE] [--tolerance 1e-3]

The forward (bench/torch_opt.py, shared with torch_cuda.py) is written with plain torch ops, the way Hugging
Face's eager OPTForCausalLM (transformers 4.2x) computes it: embeddings + learned positions (offset 2), then per
layer LayerNorm -> q/k/v linear (q scaled by head_dim^-0.5) -> bmm(q, k^T) over the full T x T square + additive
causal mask (finfo.min) -> softmax -> bmm(p, v) -> out_proj + residual -> LayerNorm -> fc1 -> ReLU -> fc2 +
residual, a final LayerNorm and the tied LM head over all positions. torch 1.13 has no scaled_dot_product_attention,
so only this classic path is timed.

Weights are read from model.safetensors with numpy (format parsed here; F32, F16 and BF16 supported) and converted
to float32. Threads: torch.set_num_threads(N), and OMP_NUM_THREADS / OPENBLAS_NUM_THREADS are set to N before torch
is imported (Debian's torch calls the pthreads OpenBLAS, whose pool torch.set_num_threads does not size).
--check-logits FILE reads the token ids and logits bench_forward --dump-logits wrote, runs this forward on the
same tokens and compares (max |difference| <= tolerance), exiting 1 on a mismatch.
Output: one JSON line per result (starting with '{').
"""
import argparse
import json
import os
import struct
import sys
import time


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model_dir")
    ap.add_argument("--seqlen", type=int, default=512)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--threads", type=int, default=0, help="0 = all cores")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--label", default=None)
    ap.add_argument("--check-logits", default=None, help="file written by bench_forward --dump-logits")
    ap.add_argument("--tolerance", type=float, default=1e-3)
    ap.add_argument("--no-bench", action="store_true", help="only the logits check")
    return ap.parse_args()


ARGS = parse_args()
THREADS = ARGS.threads if ARGS.threads > 0 else (os.cpu_count() or 1)
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = str(THREADS)

# OMP_WAIT_POLICY=PASSIVE (set by the caller) stops torch's OpenMP threads spinning while the pthreads OpenBLAS
# pool works; such runs are reported as a separate engine.
ENGINE = "torch" + (f" OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}" if os.environ.get("OMP_WAIT_POLICY") else "")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from torch_opt import OPT, flops  # noqa: E402  (bench/torch_opt.py: the forward, shared with torch_cuda.py)


def openblas_info():
    """corename and config of the OpenBLAS torch loaded (Debian's torch calls BLAS through libblas.so.3)."""
    import ctypes
    libs = [l.split()[-1] for l in open("/proc/self/maps") if "openblas" in l and ".so" in l.split()[-1]]
    if not libs:
        return {"library": None}
    ob = ctypes.CDLL(libs[0])
    ob.openblas_get_config.restype = ctypes.c_char_p
    ob.openblas_get_corename.restype = ctypes.c_char_p
    return {"library": os.path.realpath(libs[0]), "config": ob.openblas_get_config().decode(),
            "corename": ob.openblas_get_corename().decode()}


def main():
    torch.set_num_threads(THREADS)
    torch.manual_seed(ARGS.seed)
    label = ARGS.label or os.path.basename(os.path.normpath(ARGS.model_dir))
    t0 = time.perf_counter()
    m = OPT(ARGS.model_dir)
    load_s = time.perf_counter() - t0
    status = 0

    with torch.inference_mode():
        if ARGS.check_logits:
            with open(ARGS.check_logits, "rb") as f:
                magic = f.read(8)
                if magic != b"RPTQLGT1":
                    raise SystemExit(f"{ARGS.check_logits}: not a bench_forward --dump-logits file")
                B, T, V = struct.unpack("<3q", f.read(24))
                ids = np.frombuffer(f.read(4 * B * T), dtype="<i4").reshape(B, T)
                ref = np.frombuffer(f.read(4 * B * T * V), dtype="<f4").reshape(B, T, V)
            out = m.forward(torch.from_numpy(ids.astype(np.int64))).numpy()
            diff = np.abs(out - ref)
            maxdiff = float(diff.max())
            ok = bool(maxdiff <= ARGS.tolerance)
            print(json.dumps({"kind": "logits_check", "engine": "torch", "model": label, "file": ARGS.check_logits,
                              "batch": B, "seqlen": T, "vocab": V, "max_abs_diff": maxdiff,
                              "mean_abs_diff": float(diff.mean()), "max_abs_logit": float(np.abs(ref).max()),
                              "argmax_agreement": float((out.argmax(-1) == ref.argmax(-1)).mean()),
                              "tolerance": ARGS.tolerance, "ok": ok}), flush=True)
            if not ok:
                status = 1
        if ARGS.no_bench:
            return status

        B, T = ARGS.batch, ARGS.seqlen
        gen = np.random.default_rng(ARGS.seed)
        ids = torch.from_numpy(gen.integers(0, m.vocab, size=(B, T), dtype=np.int64))
        times = []
        for i in range(ARGS.warmup + ARGS.repeats):
            t0 = time.perf_counter()
            logits = m.forward(ids)
            s = time.perf_counter() - t0
            del logits
            if i >= ARGS.warmup:
                times.append(s)
        med = float(np.median(times))
        best = float(min(times))
        total, attn = flops(m, B, T)
        print(json.dumps({
            "kind": "forward", "engine": ENGINE, "model": label, "model_dir": ARGS.model_dir,
            "torch": torch.__version__, "hidden": m.d, "layers": m.layers, "heads": m.heads, "ffn": m.ffn,
            "vocab": m.vocab, "batch": B, "seqlen": T, "threads": torch.get_num_threads(),
            "env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OPENBLAS_CORETYPE",
                                                   "OMP_WAIT_POLICY")},
            "openblas": openblas_info(),
            "load_s": load_s, "warmup": ARGS.warmup, "repeats": ARGS.repeats, "times_s": times,
            "median_s": med, "min_s": best, "tokens_per_s_median": B * T / med, "tokens_per_s_best": B * T / best,
            "flops_as_computed": total, "attention_flops_full_square": attn,
            "gflops_median": total / med * 1e-9}), flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
