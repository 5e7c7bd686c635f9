// Qt Test tests of the workbench's Sensitivity step, driving the real main window offscreen: the heat map holds the
// numbers `rptq sensitivity --json` prints for the same setting and windows, a run cancels midway and the page
// stays usable, a result saved beside the statistics file is shown again after a restart, double-clicking a cell
// explores that layer and tap, and the "keep the N most sensitive" suggestion reaches the Quantize step. Settings
// and files live in a temporary folder made by main().
#include <QAction>
#include <QApplication>
#include <QComboBox>
#include <QDir>
#include <QFileInfo>
#include <QLabel>
#include <QLineEdit>
#include <QPlainTextEdit>
#include <QProcess>
#include <QProgressBar>
#include <QPushButton>
#include <QSettings>
#include <QSpinBox>
#include <QTableView>
#include <QTemporaryDir>
#include <QtTest>
#include <QThreadPool>

#include <cmath>
#include <memory>
#include <nlohmann/json.hpp>

#include "calibration/calibrate_page.h"
#include "common/format.h"
#include "common/resources.h"
#include "explore/explore_page.h"
#include "main/main_window.h"
#include "main/step_list.h"
#include "quantize/quantize_page.h"
#include "rptq/eval/memory_model.h"
#include "rptq/method/sensitivity.h"
#include "sensitivity/sensitivity_model.h"
#include "sensitivity/sensitivity_page.h"
#include "session/session.h"

using rptq::ui::MainWindow;
using rptq::ui::SensitivityModel;
using rptq::ui::SensitivityPage;

namespace {

constexpr int kOpenTimeoutMs = 60000;
constexpr int kRunTimeoutMs = 180000;

QString g_root;  // the temporary folder holding settings and data

QString stories_dir() { return rptq::ui::resources_dir() + QStringLiteral("/models/stories260k"); }
QString stories_text() { return rptq::ui::resources_dir() + QStringLiteral("/data/stories.txt"); }

// Two runs of the same computation may differ in the last bits where the thread counts differ (BLAS and OpenMP
// split sums by thread): within 1e-9, absolute below 1 and relative above (measured: 6e-17 between `rptq
// sensitivity --threads 1` and `--threads 2`).
bool close(double a, double b) { return std::abs(a - b) <= 1e-9 * std::max(1.0, std::abs(b)); }

// A double-click as a user makes it: press, release, then the double-click event (QTest::mouseDClick alone sends only
// the last, which an item view takes for a press when no press came before it).
void double_click(QTableView* v, const QModelIndex& i) {
  v->scrollTo(i);
  const QPoint at = v->visualRect(i).center();
  QTest::mouseClick(v->viewport(), Qt::LeftButton, {}, at);
  QTest::mouseDClick(v->viewport(), Qt::LeftButton, {}, at);
  QTest::mouseRelease(v->viewport(), Qt::LeftButton, {}, at);
}

}  // namespace

