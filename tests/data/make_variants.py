#!/usr/bin/env python3
"""Regenerates tests/data/variants/: tiny random Hugging Face models and their logits, the independent references of
tests/model/test_model_variants.cpp.

Every model is built by transformers' own classes (LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM,
OPTForCausalLM) in float32 with eager attention, filled with fixed-seed random values large enough that every
weight matters (norms get non-unit weights, biases non-zero values), saved with save_pretrained (or, for the
legacy OPT layout, torch.save), and run once over 40 fixed random token ids. Each folder gets

    config.json, the weights, reference.json {"ids": [...], "shape": [T, V], "logits_file": "logits.f32"}
    and logits.f32 (T x V little-endian float32, Hugging Face's logits).

Needs torch and transformers (see variants/README.md for the versions used and how to make the environment):
    /tmp/hfenv/bin/python tests/data/make_variants.py
The tests themselves need no Python.
"""
import json
import os
import shutil
import sys

import torch
import transformers
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    OPTConfig,
    OPTForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
)

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "variants")
SEQ = 40  # tokens of the reference sequence (batch 1)
PREFIX = 30  # the C++ test feeds this many at once, then the rest one by one through the KV cache


def randomize(model, seed):
    """Overwrites every parameter with fixed-seed values of a size that keeps activations O(1)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():  # a tied lm_head shares embed_tokens' Parameter: listed once
            if "norm" in name:  # LayerNorm / RMSNorm
                if name.endswith(".weight"):
                    p.copy_(0.5 + torch.rand(p.shape, generator=g))  # in [0.5, 1.5)
                else:
                    p.copy_(0.2 * torch.randn(p.shape, generator=g))
            elif "embed_tokens" in name or "embed_positions" in name:
                p.copy_(torch.randn(p.shape, generator=g))
            elif p.dim() == 2:  # nn.Linear [out, in]
                p.copy_(torch.randn(p.shape, generator=g) / p.shape[1] ** 0.5)
            else:  # linear bias
                p.copy_(0.2 * torch.randn(p.shape, generator=g))


def build(model_class, config, seed):
    torch.manual_seed(seed)
    model = model_class(config)
    assert model.config._attn_implementation == "eager", model.config._attn_implementation
    randomize(model, seed + 1)
    return model.float().eval()


def token_ids(vocab, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab, (SEQ,), generator=g)


def logits_of(model, ids):
    with torch.no_grad():
        return model(input_ids=ids[None], use_cache=False).logits[0].float()


def incremental_logits(model, ids):
    """HF's own KV-cache path: PREFIX tokens, then one token at a time. Must agree with the full pass."""
    with torch.no_grad():
        out = model(input_ids=ids[None, :PREFIX], use_cache=True)
        rows = [out.logits[0]]
        past = out.past_key_values
        for t in range(PREFIX, SEQ):
            out = model(input_ids=ids[None, t : t + 1], past_key_values=past, use_cache=True)
            past = out.past_key_values
            rows.append(out.logits[0])
        return torch.cat(rows).float()


