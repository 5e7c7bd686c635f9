#!/usr/bin/env python3
"""The command line's side of the fuzzing: mutations of one file, each opened by running `rptq` itself.

usage: cli_fuzz.py RPTQ KIND SEED_FILE ITERATIONS WORK_DIR [MODEL_DIR]

KIND: stats (`rptq clusters FILE --layer 0 --tap R1 --k 4 --json`), checkpoint (`rptq inspect FILE --json`, which
checks everything eval checks), or model (SEED_FILE replaced inside a copy of MODEL_DIR; `rptq inspect DIR
--json`). Every run must exit 0, or exit 2 with exactly one line on stderr that names the file (or for `model`
its folder); anything else (a signal, exit 1, a hang past 120 s, an unnamed or multi-line error, output on stdout
that is not JSON) is printed as FAIL. The summary line counts exit codes; exit status 1 on any FAIL.
"""
import json
import os
import random
import shutil
import subprocess
import sys


def mutate(data, rng):
    b = bytearray(data)
    for _ in range(1 + rng.randrange(4)):
        if not b:
            break
        op = rng.randrange(6)
        pos = rng.randrange(len(b))
        if op <= 2:
            b[pos] ^= 1 << rng.randrange(8)
        elif op == 3:
            b[pos] = rng.randrange(256)
        elif op == 4:
            del b[pos:pos + 1 + rng.randrange(64)]
        else:
            b = b[:pos]
    return bytes(b)


def main():
    rptq, kind, seed_file, iterations, work = sys.argv[1:6]
    model = sys.argv[6] if len(sys.argv) > 6 else None
    iterations = int(iterations)
    seed = open(seed_file, "rb").read()
    rng = random.Random(1)
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    if kind == "model":
        folder = os.path.join(work, "model")
        shutil.copytree(model, folder)
        target = os.path.join(folder, os.path.basename(seed_file))
        named = folder
        cmd = [rptq, "inspect", folder, "--json"]
    else:
        target = os.path.join(work, os.path.basename(seed_file))
        named = target
        cmd = ([rptq, "clusters", target, "--layer", "0", "--tap", "R1", "--k", "4", "--json"] if kind == "stats"
               else [rptq, "inspect", target, "--json"])
    codes = {}
    failures = 0
    env = dict(os.environ, OMP_NUM_THREADS="1")
    for it in range(iterations):
        with open(target, "wb") as f:
            f.write(mutate(seed, rng))
        try:
            r = subprocess.run(cmd, capture_output=True, timeout=120, env=env)
            code = r.returncode
        except subprocess.TimeoutExpired:
            code, r = "hang", None
        codes[str(code)] = codes.get(str(code), 0) + 1
        problem = None
        if code == 0:
            try:
                json.loads(r.stdout)
            except ValueError:
                problem = "exit 0 without JSON on stdout"
        elif code == 2:
            err = r.stderr.decode("utf-8", "replace").rstrip("\n")
            if "\n" in err:
                problem = "more than one line on stderr"
            elif named not in err:
                problem = "the error does not name the file"
        else:
            problem = f"exit {code}"
        if problem:
            failures += 1
            err = "" if r is None else r.stderr.decode("utf-8", "replace")[:300].replace("\n", " ")
            print(f"FAIL cli {kind} {os.path.basename(seed_file)} iteration {it}: {problem}: {err}", flush=True)
    shutil.rmtree(work, ignore_errors=True)
    print(f"cli kind={kind} seed_file={os.path.basename(seed_file)} iterations={iterations} exit_codes="
          + ",".join(f"{k}:{v}" for k, v in sorted(codes.items())) + f" failures={failures}", flush=True)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
