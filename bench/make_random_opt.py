#!/usr/bin/python3
"""Create an OPT-125m- or OPT-1.3b-shaped model folder with random weights, for the benchmarks.

The folder holds config.json (facebook/opt-125m's or facebook/opt-1.3b's, except `_name_or_path` and `torch_dtype`,
which say what this folder is: random weights of the written dtype) and model.safetensors (F32 by default, or F16 /
BF16 with --dtype, which halves the file and the time to write and read it; Hugging Face tensor names). Weights are
drawn N(0, 0.02^2) from a seeded generator (the init_std of the config); LayerNorm weights are 1 and biases 0, linear
biases 0 and the padding token's embedding row 0, as Hugging Face's OPTPreTrainedModel._init_weights does.
The safetensors file is written here without the safetensors package: an 8-byte little-endian header length, a
JSON header (dtype, shape, data_offsets per tensor), then the raw data.

    /usr/bin/python3 bench/make_random_opt.py [OUT_DIR] [--size 125m|1.3b] [--dtype f32|f16|bf16] [--seed 0]
                                              [--with-tokenizer]

OUT_DIR defaults to /tmp/rptq-bench/opt-SIZE-random. Only numpy is needed. OPT-1.3b (hidden 2048, 24 layers, 32
heads, ffn 8192, vocab 50272, 2048 positions) is 1.3 G parameters: 5.3 GB in F32, 2.6 GB in F16.
"""
import argparse
import json
import os
import shutil
import struct
import sys

import numpy as np

# facebook/opt-125m config.json (transformers 4.21 era), as published on the Hugging Face hub.
OPT_125M_CONFIG = {
    "_name_or_path": "facebook/opt-125m",
    "_remove_final_layer_norm": False,
    "activation_dropout": 0.0,
    "activation_function": "relu",
    "architectures": ["OPTForCausalLM"],
    "attention_dropout": 0.0,
    "bos_token_id": 2,
    "do_layer_norm_before": True,
    "dropout": 0.1,
    "eos_token_id": 2,
    "ffn_dim": 3072,
    "hidden_size": 768,
    "init_std": 0.02,
    "layerdrop": 0.0,
    "max_position_embeddings": 2048,
    "model_type": "opt",
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
    "pad_token_id": 1,
    "prefix": "</s>",
    "torch_dtype": "float16",
    "transformers_version": "4.21.0.dev0",
    "use_cache": True,
    "vocab_size": 50272,
    "word_embed_proj_dim": 768,
}

# facebook/opt-1.3b's config.json differs from opt-125m's only in these.
OPT_1_3B_CHANGES = {
    "_name_or_path": "facebook/opt-1.3b",
    "ffn_dim": 8192,
    "hidden_size": 2048,
    "num_attention_heads": 32,
    "num_hidden_layers": 24,
    "word_embed_proj_dim": 2048,
}
SIZES = {"125m": OPT_125M_CONFIG, "1.3b": {**OPT_125M_CONFIG, **OPT_1_3B_CHANGES}}
DTYPES = {"f32": ("F32", "float32"), "f16": ("F16", "float16"), "bf16": ("BF16", "bfloat16")}

TOKENIZER_FILES = ["vocab.json", "merges.txt", "special_tokens_map.json", "tokenizer_config.json",
                   "generation_config.json"]


def opt_tensor_specs(cfg):
    """(name, shape, init) in Hugging Face's order; init is 'normal', 'ones' or 'zeros'."""
    d, f, v = cfg["hidden_size"], cfg["ffn_dim"], cfg["vocab_size"]
    e = cfg["word_embed_proj_dim"]
    assert e == d, "project_in/project_out are not generated"
    specs = [("model.decoder.embed_tokens.weight", (v, e), "embed"),
             ("model.decoder.embed_positions.weight", (cfg["max_position_embeddings"] + 2, d), "normal")]
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.decoder.layers.{i}."
        for proj in ("k_proj", "v_proj", "q_proj", "out_proj"):
            specs.append((p + f"self_attn.{proj}.weight", (d, d), "normal"))
            specs.append((p + f"self_attn.{proj}.bias", (d,), "zeros"))
        specs.append((p + "self_attn_layer_norm.weight", (d,), "ones"))
        specs.append((p + "self_attn_layer_norm.bias", (d,), "zeros"))
        specs.append((p + "fc1.weight", (f, d), "normal"))
        specs.append((p + "fc1.bias", (f,), "zeros"))
        specs.append((p + "fc2.weight", (d, f), "normal"))
        specs.append((p + "fc2.bias", (d,), "zeros"))
        specs.append((p + "final_layer_norm.weight", (d,), "ones"))
        specs.append((p + "final_layer_norm.bias", (d,), "zeros"))
    specs.append(("model.decoder.final_layer_norm.weight", (d,), "ones"))
    specs.append(("model.decoder.final_layer_norm.bias", (d,), "zeros"))
    return specs


