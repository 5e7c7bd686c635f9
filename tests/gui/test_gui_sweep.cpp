// Qt Test tests of the workbench's Sweep step, driving the real main window offscreen: the chart has one point per
// setting and its values equal `rptq sweep --json` for the same setting and windows, the finished sweep is recorded
// in the run history, a sweep cancelled midway (Run > Cancel) leaves the page usable, and a saved sweep loads back
// into the same chart (a damaged file shows an error dialog and changes nothing). Settings and files live in a
// temporary folder made by main().
#include <QAction>
#include <QApplication>
#include <QComboBox>
#include <QDir>
#include <QFile>
#include <QFileInfo>
#include <QLabel>
#include <QLineEdit>
#include <QMessageBox>
#include <QProcess>
#include <QProgressBar>
#include <QPushButton>
#include <QSettings>
#include <QSpinBox>
#include <QTableWidget>
#include <QTemporaryDir>
#include <QtTest>
#include <QThreadPool>

#include <cmath>
#include <memory>
#include <nlohmann/json.hpp>

#include "calibration/calibrate_page.h"
#include "common/resources.h"
#include "main/main_window.h"
#include "main/step_list.h"
#include "quantize/quantize_page.h"
#include "rptq/method/sweep.h"
#include "session/session.h"
#include "sweep/sweep_chart.h"
#include "sweep/sweep_page.h"

using rptq::ui::MainWindow;
using rptq::ui::SweepChart;
using rptq::ui::SweepPage;

namespace {

constexpr int kOpenTimeoutMs = 60000;
constexpr int kRunTimeoutMs = 240000;

QString g_root;  // the temporary folder holding settings and data

QString stories_dir() { return rptq::ui::resources_dir() + QStringLiteral("/models/stories260k"); }
QString stories_text() { return rptq::ui::resources_dir() + QStringLiteral("/data/stories.txt"); }

// The GUI and `rptq` may run with different thread counts, and BLAS / OpenMP split sums by thread: values agree to
// 1e-9 relative.
bool close(double a, double b) { return std::abs(a - b) <= 1e-9 * std::max(1.0, std::abs(b)); }

// The message boxes open now (the page's error dialogs open without a nested event loop).
QList<QMessageBox*> open_boxes() {
  QList<QMessageBox*> boxes;
  for (QWidget* w : QApplication::topLevelWidgets())
    if (auto* b = qobject_cast<QMessageBox*>(w); b && b->isVisible()) boxes << b;
  return boxes;
}

}  // namespace

class GuiSweepTest : public QObject {
  Q_OBJECT

 private:
  std::unique_ptr<MainWindow> w_;
  std::unique_ptr<QTemporaryDir> tmp_;

  QString tmp(const QString& name) const { return tmp_->filePath(name); }

  void open_window(const QString& model) {
    w_ = std::make_unique<MainWindow>();
    w_->resize(1400, 900);
    w_->show();
    w_->start_up(model);
    QTRY_VERIFY_WITH_TIMEOUT(!w_->opening() && w_->session()->model(), kOpenTimeoutMs);
  }

  void calibrate_small(const QString& out, int samples, int seqlen) {
    rptq::ui::CalibratePage* c = w_->calibrate_page();
    w_->go_to(MainWindow::CalibrateStep);
    c->samples_spin()->setValue(samples);
    c->seqlen_spin()->setValue(seqlen);
    c->output_edit()->setText(out);
    QTest::mouseClick(c->calibrate_button(), Qt::LeftButton);
    QTRY_VERIFY_WITH_TIMEOUT(!c->running(), kRunTimeoutMs);
    QVERIFY2(w_->session()->stats(), qPrintable(c->status_label()->text()));
  }

