#pragma once
// Export of an RPTQ-quantized model as a Hugging Face model folder holding its dequantized weights: the
// fake-quantized float values the quantized model computes with, loadable by transformers (OPTForCausalLM,
// LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM) and by rptq::Model::load.
//
// Layout: every reorder is undone, so each exported tensor is in the source checkpoint's channel order.
//  - R1 and R4 must be undone: they live in the norm's gather (the norm writes its output permuted), which a
//    Hugging Face LayerNorm/RMSNorm cannot express. q/k/v (R1) and fc1 or gate/up (R4) weight columns go back to the
//    original input order and the norms are written ungathered (their gamma/beta were never permuted).
//  - R2 of a rotary model must be undone: it also permutes the rotary frequencies (rope_index), which Hugging Face's
//    rotary embedding cannot express. q/k rows and biases go back.
//  - R2 of OPT, R3 and R5 are plain row/column permutations that Hugging Face could run as they are; they are undone
//    too, so the whole folder follows one rule: tensor for tensor, element for element, it lines up with the source
//    model's, and per-weight quantization error can be read off by comparing the two folders.
// Undoing a permutation moves float values and changes none, so every value is exactly the quantized model's. The
// logits of the exported model equal the quantized model's without its activation hook up to float summation order.
// What a Hugging Face folder cannot carry is left out: the activation and KV quantizers, the 8-bit softmax grid and
// the integer codes; the safetensors "__metadata__" records {"format": "pt", "rptq": QuantConfig::describe()}.
#include <filesystem>
#include <functional>
#include <string>

#include "rptq/base/dtype.h"
#include "rptq/method/quantize.h"

namespace rptq {

// Writes OUT_DIR (created with its parents) with config.json copied byte for byte from SOURCE_MODEL_DIR (the
// folder the quantized model was loaded from), whichever of the tokenizer files tokenizer.json,
// tokenizer_config.json, vocab.json, merges.txt, special_tokens_map.json, tokenizer.model and
// generation_config.json the source has, and model.safetensors with every tensor under the canonical Hugging Face
// names (OPT: model.decoder.*, lm_head.weight only when untied; LLaMA family: model.*, lm_head.weight when untied)
// in `dtype` (F32, F16 or BF16; see safetensors_writer.h). Each file is written atomically; config.json comes last.
// Throws InputError when OUT_DIR exists and is not empty (unless `overwrite`), is not a folder, or is the source
// folder; when the source folder's config.json does not describe the quantized model; or on any I/O error. With
// `overwrite`, the weight and tokenizer files of an earlier model that this export does not write
// (model.safetensors.index.json and its shards, pytorch_model*.bin and its index, a tokenizer file the source
// lacks) are removed, since loaders would prefer them to model.safetensors; other files are left alone.
//
// `progress` (optional) is called before each tensor with the fraction of the weights written so far and the
// tensor's name, and once with 1 at the end; returning false cancels the export: rptq::Cancelled is thrown and the
// folder is left as it was (a folder this call created is removed again, an existing one keeps every file, since
// the earlier model's files are only removed once model.safetensors is in place).
void export_hf_folder(const QuantizedModel& q, const std::filesystem::path& source_model_dir,
                      const std::filesystem::path& out_dir, bool overwrite, DType dtype = DType::F32,
                      const std::function<bool(double, const std::string&)>& progress = {});

// Export of a model quantized for the compressed-tensors serving target (QuantConfig::target, docs/serving.md) as
// the Hugging Face folder vLLM, SGLang and transformers (with the compressed-tensors package) load: the source's
// config.json with a "quantization_config" of the compressed-tensors schema added (quant_method
// compressed-tensors, format pack-quantized, one config group per weight bit width with asymmetric int weights,
// strategy group and the group size (or strategy channel); "ignore" lists lm_head, OPT's project_in/out and any
// linear an override keeps in float; with QuantConfig::kv_fp8 a kv_cache_scheme of FP8 scales), the tokenizer
// files, and model.safetensors holding, for each quantized linear, weight_packed (I32 [out, ceil(in * bits / 32)]:
// code + 2^(bits-1) at bit i * bits of row element i, little-endian words), weight_scale ([out, in / group], or
// [out, 1] for one group per output channel, in QuantConfig::scale_dtype), weight_zero_point (I32
// [ceil(out * bits / 32), groups], the zero points + 2^(bits-1) packed the same way down each column) and
// weight_shape (I64 [out, in]); with kv_fp8, self_attn.k_scale / v_scale ([1], or [kv_heads, 1, 1] per head);
// every other tensor in F32 (lossless; config.json keeps its torch_dtype).
// The weights stay in the quantized model's layout: R3 and R5 are permutations a Hugging Face model runs as they
// are (v rows and bias with o_proj columns within each head; fc1 or gate/up rows and bias with fc2 or down
// columns), and R1, R2 and R4 are the identity under the serving target. compressed-tensors' decompression,
// (code - zero point) * scale in the scale's dtype, gives every weight exactly as the quantized model computes it.
// Throws InputError when the model was not quantized for this target, and as export_hf_folder otherwise (the same
// folder rules, overwrite and cancel behaviour).
void export_compressed_tensors(const QuantizedModel& q, const std::filesystem::path& source_model_dir,
                               const std::filesystem::path& out_dir, bool overwrite,
                               const std::function<bool(double, const std::string&)>& progress = {});

// The "quantization_config" object export_compressed_tensors adds to config.json.
std::string compressed_tensors_config_json(const QuantizedModel& q);

}  // namespace rptq
