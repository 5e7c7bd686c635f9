#!/usr/bin/python3
"""PyTorch eager fp32 forward pass of an OPT model folder, timed like bench_forward.

    /usr/bin/python3 bench/torch_forward.py MODEL_DIR [--seqlen 512] [--batch 1] [--threads N] [--repeats 5]
                     [--warmup 1] [--seed 1234] [--check-logits FILE] [--tolerance 1e-3]

The forward is written with plain torch ops, the way Hugging Face's eager OPTForCausalLM (transformers 4.2x)
computes it: embeddings + learned positions (offset 2), then per layer LayerNorm -> q/k/v linear (q scaled by
head_dim^-0.5) -> bmm(q, k^T) over the full T x T square + additive causal mask (finfo.min) -> softmax -> bmm(p, v)
-> out_proj + residual -> LayerNorm -> fc1 -> ReLU -> fc2 + residual, a final LayerNorm and the tied LM head over
all positions. torch 1.13 has no scaled_dot_product_attention, so only this classic path is timed.

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
import torch.nn.functional as F  # noqa: E402


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


def read_safetensors(path):
    """name -> float32 numpy array (a copy) for every tensor of a safetensors file."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    raw = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + n)
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        shape = tuple(info["shape"])
        buf = raw[b:e]
        dt = info["dtype"]
        if dt == "F32":
            a = buf.view("<f4").astype(np.float32)
        elif dt == "F16":
            a = buf.view("<f2").astype(np.float32)
        elif dt == "BF16":
            a = (buf.view("<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            raise SystemExit(f"{path}: tensor {name} has unsupported dtype {dt}")
        out[name] = a.reshape(shape)
    return out


class OPT:
    def __init__(self, model_dir):
        with open(os.path.join(model_dir, "config.json")) as f:
            cfg = json.load(f)
        if cfg.get("model_type") != "opt":
            raise SystemExit("torch_forward.py implements OPT only")
        if not cfg.get("do_layer_norm_before", True) or cfg.get("word_embed_proj_dim", cfg["hidden_size"]) != cfg[
                "hidden_size"] or cfg.get("activation_function", "relu") != "relu":
            raise SystemExit("torch_forward.py implements pre-LN OPT with ReLU and no project_in/out only")
        self.cfg = cfg
        self.d = cfg["hidden_size"]
        self.heads = cfg["num_attention_heads"]
        self.hd = self.d // self.heads
        self.layers = cfg["num_hidden_layers"]
        self.ffn = cfg["ffn_dim"]
        self.vocab = cfg["vocab_size"]
        w = read_safetensors(os.path.join(model_dir, "model.safetensors"))

        def t(name):
            for p in ("model.decoder.", "decoder.", ""):
                if p + name in w:
                    return torch.from_numpy(np.ascontiguousarray(w[p + name]))
            raise SystemExit(f"{model_dir}: missing tensor {name}")

        self.embed_tokens = t("embed_tokens.weight")
        self.embed_positions = t("embed_positions.weight")
        self.lm_head = torch.from_numpy(w["lm_head.weight"]) if "lm_head.weight" in w else self.embed_tokens
        self.final_ln = (t("final_layer_norm.weight"), t("final_layer_norm.bias"))
        self.L = []
        for i in range(self.layers):
            p = f"layers.{i}."
            self.L.append({k: t(p + n) for k, n in [
                ("ln1_w", "self_attn_layer_norm.weight"), ("ln1_b", "self_attn_layer_norm.bias"),
                ("q_w", "self_attn.q_proj.weight"), ("q_b", "self_attn.q_proj.bias"),
                ("k_w", "self_attn.k_proj.weight"), ("k_b", "self_attn.k_proj.bias"),
                ("v_w", "self_attn.v_proj.weight"), ("v_b", "self_attn.v_proj.bias"),
                ("o_w", "self_attn.out_proj.weight"), ("o_b", "self_attn.out_proj.bias"),
                ("ln2_w", "final_layer_norm.weight"), ("ln2_b", "final_layer_norm.bias"),
                ("fc1_w", "fc1.weight"), ("fc1_b", "fc1.bias"),
                ("fc2_w", "fc2.weight"), ("fc2_b", "fc2.bias")]})
        del w

    def forward(self, ids):
        """ids: int64 [B, T] -> logits [B, T, vocab] (float32)."""
        B, T = ids.shape
        d, H, hd = self.d, self.heads, self.hd
        scaling = hd ** -0.5
        # HF: positions from the all-ones attention mask, cumsum - 1, plus OPT's offset 2.
        mask = torch.ones(B, T, dtype=torch.long)
        positions = (torch.cumsum(mask, dim=1) * mask).long() - 1 + 2
        h = F.embedding(ids, self.embed_tokens) + F.embedding(positions, self.embed_positions)
        # HF _make_causal_mask: finfo.min above the diagonal, 0 elsewhere; [B, 1, T, T].
        fmin = torch.finfo(torch.float32).min
        causal = torch.full((T, T), fmin)
        cond = torch.arange(T)
        causal.masked_fill_(cond < (cond + 1).view(T, 1), 0.0)
        causal = causal[None, None, :, :].expand(B, 1, T, T)
        fmin_t = torch.tensor(fmin)
        for w in self.L:
            residual = h
            x = F.layer_norm(h, (d,), w["ln1_w"], w["ln1_b"], 1e-5)
            q = F.linear(x, w["q_w"], w["q_b"]) * scaling
            k = F.linear(x, w["k_w"], w["k_b"]).view(B, T, H, hd).transpose(1, 2).contiguous()
            v = F.linear(x, w["v_w"], w["v_b"]).view(B, T, H, hd).transpose(1, 2).contiguous()
            q = q.view(B, T, H, hd).transpose(1, 2).contiguous().view(B * H, T, hd)
            k = k.view(B * H, T, hd)
            v = v.view(B * H, T, hd)
            scores = torch.bmm(q, k.transpose(1, 2))
            scores = scores.view(B, H, T, T) + causal
            scores = torch.max(scores, fmin_t)
            probs = F.softmax(scores.view(B * H, T, T), dim=-1)
            a = torch.bmm(probs, v).view(B, H, T, hd).transpose(1, 2).reshape(B, T, d)
            h = residual + F.linear(a, w["o_w"], w["o_b"])
            shape = h.shape
            h = h.reshape(-1, d)
            residual = h
            x = F.layer_norm(h, (d,), w["ln2_w"], w["ln2_b"], 1e-5)
            x = F.relu(F.linear(x, w["fc1_w"], w["fc1_b"]))
            h = (residual + F.linear(x, w["fc2_w"], w["fc2_b"])).view(shape)
        h = F.layer_norm(h, (d,), self.final_ln[0], self.final_ln[1], 1e-5)
        return F.linear(h, self.lm_head)


def flops(m, B, T):
    """2*M*N*K per matmul; attention as torch computes it: the full T x T square."""
    rows = B * T
    d, f = m.d, m.ffn
    proj = m.layers * 2 * rows * d * d * 4
    ffn = m.layers * 2 * rows * d * f * 2
    attn = m.layers * 4.0 * d * B * T * T
    head = 2 * rows * d * m.vocab
    return proj + ffn + attn + head, attn


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