  // The base: a preset with RTN weights on the Quantize step; the Sweep step set to an axis, values and windows.
  void set_up_sweep(const QString& preset, const QString& axis, const QString& target, const QString& values,
                    const QString& text, int windows, int seqlen) {
    QVERIFY(w_->quantize_page()->select_preset(preset));
    w_->quantize_page()->set_weight_method(rptq::WeightMethod::RTN);
    w_->go_to(MainWindow::SweepStep);
    QCOMPARE(w_->current_step(), MainWindow::SweepStep);
    SweepPage* p = w_->sweep_page();
    const int a = p->axis_combo()->findData(axis);
    QVERIFY(a >= 0);
    p->axis_combo()->setCurrentIndex(a);
    const int t = p->target_combo()->findData(target);
    QVERIFY(t >= 0);
    p->target_combo()->setCurrentIndex(t);
    p->values_edit()->setText(values);
    p->data_edit()->setText(text);
    p->windows_spin()->setValue(windows);
    p->seqlen_spin()->setValue(seqlen);
  }

  void run(SweepPage* p) {
    QVERIFY2(p->run_button()->isEnabled(), qPrintable(p->findChild<QLabel*>("sweepDescription")->text()));
    QTest::mouseClick(p->run_button(), Qt::LeftButton);
    QVERIFY(p->running());
    QVERIFY(w_->cancel_action()->isEnabled());
    QTRY_VERIFY_WITH_TIMEOUT(!p->running(), kRunTimeoutMs);
    QVERIFY2(p->result(), qPrintable(p->status_label()->text()));
    QVERIFY(!w_->cancel_action()->isEnabled());
  }

  // `rptq sweep ... --json` with the run history off.
  void cli(const QStringList& args, nlohmann::json* out) {
    QProcess p;
    QProcessEnvironment env = QProcessEnvironment::systemEnvironment();
    env.insert(QStringLiteral("RPTQ_HISTORY"), QStringLiteral("off"));
    p.setProcessEnvironment(env);
    p.start(QStringLiteral(RPTQ_CLI_PATH), args);
    QVERIFY(p.waitForFinished(kRunTimeoutMs));
    QVERIFY2(p.exitStatus() == QProcess::NormalExit && p.exitCode() == 0, p.readAllStandardError().constData());
    *out = nlohmann::json::parse(p.readAllStandardOutput().toStdString());
  }

  // Every curve holds the points of `r`, in order: x the value, y its ppl, KL, top-1 (%), exactly.
  static bool chart_shows(const SweepChart* c, const rptq::SweepResult& r) {
    for (int m = 0; m < SweepChart::MetricCount; ++m) {
      const QList<QPointF> pts = c->points(static_cast<SweepChart::Metric>(m));
      if (pts.size() != static_cast<qsizetype>(r.points.size())) return false;
      for (std::size_t i = 0; i < r.points.size(); ++i) {
        const rptq::SweepPoint& p = r.points[i];
        const double y = m == SweepChart::Ppl ? p.ppl_q : m == SweepChart::Kl ? p.kl : 100.0 * p.top1_agreement;
        if (pts[static_cast<qsizetype>(i)].x() != p.value || pts[static_cast<qsizetype>(i)].y() != y) return false;
      }
    }
    return c->fp_ppl() == r.ppl_fp;
  }

 private Q_SLOTS:
  void init() {
    QSettings().clear();
    tmp_ = std::make_unique<QTemporaryDir>(g_root + QStringLiteral("/case-XXXXXX"));
    QVERIFY(tmp_->isValid());
  }

  void cleanup() {
    for (QMessageBox* b : open_boxes()) b->close();
    w_.reset();
    tmp_.reset();
  }

