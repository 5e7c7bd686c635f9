#!/usr/bin/python3
"""Tables from the raw output of bench/run_cuda_bench.sh: rptq (bench_cuda) against PyTorch (torch_cuda.py).

    python3 bench/summarize_cuda.py BENCH_CUDA.txt [TORCH_CUDA.txt]

Reads the JSON lines (those starting with '{') of either file in any order; a missing file or kind is skipped.
Prints Markdown: evaluation and calibration tokens/s per model and precision with the speedup over PyTorch eager
(goal: >= 3x) and over PyTorch with scaled_dot_product_attention, the perplexities and calibration range checksums
of the two engines side by side (same token ids: they should agree), the CPU check, the GEMMs against cuBLAS's
best (goal: >= 80%), the memory ceilings and the packed GEMV, and every error. Only the standard library is used.
"""
import json
import sys


def load(path):
    rows = []
    try:
        with open(path, errors="replace") as f:
            for line in f:
                line = line.strip()
                if line.startswith("{"):
                    try:
                        rows.append(json.loads(line))
                    except ValueError:
                        pass
    except OSError as e:
        print(f"(cannot read {path}: {e})")
    return rows


def fmt(v, spec=".0f"):
    return "-" if v is None else format(v, spec)


def times(v):
    return "-" if v is None else f"{v:.2f}x"


def rel(a, b):
    if a is None or b is None:
        return None
    return abs(a - b) / max(abs(b), 1e-30)


def checksum_diff(a, b):
    """max relative difference over the taps and fields both checksums have."""
    worst = None
    for tap, fields in (a or {}).items():
        for k, v in fields.items():
            w = (b or {}).get(tap, {}).get(k)
            if w is None:
                continue
            d = abs(v - w) / (1.0 + abs(w))
            worst = d if worst is None else max(worst, d)
    return worst


