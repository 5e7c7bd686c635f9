#pragma once
// The --device option shared by `rptq eval`, `rptq calibrate`, `rptq compare`, `rptq generate` and `rptq export`
// (with --stats, the quantization's calibration passes run there too).
#include <CLI/CLI.hpp>

#include <nlohmann/json.hpp>
#include <string>

#include "rptq/device.h"

namespace rptq::cli {

struct DeviceArgs {
  std::string device = "cpu";  // cpu, cuda or auto
};

void add_device_option(CLI::App* cmd, DeviceArgs& a);

// The device the command runs on: --device cuda without a usable GPU throws InputError (exit code 2) with the
// reason; auto falls back to the CPU. Prints which one is used (and why auto chose it) on stderr.
Device pick_device(const DeviceArgs& a);

// {"device": "cuda", "device_description": "..."} for the --json outputs.
void add_device_json(nlohmann::json& j, Device d);

}  // namespace rptq::cli
