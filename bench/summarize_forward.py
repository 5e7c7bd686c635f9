#!/usr/bin/python3
"""Summarises the raw output of bench/run_forward_bench.sh (its JSON lines) as Markdown tables.

    /usr/bin/python3 bench/summarize_forward.py bench/results/forward-cpu-NAME.txt
    /usr/bin/python3 bench/summarize_forward.py --compact FILE...   (one row per run and file, to compare runs)

Every number printed comes from a JSON line of the file; nothing is measured here.
"""
import json
import sys

GOAL_SPEEDUP = 1.3
GOAL_CEILING = 0.85


def parse(path):
    run = {}
    last = None  # the CPU record of the current run, completed by its run_end line
    rows = {}  # (coretype, model, threads) -> dict
    order = []
    checks = []
    for line in open(path, encoding="utf-8"):
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            j = json.loads(line)
        except json.JSONDecodeError:
            continue
        kind = j.get("kind")
        if kind == "run":
            run = j
            last = None
            continue
        if kind == "run_end":
            if last is not None:
                last["after"] = f"{j['cpu_busy_pct_after']}%/{j.get('cpu_steal_pct_after', 0)}%"
            continue
        if kind == "logits_check":
            checks.append((run.get("coretype", "?"), j))
            continue
        if kind not in ("forward", "summary"):
            continue
        key = (run.get("coretype", "?"), j.get("model"), j.get("threads"))
        if key not in rows:
            rows[key] = {"cpu": {}}
            order.append(key)
        r = rows[key]
        engine = j.get("engine", "rptq")
        if "cpu_busy_pct_before" in run and run.get("engine") == engine and engine not in r["cpu"]:
            last = r["cpu"][engine] = {
                "before": f"{run['cpu_busy_pct_before']}%/{run.get('cpu_steal_pct_before', 0)}%",
                "waited": run.get("waited_for_quiet_s")}
        if kind == "forward":
            r[engine] = j
        elif engine == "rptq":
            r["summary"] = j
    return rows, order, checks


def speedup(r):
    ours = r.get("rptq")
    torch = [t["tokens_per_s_median"] for t in (r.get("torch"), r.get("torch OMP_WAIT_POLICY=PASSIVE")) if t]
    return ours["tokens_per_s_median"] / max(torch) if ours and torch else None


