#include "rptq/model/tap.h"

#include "rptq/model/model_config.h"

namespace rptq {

const char* tap_name(Tap t) {
  switch (t) {
    case Tap::AttnInput: return "attn_input";
    case Tap::Q: return "q";
    case Tap::K: return "k";
    case Tap::V: return "v";
    case Tap::AttnOutput: return "attn_output";
    case Tap::FfnInput: return "ffn_input";
    case Tap::FfnHidden: return "ffn_hidden";
  }
  return "?";
}

int tap_reorder_index(Tap t) {
  switch (t) {
    case Tap::AttnInput: return 1;
    case Tap::Q:
    case Tap::K: return 2;
    case Tap::V:
    case Tap::AttnOutput: return 3;
    case Tap::FfnInput: return 4;
    case Tap::FfnHidden: return 5;
  }
  return 0;
}

std::int64_t tap_channels(const ModelConfig& m, Tap t) {
  switch (t) {
    case Tap::AttnInput:
    case Tap::FfnInput: return m.hidden;
    case Tap::Q:
    case Tap::AttnOutput: return m.q_dim();
    case Tap::K:
    case Tap::V: return m.kv_dim();
    case Tap::FfnHidden: return m.intermediate;
  }
  return 0;
}

}  // namespace rptq
