#include "device_args.h"

#include <cstdio>

namespace rptq::cli {

void add_device_option(CLI::App* cmd, DeviceArgs& a) {
  cmd->add_option("--device", a.device,
                  "Where the forward passes (and a quantization's calibration passes) run: cpu (default), cuda (a GPU; decoder layers resident when they fit, "
                  "else streamed one at a time), or auto (cuda when a usable GPU is found, else cpu)")
      ->check(CLI::IsMember({"cpu", "cuda", "auto"}, CLI::ignore_case));
}

Device pick_device(const DeviceArgs& a) {
  const Device d = resolve_device(a.device);  // throws InputError for cuda without a GPU
  const DeviceInfo info = device_info();
  if (d == Device::CUDA)
    std::fprintf(stderr, "device: cuda (%s)\n", info.description.c_str());
  else if (a.device != "cpu")
    std::fprintf(stderr, "device: cpu (auto: %s)\n", info.unavailable_reason.c_str());
  return d;
}

void add_device_json(nlohmann::json& j, Device d) {
  j["device"] = device_name(d);
  j["device_description"] = d == Device::CUDA ? device_info().description : std::string("CPU");
}

}  // namespace rptq::cli
