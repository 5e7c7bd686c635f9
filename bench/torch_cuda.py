#!/usr/bin/python3
"""PyTorch eager evaluation and calibration tokens/s of an OPT model folder on the GPU, timed like bench_cuda.

    python3 bench/torch_cuda.py MODEL_DIR [--device cuda|cpu] [--dtypes fp32,fp16,bf16] [--attention eager[,sdpa]]
        [--eval-seqlen 2048] [--eval-windows 8] [--eval-batch 8] [--calib-samples 16] [--calib-seqlen 2048]
        [--calib-batch 8] [--warmup 1] [--repeats 3] [--calib-warmup 0] [--calib-repeats 2] [--seed 1234]
        [--no-eval] [--no-calib] [--threads N] [--label NAME]

The model is bench/torch_opt.py's OPT forward (the one torch_forward.py times on the CPU), with the weights copied
to the device in each dtype (fp16 / bf16: weights and activations in that dtype, as Hugging Face's eager OPT runs
with torch_dtype=float16; softmax in float32 for fp16 as it upcasts; float32 matmuls without TF32).
  * evaluation: perplexity over `eval-windows` windows of `eval-seqlen` tokens, `eval-batch` windows per forward:
    logits of every position, then the next-token NLL in float32 per window, ppl = exp(mean of window means), as
    GpuRunner::perplexity computes it. --attention sdpa also times F.scaled_dot_product_attention (torch >= 2).
  * calibration: `calib-samples` windows through the decoder layers (no head), `calib-batch` at a time, with a hook
    at the taps rptq's calibration records (core/include/rptq/model/tap.h): per window and channel the max and min over
    tokens, folded per window into the EMA(0.99) and the running max / min, and per head the range of the scaled
    q k^T over the causal entries (the softmax input) - the same work as GpuRunner::calibration_ranges, kept on the
    GPU. The ranges' checksum is printed as bench_cuda prints it.
Token ids are bench_cuda's (torch_opt.bench_ids): the same seeds give the same windows, so perplexities and range
checksums compare across the two engines. Timing: torch.cuda.synchronize() before and after each call (the NLL is
read back to the host, which synchronises too), wall clock; `warmup` untimed calls first; median and min.
Peak memory: torch.cuda.max_memory_allocated over each phase. --device cpu runs the same code on the CPU (for
checking without a GPU). Output: one JSON line per result (starting with '{'), then a table.
"""
import argparse
import json
import math
import os
import sys
import time


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model_dir")
    ap.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    ap.add_argument("--dtypes", default="fp32,fp16,bf16")
    ap.add_argument("--attention", default="eager", help="eager, sdpa or both (comma-separated), for evaluation")
    ap.add_argument("--eval-seqlen", type=int, default=2048)
    ap.add_argument("--eval-windows", type=int, default=8)
    ap.add_argument("--eval-batch", type=int, default=8)
    ap.add_argument("--calib-samples", type=int, default=16)
    ap.add_argument("--calib-seqlen", type=int, default=2048)
    ap.add_argument("--calib-batch", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--calib-warmup", type=int, default=0)
    ap.add_argument("--calib-repeats", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--no-eval", action="store_true")
    ap.add_argument("--no-calib", action="store_true")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0 = all cores)")
    ap.add_argument("--label", default=None)
    a = ap.parse_args()
    a.dtypes = [d for d in a.dtypes.split(",") if d]
    a.attention = [x for x in a.attention.split(",") if x]
    for d in a.dtypes:
        if d not in ("fp32", "fp16", "bf16"):
            ap.error(f"unknown dtype {d} (fp32, fp16, bf16)")
    for x in a.attention:
        if x not in ("eager", "sdpa"):
            ap.error(f"unknown attention {x} (eager, sdpa)")
    if min(a.eval_seqlen, a.calib_seqlen) < 2 or min(a.eval_windows, a.eval_batch, a.calib_samples, a.calib_batch,
                                                     a.repeats, a.calib_repeats) < 1 or min(a.warmup,
                                                                                             a.calib_warmup) < 0:
        ap.error("sizes and repeats must be positive (warm-ups >= 0)")
    return a


ARGS = parse_args()
if ARGS.device == "cpu":
    THREADS = ARGS.threads if ARGS.threads > 0 else (os.cpu_count() or 1)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(THREADS)

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from torch_opt import OPT, TAPS, bench_ids, useful_flops  # noqa: E402  (bench/torch_opt.py)

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
EMA_MOMENTUM, EMA_NEW = 0.99, 0.01  # rptq's (the reference's) act_scales EMA


FP32_MATMUL = "default"


def no_tf32():
    """FP32 means FP32, as rptq's FP32 path: float32 matmuls in float32, never TF32 (PyTorch's default too; set
    with the API every torch since 1.12 has, so it never mixes with the newer per-backend fp32_precision API)."""
    torch.set_float32_matmul_precision("highest")
    return "set_float32_matmul_precision(highest) -> " + torch.get_float32_matmul_precision()


def emit(obj):
    print(json.dumps(obj), flush=True)


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def device_json(dev):
    j = {"kind": "device", "engine": "torch", "torch": torch.__version__, "device": str(dev),
         "numpy": np.__version__}
    if dev.type == "cuda":
        p = torch.cuda.get_device_properties(dev)
        j.update({"name": p.name, "total_bytes": p.total_memory, "sms": p.multi_processor_count,
                  "compute_capability": f"{p.major}.{p.minor}", "cuda": torch.version.cuda,
                  "cudnn": torch.backends.cudnn.version(), "fp32_matmul": FP32_MATMUL})
        for key, get in (("matmul_allow_tf32", lambda: torch.backends.cuda.matmul.allow_tf32),
                         ("matmul_fp32_precision", lambda: torch.backends.cuda.matmul.fp32_precision),
                         ("allow_fp16_reduced_precision_reduction",
                          lambda: torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction)):
            try:
                j[key] = get()
            except Exception:  # not in this torch, or refused next to the other API
                pass
    else:
        j.update({"name": "cpu", "threads": torch.get_num_threads()})
    return j


def memory_json(dev):
    if dev.type != "cuda":
        return {}
    free, total = torch.cuda.mem_get_info(dev)
    return {"peak_allocated_bytes": torch.cuda.max_memory_allocated(dev),
            "peak_reserved_bytes": torch.cuda.max_memory_reserved(dev), "device_used_bytes": total - free}


class RangeRecorder:
    """Per (layer, tap): EMA and running max / min of the per-window channel max / min, folded window by window
    (rptq's TapRanges::add_sample), and the same per head for the causal attention scores. All on the device."""

    def __init__(self):
        self.r = {}

    def __call__(self, layer, name, x):
        if name == "scores":
            scores, causal = x  # [B, H, T, T] and the additive mask (0 / finfo.min)
            smax = (scores + causal).amax(dim=(-1, -2))
            smin = (scores - causal).amin(dim=(-1, -2))
        else:
            smax = x.amax(dim=1)  # [B, C]: over the window's tokens
            smin = x.amin(dim=1)
        smax = smax.float()
        smin = smin.float()
        key = (layer, name)
        st = self.r.get(key)
        for b in range(smax.shape[0]):
            if st is None:
                st = [smax[b].clone(), smin[b].clone(), smax[b].clone(), smin[b].clone()]
                self.r[key] = st
                continue
            st[0].mul_(EMA_MOMENTUM).add_(smax[b], alpha=EMA_NEW)
            st[1].mul_(EMA_MOMENTUM).add_(smin[b], alpha=EMA_NEW)
            torch.maximum(st[2], smax[b], out=st[2])
            torch.minimum(st[3], smin[b], out=st[3])

    def checksum(self):
        """bench_cuda's ranges_checksum: per tap (and scores) the sums over layers and channels."""
        out = {}
        for (layer, name), st in sorted(self.r.items()):
            j = out.setdefault(name, {"sum_max": 0.0, "sum_min": 0.0, "sum_ema_max": 0.0, "sum_ema_min": 0.0})
            j["sum_ema_max"] += st[0].double().sum().item()
            j["sum_ema_min"] += st[1].double().sum().item()
            j["sum_max"] += st[2].double().sum().item()
            j["sum_min"] += st[3].double().sum().item()
        return out


def evaluate(m, ids, batch, attention):
    """ppl of windows ids [W, T] (one forward per `batch` windows)."""
    W, T = ids.shape
    nll = []
    for w0 in range(0, W, batch):
        x = ids[w0:w0 + batch]
        logits = m.forward(x, attention=attention)
        lp = F.cross_entropy(logits[:, :-1].float().reshape(-1, m.vocab), x[:, 1:].reshape(-1), reduction="none")
        nll.append(lp.view(x.shape[0], T - 1).mean(dim=1).double())
        del logits, lp
    return math.exp(torch.cat(nll).mean().item())


def calibrate(m, ids, batch):
    rec = RangeRecorder()
    for s0 in range(0, ids.shape[0], batch):
        m.forward(ids[s0:s0 + batch], hook=rec, head=False, attention="eager")
    return rec


def timed(dev, fn, warmup, repeats):
    times, result = [], None
    for i in range(warmup + repeats):
        sync(dev)
        t0 = time.perf_counter()
        result = fn()
        sync(dev)
        s = time.perf_counter() - t0
        if i >= warmup:
            times.append(s)
    return times, result


def main():
    a = ARGS
    dev = torch.device(a.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        emit({"kind": "error", "engine": "torch", "error": "torch sees no CUDA device"})
        return 2
    if dev.type == "cpu":
        torch.set_num_threads(THREADS)
    else:
        global FP32_MATMUL
        FP32_MATMUL = no_tf32()
    emit(device_json(dev))
    label = a.label or os.path.basename(os.path.normpath(a.model_dir))
    t0 = time.perf_counter()
    master = OPT(a.model_dir)
    load_s = time.perf_counter() - t0
    common = {"engine": "torch", "model": label, "model_dir": a.model_dir, "hidden": master.d,
              "layers": master.layers, "heads": master.heads, "ffn": master.ffn, "vocab": master.vocab,
              "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu", "torch": torch.__version__}
    emit({**common, "kind": "load", "load_s": load_s, "weight_bytes_fp32": master.parameter_bytes()})
    if max(a.eval_seqlen, a.calib_seqlen) > master.max_positions:
        emit({**common, "kind": "error", "error": f"sequence longer than {master.max_positions} positions"})
        return 2
    eval_ids = torch.from_numpy(bench_ids(a.eval_windows * a.eval_seqlen, master.vocab, a.seed)
                                .reshape(a.eval_windows, a.eval_seqlen)).to(dev)
    calib_ids = torch.from_numpy(bench_ids(a.calib_samples * a.calib_seqlen, master.vocab, a.seed + 1)
                                 .reshape(a.calib_samples, a.calib_seqlen)).to(dev)
    eval_tokens = a.eval_windows * a.eval_seqlen
    calib_tokens = a.calib_samples * a.calib_seqlen
    eval_flops = useful_flops(master, a.eval_windows, a.eval_seqlen, True)
    calib_flops = useful_flops(master, a.calib_samples, a.calib_seqlen, False)
    rows = []
    with torch.inference_mode():
        for dname in a.dtypes:
            base = {**common, "precision": dname}
            try:
                t0 = time.perf_counter()
                m = master.to(dev, DTYPES[dname])
                sync(dev)
                emit({**base, "kind": "setup", "setup_s": time.perf_counter() - t0,
                      "weight_bytes": m.parameter_bytes(), "memory": memory_json(dev)})
            except Exception as e:  # e.g. a dtype this torch cannot run on the CPU
                emit({**base, "kind": "error", "phase": "setup", "error": f"{type(e).__name__}: {e}"})
                rows.append((dname, "setup", None, None, None, None, f"{type(e).__name__}: {e}"))
                continue
            if not a.no_eval:
                for att in a.attention:
                    phase = "eval" if att == "eager" else "eval-sdpa"
                    try:
                        if att == "sdpa" and not hasattr(F, "scaled_dot_product_attention"):
                            raise RuntimeError("this torch has no scaled_dot_product_attention")
                        if dev.type == "cuda":
                            torch.cuda.reset_peak_memory_stats(dev)
                        times, ppl = timed(dev, lambda: evaluate(m, eval_ids, a.eval_batch, att), a.warmup,
                                           a.repeats)
                        med, best = float(np.median(times)), min(times)
                        emit({**base, "kind": "eval", "attention": att, "seqlen": a.eval_seqlen,
                              "windows": a.eval_windows, "batch": a.eval_batch, "tokens": eval_tokens,
                              "warmup": a.warmup, "repeats": a.repeats, "times_s": times, "median_s": med,
                              "min_s": best, "tokens_per_s_median": eval_tokens / med,
                              "tokens_per_s_best": eval_tokens / best, "flops": eval_flops,
                              "tflops_median": eval_flops / med * 1e-12, "ppl": ppl, "memory": memory_json(dev)})
                        rows.append((dname, phase, med, best, eval_tokens / med, ppl, None))
                    except Exception as e:
                        emit({**base, "kind": "error", "phase": phase, "error": f"{type(e).__name__}: {e}"})
                        rows.append((dname, phase, None, None, None, None, f"{type(e).__name__}: {e}"))
                        if dev.type == "cuda":
                            torch.cuda.empty_cache()
            if not a.no_calib:
                try:
                    if dev.type == "cuda":
                        torch.cuda.reset_peak_memory_stats(dev)
                    times, rec = timed(dev, lambda: calibrate(m, calib_ids, a.calib_batch), a.calib_warmup,
                                       a.calib_repeats)
                    med, best = float(np.median(times)), min(times)
                    emit({**base, "kind": "calib", "seqlen": a.calib_seqlen, "samples": a.calib_samples,
                          "batch": a.calib_batch, "tokens": calib_tokens, "warmup": a.calib_warmup,
                          "repeats": a.calib_repeats, "times_s": times, "median_s": med, "min_s": best,
                          "tokens_per_s_median": calib_tokens / med, "tokens_per_s_best": calib_tokens / best,
                          "flops": calib_flops, "tflops_median": calib_flops / med * 1e-12,
                          "taps": list(TAPS) + ["scores"], "ranges_checksum": rec.checksum(),
                          "memory": memory_json(dev)})
                    rows.append((dname, "calib", med, best, calib_tokens / med, None, None))
                except Exception as e:
                    emit({**base, "kind": "error", "phase": "calib", "error": f"{type(e).__name__}: {e}"})
                    rows.append((dname, "calib", None, None, None, None, f"{type(e).__name__}: {e}"))
            m = None  # frees the device copy before the next dtype
            if dev.type == "cuda":
                torch.cuda.empty_cache()

    print(f"\n== torch {torch.__version__} on {common['device']}: {label}; eval {a.eval_windows} x {a.eval_seqlen} "
          f"(batch {a.eval_batch}), calibration {a.calib_samples} x {a.calib_seqlen} (batch {a.calib_batch})")
    print(f"   {'dtype':<6} {'phase':<10} {'median s':>10} {'min s':>10} {'tokens/s':>12} {'ppl':>14}")
    for dname, phase, med, best, tps, ppl, err in rows:
        if err:
            print(f"   {dname:<6} {phase:<10} error: {err}")
        else:
            print(f"   {dname:<6} {phase:<10} {med:10.4f} {best:10.4f} {tps:12.0f} "
                  f"{'-' if ppl is None else f'{ppl:14.6f}':>14}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