class GuiSensitivityTest : public QObject {
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
    QCOMPARE(w_->session()->stats_path(), out);
  }

  // The Sensitivity step set to a setting, text and windows; waits for its look-up of a saved result.
  void go_to_sensitivity(const QString& setting, const QString& text, int windows, int seqlen) {
    w_->go_to(MainWindow::SensitivityStep);
    QCOMPARE(w_->current_step(), MainWindow::SensitivityStep);
    SensitivityPage* p = w_->sensitivity_page();
    QVERIFY(p->select_setting(setting));
    p->data_edit()->setText(text);
    p->windows_spin()->setValue(windows);
    p->seqlen_spin()->setValue(seqlen);
    QTRY_VERIFY_WITH_TIMEOUT(!p->looking_up(), 30000);
  }

  void run(SensitivityPage* p) {
    QVERIFY(p->run_button()->isEnabled());
    QTest::mouseClick(p->run_button(), Qt::LeftButton);
    QVERIFY(p->running());
    QVERIFY(w_->cancel_action()->isEnabled());
    QTRY_VERIFY_WITH_TIMEOUT(!p->running(), kRunTimeoutMs);
    QVERIFY2(p->result(), qPrintable(p->status_label()->text()));
    QVERIFY(!p->result_loaded());
    QVERIFY(!w_->cancel_action()->isEnabled());
  }

  // `rptq sensitivity ... --json` on the same statistics, setting and windows.
  void cli(const QStringList& args, nlohmann::json* out) {
    QProcess p;
    p.start(QStringLiteral(RPTQ_CLI_PATH), args);
    QVERIFY(p.waitForFinished(kRunTimeoutMs));
    QVERIFY2(p.exitStatus() == QProcess::NormalExit && p.exitCode() == 0, p.readAllStandardError().constData());
    *out = nlohmann::json::parse(p.readAllStandardOutput().toStdString());
  }

 private Q_SLOTS:
  void init() {
    QSettings().clear();
    tmp_ = std::make_unique<QTemporaryDir>(g_root + QStringLiteral("/case-XXXXXX"));
    QVERIFY(tmp_->isValid());
  }

  void cleanup() {
    w_.reset();
    tmp_.reset();
  }

  void heatMapEqualsTheCli() {
    open_window(stories_dir());
    const QString stats = tmp(QStringLiteral("stories.h5"));
    calibrate_small(stats, 4, 64);
    go_to_sensitivity(QStringLiteral("W4A4"), stories_text(), 2, 64);
    if (QTest::currentTestFailed()) return;
    SensitivityPage* p = w_->sensitivity_page();
    QVERIFY(!p->result());
    QVERIFY(p->status_label()->text().contains(QStringLiteral("No saved result")));
    run(p);
    if (QTest::currentTestFailed()) return;
    QVERIFY(w_->step_list()->item(MainWindow::SensitivityStep)->text().contains(QStringLiteral("\u2714")));

    nlohmann::json j;
    cli({QStringLiteral("sensitivity"), stories_dir(), QStringLiteral("--stats"), stats, QStringLiteral("--preset"),
         QStringLiteral("W4A4"), QStringLiteral("--data"), stories_text(), QStringLiteral("--seqlen"),
         QStringLiteral("64"), QStringLiteral("--max-windows"), QStringLiteral("2"), QStringLiteral("--json")},
        &j);
    if (QTest::currentTestFailed()) return;
    const auto taps = j["taps"].get<std::vector<std::string>>();
    const int layers = static_cast<int>(j["per_layer"].size());
    QCOMPARE(layers, 5);
    QCOMPARE(taps.size(), std::size_t{8});  // W4A4: the seven taps and the softmax
    SensitivityModel* m = p->heat_model();
    // Layers x taps cells, plus the totals row and column.
    QCOMPARE(m->rowCount(), layers + 1);
    QCOMPARE(m->columnCount(), static_cast<int>(taps.size()) + 1);
    for (std::size_t t = 0; t < taps.size(); ++t)
      QCOMPARE(m->tap_of_column(static_cast<int>(t)).toStdString(), taps[t]);
    QVERIFY(close(p->result()->ppl_fp, j["ppl_fp"].get<double>()));
    for (const auto& c : j["cells"]) {
      const QModelIndex i =
          m->index(c["layer"].get<int>(),
                   static_cast<int>(std::find(taps.begin(), taps.end(), c["tap"].get<std::string>()) - taps.begin()));
      QVERIFY2(close(i.data(SensitivityModel::KlRole).toDouble(), c["kl"].get<double>()), c.dump().c_str());
      QVERIFY2(close(i.data(SensitivityModel::PplRole).toDouble(), c["ppl"].get<double>()), c.dump().c_str());
      QVERIFY2(close(i.data(SensitivityModel::Top1AgreementRole).toDouble(), c["top1_agreement"].get<double>()),
               c.dump().c_str());
      QVERIFY(close(i.data(SensitivityModel::ValueRole).toDouble(), c["kl"].get<double>()));  // KL shown first
    }
    // The totals are the CLI's per-layer and per-tap sums, in each metric.
    const char* keys[] = {"kl", "ppl_increase", "top1_changed"};
    for (int metric = 0; metric < 3; ++metric) {
      p->metric_combo()->setCurrentIndex(metric);
      QCOMPARE(m->metric(), static_cast<SensitivityModel::Metric>(metric));
      for (int l = 0; l < layers; ++l)
        QVERIFY(close(m->index(l, static_cast<int>(taps.size())).data(SensitivityModel::ValueRole).toDouble(),
                      j["per_layer"][static_cast<std::size_t>(l)][keys[metric]].get<double>()));
      for (std::size_t t = 0; t < taps.size(); ++t)
        QVERIFY(close(m->index(layers, static_cast<int>(t)).data(SensitivityModel::ValueRole).toDouble(),
                      j["per_tap"][taps[t]][keys[metric]].get<double>()));
    }
    // A cell's tooltip names it and its three numbers.
    const QString tip = m->index(3, 6).data(Qt::ToolTipRole).toString();
    QVERIFY2(tip.contains(QStringLiteral("Layer 3, ffn_hidden (R5)")) && tip.contains(QStringLiteral("KL")) &&
                 tip.contains(QStringLiteral("perplexity")) && tip.contains(QStringLiteral("top-1")),
             qPrintable(tip));
    // Saved beside the statistics file, under the setting the CLI's --save would use.
    const auto file = rptq::sensitivity_file_for(stats.toStdString());
    QVERIFY(QFileInfo::exists(QString::fromStdString(file.string())));
    QVERIFY(p->status_label()->text().contains(QString::fromStdString(file.filename().string())));
    const auto recs = rptq::load_sensitivity_file(file);
    QCOMPARE(recs.size(), std::size_t{1});
    QCOMPARE(recs[0].setting.preset, std::string("W4A4"));
    QCOMPARE(recs[0].setting.seqlen, std::int64_t{64});
    QCOMPARE(recs[0].setting.max_windows, std::int64_t{2});
    QCOMPARE(recs[0].result.cells.size(), p->result()->cells.size());
    for (std::size_t i = 0; i < recs[0].result.cells.size(); ++i)
      QCOMPARE(recs[0].result.cells[i].kl, p->result()->cells[i].kl);
  }

  void cancelMidRunLeavesPageUsable() {
    // The demo model (tiny-opt-16m: its 50,272-token head makes each probe take a while) on 8 windows of 256 tokens.
    open_window(rptq::ui::demo_model_dir());
    calibrate_small(tmp(QStringLiteral("demo.h5")), 8, 128);
    go_to_sensitivity(QStringLiteral("W4A8"), rptq::ui::sample_text_path(), 8, 256);
    if (QTest::currentTestFailed()) return;
    SensitivityPage* p = w_->sensitivity_page();
    QTest::mouseClick(p->run_button(), Qt::LeftButton);
    QVERIFY(p->running());
    QVERIFY(!p->run_button()->isEnabled());
    QVERIFY(p->cancel_button()->isEnabled());
    QVERIFY(!p->setting_combo()->isEnabled());
    QVERIFY(w_->cancellable());
    // Some probes done (the load is the first 5 %), then Run > Cancel, as the menu does it.
    QTRY_VERIFY_WITH_TIMEOUT(p->progress_bar()->value() > 80, kRunTimeoutMs);
    QVERIFY2(p->running(), "the probes ended before they could be cancelled");
    QVERIFY(w_->cancel_action()->text().contains(QStringLiteral("Sensitivity")));
    w_->cancel_action()->trigger();
    QTRY_VERIFY_WITH_TIMEOUT(!p->running(), 30000);
    QVERIFY2(p->status_label()->text().startsWith(QStringLiteral("Cancelled")), qPrintable(p->status_label()->text()));
    QVERIFY(!p->result());
    QCOMPARE(p->heat_model()->rowCount(), 0);
    QVERIFY(!QFileInfo::exists(tmp(QStringLiteral("demo.sensitivity.json"))));  // nothing measured, nothing saved
    QVERIFY(p->run_button()->isEnabled());
    QVERIFY(!p->cancel_button()->isEnabled());
    QVERIFY(p->setting_combo()->isEnabled());
    QVERIFY(!w_->cancel_action()->isEnabled());
    // The page is usable: a short run goes to the end.
    p->windows_spin()->setValue(1);
    p->seqlen_spin()->setValue(32);
    QTRY_VERIFY_WITH_TIMEOUT(!p->looking_up(), 30000);
    run(p);
    if (QTest::currentTestFailed()) return;
    QCOMPARE(p->heat_model()->rowCount(), 4 + 1);
    QVERIFY(QFileInfo::exists(tmp(QStringLiteral("demo.sensitivity.json"))));
  }

  void savedResultIsShownAfterRestart() {
    open_window(stories_dir());
    const QString stats = tmp(QStringLiteral("stories.h5"));
    calibrate_small(stats, 4, 64);
    go_to_sensitivity(QStringLiteral("W4A8"), stories_text(), 2, 64);
    if (QTest::currentTestFailed()) return;
    SensitivityPage* p = w_->sensitivity_page();
    run(p);
    if (QTest::currentTestFailed()) return;
    const rptq::SensitivityResult measured = *p->result();

    // A fresh window (as after a restart) with the same statistics: the page opens on the saved result.
    w_.reset();
    open_window(stories_dir());
    rptq::ui::CalibratePage* c = w_->calibrate_page();
    c->load_statistics(stats);
    QTRY_VERIFY_WITH_TIMEOUT(!c->loading() && w_->session()->stats(), 30000);
    p = w_->sensitivity_page();
    w_->go_to(MainWindow::SensitivityStep);
    QTRY_VERIFY_WITH_TIMEOUT(!p->looking_up() && p->result(), 30000);  // the settings remembered W4A8, 2 x 64
    QVERIFY(p->result_loaded());
    QVERIFY2(p->status_label()->text().contains(QStringLiteral("saved on")), qPrintable(p->status_label()->text()));
    QCOMPARE(p->result()->cells.size(), measured.cells.size());
    for (std::size_t i = 0; i < measured.cells.size(); ++i) {
      QCOMPARE(p->result()->cells[i].kl, measured.cells[i].kl);
      QCOMPARE(p->result()->cells[i].ppl, measured.cells[i].ppl);
      QCOMPARE(p->result()->cells[i].top1_agreement, measured.cells[i].top1_agreement);
    }
    QCOMPARE(p->heat_model()->rowCount(), 5 + 1);
    // Other windows or another setting: not measured yet; back to the saved ones, shown again.
    p->windows_spin()->setValue(3);
    QTRY_VERIFY_WITH_TIMEOUT(!p->looking_up(), 30000);
    QVERIFY(!p->result());
    QVERIFY(p->status_label()->text().contains(QStringLiteral("No saved result")));
    p->windows_spin()->setValue(2);
    QTRY_VERIFY_WITH_TIMEOUT(!p->looking_up() && p->result(), 30000);
    QVERIFY(p->select_setting(QStringLiteral("W4A4")));
    QTRY_VERIFY_WITH_TIMEOUT(!p->looking_up(), 30000);
    QVERIFY(!p->result());
    // A damaged sensitivity file is reported on the page, which stays usable.
    QFile f(QString::fromStdString(rptq::sensitivity_file_for(stats.toStdString()).string()));
    QVERIFY(f.open(QIODevice::WriteOnly | QIODevice::Truncate));
    f.write("{\"format\": \"something else\"}");
    f.close();
    QVERIFY(p->select_setting(QStringLiteral("W4A8")));
    QTRY_VERIFY_WITH_TIMEOUT(!p->looking_up(), 30000);
    QVERIFY(!p->result());
    QVERIFY2(p->status_label()->text().contains(QStringLiteral("not a sensitivity file")) &&
                 p->status_label()->text().contains(QFileInfo(f.fileName()).fileName()),
             qPrintable(p->status_label()->text()));
    QVERIFY(p->run_button()->isEnabled());
  }

  void doubleClickExploresTheCell() {
    open_window(stories_dir());
    calibrate_small(tmp(QStringLiteral("stories.h5")), 4, 64);
    go_to_sensitivity(QStringLiteral("W4A8"), stories_text(), 1, 64);
    if (QTest::currentTestFailed()) return;
    SensitivityPage* p = w_->sensitivity_page();
    run(p);
    if (QTest::currentTestFailed()) return;
    QTableView* v = p->heat_view();
    // Layer 2, ffn_hidden (column 6): Explore shows layer 2's R5 with the setting's R5 clusters.
    const QModelIndex cell = p->heat_model()->index(2, 6);
    QCOMPARE(p->heat_model()->tap_of_column(6), QStringLiteral("ffn_hidden"));
    double_click(v, cell);
    QCOMPARE(w_->current_step(), MainWindow::ExploreStep);
    rptq::ui::ExplorePage* e = w_->explore_page();
    QCOMPARE(e->layer_spin()->value(), 2);
    QCOMPARE(e->index_combo()->currentData().toInt(), 5);
    QTRY_VERIFY_WITH_TIMEOUT(e->up_to_date() && e->shown() && e->shown()->request.index == 5, 30000);
    QCOMPARE(e->shown()->request.layer, 2);
    QCOMPARE(e->shown()->request.k, std::min(32, e->k_spin()->maximum()));  // W4A8's R5 clusters, capped
    // A q cell (column 1) explores R2; the softmax and the totals explore nothing.
    w_->go_to(MainWindow::SensitivityStep);
    const QModelIndex q = p->heat_model()->index(4, 1);
    double_click(v, q);
    QCOMPARE(w_->current_step(), MainWindow::ExploreStep);
    QCOMPARE(e->layer_spin()->value(), 4);
    QCOMPARE(e->index_combo()->currentData().toInt(), 2);
    QTRY_VERIFY_WITH_TIMEOUT(e->up_to_date(), 30000);
    w_->go_to(MainWindow::SensitivityStep);
    for (const QModelIndex& none :
         {p->heat_model()->index(0, 7), p->heat_model()->index(5, 0), p->heat_model()->index(0, 8)}) {
      double_click(v, none);
      QCOMPARE(w_->current_step(), MainWindow::SensitivityStep);
    }
  }

  void suggestionReachesTheQuantizeStep() {
    open_window(stories_dir());
    calibrate_small(tmp(QStringLiteral("stories.h5")), 4, 64);
    go_to_sensitivity(QStringLiteral("W4A4"), stories_text(), 2, 64);
    if (QTest::currentTestFailed()) return;
    SensitivityPage* p = w_->sensitivity_page();
    run(p);
    if (QTest::currentTestFailed()) return;
    p->suggest_count_spin()->setValue(3);
    p->suggest_bits_combo()->setCurrentIndex(p->suggest_bits_combo()->findData(8));
    const rptq::QuantConfig w4a4 = rptq::QuantConfig::preset("W4A4");
    const rptq::SensitivitySuggestion want = rptq::suggest_overrides(*p->result(), w4a4, 3, 8);
    QVERIFY(p->suggestion());
    QCOMPARE(p->suggestion()->overrides, want.overrides);
    QCOMPARE(p->suggestion()->kept.size(), std::size_t{3});
    for (const std::string& o : want.overrides)
      QVERIFY2(p->overrides_text()->toPlainText().contains(QString::fromStdString(o)),
               qPrintable(p->overrides_text()->toPlainText()));
    // The memory cost is the memory model's for the model's whole context, before and after.
    const rptq::ModelConfig mc = w_->session()->fp_model()->config();
    const rptq::SuggestionMemory mem = rptq::suggestion_memory(mc, w4a4, want, 1, mc.max_positions);
    const QString text = p->memory_label()->text();
    QVERIFY2(text.contains(rptq::ui::human_bytes(mem.before.total_bytes)) &&
                 text.contains(rptq::ui::human_bytes(mem.after.total_bytes)),
             qPrintable(text));
    // The Quantize step is elsewhere (W4A8): the suggestion brings W4A4 and the overrides there.
    rptq::ui::QuantizePage* q = w_->quantize_page();
    QVERIFY(q->select_preset(QStringLiteral("W4A8")));
    QVERIFY(p->use_button()->isEnabled());
    QTest::mouseClick(p->use_button(), Qt::LeftButton);
    QCOMPARE(w_->current_step(), MainWindow::QuantizeStep);
    QCOMPARE(q->preset_combo()->currentData().toString(), QStringLiteral("W4A4"));
    QStringList specs;
    for (const std::string& o : want.overrides) specs << QString::fromStdString(o);
    QCOMPARE(q->overrides(), specs);
    const rptq::QuantConfig got = q->config();
    for (const auto& k : want.kept) QCOMPARE(got.bits(k.layer, k.tap), 8);
    QCOMPARE(got.bits(0, rptq::Tap::K), 4);
    QVERIFY(q->findChild<QLabel*>(QStringLiteral("configDescription"))
                ->text()
                .contains(QString::fromStdString(want.overrides.front())));
    // No suggestion when nothing is kept.
    w_->go_to(MainWindow::SensitivityStep);
    p->suggest_count_spin()->setValue(0);
    QVERIFY(!p->use_button()->isEnabled());
  }
};

