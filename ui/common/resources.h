#pragma once
// Where the shipped resources (demo models, sample texts) are: $RPTQ_RESOURCES_DIR, else beside the executable
// (../share/rptq-workbench/resources), else the source tree's resources/ this build came from.
#include <QString>

namespace rptq::ui {

QString resources_dir();
QString demo_model_dir();     // resources/models/tiny-opt-16m: OPT with outlier channels, what Explore is about
QString sample_text_path();   // resources/data/c4-sample.txt: the bundled calibration text

}  // namespace rptq::ui