def compact(paths):
    print("| run | OpenBLAS core | model | threads | rptq tok/s | torch tok/s | torch/P tok/s | rptq / faster torch | "
          "% of sgemm ceiling, median (best) | % of shape-matched, median (best) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for path in paths:
        rows, order, _ = parse(path)
        name = path.rsplit("/", 1)[-1]
        for key in order:
            r = rows[key]
            ours, s = r.get("rptq"), r.get("summary") or {}
            if not ours:
                continue
            t, p = r.get("torch"), r.get("torch OMP_WAIT_POLICY=PASSIVE")
            sp = speedup(r)
            cells = [name, key[0], key[1], str(key[2]), f"{ours['tokens_per_s_median']:.0f}",
                     f"{t['tokens_per_s_median']:.0f}" if t else "-", f"{p['tokens_per_s_median']:.0f}" if p else "-",
                     f"{sp:.2f}x" if sp else "-"]
            if "sgemm_ceiling_gflops" in s:
                cells.append(f"{100 * s['ratio_forward_to_ceiling']:.1f}% "
                             f"({100 * ours['gflops_best'] / s['sgemm_ceiling_gflops']:.1f}%)")
                cells.append(f"{100 * s['ratio_forward_to_shape_matched']:.1f}% "
                             f"({100 * ours['gflops_best'] / s['sgemm_shape_matched_gflops']:.1f}%)")
            else:
                cells += ["-", "-"]
            print("| " + " | ".join(cells) + " |")
    return 0


def main(path):
    rows, order, checks = parse(path)
    print("## Logits check (PyTorch eager fp32 vs rptq, same token ids, tiny-opt-16m)\n")
    print("| OpenBLAS core | batch x seqlen | max abs diff | mean abs diff | argmax agreement | within tolerance |")
    print("|---|---|---|---|---|---|")
    for core, c in checks:
        print(f"| {core} | {c['batch']} x {c['seqlen']} | {c['max_abs_diff']:.3g} | {c['mean_abs_diff']:.3g} | "
              f"{100 * c['argmax_agreement']:.2f}% | {'yes' if c['ok'] else 'NO'} (<= {c['tolerance']:g}) |")

    print("\n## Forward pass, batch 1 x seqlen 512 (median of the timed repeats)\n")
    print("torch = PyTorch eager fp32 as launched by default; torch/P = the same with OMP_WAIT_POLICY=PASSIVE "
          "(multi-threaded runs only). The speed-up goal is judged against the faster of the two.\n")
    print("rptq runs its GEMMs on its default backend (oneDNN when built with it); rptq/openblas is the same binary "
          "with RPTQ_GEMM=openblas, for comparison (not judged).\n")
    print("| OpenBLAS core | model | threads | rptq s | rptq tok/s | rptq/openblas tok/s | torch tok/s | torch/P tok/s | rptq / faster torch "
          f"(goal >= {GOAL_SPEEDUP}) | rptq GFLOP/s median (best) | sgemm ceiling GFLOP/s | % of ceiling, median "
          f"(best) forward (goal >= {100 * GOAL_CEILING:.0f}%) | shape-matched sgemm GFLOP/s | % of shape-matched, "
          "median (best) | CPU busy/steal % in the second before -> after each run (rptq; torch; torch/P) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for key in order:
        core, model, threads = key
        r = rows[key]
        ours, s = r.get("rptq"), r.get("summary")
        if not ours:
            continue
        torch = r.get("torch")
        passive = r.get("torch OMP_WAIT_POLICY=PASSIVE")
        alt = r.get("rptq/openblas")
        cells = [core, model, str(threads), f"{ours['median_s']:.4f}", f"{ours['tokens_per_s_median']:.0f}",
                 f"{alt['tokens_per_s_median']:.0f}" if alt else "-",
                 f"{torch['tokens_per_s_median']:.0f}" if torch else "-",
                 f"{passive['tokens_per_s_median']:.0f}" if passive else "-"]
        speed = speedup(r)
        if speed:
            cells.append(f"{speed:.2f}x {'(met)' if speed >= GOAL_SPEEDUP else '(not met)'}")
        else:
            cells.append("-")
        cells.append(f"{ours['gflops_median']:.1f} ({ours['gflops_best']:.1f})")
        if s and "sgemm_ceiling_gflops" in s:
            ratio = s["ratio_forward_to_ceiling"]
            rbest = ours["gflops_best"] / s["sgemm_ceiling_gflops"]
            mbest = ours["gflops_best"] / s["sgemm_shape_matched_gflops"]
            cells += [f"{s['sgemm_ceiling_gflops']:.1f}",
                      f"{100 * ratio:.1f}% ({100 * rbest:.1f}%) {'(met)' if ratio >= GOAL_CEILING else '(not met)'}",
                      f"{s['sgemm_shape_matched_gflops']:.1f}",
                      f"{100 * s['ratio_forward_to_shape_matched']:.1f}% ({100 * mbest:.1f}%)"]
        else:
            cells += ["-", "-", "-", "-"]
        cells.append("; ".join(f"{c['before']} -> {c.get('after', '?')}" for c in r["cpu"].values()) or "-")
        print("| " + " | ".join(cells) + " |")

    print("\n## Where rptq's forward spends its time (--profile: median seconds per op over one forward)\n")
    ops = None
    for key in order:
        s = rows[key].get("summary") or {}
        if "profile_median_s" in s:
            known = ["embed", "layer_norm", "qkv_proj", "q_scale", "attention", "o_proj", "fc1", "bias_relu", "fc2",
                     "bias_add(o,fc2)", "buffers", "head"]
            keys = list(s["profile_median_s"].keys())
            ops = [o for o in known if o in keys] + [o for o in keys if o not in known]
            break
    if ops:
        names = ["(head, reused logits buffer)*" if o.startswith("head, logits buffer reused") else
                 "(q/k/v as one GEMM)**" if o.startswith("q/k/v as one fused GEMM") else o for o in ops]
        print("| OpenBLAS core | model | threads | " + " | ".join(names) + " | profiled total | forward |")
        print("|---|---|---|" + "---|" * (len(ops) + 2))
        for key in order:
            s = rows[key].get("summary") or {}
            ours = rows[key].get("rptq")
            if "profile_median_s" not in s:
                continue
            tot = s["profile_total_s"]
            p = s["profile_median_s"]
            cells = [f"{p[o]:.4f} ({100 * p[o] / tot:.0f}%)" for o in ops]
            print(f"| {key[0]} | {key[1]} | {key[2]} | " + " | ".join(cells) +
                  f" | {tot:.4f} | {ours['median_s']:.4f} |")
        print("\n\\* the LM head run a second time into a logits buffer kept across forwards; not part of the forward "
              "or of the profiled total. head minus this = the cost of allocating and first touching a fresh "
              "[rows x vocab] logits buffer each forward.")
        if any(o.startswith("q/k/v as one fused GEMM") for o in ops):
            print("\n\\*\\* q, k and v computed again as one GEMM on the concatenated [3 x hidden, hidden] weight "
                  "(same input, same point of each layer); not part of the forward or of the profiled total; compare "
                  "with qkv_proj.")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--compact":
        sys.exit(compact(sys.argv[2:]))
    sys.exit(main(sys.argv[1]))
