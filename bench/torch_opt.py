"""The PyTorch OPT forward shared by torch_forward.py (CPU, fp32) and torch_cuda.py (GPU, fp32 / fp16 / bf16).

The forward is written with plain torch ops, the way Hugging Face's eager OPTForCausalLM (transformers 4.2x)
computes it: embeddings + learned positions (offset 2), then per layer LayerNorm -> q/k/v linear (q scaled by
head_dim^-0.5) -> bmm(q, k^T) over the full T x T square + additive causal mask (finfo.min) -> softmax (in float32
for fp16 weights, as Hugging Face upcasts) -> bmm(p, v) -> out_proj + residual -> LayerNorm -> fc1 -> ReLU -> fc2 +
residual, a final LayerNorm and the tied LM head over all positions. attention="sdpa" replaces the bmm / mask /
softmax / bmm part by F.scaled_dot_product_attention(is_causal=True) (torch >= 2.0), as newer transformers do.

Weights are read from model.safetensors with numpy (format parsed here; F32, F16 and BF16 supported) into float32
CPU tensors; OPT.to(device, dtype) makes a copy on a device in a dtype. forward() takes an optional tap hook that
sees the activations RPTQ calibrates (core/include/rptq/model/tap.h), so calibration can be timed with the same work:
hook(layer, name, x) with x [B, T, C] for attn_input, q (scaled), k, v, attn_output, ffn_input, ffn_hidden, and
hook(layer, "scores", (scores, causal)) with the [B, H, T, T] scaled q k^T before the mask and the additive mask.
Only torch and numpy are needed; importing this module imports torch, so callers set thread variables first.
"""
import json
import os
import struct

import numpy as np
import torch
import torch.nn.functional as F

