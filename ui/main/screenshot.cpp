#include "main/screenshot.h"

#include <QApplication>
#include <QComboBox>
#include <QDir>
#include <QFileInfo>
#include <QLabel>
#include <QTemporaryDir>
#include <QLineEdit>
#include <QPixmap>
#include <QSpinBox>
#include <QTabWidget>
#include <QTextEdit>
#include <QTimer>

#include <cstdio>
#include <memory>

#include "calibration/calibrate_page.h"
#include "common/resources.h"
#include "compare/compare_page.h"
#include "explore/explore_page.h"
#include "history/history_page.h"
#include "export/export_page.h"
#include "main/main_window.h"
#include "quantize/quantize_page.h"
#include "sensitivity/sensitivity_page.h"
#include "sweep/sweep_page.h"
#include "session/session.h"

namespace rptq::ui {

int screenshot_step(const QString& name) {
  const QStringList steps = {"model",   "calibrate", "explore", "sensitivity", "quantize",
                             "compare", "sweep",     "export",  "history"};
  // "overview": the Explore step's heat map tab.
  if (name.compare(QLatin1String("overview"), Qt::CaseInsensitive) == 0) return MainWindow::ExploreStep;
  return static_cast<int>(steps.indexOf(name.toLower()));
}

namespace {
void fail(const QString& why) {
  std::fprintf(stderr, "rptq-workbench: screenshot: %s\n", why.toLocal8Bit().constData());
  QCoreApplication::exit(1);
}
}  // namespace

void start_screenshot(MainWindow* w, const ScreenshotOptions& o) {
  const int step = screenshot_step(o.step);
  if (step < 0) {
    QTimer::singleShot(0, [o] { fail(QStringLiteral("unknown step '%1'").arg(o.step)); });
    return;
  }
  // The runs this screenshot makes go into a history of their own (the History shot shows just them), removed
  // with the process.
  static QTemporaryDir history_dir(QDir::temp().filePath(QStringLiteral("rptq-screenshot-history-XXXXXX")));
  if (history_dir.isValid()) qputenv("RPTQ_HISTORY", history_dir.filePath(QStringLiteral("history.json")).toUtf8());
  w->resize(o.size);
  w->show();
  w->start_up(o.model.isEmpty() ? demo_model_dir() : o.model);

  // A small state machine polled every 100 ms: open, (calibrate or load), (cluster), (quantize), (compare or
  // export), settle, grab.
  enum class Phase { Opening, Statistics, Quantizing, Finishing, Settling };
  struct State {
    Phase phase = Phase::Opening;
    int ticks = 0, settle = 0;
    bool requested = false, quantize_requested = false, finish_requested = false;
    std::unique_ptr<QTemporaryDir> export_dir;  // the export step writes here; removed with the state or after the grab
  };
  auto st = std::make_shared<State>();
  auto* timer = new QTimer(w);
  timer->setInterval(100);
  const bool needs_quantized = step >= MainWindow::QuantizeStep && step != MainWindow::SweepStep;
  const bool needs_stats = step == MainWindow::CalibrateStep || step == MainWindow::ExploreStep ||
                           step == MainWindow::SensitivityStep || step == MainWindow::SweepStep || needs_quantized;
  QObject::connect(timer, &QTimer::timeout, w, [w, o, st, step, needs_stats, needs_quantized, timer] {
    if (++st->ticks > o.timeout_s * 10) {
      timer->stop();
      return fail(QStringLiteral("timed out"));
    }
    switch (st->phase) {
      case Phase::Opening:
        if (w->opening()) return;
        if (!w->session()->model()) {
          timer->stop();
          return fail(QStringLiteral("the model did not open"));
        }
        st->phase = needs_stats ? Phase::Statistics : Phase::Settling;
        if (!needs_stats) w->go_to(static_cast<MainWindow::Step>(step));
        return;
      case Phase::Statistics: {
        CalibratePage* c = w->calibrate_page();
        if (!st->requested) {
          st->requested = true;
          w->go_to(MainWindow::CalibrateStep);
          if (!o.stats.isEmpty()) {
            c->load_statistics(QFileInfo(o.stats).absoluteFilePath());
          } else {
            c->samples_spin()->setValue(o.samples);
            c->seqlen_spin()->setValue(std::min(o.seqlen, c->seqlen_spin()->maximum()));
            c->start();
          }
          return;
        }
        if (c->running() || c->loading()) return;
        if (!w->session()->stats()) {
          timer->stop();
          return fail(QStringLiteral("no statistics (calibration or loading failed)"));
        }
        if (step == MainWindow::ExploreStep) {
          w->go_to(MainWindow::ExploreStep);
          w->explore_page()->select(o.layer, o.index, o.k);
          w->explore_page()->tabs()->setCurrentIndex(
              o.step.compare(QLatin1String("overview"), Qt::CaseInsensitive) == 0 ? 1 : 0);
        }
        st->phase = needs_quantized                         ? Phase::Quantizing
                    : step == MainWindow::SensitivityStep || step == MainWindow::SweepStep ? Phase::Finishing
                                                          : Phase::Settling;
        return;
      }
      case Phase::Quantizing: {
        // A small, fast setting: the W4A8 preset with RTN weights, ranges from the statistics file as they are.
        QuantizePage* q = w->quantize_page();
        if (!st->quantize_requested) {
          st->quantize_requested = true;
          w->go_to(MainWindow::QuantizeStep);
          q->select_preset(o.preset);
          q->set_weight_method(rptq::WeightMethod::RTN);
          q->start();
          return;
        }
        if (q->running()) return;
        if (!w->session()->quantized()) {
          timer->stop();
          return fail(QStringLiteral("the quantization failed: %1").arg(q->status_label()->text()));
        }
        st->phase = step == MainWindow::QuantizeStep ? Phase::Settling : Phase::Finishing;
        return;
      }
      case Phase::Finishing: {
        if (!st->finish_requested) {
          st->finish_requested = true;
          w->go_to(static_cast<MainWindow::Step>(step));
          if (step == MainWindow::SensitivityStep) {
            // The preset's probes on 2 windows of 128 tokens of the bundled sample; the suggestion keeps 4 taps.
            SensitivityPage* p = w->sensitivity_page();
            if (!p->select_setting(o.preset)) {
              timer->stop();
              return fail(QStringLiteral("the sensitivity step offers no setting '%1'").arg(o.preset));
            }
            p->windows_spin()->setValue(2);
            p->seqlen_spin()->setValue(std::min(128, p->seqlen_spin()->maximum()));
            p->suggest_count_spin()->setValue(4);
            p->start();
          } else if (step == MainWindow::SweepStep) {
            // The cluster count of every index, 1 to 64, from the preset with RTN weights, on 2 windows of 128
            // tokens of the bundled sample.
            w->quantize_page()->select_preset(o.preset);
            w->quantize_page()->set_weight_method(rptq::WeightMethod::RTN);
            SweepPage* p = w->sweep_page();
            p->axis_combo()->setCurrentIndex(p->axis_combo()->findData(QStringLiteral("clusters")));
            p->values_edit()->setText(QStringLiteral("1,2,4..64"));
            p->windows_spin()->setValue(2);
            p->seqlen_spin()->setValue(std::min(128, p->seqlen_spin()->maximum()));
            p->start();
          } else if (step == MainWindow::CompareStep || step == MainWindow::HistoryStep) {
            // History: the quantization and this comparison are its runs.
            ComparePage* c = w->compare_page();
            c->windows_spin()->setValue(2);
            c->seqlen_spin()->setValue(std::min(128, c->seqlen_spin()->maximum()));
            c->run_comparison();
          } else {
            ExportPage* e = w->export_page();
            st->export_dir = std::make_unique<QTemporaryDir>(QDir::temp().filePath(QStringLiteral("rptq-screenshot-XXXXXX")));
            if (!st->export_dir->isValid()) {
              timer->stop();
              return fail(QStringLiteral("cannot create a temporary folder: %1").arg(st->export_dir->errorString()));
            }
            e->output_edit()->setText(st->export_dir->filePath(QStringLiteral("rptq-workbench-screenshot-export.h5")));
            e->set_confirm_overwrite(false);
            e->start();
          }
          return;
        }
        if (step == MainWindow::SensitivityStep) {
          if (w->sensitivity_page()->running()) return;
          if (!w->sensitivity_page()->result()) {
            timer->stop();
            return fail(QStringLiteral("the sensitivity probes failed: %1")
                            .arg(w->sensitivity_page()->status_label()->text()));
          }
        } else if (step == MainWindow::SweepStep) {
          if (w->sweep_page()->running()) return;
          if (!w->sweep_page()->result()) {
            timer->stop();
            return fail(QStringLiteral("the sweep failed: %1").arg(w->sweep_page()->status_label()->text()));
          }
        } else if (step == MainWindow::HistoryStep) {
          if (w->compare_page()->comparing()) return;
          HistoryPage* h = w->history_page();
          h->reload();
          h->select_runs({0, 1});  // the quantization and the comparison side by side
        } else if (step == MainWindow::CompareStep) {
          ComparePage* c = w->compare_page();
          if (c->comparing() || c->generating()) return;
          if (c->result() && c->fp_pane()->toPlainText().isEmpty()) {
            c->new_tokens_spin()->setValue(40);
            c->run_generation();
            return;
          }
        } else if (w->export_page()->exporting()) {
          return;
        }
        st->phase = Phase::Settling;
        return;
      }
      case Phase::Settling:
        if (!w->idle()) return;
        if (++st->settle < 5) return;  // let layouts and charts settle
        timer->stop();
        const QPixmap shot = w->grab();
        st->export_dir.reset();  // the export shown is not kept
        if (!shot.save(o.file, "PNG")) return fail(QStringLiteral("cannot write %1").arg(o.file));
        std::printf("wrote %s (%dx%d, step %s)\n", o.file.toLocal8Bit().constData(), shot.width(), shot.height(),
                    o.step.toLocal8Bit().constData());
        QCoreApplication::exit(0);
        return;
    }
  });
  timer->start();
}

}  // namespace rptq::ui
