#!/usr/bin/env python3
"""Checks a compressed-tensors folder written by `rptq export --format compressed-tensors` with the libraries that
serve such folders, independently of rptq: compressed-tensors' own PackedQuantizationCompressor decompresses every
quantized linear, and transformers loads the folder (decompressed on load) and computes logits.

    check_export.py FOLDER OUT_DIR [--reference REF.safetensors] [--ids IDS.json]

REF.safetensors (optional) holds, under "<module>.weight", the float32 weights the quantized model computes with;
every decompressed weight must equal its reference bit for bit. IDS.json (optional) is a list of token ids; the
logits of that sequence are written to OUT_DIR/logits.f32 (float32, [tokens, vocab]). OUT_DIR/result.json gets
the versions, the quantized modules checked, any mismatch, transformers' loading report, and the scale dtypes.

A test-time and documentation tool: the product never imports Python. Needs torch, transformers, safetensors and
compressed-tensors (pip install torch transformers compressed-tensors).
"""
import argparse
import json
import os

import compressed_tensors
import torch
import transformers
from compressed_tensors.compressors import PackedQuantizationCompressor
from compressed_tensors.quantization import QuantizationConfig
from safetensors.torch import load_file
from transformers import CompressedTensorsConfig


def scheme_for(qc, module):
    """The config group whose targets name the module, else the one targeting every Linear."""
    fallback = None
    for group in qc.config_groups.values():
        if module in group.targets:
            return group
        if "Linear" in group.targets:
            fallback = group
    if fallback is None or module in qc.ignore:
        raise SystemExit(f"{module}: no config group targets it")
    return fallback


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("folder")
    ap.add_argument("out")
    ap.add_argument("--reference")
    ap.add_argument("--ids")
    a = ap.parse_args()
    torch.set_num_threads(1)
    res = {"compressed_tensors": compressed_tensors.__version__, "transformers": transformers.__version__,
           "torch": torch.__version__}
    cfg = json.load(open(os.path.join(a.folder, "config.json")))["quantization_config"]
    qc = QuantizationConfig.model_validate(cfg)
    state = load_file(os.path.join(a.folder, "model.safetensors"))
    ref = load_file(a.reference) if a.reference else {}
    modules = sorted(k[: -len(".weight_packed")] for k in state if k.endswith(".weight_packed"))
    mismatches, scale_dtypes = [], set()
    for m in modules:
        local = {k[len(m) + 1:]: v for k, v in state.items() if k.startswith(m + ".") and "." not in k[len(m) + 1:]}
        scale_dtypes.add(str(local["weight_scale"].dtype))
        weight = PackedQuantizationCompressor.decompress(local, scheme_for(qc, m))["weight"]
        if ref:
            want = ref[m + ".weight"]
            got = weight.to(torch.float32)
            if got.shape != want.shape or not torch.equal(got, want):
                diff = (got - want).abs().max().item() if got.shape == want.shape else float("inf")
                mismatches.append({"module": m, "max_abs_diff": diff})
    res["modules"] = modules
    res["mismatches"] = mismatches
    res["scale_dtypes"] = sorted(scale_dtypes)
    # transformers: the folder as a user loads it. dequantize=True decompresses on load (the compressed-module
    # path of transformers 5 with compressed-tensors 0.20 refuses asymmetric zero points: docs/serving.md).
    model, info = transformers.AutoModelForCausalLM.from_pretrained(
        a.folder, dtype=torch.float32, attn_implementation="eager", output_loading_info=True,
        quantization_config=CompressedTensorsConfig(dequantize=True))
    res["loading_info"] = {k: sorted(str(x) for x in v) for k, v in info.items()}
    if ref:
        params = dict(model.named_parameters())
        loaded = []
        for m in modules:
            p = params.get(m + ".weight")
            if p is None or not torch.equal(p.detach().to(torch.float32), ref[m + ".weight"]):
                loaded.append(m)
        res["transformers_weight_mismatches"] = loaded
    if qc.kv_cache_scheme is not None:
        # The FP8 KV scales: the names and shapes compressed-tensors' own initialisation gives an attention
        # module's k and v quantization parameters (what vLLM reads). transformers 5 drops them when it
        # dequantizes (its attention takes no hooked KV cache), so they are checked here, not loaded.
        from compressed_tensors.quantization.lifecycle.initialize import initialize_qparams
        from compressed_tensors.utils import get_head_dim, get_num_kv_heads
        expected = {}
        for name, mod in model.named_modules():
            if hasattr(mod, "k_proj") and hasattr(mod, "v_proj"):
                probe = torch.nn.Module()
                for base in ("k", "v"):
                    initialize_qparams(probe, base, qc.kv_cache_scheme,
                                       observed_shape=(get_num_kv_heads(model.config), None,
                                                       get_head_dim(model.config)),
                                       observed_dtype=torch.float32, force_zero_point=False)
                for pn, p in probe.named_parameters():
                    expected[f"{name}.{pn}"] = list(p.shape)
        res["kv_scales"] = {"expected": expected,
                            "ours": {k: list(v.shape) for k, v in state.items() if k.endswith(("k_scale", "v_scale"))}}
    if a.ids:
        ids = json.load(open(a.ids))
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0].to(torch.float32)
        logits.numpy().astype("<f4").tofile(os.path.join(a.out, "logits.f32"))
    json.dump(res, open(os.path.join(a.out, "result.json"), "w"), indent=1)


if __name__ == "__main__":
    main()