def to_stored(a, dtype):
    """float32 array -> little-endian bytes of safetensors dtype F32, F16 or BF16 (round to nearest even)."""
    a = np.ascontiguousarray(a, dtype="<f4")
    if dtype == "F32":
        return a.tobytes()
    if dtype == "F16":
        return a.astype("<f2").tobytes()
    u = a.view("<u4")
    return ((u + np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)).astype("<u2").tobytes()


def write_safetensors(path, specs, make, dtype="F32"):
    """Writes the tensors as `dtype` (F32, F16, BF16); make(name, shape, init) returns a float32 array. Streams
    tensor by tensor."""
    header = {"__metadata__": {"format": "pt"}}
    offset = 0
    esize = 4 if dtype == "F32" else 2
    for name, shape, _ in specs:
        nbytes = esize * int(np.prod(shape))
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    blob = json.dumps(header, separators=(",", ":")).encode("utf-8")
    blob += b" " * ((8 - len(blob) % 8) % 8)  # pad so the data starts 8-byte aligned
    tmp = path + ".partial"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for name, shape, init in specs:
            a = make(name, shape, init)
            assert a.shape == tuple(shape)
            f.write(to_stored(a, dtype))
    os.replace(tmp, path)
    return offset


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out_dir", nargs="?", default=None, help="default /tmp/rptq-bench/opt-SIZE-random")
    ap.add_argument("--size", choices=sorted(SIZES), default="125m")
    ap.add_argument("--dtype", choices=sorted(DTYPES), default="f32", help="stored dtype of the weights")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--with-tokenizer", action="store_true",
                    help="also copy tokenizer files from ../shared/models/tiny-opt-16m (the benchmark does not "
                         "need them)")
    ap.add_argument("--tokenizer-from", default=None, help="folder to copy tokenizer files from")
    args = ap.parse_args()

    if args.out_dir is None:
        args.out_dir = f"/tmp/rptq-bench/opt-{args.size}-random"
    cfg = dict(SIZES[args.size])
    cfg["_name_or_path"] = f"opt-{args.size}-random"
    stored, cfg["torch_dtype"] = DTYPES[args.dtype]  # what the weights written below are
    std = cfg["init_std"]
    pad = cfg["pad_token_id"]
    os.makedirs(args.out_dir, exist_ok=True)
    rng = np.random.default_rng(args.seed)

    def make(name, shape, init):
        if init == "ones":
            return np.ones(shape, np.float32)
        if init == "zeros":
            return np.zeros(shape, np.float32)
        a = rng.standard_normal(size=shape, dtype=np.float32)
        a *= np.float32(std)
        if init == "embed":
            a[pad] = 0.0
        return a

    specs = opt_tensor_specs(cfg)
    data_bytes = write_safetensors(os.path.join(args.out_dir, "model.safetensors"), specs, make, stored)
    with open(os.path.join(args.out_dir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
    if args.with_tokenizer:
        src = args.tokenizer_from or os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                                   "shared", "models", "tiny-opt-16m")
        for name in TOKENIZER_FILES:
            if os.path.exists(os.path.join(src, name)):
                shutil.copy(os.path.join(src, name), os.path.join(args.out_dir, name))
    params = sum(int(np.prod(s)) for _, s, _ in specs)
    print(json.dumps({"model_dir": os.path.abspath(args.out_dir), "size": args.size, "dtype": stored,
                      "tensors": len(specs), "parameters": params, "data_bytes": data_bytes, "seed": args.seed}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