TAPS = ("attn_input", "q", "k", "v", "attn_output", "ffn_input", "ffn_hidden")


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
    def __init__(self, model_dir=None):
        if model_dir is None:  # an empty shell for to()
            return
        with open(os.path.join(model_dir, "config.json")) as f:
            cfg = json.load(f)
        if cfg.get("model_type") != "opt":
            raise SystemExit("torch_opt.py implements OPT only")
        if not cfg.get("do_layer_norm_before", True) or cfg.get("word_embed_proj_dim", cfg["hidden_size"]) != cfg[
                "hidden_size"] or cfg.get("activation_function", "relu") != "relu":
            raise SystemExit("torch_opt.py implements pre-LN OPT with ReLU and no project_in/out only")
        self.cfg = cfg
        self.d = cfg["hidden_size"]
        self.heads = cfg["num_attention_heads"]
        self.hd = self.d // self.heads
        self.layers = cfg["num_hidden_layers"]
        self.ffn = cfg["ffn_dim"]
        self.vocab = cfg["vocab_size"]
        self.max_positions = cfg["max_position_embeddings"]
        self.device = torch.device("cpu")
        self.dtype = torch.float32
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
        w.clear()  # the float32 copies now live in the tensors

    def to(self, device, dtype=torch.float32):
        """A copy of the weights on `device` in `dtype` (the tied head stays tied)."""
        m = OPT()
        for k in ("cfg", "d", "heads", "hd", "layers", "ffn", "vocab", "max_positions"):
            setattr(m, k, getattr(self, k))
        m.device = torch.device(device)
        m.dtype = dtype

        def cp(x):
            return x.to(device=device, dtype=dtype).contiguous()

        m.embed_tokens = cp(self.embed_tokens)
        m.embed_positions = cp(self.embed_positions)
        m.lm_head = m.embed_tokens if self.lm_head is self.embed_tokens else cp(self.lm_head)
        m.final_ln = tuple(cp(x) for x in self.final_ln)
        m.L = [{k: cp(v) for k, v in layer.items()} for layer in self.L]
        return m

    def parameter_bytes(self):
        n = self.embed_tokens.numel() + self.embed_positions.numel() + sum(x.numel() for x in self.final_ln)
        if self.lm_head is not self.embed_tokens:
            n += self.lm_head.numel()
        n += sum(v.numel() for layer in self.L for v in layer.values())
        return n * self.embed_tokens.element_size()

    def forward(self, ids, hook=None, head=True, attention="eager"):
        """ids: int64 [B, T] on the model's device -> logits [B, T, vocab] in the model's dtype (head=False: the
        last decoder layer's output [B, T, hidden], no final norm). hook: see the module docstring."""
        B, T = ids.shape
        d, H, hd = self.d, self.heads, self.hd
        dev, dt = self.device, self.dtype
        scaling = hd ** -0.5
        # HF: positions from the all-ones attention mask, cumsum - 1, plus OPT's offset 2.
        mask = torch.ones(B, T, dtype=torch.long, device=dev)
        positions = (torch.cumsum(mask, dim=1) * mask).long() - 1 + 2
        h = F.embedding(ids, self.embed_tokens) + F.embedding(positions, self.embed_positions)
        # HF _make_causal_mask: finfo.min above the diagonal, 0 elsewhere; [B, 1, T, T].
        fmin = torch.finfo(dt).min
        causal = None
        if attention == "eager":
            causal = torch.full((T, T), fmin, dtype=dt, device=dev)
            cond = torch.arange(T, device=dev)
            causal.masked_fill_(cond < (cond + 1).view(T, 1), 0.0)
            causal = causal[None, None, :, :].expand(B, 1, T, T)
            fmin_t = torch.tensor(fmin, dtype=dt, device=dev)
        for li, w in enumerate(self.L):
            residual = h
            x = F.layer_norm(h, (d,), w["ln1_w"], w["ln1_b"], 1e-5)
            if hook:
                hook(li, "attn_input", x)
            q = F.linear(x, w["q_w"], w["q_b"]) * scaling
            kx = F.linear(x, w["k_w"], w["k_b"])
            vx = F.linear(x, w["v_w"], w["v_b"])
            if hook:
                hook(li, "q", q)
                hook(li, "k", kx)
                hook(li, "v", vx)
            k = kx.view(B, T, H, hd).transpose(1, 2).contiguous()
            v = vx.view(B, T, H, hd).transpose(1, 2).contiguous()
            q = q.view(B, T, H, hd).transpose(1, 2).contiguous()
            if attention == "sdpa":
                a = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=1.0)
                a = a.transpose(1, 2).reshape(B, T, d)
            else:
                q = q.view(B * H, T, hd)
                k = k.view(B * H, T, hd)
                v = v.view(B * H, T, hd)
                scores = torch.bmm(q, k.transpose(1, 2))
                if hook:
                    hook(li, "scores", (scores.view(B, H, T, T), causal))
                scores = scores.view(B, H, T, T) + causal
                scores = torch.max(scores, fmin_t)
                if dt == torch.float16:
                    probs = F.softmax(scores.view(B * H, T, T), dim=-1, dtype=torch.float32).to(torch.float16)
                else:
                    probs = F.softmax(scores.view(B * H, T, T), dim=-1)
                a = torch.bmm(probs, v).view(B, H, T, hd).transpose(1, 2).reshape(B, T, d)
            if hook:
                hook(li, "attn_output", a)
            h = residual + F.linear(a, w["o_w"], w["o_b"])
            shape = h.shape
            h = h.reshape(-1, d)
            residual = h
            x = F.layer_norm(h, (d,), w["ln2_w"], w["ln2_b"], 1e-5)
            if hook:
                hook(li, "ffn_input", x.view(B, T, d))
            x = F.relu(F.linear(x, w["fc1_w"], w["fc1_b"]))
            if hook:
                hook(li, "ffn_hidden", x.view(B, T, -1))
            h = (residual + F.linear(x, w["fc2_w"], w["fc2_b"])).view(shape)
        if not head:
            return h
        h = F.layer_norm(h, (d,), self.final_ln[0], self.final_ln[1], 1e-5)
        return F.linear(h, self.lm_head)


def flops(m, B, T):
    """2*M*N*K per matmul; attention as the eager path computes it: the full T x T square. Returns (total,
    attention)."""
    rows = B * T
    d, f = m.d, m.ffn
    proj = m.layers * 2 * rows * d * d * 4
    ffn = m.layers * 2 * rows * d * f * 2
    attn = m.layers * 4.0 * d * B * T * T
    head = 2 * rows * d * m.vocab
    return proj + ffn + attn + head, attn


def useful_flops(m, windows, T, with_head):
    """bench_cuda's count (model_flops there): layers over every token, attention over the exact causal triangle,
    the LM head over the T - 1 predicting positions (evaluation only)."""
    rows = windows * T
    d, f = m.d, m.ffn
    layers = m.layers * 2.0 * rows * (4 * d * d + 2 * d * f)
    attn = m.layers * windows * 4.0 * d * T * (T + 1) / 2
    head = 2.0 * windows * (T - 1) * d * m.vocab if with_head else 0.0
    return layers + attn + head


def bench_ids(n, vocab, seed):
    """bench_cuda's token ids: output i of splitmix64 from state `seed`, modulo vocab (int64 numpy array)."""
    i = np.arange(1, n + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = np.uint64(seed % (1 << 64)) + i * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z % np.uint64(vocab)).astype(np.int64)
