#pragma once
// `rptq-workbench --screenshot FILE --step STEP`: render the window to a PNG without a display (the offscreen
// platform). It opens the model, brings the step to a finished state (a short calibration unless --stats is given,
// the clustering for explore, the preset's probes on 2 x 128 tokens for sensitivity, a cluster sweep 1..64 of the preset with RTN weights on
// 2 x 128 tokens for sweep; for quantize, compare and export
// a quick RTN quantization, then a short comparison and generation, or an export into a temporary folder that is
// removed again), then grabs the window.
#include <QSize>
#include <QString>

namespace rptq::ui {

class MainWindow;

struct ScreenshotOptions {
  QString file;
  QString step = QStringLiteral("model");  // model, calibrate, explore, overview (explore's heat map), sensitivity, ...
  QString model;                           // default: the demo model
  QString stats;                           // a statistics file instead of calibrating
  QSize size{1400, 900};
  int samples = 32, seqlen = 256;          // the calibration run for calibrate/explore screenshots
  int layer = 0, index = 1, k = 8;         // what explore shows
  QString preset = QStringLiteral("W4A8");  // sensitivity: the probed preset; quantize, compare, export: with RTN weights
  int timeout_s = 300;
};

// Returns the step's index, or -1 for an unknown name.
int screenshot_step(const QString& name);

// Drives `w` (already constructed, not shown) to the state, saves the PNG and quits the event loop with 0, or
// with 1 after printing why to stderr. Call before QApplication::exec().
void start_screenshot(MainWindow* w, const ScreenshotOptions& options);

}  // namespace rptq::ui