def main(argv):
    if len(argv) < 2:
        print(__doc__)
        return 2
    rptq = load(argv[1])
    torch = load(argv[2]) if len(argv) > 2 else []
    print("# GPU benchmark summary\n")
    devices = sorted({r.get("name") for r in rptq + torch if r.get("kind") == "device" and r.get("name")})
    print("Device: " + (", ".join(devices) if devices else "unknown"))
    tv = sorted({r.get("torch") for r in torch if r.get("kind") == "device" and r.get("torch")})
    if tv:
        print("PyTorch: " + ", ".join(tv))
    print()

    # ---- tokens/s
    ours = {(r["model"], r["precision"], r["kind"]): r for r in rptq if r.get("kind") in ("eval", "calib")}
    theirs = {}
    for r in torch:
        if r.get("kind") == "eval":
            theirs[(r["model"], r["precision"], "eval", r.get("attention", "eager"))] = r
        elif r.get("kind") == "calib":
            theirs[(r["model"], r["precision"], "calib", "eager")] = r
    models = sorted({k[0] for k in ours} | {k[0] for k in theirs})
    print("## Evaluation and calibration tokens/s (median of the timed repeats)\n")
    print("| model | prec | phase | tokens | rptq tok/s | rptq TFLOP/s | torch eager tok/s | speedup | goal 3x "
          "| torch sdpa tok/s | speedup vs sdpa | rptq peak MiB | torch peak MiB |")
    print("|---|---|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|")
    for m in models:
        for p in ("fp32", "fp16", "bf16"):
            for ph in ("eval", "calib"):
                o = ours.get((m, p, ph))
                t = theirs.get((m, p, ph, "eager"))
                s = theirs.get((m, p, ph, "sdpa"))
                if not (o or t or s):
                    continue
                ot = o and o.get("tokens_per_s_median")
                tt = t and t.get("tokens_per_s_median")
                st = s and s.get("tokens_per_s_median")
                sp = ot / tt if ot and tt else None
                sps = ot / st if ot and st else None
                goal = "-" if sp is None else ("met" if sp >= 3 else "not met")
                opeak = o and o.get("memory", {}).get("peak_bytes")
                tpeak = t and t.get("memory", {}).get("peak_allocated_bytes")
                tokens = (o or t or s).get("tokens")
                print(f"| {m} | {p} | {ph} | {fmt(tokens)} | {fmt(ot)} | {fmt(o and o.get('tflops_median'), '.2f')} "
                      f"| {fmt(tt)} | {times(sp)} | {goal} | {fmt(st)} | {times(sps)} "
                      f"| {fmt(opeak and opeak / 2**20, '.0f')} | {fmt(tpeak and tpeak / 2**20, '.0f')} |")
    print()

    # ---- same inputs, same answers?
    print("## The two engines agree? (same token ids)\n")
    print("| model | prec | rptq ppl | torch ppl | rel diff | calibration checksum max rel diff |")
    print("|---|---|---:|---:|---:|---:|")
    for m in models:
        for p in ("fp32", "fp16", "bf16"):
            o, t = ours.get((m, p, "eval")), theirs.get((m, p, "eval", "eager"))
            oc, tc = ours.get((m, p, "calib")), theirs.get((m, p, "calib", "eager"))
            if not (o or t or oc or tc):
                continue
            op, tp = o and o.get("ppl"), t and t.get("ppl")
            cd = checksum_diff(oc and oc.get("ranges_checksum"), tc and tc.get("ranges_checksum"))
            print(f"| {m} | {p} | {fmt(op, '.6g')} | {fmt(tp, '.6g')} | {fmt(rel(op, tp), '.2e')} "
                  f"| {fmt(cd, '.2e')} |")
    gens = [r for r in rptq if r.get("kind") == "generate"]
    if gens:
        print("\nGeneration (GpuRunner::generate, greedy, KV cache on the device; no PyTorch counterpart run):\n")
        print("| model | precision | prompt | new tokens | decode tokens/s (median) | best | prefill s (median) |")
        print("|---|---|---|---|---|---|---|")
        for g in gens:
            pre = sorted(g.get("prefill_s") or [None])
            print(f"| {g.get('model')} | {g.get('precision')} | {g.get('prompt_tokens')} | {g.get('new_tokens')} "
                  f"| {fmt(g.get('tokens_per_s_median'), '.1f')} | {fmt(g.get('tokens_per_s_best'), '.1f')} "
                  f"| {fmt(pre[len(pre) // 2], '.4f')} |")
    checks = [r for r in rptq if r.get("kind") == "cpu_check"]
    for c in checks:
        if "error" in c:
            print(f"\nCPU check ({c.get('model')}): error: {c['error']}")
        else:
            print(f"\nCPU check ({c.get('model')}, {c.get('precision')} runner vs the CPU engine): ppl rel diff "
                  f"{fmt(c.get('ppl_rel_diff'), '.2e')} ({'ok' if c.get('ppl_ok') else 'NOT ok'}, bound 1e-3), "
                  f"calibration ranges max rel diff {fmt(c.get('ranges_max_rel_diff'), '.2e')} "
                  f"({'ok' if c.get('ranges_ok') else 'NOT ok'}, bound 1e-4)")
    print()

    # ---- GEMMs
    sums = [r for r in rptq if r.get("kind") == "gemm_summary"]
    if sums:
        print("## GEMMs: rptq kernels/gemm.cuh against the best cuBLAS / cuBLASLt call (same contract)\n")
        print("| model | shape | prec | M | ours TFLOP/s | cuBLAS best | ratio | best any (tf32 / 16-bit out) | "
              "ratio |")
        print("|---|---|---|---:|---:|---:|---:|---:|---:|")
        for s in sums:
            for r in s.get("per_shape", []):
                print(f"| {s['model']} | {r['shape']} | {r['precision']} | {r['M']} | {r['ours_tflops']:.1f} "
                      f"| {r['cublas_best_same_tflops']:.1f} ({r['cublas_best_same']}) | "
                      f"{r['ratio_to_best_same']:.3f} | {r['cublas_best_any_tflops']:.1f} | "
                      f"{r['ratio_to_best_any']:.3f} |")
        print()
        for s in sums:
            w = s.get("layer_step_flop_weighted", {})
            parts = [f"{k}: {v['ratio']:.3f} ({v['ours_tflops']:.1f} vs {v['cublas_best_same_tflops']:.1f} TFLOP/s)"
                     for k, v in sorted(w.items())]
            goal = s.get("goal_80pct_met")
            print(f"* {s['model']}: worst shape ratio {fmt(s.get('worst_ratio_to_best_same'), '.3f')} "
                  f"(goal >= 0.8: {'met' if goal else 'not met' if goal is not None else '-'}); "
                  f"FLOP-weighted layer step: " + "; ".join(parts))
        print()
        print("## Memory ceilings and the packed GEMV (M = 1)\n")
        for s in sums:
            if "copy_gbs" in s:
                print(f"* {s['model']}: D2D copy {s['copy_gbs']:.0f} GB/s (read + write), read kernel "
                      f"{s['read_gbs']:.0f} GB/s ({s.get('read_config')})")
            for g in s.get("gemv", []):
                print(f"  * packed GEMV {g['shape']} {g['bits']}-bit: {g['packed_gbs']:.0f} GB/s = "
                      f"{100 * g['fraction_of_read']:.0f}% of the read ceiling, {100 * g['fraction_of_copy']:.0f}% "
                      f"of the copy; dense fp16 (cuBLAS) {g['dense_fp16_gbs']:.0f} GB/s; speedup over dense fp16 "
                      f"{g['speedup_vs_dense_fp16']:.2f}x; rel err {g['rel_err']:.1e}")
        print()
    bad = [r for r in rptq if r.get("kind") == "gemm" and r.get("status") == "ok" and
           (r.get("unwritten", 0) > 0 or r.get("rel_err", 0) > 0.05)]
    for r in bad:
        print(f"WRONG OUTPUT: {r['model']} {r['shape']} {r['precision']} {r['variant']}: unwritten "
              f"{r.get('unwritten')}, rel err {r.get('rel_err')}")

    # ---- errors
    errors = [r for r in rptq + torch if r.get("kind") == "error"]
    refused = [r for r in rptq if r.get("kind") == "gemm" and r.get("status") not in ("ok", None)]
    if errors or refused:
        print("## Errors and refused variants\n")
        for r in errors:
            print(f"* {r.get('engine', 'rptq')} {r.get('model', '')} {r.get('precision', '')} {r.get('phase', '')}: "
                  f"{r.get('error')}")
        for r in refused:
            print(f"* cuBLAS refused {r['variant']} ({r['shape']}, {r['precision']}): {r['status']}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
