#include "rptq/method/quant_config_json.h"

#include "rptq/base/error.h"

namespace rptq {

nlohmann::json quant_config_json(const QuantConfig& c) {
  nlohmann::json j;
  j["preset"] = c.name;
  j["description"] = c.describe();
  j["wbits"] = c.wbits;
  j["kvbits"] = c.kv_bits();
  nlohmann::json bits;
  for (Tap t : kAllTaps) bits[tap_name(t)] = c.bits(t);
  bits["softmax"] = c.softmax_bits;
  j["abits"] = bits;
  j["clusters"] = {{"R1", c.clusters[0]}, {"R2", c.clusters[1]}, {"R3", c.clusters[2]}, {"R4", c.clusters[3]},
                   {"R5", c.clusters[4]}};
  j["weights"] = weight_method_name(c.weight_method);
  j["weight_group"] = c.weight_group;
  j["gptq_damp"] = c.gptq_damp;
  j["gptq_block"] = c.gptq_block;
  j["weight_clip"] = weight_clip_name(c.weight_clip);
  j["act_order"] = c.act_order;
  j["grid"] = grid_name(c.grid);
  j["ranges"] = c.range_mode == RangeMode::Static ? "static" : "dynamic";
  j["fp_prefix"] = c.fp_prefix;
  j["overrides"] = nlohmann::json::array();
  for (const TapOverride& o : c.overrides) j["overrides"].push_back(o.spec);
  j["target"] = target_name(c.target);
  j["scale_dtype"] = std::string(dtype_name(c.scale_dtype));
  j["kv_fp8"] = kv_fp8_name(c.kv_fp8);
  return j;
}

QuantConfig quant_config_from_json(const nlohmann::json& j, const std::string& what) {
  auto bad = [&](const std::string& key, const std::string& why) {
    return InputError(what + ": quantization setting: \"" + key + "\" " + why);
  };
  if (!j.is_object()) throw InputError(what + ": quantization setting is not a JSON object");
  auto get = [&](const nlohmann::json& o, const std::string& key) -> const nlohmann::json& {
    const auto it = o.find(key);
    if (it == o.end()) throw bad(key, "is missing");
    return *it;
  };
  auto integer = [&](const nlohmann::json& o, const std::string& key) {
    const nlohmann::json& v = get(o, key);
    if (!v.is_number_integer()) throw bad(key, "is not an integer");
    const auto x = v.get<std::int64_t>();
    if (x < -1000000 || x > 1000000) throw bad(key, "is out of range");
    return static_cast<int>(x);
  };
  auto text = [&](const nlohmann::json& o, const std::string& key) {
    const nlohmann::json& v = get(o, key);
    if (!v.is_string()) throw bad(key, "is not a string");
    return v.get<std::string>();
  };
  QuantConfig c;
  c.name = text(j, "preset");
  c.wbits = integer(j, "wbits");
  const nlohmann::json& bits = get(j, "abits");
  if (!bits.is_object()) throw bad("abits", "is not an object");
  for (Tap t : kAllTaps) c.abits[static_cast<std::size_t>(t)] = integer(bits, tap_name(t));
  c.softmax_bits = integer(bits, "softmax");
  const nlohmann::json& cl = get(j, "clusters");
  if (!cl.is_object()) throw bad("clusters", "is not an object");
  for (int i = 0; i < kReorderIndices; ++i) {
    std::string key("R");  // built by append: GCC 12 warns falsely (-Wrestrict) on "R" + std::string
    key.append(std::to_string(i + 1));
    c.clusters[static_cast<std::size_t>(i)] = integer(cl, key);
  }
  try {
    c.weight_method = parse_weight_method(text(j, "weights"));
    c.weight_clip = parse_weight_clip(text(j, "weight_clip"));
    c.grid = parse_grid(text(j, "grid"));
  } catch (const InputError& e) {
    throw InputError(what + ": quantization setting: " + e.what());
  }
  c.weight_group = integer(j, "weight_group");
  const nlohmann::json& damp = get(j, "gptq_damp");
  if (!damp.is_number()) throw bad("gptq_damp", "is not a number");
  c.gptq_damp = damp.get<double>();
  c.gptq_block = integer(j, "gptq_block");
  const nlohmann::json& ao = get(j, "act_order");
  if (!ao.is_boolean()) throw bad("act_order", "is not true or false");
  c.act_order = ao.get<bool>();
  const std::string ranges = text(j, "ranges");
  if (ranges != "static" && ranges != "dynamic") throw bad("ranges", "is neither static nor dynamic");
  c.range_mode = ranges == "static" ? RangeMode::Static : RangeMode::Dynamic;
  c.fp_prefix = integer(j, "fp_prefix");
  const nlohmann::json& ov = get(j, "overrides");
  if (!ov.is_array()) throw bad("overrides", "is not a list");
  try {
    // Settings written before the serving target existed have none of its keys: their defaults.
    if (j.contains("target")) c.target = parse_target(text(j, "target"));
    if (j.contains("scale_dtype")) c.scale_dtype = parse_scale_dtype(text(j, "scale_dtype"));
    if (j.contains("kv_fp8")) c.kv_fp8 = parse_kv_fp8(text(j, "kv_fp8"));
    for (const nlohmann::json& o : ov) {
      if (!o.is_string()) throw bad("overrides", "holds something other than text");
      c.overrides.push_back(parse_override(o.get<std::string>()));
    }
    c.validate();
  } catch (const InputError& e) {
    const std::string m = e.what();
    throw InputError(m.rfind(what, 0) == 0 ? m : what + ": quantization setting: " + m);
  }
  return c;
}

}  // namespace rptq