  void chartEqualsTheCli() {
    open_window(stories_dir());
    const QString stats = tmp(QStringLiteral("stories.h5"));
    calibrate_small(stats, 4, 64);
    if (QTest::currentTestFailed()) return;
    set_up_sweep(QStringLiteral("W4A8"), QStringLiteral("clusters"), QStringLiteral("all"), QStringLiteral("1,2,4"),
                 stories_text(), 2, 64);
    if (QTest::currentTestFailed()) return;
    SweepPage* p = w_->sweep_page();
    QVERIFY(!p->result());
    QVERIFY(!p->save_button()->isEnabled());
    run(p);
    if (QTest::currentTestFailed()) return;
    QVERIFY(w_->step_list()->item(MainWindow::SweepStep)->text().contains(QStringLiteral("\u2714")));

    nlohmann::json j;
    cli({QStringLiteral("sweep"), stories_dir(), QStringLiteral("--stats"), stats, QStringLiteral("--preset"),
         QStringLiteral("W4A8"), QStringLiteral("--weights"), QStringLiteral("rtn"), QStringLiteral("--axis"),
         QStringLiteral("clusters"), QStringLiteral("--target"), QStringLiteral("all"), QStringLiteral("--values"),
         QStringLiteral("1,2,4"), QStringLiteral("--data"), stories_text(), QStringLiteral("--seqlen"),
         QStringLiteral("64"), QStringLiteral("--max-windows"), QStringLiteral("2"), QStringLiteral("--json")},
        &j);
    if (QTest::currentTestFailed()) return;
    QCOMPARE(j["points"].size(), std::size_t{3});
    QCOMPARE(j["run"]["history"].get<std::string>(), std::string());  // the CLI's history was off
    // One point per setting on each curve, in the order of the values, each the CLI's number.
    const SweepChart* c = p->chart();
    for (int m = 0; m < SweepChart::MetricCount; ++m)
      QCOMPARE(c->points(static_cast<SweepChart::Metric>(m)).size(), qsizetype{3});
    QCOMPARE(p->table()->rowCount(), 3);
    QVERIFY(close(c->fp_ppl(), j["ppl_fp"].get<double>()));
    for (std::size_t i = 0; i < 3; ++i) {
      const nlohmann::json& q = j["points"][i];
      const auto at = static_cast<qsizetype>(i);
      QCOMPARE(c->points(SweepChart::Ppl)[at].x(), q["value"].get<double>());
      QVERIFY2(close(c->points(SweepChart::Ppl)[at].y(), q["ppl_q"].get<double>()), q.dump().c_str());
      QVERIFY2(close(c->points(SweepChart::Kl)[at].y(), q["kl"].get<double>()), q.dump().c_str());
      QVERIFY2(close(c->points(SweepChart::Top1)[at].y(), 100.0 * q["top1_agreement"].get<double>()), q.dump().c_str());
      QCOMPARE(p->table()->item(static_cast<int>(i), 0)->text().toStdString(), q["name"].get<std::string>());
    }
    // Cluster counts change the numbers (the sweep is not flat), so equal values mean the settings matched.
    QVERIFY(j["points"][0]["kl"].get<double>() != j["points"][2]["kl"].get<double>());
    // The run history holds the sweep: its base setting, axis and values, and the chart's numbers.
    const auto runs = w_->session()->history().load();
    QVERIFY(!runs.empty());
    const rptq::RunRecord& rec = runs.back();
    QCOMPARE(rec.kind, std::string("sweep"));
    QCOMPARE(rec.setting.name, p->result()->base.name);
    QCOMPARE(rec.setting.wbits, 4);
    QCOMPARE(rec.options["axis"].get<std::string>(), std::string("clusters"));
    QCOMPARE(rec.options["values"], (nlohmann::json{1, 2, 4}));
    QCOMPARE(rec.options["windows"].get<int>(), 2);
    QCOMPARE(rec.results["points"].size(), std::size_t{3});
    for (std::size_t i = 0; i < 3; ++i)
      QCOMPARE(rec.results["points"][i]["kl"].get<double>(), p->result()->points[i].kl);
  }