int main(int argc, char** argv) {
  if (!qEnvironmentVariableIsSet("QT_QPA_PLATFORM")) qputenv("QT_QPA_PLATFORM", "offscreen");
  QDir().mkpath(QStringLiteral(RPTQ_GUI_TEST_TMP));
  QTemporaryDir root(QStringLiteral(RPTQ_GUI_TEST_TMP) + QStringLiteral("/sensitivity-XXXXXX"));
  if (!root.isValid()) return 2;
  g_root = root.path();
  // Settings and application data in the temporary folder.
  qputenv("XDG_CONFIG_HOME", (g_root + "/config").toUtf8());
  qputenv("XDG_DATA_HOME", (g_root + "/data").toUtf8());
  qputenv("XDG_CACHE_HOME", (g_root + "/cache").toUtf8());
  qputenv("HF_HOME", (g_root + "/hf").toUtf8());
  QApplication app(argc, argv);
  QApplication::setOrganizationName(QStringLiteral("RPTQ"));
  QApplication::setApplicationName(QStringLiteral("rptq-workbench-test-sensitivity"));
  GuiSensitivityTest t;
  const int rc = QTest::qExec(&t, argc, argv);
  // Jobs a test left running (a look-up, a cancelled run) end before the statics they use are destroyed, as the
  // application's main waits for them too.
  QThreadPool::globalInstance()->waitForDone();
  return rc;
}

#include "test_gui_sensitivity.moc"