def fresh_dir(name):
    d = os.path.join(OUT, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    return d


def write_reference(d, ids, logits):
    logits = logits.contiguous()
    assert logits.dtype == torch.float32 and logits.shape[0] == SEQ
    with open(os.path.join(d, "logits.f32"), "wb") as f:
        f.write(logits.numpy().astype("<f4").tobytes())
    ref = {"ids": [int(i) for i in ids], "shape": list(logits.shape), "logits_file": "logits.f32"}
    with open(os.path.join(d, "reference.json"), "w") as f:
        json.dump(ref, f)
        f.write("\n")


def save_hf(model, name, ids, **save_kw):
    """save_pretrained (safetensors) + reference. Returns the float32 logits."""
    d = fresh_dir(name)
    model.save_pretrained(d, safe_serialization=True, **save_kw)
    gen = os.path.join(d, "generation_config.json")
    if os.path.exists(gen):
        os.remove(gen)
    logits = logits_of(model, ids)
    check_incremental(model, ids, logits, name)
    write_reference(d, ids, logits)
    return logits


def check_incremental(model, ids, logits, name):
    err = (incremental_logits(model, ids) - logits).abs().max().item()
    assert err < 1e-4, f"{name}: HF's KV-cache path differs from its full pass by {err}"


def describe(name, logits):
    print(f"{name:28s} logits {tuple(logits.shape)} range [{logits.min():.3f}, {logits.max():.3f}] std {logits.std():.3f}")


def eager(**kw):
    kw.setdefault("attn_implementation", "eager")
    kw.setdefault("max_position_embeddings", 128)
    return kw


# ------------------------------------------------------------------------------------------------------------------


def llama_untied_bias():
    cfg = LlamaConfig(**eager(vocab_size=160, hidden_size=48, intermediate_size=96, num_hidden_layers=2,
                              num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-5, rope_theta=500000.0,
                              tie_word_embeddings=False, attention_bias=True, mlp_bias=True))
    model = build(LlamaForCausalLM, cfg, 100)
    ids = token_ids(cfg.vocab_size, 101)
    describe("llama-untied-bias", save_hf(model, "llama-untied-bias", ids))
    return model, ids


def llama_bf16_sharded(model, ids):
    """The llama-untied-bias weights rounded to bfloat16, saved as two safetensors shards with an index. The reference
    is Hugging Face's float32 forward pass over those rounded weights, so it is as exact as the float32 variants."""
    name = "llama-bf16-sharded"
    bf16 = LlamaForCausalLM(model.config)
    bf16.load_state_dict(model.state_dict())
    bf16 = bf16.to(torch.bfloat16).eval()
    d = fresh_dir(name)
    total = sum(p.numel() * p.element_size() for p in bf16.parameters())
    bf16.save_pretrained(d, safe_serialization=True, max_shard_size=int(total * 0.6))
    os.remove(os.path.join(d, "generation_config.json"))
    shards = sorted(f for f in os.listdir(d) if f.endswith(".safetensors"))
    assert len(shards) == 2 and os.path.exists(os.path.join(d, "model.safetensors.index.json")), shards
    # The bf16 values, exactly, in a fresh float32 model. (Not bf16.float(): .to(bfloat16) also rounds the rotary
    # embedding's inv_freq buffer, which is not a weight and is computed in float32 when a checkpoint is loaded.)
    upcast = LlamaForCausalLM(model.config)
    upcast.load_state_dict({k: v.float() for k, v in bf16.state_dict().items()})
    upcast = upcast.float().eval()
    assert upcast.model.rotary_emb.inv_freq.dtype == torch.float32
    logits = logits_of(upcast, ids)
    check_incremental(upcast, ids, logits, name)
    write_reference(d, ids, logits)
    describe(name, logits)


def mistral_window():
    """sliding_window 16 over 40 tokens: positions >= 16 lose their oldest keys. Checks that this version of HF
    applies the window in the eager path (logits differ from the same weights without a window, from position 16 on)."""
    kw = eager(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
               num_key_value_heads=2, rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=False)
    model = build(MistralForCausalLM, MistralConfig(sliding_window=16, **kw), 200)
    ids = token_ids(128, 201)
    logits = save_hf(model, "mistral-window", ids)
    full = MistralForCausalLM(MistralConfig(sliding_window=None, **kw))
    full.load_state_dict(model.state_dict())
    full_logits = logits_of(full.eval(), ids)
    inside = (logits[:16] - full_logits[:16]).abs().max().item()
    outside = (logits[16:] - full_logits[16:]).abs().max().item()
    print(f"mistral-window: |window - no window| = {inside:.2e} at positions < 16, {outside:.2e} from 16 on")
    assert inside < 1e-5 and outside > 1e-2, "HF did not apply sliding_window the way this test assumes"
    describe("mistral-window", logits)


def mistral_head_dim():
    """An explicit head_dim (16) that is not hidden_size / num_attention_heads (8): q_proj is 64 x 32, o_proj 32 x 64."""
    cfg = MistralConfig(**eager(vocab_size=112, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                num_attention_heads=4, num_key_value_heads=2, head_dim=16, rms_norm_eps=1e-6,
                                rope_theta=10000.0, sliding_window=None, tie_word_embeddings=False))
    model = build(MistralForCausalLM, cfg, 250)
    assert model.model.layers[0].self_attn.q_proj.weight.shape == (64, 32)
    ids = token_ids(cfg.vocab_size, 251)
    describe("mistral-head-dim", save_hf(model, "mistral-head-dim", ids))


def qwen2(name, tie, seed, vocab):
    cfg = Qwen2Config(**eager(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                              num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-6, rope_theta=1000000.0,
                              tie_word_embeddings=tie, use_sliding_window=False, sliding_window=16,
                              max_window_layers=1))
    model = build(Qwen2ForCausalLM, cfg, seed)
    assert model.model.layers[0].self_attn.q_proj.bias is not None
    ids = token_ids(vocab, seed + 1)
    describe(name, save_hf(model, name, ids))


def opt_350m_style():
    """As facebook/opt-350m: post-LayerNorm (do_layer_norm_before false, hence no final LayerNorm) and
    word_embed_proj_dim < hidden_size (project_in / project_out), ReLU, tied head."""
    cfg = OPTConfig(**eager(vocab_size=160, hidden_size=48, word_embed_proj_dim=32, ffn_dim=96, num_hidden_layers=2,
                            num_attention_heads=4, do_layer_norm_before=False, _remove_final_layer_norm=False,
                            activation_function="relu", tie_word_embeddings=True, dropout=0.0, attention_dropout=0.0))
    model = build(OPTForCausalLM, cfg, 300)
    assert model.model.decoder.project_in is not None and model.model.decoder.final_layer_norm is None
    ids = token_ids(cfg.vocab_size, 301)
    describe("opt-350m-style", save_hf(model, "opt-350m-style", ids))


def opt_prefix_free():
    """A pre-LN OPT saved the way the original facebook/opt-* checkpoints are: pytorch_model.bin holding the
    OPTModel state dict (keys "decoder.layers.0...", no "model." prefix and no lm_head; the head is tied)."""
    name = "opt-prefix-free"
    cfg = OPTConfig(**eager(vocab_size=120, hidden_size=32, ffn_dim=64, num_hidden_layers=2, num_attention_heads=4,
                            do_layer_norm_before=True, activation_function="relu", tie_word_embeddings=True,
                            dropout=0.0, attention_dropout=0.0))
    model = build(OPTForCausalLM, cfg, 400)
    ids = token_ids(cfg.vocab_size, 401)
    d = fresh_dir(name)
    model.config.save_pretrained(d)
    state = model.model.state_dict()
    assert all(k.startswith("decoder.") for k in state), list(state)[:3]
    torch.save(state, os.path.join(d, "pytorch_model.bin"))
    logits = logits_of(model, ids)
    check_incremental(model, ids, logits, name)
    write_reference(d, ids, logits)
    describe(name, logits)


def opt_gelu_noaffine():
    """Pre-LN OPT with exact GELU, enable_bias false, layer_norm_elementwise_affine false and
    _remove_final_layer_norm true (no final LayerNorm although pre-LN)."""
    cfg = OPTConfig(**eager(vocab_size=120, hidden_size=32, ffn_dim=64, num_hidden_layers=2, num_attention_heads=2,
                            do_layer_norm_before=True, _remove_final_layer_norm=True, activation_function="gelu",
                            enable_bias=False, layer_norm_elementwise_affine=False, tie_word_embeddings=True,
                            dropout=0.0, attention_dropout=0.0))
    model = build(OPTForCausalLM, cfg, 500)
    assert model.model.decoder.final_layer_norm is None and model.model.decoder.layers[0].fc1.bias is None
    ids = token_ids(cfg.vocab_size, 501)
    describe("opt-gelu-noaffine", save_hf(model, "opt-gelu-noaffine", ids))


def opt_gelu_new():
    """Pre-LN OPT with activation_function "gelu_new" (HF: the tanh approximation, NewGELUActivation)."""
    cfg = OPTConfig(**eager(vocab_size=120, hidden_size=32, ffn_dim=64, num_hidden_layers=2, num_attention_heads=4,
                            do_layer_norm_before=True, activation_function="gelu_new", tie_word_embeddings=True,
                            dropout=0.0, attention_dropout=0.0))
    model = build(OPTForCausalLM, cfg, 600)
    ids = token_ids(cfg.vocab_size, 601)
    logits = save_hf(model, "opt-gelu-new", ids)
    # How far the exact (erf) GELU would be from this reference, for the record.
    model.model.decoder.layers[0].activation_fn = torch.nn.GELU()
    model.model.decoder.layers[1].activation_fn = torch.nn.GELU()
    erf = logits_of(model, ids)
    print(f"opt-gelu-new: exact-GELU logits differ from gelu_new logits by {(erf - logits).abs().max():.2e}")
    describe("opt-gelu-new", logits)


def main():
    torch.set_num_threads(1)  # a fixed summation order
    print(f"transformers {transformers.__version__}, torch {torch.__version__}, python {sys.version.split()[0]}")
    model, ids = llama_untied_bias()
    llama_bf16_sharded(model, ids)
    mistral_window()
    mistral_head_dim()
    qwen2("qwen2-tied", True, 700, 200)
    qwen2("qwen2-untied", False, 800, 144)
    opt_350m_style()
    opt_prefix_free()
    opt_gelu_noaffine()
    opt_gelu_new()
    for name in sorted(os.listdir(OUT)):
        d = os.path.join(OUT, name)
        if os.path.isdir(d):
            size = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))
            print(f"{name:28s} {size / 1024:7.1f} KiB  {sorted(os.listdir(d))}")


if __name__ == "__main__":
    main()