  void cancelMidSweepLeavesPageUsable() {
    // The demo model (tiny-opt-16m: its 50,272-token head makes each comparison take a while) on 4 windows of 256.
    open_window(rptq::ui::demo_model_dir());
    calibrate_small(tmp(QStringLiteral("demo.h5")), 8, 128);
    if (QTest::currentTestFailed()) return;
    set_up_sweep(QStringLiteral("W4A8"), QStringLiteral("clusters"), QStringLiteral("all"),
                 QStringLiteral("1,2,4..64"), rptq::ui::sample_text_path(), 4, 256);
    if (QTest::currentTestFailed()) return;
    SweepPage* p = w_->sweep_page();
    QTest::mouseClick(p->run_button(), Qt::LeftButton);
    QVERIFY(p->running());
    QVERIFY(!p->run_button()->isEnabled());
    QVERIFY(p->cancel_button()->isEnabled());
    QVERIFY(!p->axis_combo()->isEnabled());
    QVERIFY(w_->cancellable());
    QVERIFY(!w_->idle());
    // The first point on the chart, then Run > Cancel, as the menu does it.
    QTRY_VERIFY_WITH_TIMEOUT(p->points_shown() >= 1, kRunTimeoutMs);
    QVERIFY2(p->running(), "the sweep ended before it could be cancelled");
    QVERIFY(p->progress_bar()->value() > 0);
    QVERIFY2(p->status_label()->text().startsWith(QStringLiteral("Point ")), qPrintable(p->status_label()->text()));
    QVERIFY(w_->cancel_action()->text().contains(QStringLiteral("Sweep")));
    w_->cancel_action()->trigger();
    QTRY_VERIFY_WITH_TIMEOUT(!p->running(), 60000);
    QVERIFY2(p->status_label()->text().startsWith(QStringLiteral("Cancelled")), qPrintable(p->status_label()->text()));
    QVERIFY(!p->result());
    QVERIFY(p->points_shown() >= 1 && p->points_shown() < 7);
    QCOMPARE(p->chart()->points(SweepChart::Kl).size(), qsizetype{p->points_shown()});
    QVERIFY(open_boxes().isEmpty());  // a cancel is no error
    QVERIFY(!p->save_button()->isEnabled());
    QVERIFY(p->run_button()->isEnabled());
    QVERIFY(!p->cancel_button()->isEnabled());
    QVERIFY(p->axis_combo()->isEnabled());
    QVERIFY(!w_->cancel_action()->isEnabled());
    QTRY_VERIFY_WITH_TIMEOUT(w_->idle(), 30000);
    // Nothing recorded.
    for (const rptq::RunRecord& r : w_->session()->history().load()) QVERIFY(r.kind != "sweep");
    // The page is usable: a short sweep goes to the end.
    p->values_edit()->setText(QStringLiteral("1,2"));
    p->windows_spin()->setValue(1);
    p->seqlen_spin()->setValue(32);
    run(p);
    if (QTest::currentTestFailed()) return;
    QCOMPARE(p->result()->points.size(), std::size_t{2});
    QVERIFY(chart_shows(p->chart(), *p->result()));
    QCOMPARE(p->table()->rowCount(), 2);
  }

