#pragma once
// A QuantConfig as JSON, every field, so that a run's setting can be recorded and taken up again exactly (the run
// history, `rptq` JSON outputs). The keys are those of `rptq compare --json`'s settings (preset, wbits, abits,
// clusters, weights, ...) plus the remedies' fields.
#include <nlohmann/json.hpp>

#include "rptq/method/quant_config.h"

namespace rptq {

nlohmann::json quant_config_json(const QuantConfig& c);
// The reverse. Throws InputError naming `what` (a file, "the run history") and the bad key: missing keys, wrong
// types, values validate() refuses, overrides parse_override refuses.
QuantConfig quant_config_from_json(const nlohmann::json& j, const std::string& what);

}  // namespace rptq
