#pragma once
// What the Model step opened: a Hugging Face model folder (inspected, and its FP weights loaded for calibration)
// or an exported RPTQ checkpoint (.h5, inspected only).
#include <QString>

#include <memory>
#include <optional>

#include "rptq/model/model.h"
#include "rptq/model/model_info.h"
#include "rptq/export/qcheckpoint.h"

namespace rptq::ui {

struct LoadedModel {
  enum class Kind { Folder, Checkpoint };
  Kind kind = Kind::Folder;
  QString path;  // absolute, as opened
  std::optional<rptq::ModelInfo> info;             // Folder
  std::optional<rptq::CheckpointInfo> checkpoint;  // Checkpoint
  std::shared_ptr<const rptq::Model> model;        // Folder: the FP model, float32 on the CPU
  double load_seconds = 0;

  bool is_folder() const { return kind == Kind::Folder; }
  QString display_name() const;  // the folder's or file's name
};

}  // namespace rptq::ui