  void saveAndLoadShowTheSameChart() {
    open_window(stories_dir());
    calibrate_small(tmp(QStringLiteral("stories.h5")), 4, 64);
    if (QTest::currentTestFailed()) return;
    set_up_sweep(QStringLiteral("W4A4"), QStringLiteral("abits"), QStringLiteral("all"), QStringLiteral("4,8"),
                 stories_text(), 2, 64);
    if (QTest::currentTestFailed()) return;
    SweepPage* p = w_->sweep_page();
    run(p);
    if (QTest::currentTestFailed()) return;
    const rptq::SweepResult first = *p->result();
    QVERIFY(chart_shows(p->chart(), first));
    QCOMPARE(p->chart()->points(SweepChart::Ppl).size(), qsizetype{2});
    QVERIFY(p->save_button()->isEnabled());
    const QString file = tmp(QStringLiteral("abits.json"));
    QVERIFY(p->save_to(file));
    QVERIFY(QFileInfo::exists(file));
    // Another sweep replaces the chart.
    set_up_sweep(QStringLiteral("W4A4"), QStringLiteral("clusters"), QStringLiteral("R1"), QStringLiteral("1,2,4"),
                 stories_text(), 2, 64);
    if (QTest::currentTestFailed()) return;
    run(p);
    if (QTest::currentTestFailed()) return;
    QCOMPARE(p->chart()->points(SweepChart::Kl).size(), qsizetype{3});
    const rptq::SweepResult second = *p->result();

    // A damaged file: an error dialog naming it, and the chart unchanged.
    const QString bad = tmp(QStringLiteral("damaged.json"));
    {
      QFile f(bad);
      QVERIFY(f.open(QIODevice::WriteOnly));
      f.write("{\"format\": \"rptq-sweep\", \"version\": 1, \"points\": [");
    }
    QVERIFY(!p->load_from(bad));
    QTRY_VERIFY(!open_boxes().isEmpty());
    const QMessageBox* box = open_boxes().front();
    QVERIFY2((box->text() + box->informativeText()).contains(QStringLiteral("damaged.json")),
             qPrintable(box->text() + QStringLiteral(" / ") + box->informativeText()));
    for (QMessageBox* b : open_boxes()) b->close();
    QVERIFY(chart_shows(p->chart(), second));
    QCOMPARE(p->table()->rowCount(), 3);

    // The saved sweep loads back: the same points, bit for bit, one per setting.
    QVERIFY(p->load_from(file));
    QVERIFY(p->result());
    QCOMPARE(p->result()->points.size(), first.points.size());
    QVERIFY(chart_shows(p->chart(), first));
    QCOMPARE(p->table()->rowCount(), 2);
    QVERIFY(p->status_label()->text().contains(QStringLiteral("abits.json")));
    QVERIFY(open_boxes().isEmpty());
    // Saved again, the file is the same text.
    QVERIFY(p->save_to(tmp(QStringLiteral("again.json"))));
    QFile a(file), b(tmp(QStringLiteral("again.json")));
    QVERIFY(a.open(QIODevice::ReadOnly) && b.open(QIODevice::ReadOnly));
    QCOMPARE(a.readAll(), b.readAll());
  }
};

int main(int argc, char** argv) {
  if (!qEnvironmentVariableIsSet("QT_QPA_PLATFORM")) qputenv("QT_QPA_PLATFORM", "offscreen");
  QDir().mkpath(QStringLiteral(RPTQ_GUI_TEST_TMP));
  QTemporaryDir root(QStringLiteral(RPTQ_GUI_TEST_TMP) + QStringLiteral("/sweep-XXXXXX"));
  if (!root.isValid()) return 2;
  g_root = root.path();
  // Settings and application data (the run history) in the temporary folder.
  qputenv("XDG_CONFIG_HOME", (g_root + "/config").toUtf8());
  qputenv("XDG_DATA_HOME", (g_root + "/data").toUtf8());
  qputenv("XDG_CACHE_HOME", (g_root + "/cache").toUtf8());
  qputenv("HF_HOME", (g_root + "/hf").toUtf8());
  qunsetenv("RPTQ_HISTORY");
  QApplication app(argc, argv);
  QApplication::setOrganizationName(QStringLiteral("RPTQ"));
  QApplication::setApplicationName(QStringLiteral("rptq-workbench-test-sweep"));
  GuiSweepTest t;
  const int rc = QTest::qExec(&t, argc, argv);
  // Jobs a test left running (a look-up, a cancelled run) end before the statics they use are destroyed, as the
  // application's main waits for them too.
  QThreadPool::globalInstance()->waitForDone();
  return rc;
}

#include "test_gui_sweep.moc"
