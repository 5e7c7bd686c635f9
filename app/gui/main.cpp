// rptq-workbench: the RPTQ Workbench desktop application (Qt 6 Widgets + Qt Charts).
//   rptq-workbench [--model PATH]
//   rptq-workbench --screenshot FILE --step model|calibrate|explore|overview|sensitivity|quantize|compare|sweep|export|history
//                  [--model PATH]
//                  [--stats STATS.h5] [--size WxH] [--layer I] [--index R1..R5] [--k K] [--preset NAME]
// --screenshot renders the window to a PNG without a display (the offscreen platform) and exits.
#include <QApplication>
#include <QCommandLineParser>
#include <QIcon>
#include <QSettings>
#include <QStandardPaths>
#include <QThreadPool>

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "main/main_window.h"
#include "main/screenshot.h"
#include "rptq/device.h"
#include "rptq/version_info.h"

int main(int argc, char** argv) {
  // The screenshot mode needs no display: choose the offscreen platform before Qt starts, unless one is forced.
  bool screenshot = false;
  for (int i = 1; i < argc; ++i)
    if (std::strcmp(argv[i], "--screenshot") == 0) screenshot = true;
  if (screenshot && !qEnvironmentVariableIsSet("QT_QPA_PLATFORM")) qputenv("QT_QPA_PLATFORM", "offscreen");

  QApplication app(argc, argv);
  QApplication::setOrganizationName(QStringLiteral("RPTQ"));
  // Screenshots run with settings of their own, reset each time, so they neither depend on nor change the user's.
  QApplication::setApplicationName(screenshot ? QStringLiteral("rptq-workbench-screenshot")
                                              : QStringLiteral("rptq-workbench"));
  QApplication::setApplicationDisplayName(QStringLiteral("RPTQ Workbench"));
  // --version says what `rptq --version` says: version, git revision, and whether the CUDA kernels are compiled in.
  QApplication::setApplicationVersion(
      QStringLiteral(RPTQ_VERSION_STRING " (git " RPTQ_GIT_REVISION ", %1)")
          .arg(rptq::cuda_compiled_in() ? QStringLiteral("CUDA kernels compiled in") : QStringLiteral("CPU only")));
  // The installed desktop entry and icon (packaging/): the Wayland app id, and the window icon from the theme.
  QGuiApplication::setDesktopFileName(QStringLiteral("io.github.rptq.Workbench"));
  QApplication::setWindowIcon(QIcon::fromTheme(QStringLiteral("io.github.rptq.Workbench")));

  QCommandLineParser p;
  p.setApplicationDescription(QStringLiteral("RPTQ Workbench: reorder-based post-training quantization of LLMs"));
  p.addHelpOption();
  p.addVersionOption();
  QCommandLineOption model({"m", "model"}, "Open this model folder or .h5 file.", "PATH");
  QCommandLineOption shot("screenshot", "Render the window to a PNG file and exit.", "FILE");
  QCommandLineOption step("step", "Step shown in the screenshot: model, calibrate, explore, overview, sensitivity, "
                          "quantize, compare, sweep, export, history.",
                          "STEP", "model");
  QCommandLineOption stats("stats", "Screenshot: load this statistics file instead of calibrating.", "STATS");
  QCommandLineOption size("size", "Screenshot: window size (default 1400x900).", "WxH", "1400x900");
  QCommandLineOption layer("layer", "Screenshot of explore: the layer (default 0).", "I", "0");
  QCommandLineOption index("index", "Screenshot of explore: the reorder index R1..R5 (default R1).", "R", "R1");
  QCommandLineOption k("k", "Screenshot of explore: clusters (default 8).", "K", "8");
  QCommandLineOption preset("preset", "Screenshot of sensitivity: the probed preset; of quantize, compare, export: "
                            "the preset, with RTN weights (default W4A8).", "NAME", "W4A8");
  p.addOptions({model, shot, step, stats, size, layer, index, k, preset});
  p.process(app);
  if (screenshot) QSettings().clear();

  rptq::ui::MainWindow w;
  if (p.isSet(shot)) {
    rptq::ui::ScreenshotOptions o;
    o.file = p.value(shot);
    o.step = p.value(step);
    o.model = p.value(model);
    o.stats = p.value(stats);
    const QStringList wh = p.value(size).split(QLatin1Char('x'));
    if (wh.size() == 2 && wh[0].toInt() > 0 && wh[1].toInt() > 0) o.size = QSize(wh[0].toInt(), wh[1].toInt());
    o.layer = p.value(layer).toInt();
    QString r = p.value(index);
    o.index = std::clamp((r.startsWith(QLatin1Char('R'), Qt::CaseInsensitive) ? r.mid(1) : r).toInt(), 1, 5);
    o.k = std::max(1, p.value(k).toInt());
    o.preset = p.value(preset);
    rptq::ui::start_screenshot(&w, o);
  } else {
    w.show();
    w.start_up(p.value(model));
  }
  const int rc = app.exec();
  QThreadPool::globalInstance()->waitForDone();
  return rc;
}
