// Qt Test tests of RPTQ Workbench's GUI. They drive the real main window under the offscreen platform: open the
// demo model, calibrate it (small settings, seconds), explore the clusters, cancel a calibration midway, open a
// corrupt model, export charts, and run the --screenshot mode. Settings, data and the Hugging Face cache live in a
// temporary folder made by main(), so a run neither reads nor changes the developer's own.
#include <QAbstractButton>
#include <QAction>
#include <QApplication>
#include <QCheckBox>
#include <QComboBox>
#include <QDateTime>
#include <QDir>
#include <QFile>
#include <QImage>
#include <QLabel>
#include <QLineEdit>
#include <QMessageBox>
#include <QMimeData>
#include <QProcess>
#include <QStandardPaths>
#include <QProgressBar>
#include <QPushButton>
#include <QSettings>
#include <QSignalSpy>
#include <QSlider>
#include <QSpinBox>
#include <QStandardItemModel>
#include <QStatusBar>
#include <QTableView>
#include <QTableWidget>
#include <QTextEdit>
#include <QTemporaryDir>
#include <QThreadPool>
#include <QTimer>
#include <QTreeWidget>
#include <QtTest>

#include <sys/stat.h>

#include <cmath>
#include <map>
#include <memory>
#include <set>

#include "calibration/calibrate_page.h"
#include "calibration/calibration_job.h"
#include "calibration/layer_progress_model.h"
#include "common/chart_view.h"
#include "common/cluster_palette.h"
#include "common/device_choice.h"
#include "rptq/base/error.h"
#include "common/resources.h"
#include "compare/compare_page.h"
#include "compare/generation_job.h"
#include "compare/memory_chart.h"
#include "explore/cluster_table_model.h"
#include "explore/explore_page.h"
#include "explore/range_order_chart.h"
#include "explore/scatter_chart.h"
#include "explore/tap_overview_model.h"
#include "export/export_page.h"
#include "main/main_window.h"
#include "main/step_list.h"
#include "model/model_page.h"
#include "quantize/quantize_job.h"
#include "hostile_files.h"
#include "history/history_page.h"
#include "quantize/overrides_editor.h"
#include "quantize/quantize_page.h"
#include "rptq/device.h"
#include "rptq/model/model_info.h"
#include "rptq/method/reorder.h"
#include "rptq/model/tap.h"
#include "session/persisted.h"
#include "session/session.h"

using rptq::ui::DeviceChoice;
using rptq::ui::MainWindow;

namespace {

constexpr int kOpenTimeoutMs = 60000;
constexpr int kCalibrateTimeoutMs = 120000;

QString g_root;  // the temporary folder holding settings, data and the fake Hugging Face cache

// With RPTQ_GUI_SHOTS_DIR set, tests save what they see there (for looking at the UI in states screenshots of the
// finished steps do not show).
void save_shot(QWidget* w, const QString& name) {
  const QString dir = qEnvironmentVariable("RPTQ_GUI_SHOTS_DIR");
  if (!dir.isEmpty()) w->grab().save(dir + QLatin1Char('/') + name + QStringLiteral(".png"));
}

void write_bytes(const QString& path, const std::string& bytes) {
  QFile f(path);
  QVERIFY(f.open(QIODevice::WriteOnly | QIODevice::Truncate));
  QCOMPARE(f.write(bytes.data(), static_cast<qint64>(bytes.size())), static_cast<qint64>(bytes.size()));
}

QString stories_dir() { return rptq::ui::resources_dir() + QStringLiteral("/models/stories260k"); }

// Watches for message boxes and closes each one it finds, remembering what they said.
class DialogCatcher : public QObject {
 public:
  DialogCatcher() {
    timer_.setInterval(30);
    connect(&timer_, &QTimer::timeout, this, [this] {
      for (QWidget* w : QApplication::topLevelWidgets()) {
        auto* box = qobject_cast<QMessageBox*>(w);
        if (!box || !box->isVisible()) continue;
        texts << box->text() + QStringLiteral(": ") + box->informativeText();
        save_shot(box, QStringLiteral("dialog-%1").arg(texts.size()));
        box->close();
      }
    });
    timer_.start();
  }
  QStringList texts;

 private:
  QTimer timer_;
};

}  // namespace

class GuiTest : public QObject {
  Q_OBJECT

 private:
  std::unique_ptr<MainWindow> w_;
  std::unique_ptr<QTemporaryDir> tmp_;

  // A fresh window, started as the user starts it; waits until its model is open.
  void open_window(const QString& model = {}) {
    w_ = std::make_unique<MainWindow>();
    w_->resize(1400, 900);
    w_->show();
    w_->start_up(model);
    QTRY_VERIFY_WITH_TIMEOUT(!w_->opening() && w_->session()->model(), kOpenTimeoutMs);
  }

  void wait_open(const QString& path) {
    w_->open_path(path);
    QTRY_VERIFY_WITH_TIMEOUT(!w_->opening(), kOpenTimeoutMs);
  }

  // Calibrates with small settings into `out`; waits for the statistics.
  void calibrate_small(const QString& out, int samples = 8, int seqlen = 128) {
    rptq::ui::CalibratePage* c = w_->calibrate_page();
    w_->go_to(MainWindow::CalibrateStep);
    c->samples_spin()->setValue(samples);
    c->seqlen_spin()->setValue(seqlen);
    c->output_edit()->setText(out);
    QVERIFY(c->calibrate_button()->isEnabled());
    QTest::mouseClick(c->calibrate_button(), Qt::LeftButton);
    QVERIFY(c->running());
    QTRY_VERIFY_WITH_TIMEOUT(!c->running(), kCalibrateTimeoutMs);
    QVERIFY2(w_->session()->stats(), qPrintable(c->status_label()->text()));
    QCOMPARE(w_->session()->stats_path(), out);
    QVERIFY(QFileInfo::exists(out));
  }

  void explore(int layer, int index, int k) {
    w_->go_to(MainWindow::ExploreStep);
    QCOMPARE(w_->current_step(), MainWindow::ExploreStep);
    w_->explore_page()->select(layer, index, k);
    QTRY_VERIFY_WITH_TIMEOUT(w_->explore_page()->up_to_date(), 30000);
    const rptq::ui::ClusterSnapshot* s = w_->explore_page()->shown();
    QVERIFY(s);
    QCOMPARE(s->request.layer, layer);
    QCOMPARE(s->request.index, index);
    QCOMPARE(s->request.k, k);
  }

  QString tmp(const QString& name) const { return tmp_->filePath(name); }

  // Quantizes with a preset and RTN weights (fast), ranges as the statistics file has them; waits for the result.
  void quantize_small(const QString& preset = QStringLiteral("W4A8")) {
    rptq::ui::QuantizePage* q = w_->quantize_page();
    w_->go_to(MainWindow::QuantizeStep);
    QCOMPARE(w_->current_step(), MainWindow::QuantizeStep);
    QVERIFY(q->select_preset(preset));
    q->set_weight_method(rptq::WeightMethod::RTN);
    QVERIFY(q->run_button()->isEnabled());
    QTest::mouseClick(q->run_button(), Qt::LeftButton);
    QVERIFY(q->running());
    QTRY_VERIFY_WITH_TIMEOUT(!q->running(), kCalibrateTimeoutMs);
    QVERIFY2(w_->session()->quantized(), qPrintable(q->status_label()->text()));
  }

 private Q_SLOTS:
  void init() {
    QSettings().clear();
    // Each test starts with an empty run history (several test functions may share one process).
    QFile::remove(QStandardPaths::writableLocation(QStandardPaths::AppDataLocation) + QStringLiteral("/history.json"));
    tmp_ = std::make_unique<QTemporaryDir>(g_root + QStringLiteral("/case-XXXXXX"));
    QVERIFY(tmp_->isValid());
  }

  void cleanup() {
    w_.reset();
    tmp_.reset();
  }

  void opensDemoModelOnFirstStart() {
    QVERIFY(rptq::ui::first_start());
    open_window();
    QCOMPARE(QFileInfo(w_->session()->model()->path).canonicalFilePath(),
             QFileInfo(rptq::ui::demo_model_dir()).canonicalFilePath());
    QVERIFY(w_->session()->fp_model());
    QVERIFY(w_->windowTitle().contains(QStringLiteral("tiny-opt-16m")));
    QVERIFY(w_->device_text().startsWith(QStringLiteral("CPU")));
    rptq::ui::StepList* steps = w_->step_list();
    QVERIFY(steps->step_enabled(MainWindow::ModelStep));
    QVERIFY(steps->step_enabled(MainWindow::CalibrateStep));
    QVERIFY(!steps->step_enabled(MainWindow::ExploreStep));  // no statistics yet
    QCOMPARE(steps->count(), static_cast<int>(MainWindow::StepCount));
    QVERIFY(!rptq::ui::recent_models().isEmpty());
    QVERIFY(!rptq::ui::first_start());

    // The next start opens the model open when the workbench closed, not the demo.
    wait_open(stories_dir());
    QCOMPARE(w_->session()->model()->display_name(), QStringLiteral("stories260k"));
    w_.reset();
    open_window();
    QCOMPARE(w_->session()->model()->display_name(), QStringLiteral("stories260k"));
    QCOMPARE(rptq::ui::recent_models().size(), 2);
  }

  void showsModelInfo() {
    open_window();
    const rptq::ModelInfo info = rptq::inspect_model(rptq::ui::demo_model_dir().toStdString());
    rptq::ui::ModelPage* p = w_->model_page();
    QVERIFY(p->info_value(QStringLiteral("architecture")).startsWith(QStringLiteral("OPT")));
    QCOMPARE(p->info_value(QStringLiteral("layers")), QString::number(info.config.layers));
    QVERIFY(p->info_value(QStringLiteral("dimensions")).contains(QStringLiteral("hidden 256")));
    QVERIFY(p->info_value(QStringLiteral("parameters")).contains(QStringLiteral("16,160,768")));
    QCOMPARE(info.parameters, 16160768);
    QVERIFY(p->info_value(QStringLiteral("dtypes")).contains(QStringLiteral("F16")));
    QVERIFY(p->info_value(QStringLiteral("size")).contains(QStringLiteral("MiB")));
    QVERIFY(p->info_value(QStringLiteral("tokenizer")).startsWith(QStringLiteral("\u2714")));

    wait_open(stories_dir());
    QVERIFY(p->info_value(QStringLiteral("architecture")).startsWith(QStringLiteral("LLaMA")));
    QVERIFY(p->info_value(QStringLiteral("heads")).contains(QStringLiteral("(4 KV heads)")));
  }

  void listsHuggingFaceCache() {
    // main() points HF_HOME at a cache holding one snapshot of stories260k (config.json as a symlink, as the hub
    // stores its blobs).
    open_window();
    QTreeWidget* list = w_->model_page()->cache_list();
    QTRY_VERIFY_WITH_TIMEOUT(list->topLevelItemCount() == 1 && list->topLevelItem(0)->text(0) == "test-org/stories",
                             10000);
    QTreeWidgetItem* item = list->topLevelItem(0);
    QCOMPARE(item->text(1), QStringLiteral("0123456789ab"));
    const QString snapshot = item->data(0, Qt::UserRole).toString();
    QVERIFY(snapshot.endsWith(QStringLiteral("snapshots/0123456789abcdef")));
    Q_EMIT list->itemActivated(item, 0);
    QTRY_VERIFY_WITH_TIMEOUT(!w_->opening() && w_->session()->model()->path == snapshot, kOpenTimeoutMs);
    QVERIFY(w_->model_page()->info_value(QStringLiteral("architecture")).startsWith(QStringLiteral("LLaMA")));
  }

  void calibratesAndExplores() {
    open_window();
    calibrate_small(tmp("demo.h5"));
    const rptq::ChannelStats* st = w_->session()->stats();
    QCOMPARE(st->settings.samples, 8);
    QCOMPARE(st->settings.seqlen, 128);
    QVERIFY(w_->step_list()->step_enabled(MainWindow::ExploreStep));
    rptq::ui::LayerProgressModel* layers = w_->calibrate_page()->layer_model();
    QCOMPARE(layers->rowCount(), 4);
    for (int l = 0; l < 4; ++l) QCOMPARE(layers->fraction(l), 1.0);

    explore(0, 1, 8);
    rptq::ui::ExplorePage* e = w_->explore_page();
    const qint64 channels = rptq::tap_channels(st->model_shape(), rptq::Tap::AttnInput);
    QCOMPARE(channels, 256);
    QCOMPARE(e->scatter()->point_count(), channels);
    QCOMPARE(e->scatter()->distinct_colors(), 8);
    QCOMPARE(e->cluster_model()->rowCount(), 8);
    QCOMPARE(e->ranges()->reordered_runs(), 8);  // R1's clusters are contiguous after the reorder
    // The clusters shown are exactly the engine's.
    const rptq::TapClusters tc = rptq::cluster_reorder_index(1, st->model_shape(), st->ranges[0], 8, 0, 0);
    QVERIFY(tc.labels == e->shown()->labels);
    QVERIFY(tc.index.order == e->shown()->order);
    qint64 in_table = 0;
    for (int r = 0; r < e->cluster_model()->rowCount(); ++r)
      in_table += e->cluster_model()->index(r, rptq::ui::ClusterTableModel::Channels).data(Qt::UserRole).toLongLong();
    QCOMPARE(in_table, channels);
    // A cluster's quantizer is finer than one over the whole tensor (this model has outlier channels).
    const double finer0 = e->cluster_model()->index(0, rptq::ui::ClusterTableModel::Finer).data(Qt::UserRole).toDouble();
    QVERIFY2(finer0 > 2.0, qPrintable(QString::number(finer0)));

    // Another layer and index: the FFN hidden activation has the FFN's width.
    explore(2, 5, 16);
    QCOMPARE(e->scatter()->point_count(), rptq::tap_channels(st->model_shape(), rptq::Tap::FfnHidden));
    QCOMPARE(e->scatter()->distinct_colors(), 16);
    // Per head (R2): k counts per head, so 4 heads x 3 clusters.
    explore(1, 2, 3);
    QCOMPARE(e->scatter()->point_count(), rptq::tap_channels(st->model_shape(), rptq::Tap::K));
    QCOMPARE(e->shown()->clusters, 12);
    QCOMPARE(e->scatter()->distinct_colors(), 12);
  }

  void reclustersLiveWhenKChanges() {
    open_window();
    calibrate_small(tmp("k.h5"));
    explore(0, 1, 8);
    rptq::ui::ExplorePage* e = w_->explore_page();
    const rptq::ChannelStats* st = w_->session()->stats();

    // The spin box re-clusters on the worker; the slider follows.
    e->k_spin()->setValue(5);
    QCOMPARE(e->k_slider()->value(), 5);
    QTRY_VERIFY_WITH_TIMEOUT(e->up_to_date(), 30000);
    QCOMPARE(e->shown()->request.k, 5);
    QCOMPARE(e->scatter()->distinct_colors(), 5);
    QCOMPARE(e->scatter()->point_count(), 256);
    QCOMPARE(e->cluster_model()->rowCount(), 5);
    const rptq::TapClusters tc = rptq::cluster_reorder_index(1, st->model_shape(), st->ranges[0], 5, 0, 0);
    QVERIFY(tc.labels == e->shown()->labels);

    // A slider dragged through many values: each change returns at once, and the last value is what ends up shown.
    QElapsedTimer t;
    t.start();
    for (int k = 2; k <= 20; ++k) e->k_slider()->setValue(k);
    QVERIFY2(t.elapsed() < 2000, "changing k must not wait for the clustering");
    QCOMPARE(e->k_spin()->value(), 20);
    QTRY_VERIFY_WITH_TIMEOUT(e->up_to_date(), 30000);
    QCOMPARE(e->shown()->request.k, 20);
    QCOMPARE(e->scatter()->distinct_colors(), 20);
    QCOMPARE(e->scatter()->point_count(), 256);

    // Bits change the quantizer table, not the clusters.
    const double step4 = e->cluster_model()->index(0, rptq::ui::ClusterTableModel::Step).data(Qt::UserRole).toDouble();
    e->bits_spin()->setValue(8);
    QTRY_VERIFY_WITH_TIMEOUT(e->up_to_date() && e->shown()->request.bits == 8, 30000);
    const double step8 = e->cluster_model()->index(0, rptq::ui::ClusterTableModel::Step).data(Qt::UserRole).toDouble();
    QVERIFY2(step8 < step4 / 10, qPrintable(QStringLiteral("%1 %2").arg(step4).arg(step8)));
    QCOMPARE(e->scatter()->distinct_colors(), 20);
  }

  void hoverNamesTheChannel() {
    open_window();
    calibrate_small(tmp("hover.h5"));
    explore(0, 1, 8);
    rptq::ui::ScatterChart* sc = w_->explore_page()->scatter();
    const rptq::ui::ClusterSnapshot* s = w_->explore_page()->shown();
    // The channel with the largest max: an outlier, alone at its position.
    int ch = 0;
    for (int c = 1; c < s->channels(); ++c)
      if (s->max[c] > s->max[ch]) ch = c;
    const QPoint pos = sc->position_of(ch);
    QVERIFY(sc->viewport()->rect().contains(pos));
    QCOMPARE(sc->channel_at(pos), ch);
    QSignalSpy spy(sc, &rptq::ui::ScatterChart::channel_hovered);
    QTest::mouseMove(sc->viewport(), pos);
    QTRY_VERIFY(!spy.isEmpty());
    QCOMPARE(spy.last().at(0).toInt(), ch);
    const QString text = sc->describe_channel(ch);
    QVERIFY(text.startsWith(QStringLiteral("channel %1").arg(ch)));
    QVERIFY(text.contains(QStringLiteral("cluster %1").arg(s->labels[ch])));
    // Far from every point: nothing.
    QCOMPARE(sc->channel_at(QPoint(2, 2)), -1);

    // Zoom moves the point; reset brings it back, and the hover still finds it.
    sc->chart()->zoom(2.0);
    QVERIFY(sc->position_of(ch) != pos);
    sc->reset_zoom();
    QCOMPARE(sc->position_of(ch), pos);
    QCOMPARE(sc->channel_at(pos), ch);
  }

  void overviewSelectsLayerAndTap() {
    open_window();
    calibrate_small(tmp("overview.h5"));
    explore(0, 1, 8);
    rptq::ui::ExplorePage* e = w_->explore_page();
    rptq::ui::TapOverviewModel* m = e->overview_model();
    QCOMPARE(m->rowCount(), 4);
    QCOMPARE(m->columnCount(), rptq::kTapCount);
    // Every cell's ratio is >= 1 and the widest is the max over channels of max - min.
    const rptq::ChannelStats* st = w_->session()->stats();
    const auto& tr = st->ranges[1].tap(rptq::Tap::FfnInput);
    double widest = 0;
    for (std::size_t c = 0; c < tr.ema_max.size(); ++c) widest = std::max(widest, double(tr.ema_max[c]) - double(tr.ema_min[c]));
    QCOMPARE(m->overview().layers[1][static_cast<int>(rptq::Tap::FfnInput)].widest, widest);
    for (int r = 0; r < m->rowCount(); ++r)
      for (int c = 0; c < m->columnCount(); ++c) QVERIFY(m->index(r, c).data(Qt::UserRole).toDouble() >= 1.0);
    // Clicking a cell explores that layer and the tap's reorder index.
    e->tabs()->setCurrentIndex(1);
    QTableView* v = e->overview_view();
    const QModelIndex cell = m->index(2, static_cast<int>(rptq::Tap::FfnHidden));
    QTest::mouseClick(v->viewport(), Qt::LeftButton, {}, v->visualRect(cell).center());
    QCOMPARE(e->layer_spin()->value(), 2);
    QCOMPARE(e->index_combo()->currentData().toInt(), 5);
    QTRY_VERIFY_WITH_TIMEOUT(e->up_to_date() && e->shown()->request.index == 5, 30000);
    QCOMPARE(e->shown()->request.layer, 2);
    QCOMPARE(e->scatter()->point_count(), 1024);
  }

  void scatterHandlesTensOfThousandsOfPoints() {
    // OPT-66b's FFN width: 36,864 channels in one tap, as a synthetic statistics file (no model needed).
    open_window();
    auto st = std::make_shared<rptq::ChannelStats>();
    st->model_type = "opt";
    st->layers = 1;
    st->hidden = 9216;
    st->heads = 72;
    st->kv_heads = 72;
    st->head_dim = 128;
    st->intermediate = 36864;
    st->ranges.resize(1);
    std::uint64_t state = 12345;
    auto uniform = [&state] {
      state = state * 6364136223846793005ull + 1442695040888963407ull;
      return static_cast<float>((state >> 40) & 0xffffff) / 16777216.0f;
    };
    for (rptq::Tap t : rptq::kAllTaps) {
      rptq::TapRanges& tr = st->ranges[0].tap(t);
      const std::int64_t n = rptq::tap_channels(st->model_shape(), t);
      for (std::int64_t c = 0; c < n; ++c) {
        const float scale = c % 997 == 0 ? 60.0f : 1.0f;  // a few outlier channels
        tr.max.push_back(scale * (0.5f + uniform()));
        tr.min.push_back(-scale * (0.5f + uniform()));
      }
      tr.ema_max = tr.max;
      tr.ema_min = tr.min;
      tr.samples = 1;
    }
    w_->session()->set_stats(st, QStringLiteral("synthetic"));
    QElapsedTimer t;
    t.start();
    explore(0, 5, 32);
    const qint64 cluster_ms = t.elapsed();
    rptq::ui::ExplorePage* e = w_->explore_page();
    QCOMPARE(e->scatter()->point_count(), 36864);
    QCOMPARE(e->scatter()->distinct_colors(), 32);
    // Re-clustering stays interactive, and a full repaint of the window (raster: offscreen has no OpenGL) too.
    t.restart();
    e->k_spin()->setValue(16);
    QTRY_VERIFY_WITH_TIMEOUT(e->up_to_date() && e->shown()->request.k == 16, 30000);
    const qint64 recluster_ms = t.elapsed();
    t.restart();
    const QPixmap shot = w_->grab();
    const qint64 paint_ms = t.elapsed();
    QVERIFY(!shot.isNull());
    QCOMPARE(e->scatter()->uses_opengl(), rptq::ui::ChartView::opengl_enabled());
    qInfo("36,864 channels: first clustering + display %lld ms, re-cluster %lld ms, repaint %lld ms", cluster_ms,
          recluster_ms, paint_ms);
    // Generous bounds (a shared 2-core machine); measured about 150 ms and 20 ms.
    QVERIFY2(recluster_ms < 3000 && paint_ms < 2000, "tens of thousands of points must stay smooth");
    if (!rptq::ui::ChartView::opengl_enabled()) QVERIFY(e->scatter()->uses_point_cloud());
    if (qEnvironmentVariableIsSet("RPTQ_GUI_EXPECT_OPENGL"))
      QVERIFY2(rptq::ui::ChartView::opengl_enabled(), "this run is for the OpenGL path, and the platform has none");
    if (rptq::ui::ChartView::opengl_enabled()) {
      // The OpenGL path (run by the gui-gl ctest entry, under Xvfb with Mesa's software OpenGL): the series draw
      // through a GL surface instead of the point cloud.
      QVERIFY(e->scatter()->uses_opengl());
      QVERIFY(!e->scatter()->uses_point_cloud());
    }
    {
      // Either way the clusters' colours are in the plot area of the chart's image: drawn by the GL surface or by
      // the point cloud, the only things on the chart that use them.
      const QImage img = e->scatter()->grab().toImage().convertToFormat(QImage::Format_RGB32);
      const QRectF plot = e->scatter()->chart()->plotArea();
      const qreal dpr = img.devicePixelRatio();
      std::map<QRgb, int> hist;
      for (int y = int(plot.top() * dpr); y < int(plot.bottom() * dpr); ++y)
        for (int x = int(plot.left() * dpr); x < int(plot.right() * dpr); ++x) ++hist[img.pixel(x, y)];
      int colours_seen = 0;
      for (int c = 0; c < 16; ++c) colours_seen += hist[rptq::ui::cluster_color(c).rgb()] > 0;
      // The bulk clusters crowd the origin, where some hide others (measured: 14 of 16 visible with OpenGL).
      QVERIFY2(colours_seen >= 12, qPrintable(QStringLiteral("%1 of 16 cluster colours drawn").arg(colours_seen)));
    }
    const QString shots = qEnvironmentVariable("RPTQ_GUI_SHOTS_DIR");
    if (!shots.isEmpty()) shot.save(shots + QStringLiteral("/explore-36864-channels.png"));
    // Hover still finds the outlier channel 0.
    QCOMPARE(e->scatter()->channel_at(e->scatter()->position_of(0)), 0);
  }

  void dropsFolderOnWindow() {
    open_window();
    QMimeData mime;
    mime.setUrls({QUrl::fromLocalFile(stories_dir())});
    QDragEnterEvent enter(QPoint(50, 50), Qt::CopyAction, &mime, Qt::LeftButton, Qt::NoModifier);
    QApplication::sendEvent(w_.get(), &enter);
    QVERIFY(enter.isAccepted());
    QDropEvent drop(QPointF(50, 50), Qt::CopyAction, &mime, Qt::LeftButton, Qt::NoModifier);
    QApplication::sendEvent(w_.get(), &drop);
    QTRY_VERIFY_WITH_TIMEOUT(!w_->opening() && w_->session()->model()->display_name() == "stories260k",
                             kOpenTimeoutMs);
  }

  void cancelsCalibrationMidway() {
    open_window();
    rptq::ui::CalibratePage* c = w_->calibrate_page();
    w_->go_to(MainWindow::CalibrateStep);
    // Big enough to take many seconds (4 layers x 400 windows of 512 tokens).
    c->samples_spin()->setValue(400);
    c->seqlen_spin()->setValue(512);
    const QString out = tmp("cancelled.h5");
    c->output_edit()->setText(out);
    QTest::mouseClick(c->calibrate_button(), Qt::LeftButton);
    QVERIFY(c->running());
    QVERIFY(!c->calibrate_button()->isEnabled());
    QVERIFY(c->cancel_button()->isEnabled());
    QTRY_VERIFY_WITH_TIMEOUT(c->job()->progress().layers.done >= 3, kCalibrateTimeoutMs);
    QTRY_VERIFY(c->findChild<QLabel*>(QStringLiteral("etaLabel"))->text().startsWith(QStringLiteral("elapsed")));
    QVERIFY(c->overall_bar()->value() < 500);
    const rptq::LayerwiseProgress at_cancel = c->job()->progress().layers;
    QVERIFY2(at_cancel.done < at_cancel.total / 2, "the calibration ended before it could be cancelled");
    QTRY_VERIFY(c->layer_model()->fraction(0) > 0);
    save_shot(w_.get(), QStringLiteral("calibrating"));
    QTest::mouseClick(c->cancel_button(), Qt::LeftButton);
    // It stops at the next window: well within the layer it is in.
    QTRY_VERIFY_WITH_TIMEOUT(!c->running(), 20000);
    const rptq::LayerwiseProgress end = c->job()->progress().layers;
    QVERIFY2(end.done < end.total, "cancel did not stop the pass");
    QVERIFY2(end.layer <= at_cancel.layer + 1, "cancel took more than a layer");
    QVERIFY(c->status_label()->text().startsWith(QStringLiteral("Cancelled")));
    QCOMPARE(c->layer_model()->index(end.layer, rptq::ui::LayerProgressModel::Time).data().toString(),
             QStringLiteral("stopped"));
    QVERIFY(!w_->session()->stats());
    QVERIFY(!QFileInfo::exists(out));
    QVERIFY(c->calibrate_button()->isEnabled());
    QVERIFY(!c->cancel_button()->isEnabled());
    QVERIFY(c->samples_spin()->isEnabled());
    QVERIFY(!w_->step_list()->step_enabled(MainWindow::ExploreStep));
    save_shot(w_.get(), QStringLiteral("cancelled"));

    // The UI is usable: a new calibration runs to the end, and Explore works.
    calibrate_small(tmp("after-cancel.h5"));
    explore(0, 1, 4);
    QCOMPARE(w_->explore_page()->scatter()->distinct_colors(), 4);
  }

  void corruptModelShowsErrorDialog() {
    open_window();
    const auto before = w_->session()->model_ptr();
    DialogCatcher catcher;

    // config.json that is not JSON.
    const QString bad = tmp("bad-config");
    QVERIFY(QDir().mkpath(bad));
    {
      QFile f(bad + "/config.json");
      QVERIFY(f.open(QIODevice::WriteOnly));
      f.write("{ this is not json");
    }
    w_->open_path(bad);
    QTRY_VERIFY_WITH_TIMEOUT(catcher.texts.size() == 1, kOpenTimeoutMs);
    QVERIFY2(catcher.texts[0].contains(QStringLiteral("config.json")), qPrintable(catcher.texts[0]));
    QVERIFY(catcher.texts[0].startsWith(QStringLiteral("Cannot open bad-config")));
    QCOMPARE(w_->session()->model_ptr(), before);  // the open model stays

    // A valid config with truncated, garbage weights.
    const QString trunc = tmp("bad-weights");
    QVERIFY(QDir().mkpath(trunc));
    QVERIFY(QFile::copy(rptq::ui::demo_model_dir() + "/config.json", trunc + "/config.json"));
    {
      QFile f(trunc + "/model.safetensors");
      QVERIFY(f.open(QIODevice::WriteOnly));
      f.write("\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":", 13);
    }
    w_->open_path(trunc);
    QTRY_VERIFY_WITH_TIMEOUT(catcher.texts.size() == 2, kOpenTimeoutMs);
    QVERIFY2(catcher.texts[1].contains(QStringLiteral("safetensors")), qPrintable(catcher.texts[1]));
    QCOMPARE(w_->session()->model_ptr(), before);

    // Neither a folder nor HDF5.
    const QString txt = tmp("notes.txt");
    {
      QFile f(txt);
      QVERIFY(f.open(QIODevice::WriteOnly));
      f.write("hello");
    }
    w_->open_path(txt);
    QTRY_VERIFY_WITH_TIMEOUT(catcher.texts.size() == 3, kOpenTimeoutMs);
    QCOMPARE(w_->session()->model_ptr(), before);

    // Still usable.
    w_->go_to(MainWindow::CalibrateStep);
    QCOMPARE(w_->current_step(), MainWindow::CalibrateStep);
    QVERIFY(w_->calibrate_page()->calibrate_button()->isEnabled());
  }

  // Damaged statistics files and checkpoints each end in a dialog naming the file and the problem, and the window
  // stays usable: inputs that crash libhdf5 when read in-process (tests/data/hostile: the workbench reads them in
  // a child process first), a checkpoint with a damaged setting, a truncated file, a FIFO.
  void damagedFilesShowErrorDialogs() {
    open_window();
    const auto before = w_->session()->model_ptr();
    DialogCatcher catcher;
    int expected = 0;
    auto refused = [&](const QString& path, const QString& problem) {
      w_->open_path(path);
      ++expected;
      QTRY_VERIFY_WITH_TIMEOUT(catcher.texts.size() == expected, 3 * kOpenTimeoutMs);
      const QString& t = catcher.texts.back();
      QVERIFY2(t.contains(QFileInfo(path).fileName()) && t.contains(problem), qPrintable(t));
      QCOMPARE(w_->session()->model_ptr(), before);
      QVERIFY(!w_->session()->stats());
    };
    const std::filesystem::path src = std::filesystem::path(RPTQ_RESOURCES_DIR).parent_path();
    const auto crashers = rptq::test::legacy_stats_crashers(src);
    QVERIFY(crashers.size() >= 5);
    for (std::size_t i = 0; i < 2; ++i) {  // two of them: each costs two isolated reads
      const QString p = tmp(QStringLiteral("crasher-%1.h5").arg(i));
      write_bytes(p, crashers[i].bytes);
      refused(p, QStringLiteral("damaged HDF5 file"));
    }
    // The legacy file cut short.
    const std::string seed = rptq::test::legacy_stats_seed(src);
    const QString cut = tmp(QStringLiteral("cut.h5"));
    write_bytes(cut, seed.substr(0, seed.size() / 3));
    refused(cut, QStringLiteral("cut.h5"));
    // A FIFO named like a statistics file: refused without blocking.
    const QString fifo = tmp(QStringLiteral("fifo.h5"));
    QCOMPARE(::mkfifo(fifo.toUtf8().constData(), 0600), 0);
    refused(fifo, QStringLiteral("FIFO"));
    // Still usable: calibration runs and Explore shows it.
    calibrate_small(tmp(QStringLiteral("after-damage.h5")));
    explore(0, 1, 4);
    QCOMPARE(w_->explore_page()->scatter()->distinct_colors(), 4);
  }

  void reopeningModelOffersLastStatistics() {
    open_window();
    rptq::ui::CalibratePage* c = w_->calibrate_page();
    QVERIFY(c->last_stats_offer().isEmpty());
    const QString out = tmp("offer.h5");
    calibrate_small(out);

    wait_open(stories_dir());
    QVERIFY(!w_->session()->stats());  // statistics belong to the model they measured
    QVERIFY(c->last_stats_offer().isEmpty());

    wait_open(rptq::ui::demo_model_dir());
    QCOMPARE(c->last_stats_offer(), out);
    QVERIFY(c->findChild<QWidget*>(QStringLiteral("lastStatsBanner"))->isVisible());
    QVERIFY(!w_->session()->stats());
    QTest::mouseClick(c->load_offered_button(), Qt::LeftButton);
    QTRY_VERIFY_WITH_TIMEOUT(w_->session()->stats(), 30000);
    QCOMPARE(w_->session()->stats_path(), out);
    QCOMPARE(w_->session()->stats()->settings.samples, 8);

    // And across a restart of the workbench.
    w_.reset();
    open_window();
    QCOMPARE(w_->calibrate_page()->last_stats_offer(), out);
  }

  // On a machine whose GPU 0 cannot run the kernels and whose GPU 1 can (a faked device list), the device choice
  // offers GPU 1 by its ordinal, and the engine's check accepts that ordinal and refuses 0 by name.
  void deviceChoiceTakesTheSupportedGpusOrdinal() {
    rptq::GpuInfo old_gpu, new_gpu;
    old_gpu.ordinal = 0;
    old_gpu.name = "Old GPU";
    old_gpu.cc_major = 6;
    old_gpu.cc_minor = 1;
    old_gpu.why_not = "sm_61; this build has kernels for sm_80";
    new_gpu.ordinal = 1;
    new_gpu.name = "New GPU";
    new_gpu.cc_major = 9;
    new_gpu.supported = true;
    const rptq::DeviceInfo info = rptq::make_device_info(true, {old_gpu, new_gpu});
    const rptq::ui::GpuAvailability g = rptq::ui::gpu_availability(info);
    QVERIFY(g.usable);
    QCOMPARE(g.device, 1);
    QCOMPARE(g.name, QStringLiteral("New GPU"));
    QCOMPARE(info.pick_gpu(g.device), 1);
    QVERIFY_THROWS_EXCEPTION(rptq::InputError, info.pick_gpu(0));
    const rptq::ui::GpuAvailability none = rptq::ui::gpu_availability(rptq::make_device_info(true, {old_gpu}));
    QVERIFY(!none.usable);
    QVERIFY2(none.reason.contains(QStringLiteral("sm_61")), qPrintable(none.reason));
  }

  // Both steps list the GPU. Without a usable one (this build or machine) it is disabled, saying why, the CPU is
  // chosen and a calibration runs on it; with one, it is named.
  void deviceChoiceListsGpuWithReason() {
    open_window();
    const rptq::DeviceInfo info = rptq::device_info();
    for (DeviceChoice* d : {w_->calibrate_page()->device_choice(), w_->quantize_page()->device_choice(),
                            w_->compare_page()->device_choice()}) {
      QTRY_VERIFY_WITH_TIMEOUT(d->probed(), 30000);
      QComboBox* combo = d->combo();
      QCOMPARE(combo->count(), 2);
      QVERIFY2(combo->itemText(DeviceChoice::CpuEntry).startsWith(QStringLiteral("CPU (")),
               qPrintable(combo->itemText(DeviceChoice::CpuEntry)));
      QVERIFY(combo->itemText(DeviceChoice::CpuEntry).contains(QStringLiteral("thread")));
      QCOMPARE(combo->currentIndex(), int(DeviceChoice::CpuEntry));  // nothing saved: the CPU
      QCOMPARE(d->device(), rptq::Device::CPU);
      auto* items = qobject_cast<QStandardItemModel*>(combo->model());
      QVERIFY(items);
      if (info.cuda_devices > 0) {
        QVERIFY(items->item(DeviceChoice::GpuEntry)->isEnabled());
        QVERIFY(d->gpu().usable && !d->gpu().name.isEmpty());
        QCOMPARE(combo->itemText(DeviceChoice::GpuEntry), QStringLiteral("GPU: ") + d->gpu().name);
        continue;
      }
      QVERIFY(!items->item(DeviceChoice::GpuEntry)->isEnabled());
      QVERIFY(!d->gpu().usable);
      QVERIFY(!d->gpu().reason.isEmpty());
      QCOMPARE(d->gpu().reason, QString::fromStdString(info.unavailable_reason));
      QVERIFY(combo->itemData(DeviceChoice::GpuEntry, Qt::ToolTipRole).toString().contains(d->gpu().reason));
      QVERIFY(d->note()->text().contains(d->gpu().reason));
      // The keyboard skips the disabled entry.
      QTest::keyClick(combo, Qt::Key_Down);
      QCOMPARE(combo->currentIndex(), int(DeviceChoice::CpuEntry));
    }
    // Generation runs on the Compare step's device, and its button says where.
    QVERIFY(w_->compare_page()->device_choice()->combo()->toolTip().contains(QStringLiteral("generation")));
    if (w_->compare_page()->device_choice()->device() == rptq::Device::CPU)
      QVERIFY(w_->compare_page()->generate_button()->toolTip().contains(QStringLiteral("CPU")));
    calibrate_small(tmp("cpu.h5"));
    QVERIFY(w_->calibrate_page()->status_label()->text().startsWith(QStringLiteral("Calibrated")));
  }

  // With a usable GPU (or tools/cuda-emu's emulated one): calibration, the comparison and the side-by-side
  // generation run on it from the GUI, and give the CPU's results (ranges within 1e-4 * (1 + |v|), perplexities
  // within 1e-3 relative: the GPU tests' bounds; the same generated text); the status bar names the GPU. Skipped
  // without one, as in CI.
  void calibratesAndComparesOnGpu() {
    if (rptq::device_info().cuda_devices == 0) QSKIP("no usable GPU");
    open_window();
    // The status bar: the GPU's name and free memory ("NAME · 4.0 GiB free of 8.0 GiB").
    const auto* device_label = w_->findChild<QLabel*>(QStringLiteral("deviceLabel"));
    QVERIFY(device_label);
    QTRY_VERIFY_WITH_TIMEOUT(device_label->text().contains(QStringLiteral(" free of ")), 30000);
    calibrate_small(tmp("cpu.h5"));
    const rptq::ChannelStats cpu = *w_->session()->stats();
    DeviceChoice* d = w_->calibrate_page()->device_choice();
    QTRY_VERIFY_WITH_TIMEOUT(d->probed(), 30000);
    d->combo()->setCurrentIndex(DeviceChoice::GpuEntry);
    QCOMPARE(d->device(), rptq::Device::CUDA);
    calibrate_small(tmp("gpu.h5"));
    const rptq::ChannelStats& gpu = *w_->session()->stats();
    QCOMPARE(gpu.ranges.size(), cpu.ranges.size());
    double worst = 0;
    for (std::size_t l = 0; l < cpu.ranges.size(); ++l)
      for (rptq::Tap t : rptq::kAllTaps) {
        const rptq::TapRanges& a = cpu.ranges[l].tap(t);
        const rptq::TapRanges& b = gpu.ranges[l].tap(t);
        QCOMPARE(b.max.size(), a.max.size());
        const auto diff = [](float x, float y) { return std::fabs(double(x) - double(y)) / (1 + std::fabs(double(y))); };
        for (std::size_t c = 0; c < a.max.size(); ++c)
          worst = std::max({worst, diff(b.max[c], a.max[c]), diff(b.min[c], a.min[c]),
                            diff(b.ema_max[c], a.ema_max[c]), diff(b.ema_min[c], a.ema_min[c])});
      }
    QVERIFY2(worst <= 1e-4, qPrintable(QStringLiteral("worst range difference %1").arg(worst)));
    // Quantize on the GPU too (its calibration passes), then on the CPU, which the comparison below uses.
    DeviceChoice* qd = w_->quantize_page()->device_choice();
    QTRY_VERIFY_WITH_TIMEOUT(qd->probed(), 30000);
    qd->combo()->setCurrentIndex(DeviceChoice::GpuEntry);
    QCOMPARE(qd->device(), rptq::Device::CUDA);
    quantize_small();
    // The same packed layout as the CPU's (the clusters may differ; test_cuda_quantize checks the numbers).
    const std::size_t gpu_bytes = w_->session()->quantized()->model().weight_bytes();
    qd->combo()->setCurrentIndex(DeviceChoice::CpuEntry);
    quantize_small();
    QCOMPARE(w_->session()->quantized()->model().weight_bytes(), gpu_bytes);
    rptq::ui::ComparePage* c = w_->compare_page();
    w_->go_to(MainWindow::CompareStep);
    c->windows_spin()->setValue(2);
    c->seqlen_spin()->setValue(64);
    rptq::CompareResult on[2];
    for (int gpu_run : {0, 1}) {
      QTRY_VERIFY_WITH_TIMEOUT(c->device_choice()->probed(), 30000);
      c->device_choice()->combo()->setCurrentIndex(gpu_run ? DeviceChoice::GpuEntry : DeviceChoice::CpuEntry);
      QTest::mouseClick(c->compare_button(), Qt::LeftButton);
      QVERIFY(c->comparing());
      QTRY_VERIFY_WITH_TIMEOUT(!c->comparing(), kCalibrateTimeoutMs);
      QVERIFY(c->result());
      on[gpu_run] = *c->result();
    }
    QVERIFY(std::fabs(on[1].fp.ppl - on[0].fp.ppl) <= 1e-3 * on[0].fp.ppl);
    QVERIFY(std::fabs(on[1].q.ppl - on[0].q.ppl) <= 1e-3 * on[0].q.ppl);
    qInfo("GPU against CPU: worst range difference %.3g; perplexity FP %.6f / %.6f, quantized %.6f / %.6f", worst,
          on[1].fp.ppl, on[0].fp.ppl, on[1].q.ppl, on[0].q.ppl);

    // Side-by-side generation on the GPU (the device chosen above), then on the CPU: both sides stream their
    // tokens, and greedy decoding picks the same text on both devices (the logits agree to ~1e-6; a near tie
    // could break it, which these models and prompt do not have).
    c->prompt_edit()->setText(QStringLiteral("Once upon a time"));
    c->new_tokens_spin()->setValue(12);
    QString text[2][2];  // [gpu_run][side]
    for (int gpu_run : {1, 0}) {
      c->device_choice()->combo()->setCurrentIndex(gpu_run ? DeviceChoice::GpuEntry : DeviceChoice::CpuEntry);
      QVERIFY(c->generate_button()->toolTip().contains(gpu_run ? QStringLiteral("GPU") : QStringLiteral("CPU")));
      QTest::mouseClick(c->generate_button(), Qt::LeftButton);
      QVERIFY(c->generating());
      if (gpu_run) QVERIFY(c->generation_status()->text().contains(QStringLiteral("GPU")));
      QTRY_VERIFY_WITH_TIMEOUT(!c->generating(), kCalibrateTimeoutMs);
      QVERIFY2(c->generation_status()->text().contains(QStringLiteral("new tokens")),
               qPrintable(c->generation_status()->text()));
      text[gpu_run][0] = c->fp_pane()->toPlainText();
      text[gpu_run][1] = c->quantized_pane()->toPlainText();
      for (const QString& t : text[gpu_run])
        QVERIFY2(t.startsWith(QStringLiteral("Once upon a time")) && t.size() > 20, qPrintable(t));
    }
    QCOMPARE(text[1][0], text[0][0]);
    QCOMPARE(text[1][1], text[0][1]);
    qInfo("GPU generation: FP \"%s\"; quantized \"%s\"", qPrintable(text[1][0]), qPrintable(text[1][1]));

    // Stopped while the FP side runs on the GPU: the quantized side then ends at once, with no tokens.
    c->device_choice()->combo()->setCurrentIndex(DeviceChoice::GpuEntry);
    c->new_tokens_spin()->setValue(4000);
    bool stopped = false;
    auto conn = connect(c->generation_job(), &rptq::ui::GenerationJob::token, this, [&] {
      if (!stopped && c->generated_tokens(0) >= 2) {
        stopped = true;
        c->stop();
      }
    });
    QTest::mouseClick(c->generate_button(), Qt::LeftButton);
    QTRY_VERIFY_WITH_TIMEOUT(!c->generating(), kCalibrateTimeoutMs);
    disconnect(conn);
    QVERIFY(stopped);
    QVERIFY2(c->generation_status()->text().startsWith(QStringLiteral("Stopped")),
             qPrintable(c->generation_status()->text()));
    QVERIFY(c->generated_tokens(0) < 4000);
    QCOMPARE(c->generated_tokens(1), 0);
  }

  // The device chosen in each step is kept across a restart, also through a start on which the GPU is unusable.
  void deviceChoicePersistsAcrossRestart() {
    const bool real_gpu = rptq::device_info().cuda_devices > 0;
    rptq::ui::GpuAvailability stand_in;  // stands in for a GPU on machines without one
    stand_in.usable = true;
    stand_in.name = QStringLiteral("Test GPU");
    open_window();
    DeviceChoice* cal = w_->calibrate_page()->device_choice();
    DeviceChoice* cmp = w_->compare_page()->device_choice();
    QTRY_VERIFY_WITH_TIMEOUT(cal->probed() && cmp->probed(), 30000);
    cal->set_gpu(stand_in);
    cmp->set_gpu(stand_in);
    QCOMPARE(cal->combo()->itemText(DeviceChoice::GpuEntry), QStringLiteral("GPU: Test GPU"));
    QVERIFY(cal->note()->text().isEmpty());
    cal->combo()->setCurrentIndex(DeviceChoice::GpuEntry);
    QCOMPARE(cal->device(), rptq::Device::CUDA);
    QCOMPARE(cmp->device(), rptq::Device::CPU);  // each step has its own choice

    w_.reset();
    open_window();
    cal = w_->calibrate_page()->device_choice();
    cmp = w_->compare_page()->device_choice();
    QTRY_VERIFY_WITH_TIMEOUT(cal->probed() && cmp->probed(), 30000);
    QCOMPARE(cal->preference(), QStringLiteral("cuda"));
    QCOMPARE(cmp->preference(), QStringLiteral("cpu"));
    // Without a GPU the CPU runs meanwhile; the GPU choice comes back once one is usable.
    QCOMPARE(cal->combo()->currentIndex(), int(real_gpu ? DeviceChoice::GpuEntry : DeviceChoice::CpuEntry));
    cal->set_gpu(stand_in);
    cmp->set_gpu(stand_in);
    QCOMPARE(cal->combo()->currentIndex(), int(DeviceChoice::GpuEntry));
    QCOMPARE(cmp->combo()->currentIndex(), int(DeviceChoice::CpuEntry));
    // Back to the CPU and to the GPU, in the other step: kept too.
    cal->combo()->setCurrentIndex(DeviceChoice::CpuEntry);
    cmp->combo()->setCurrentIndex(DeviceChoice::GpuEntry);

    w_.reset();
    open_window();
    cal = w_->calibrate_page()->device_choice();
    cmp = w_->compare_page()->device_choice();
    QTRY_VERIFY_WITH_TIMEOUT(cal->probed() && cmp->probed(), 30000);
    QCOMPARE(cal->preference(), QStringLiteral("cpu"));
    QCOMPARE(cmp->preference(), QStringLiteral("cuda"));
    cal->set_gpu(stand_in);
    cmp->set_gpu(stand_in);
    QCOMPARE(cal->combo()->currentIndex(), int(DeviceChoice::CpuEntry));
    QCOMPARE(cmp->combo()->currentIndex(), int(DeviceChoice::GpuEntry));
  }

  void rejectsStatisticsOfAnotherModel() {
    open_window();
    const QString out = tmp("opt.h5");
    calibrate_small(out);
    wait_open(stories_dir());
    DialogCatcher catcher;
    w_->calibrate_page()->load_statistics(out);
    QTRY_VERIFY_WITH_TIMEOUT(catcher.texts.size() == 1, 30000);
    QVERIFY(!w_->session()->stats());
    // Opening the file as a document says the same.
    w_->open_path(out);
    QTRY_VERIFY_WITH_TIMEOUT(catcher.texts.size() == 2, 30000);
    QVERIFY(!w_->session()->stats());
    // With its own model it opens straight into Explore.
    wait_open(rptq::ui::demo_model_dir());
    w_->open_path(out);
    QTRY_VERIFY_WITH_TIMEOUT(w_->session()->stats() && w_->explore_page()->up_to_date(), 30000);
    QCOMPARE(w_->current_step(), MainWindow::ExploreStep);
    QCOMPARE(catcher.texts.size(), 2);
  }

  void exportsChartsAsPngAndSvg() {
    open_window();
    calibrate_small(tmp("export.h5"));
    explore(0, 1, 8);
    rptq::ui::ScatterChart* sc = w_->explore_page()->scatter();
    QString error;
    const QString png = tmp("scatter.png");
    QVERIFY2(sc->export_to(png, &error), qPrintable(error));
    QImage img(png);
    QVERIFY(!img.isNull());
    QCOMPARE(img.size(), sc->viewport()->size() * 2);
    // Not blank: the clusters' colours are in it.
    std::set<QRgb> colors;
    for (int y = 0; y < img.height(); y += 3)
      for (int x = 0; x < img.width(); x += 3) colors.insert(img.pixel(x, y));
    QVERIFY(colors.size() > 20);
    if (rptq::ui::ChartView::svg_supported()) {
      const QString svg = tmp("scatter.svg");
      QVERIFY2(sc->export_to(svg, &error), qPrintable(error));
      QFile f(svg);
      QVERIFY(f.open(QIODevice::ReadOnly));
      const QByteArray bytes = f.readAll();
      QVERIFY(bytes.contains("<svg"));
      QVERIFY(bytes.contains("RPTQ Workbench chart"));
    } else {
      QVERIFY(!sc->export_to(tmp("scatter.svg"), &error));
      QVERIFY(error.contains(QStringLiteral("Qt6Svg")));
    }
    QVERIFY(w_->explore_page()->ranges()->reordered_view()->export_to(tmp("reordered.png"), &error));
    QVERIFY(!QImage(tmp("reordered.png")).isNull());
    // An unwritable place fails cleanly.
    QVERIFY(!sc->export_to(tmp("no/such/folder/x.png"), &error));
    QVERIFY(!error.isEmpty());
  }

  void quantizesWithPreset() {
    open_window();
    rptq::ui::QuantizePage* q = w_->quantize_page();
    // Without statistics the page is greyed out and says why.
    w_->go_to(MainWindow::QuantizeStep);
    QVERIFY(!q->run_button()->isEnabled());
    QVERIFY(q->findChild<QLabel*>(QStringLiteral("quantizeNote"))->text().contains(QStringLiteral("statistics")));
    calibrate_small(tmp("stats.h5"));
    quantize_small(QStringLiteral("W4A4KV"));
    const rptq::ui::QuantizationSummary* s = w_->session()->quantization_summary();
    QVERIFY(s);
    QCOMPARE(QString::fromStdString(s->config.name), QStringLiteral("W4A4KV"));
    QCOMPARE(s->config.weight_method, rptq::WeightMethod::RTN);
    QCOMPARE(static_cast<int>(s->layers.size()), 4);
    QVERIFY(s->quantized_weight_bytes < s->fp_weight_bytes);
    QVERIFY(q->summary_label()->text().contains(QStringLiteral("W4A4KV")));
    QVERIFY(q->summary_label()->text().contains(QStringLiteral("MiB")));
    QCOMPARE(q->layers_table()->rowCount(), 4);
    QVERIFY(q->layers_table()->item(0, 1)->text().contains(QStringLiteral("fc1 4-bit")));
    QVERIFY(q->layers_table()->item(0, 2)->text().contains(QStringLiteral("k 4-bit")));
    QCOMPARE(q->progress_bar()->value(), 1000);
    // Custom bits: the widgets describe the setting.
    QVERIFY(q->select_preset(QStringLiteral("custom")));
    q->wbits_combo()->setCurrentIndex(q->wbits_combo()->findData(3));
    q->abits_combo()->setCurrentIndex(q->abits_combo()->findData(6));
    q->kvbits_combo()->setCurrentIndex(q->kvbits_combo()->findData(4));
    q->clusters_spin(1)->setValue(8);
    const rptq::QuantConfig c = q->config();
    QCOMPARE(c.wbits, 3);
    QCOMPARE(c.bits(rptq::Tap::FfnInput), 6);
    QCOMPARE(c.kv_bits(), 4);
    QCOMPARE(c.clusters_of(1), 8);
    save_shot(w_.get(), QStringLiteral("quantized"));
  }

  // Mixed precision: the overrides table turns rows into --override specs (a bad row is red with the reason and
  // Quantize refuses it), and the quantized layers get what the rows say.
  void quantizesWithOverrides() {
    open_window();
    calibrate_small(tmp("stats.h5"));
    rptq::ui::QuantizePage* q = w_->quantize_page();
    w_->go_to(MainWindow::QuantizeStep);
    rptq::ui::OverridesEditor* ed = q->overrides_editor();
    QVERIFY(ed);
    QCOMPARE(ed->table()->rowCount(), 0);
    // Add a row and edit its cells as a user would: layer 1's ffn_hidden in float, its fc2 at 8 bits.
    QTest::mouseClick(ed->add_button(), Qt::LeftButton);
    QCOMPARE(ed->table()->rowCount(), 1);
    ed->table()->item(0, 0)->setText(QStringLiteral("1"));
    ed->table()->item(0, 1)->setText(QStringLiteral("ffn_hidden"));
    ed->table()->item(0, 2)->setText(QStringLiteral("abits=16,wbits=8"));
    QCOMPARE(q->overrides(), QStringList{QStringLiteral("layers=1,ffn_hidden:abits=16,wbits=8")});
    QVERIFY(ed->error().isEmpty());
    // A bad row: K is the KV cache; the row is flagged, the description says why, Quantize refuses.
    QTest::mouseClick(ed->add_button(), Qt::LeftButton);
    ed->table()->item(1, 1)->setText(QStringLiteral("k"));
    QVERIFY(ed->error().contains(QStringLiteral("Row 2")));
    QVERIFY(ed->error().contains(QStringLiteral("KV cache")));
    QVERIFY(q->findChild<QLabel*>(QStringLiteral("configDescription"))->text().contains(QStringLiteral("KV cache")));
    {
      DialogCatcher catcher;
      QTest::mouseClick(q->run_button(), Qt::LeftButton);
      QTRY_COMPARE(catcher.texts.size(), 1);
      QVERIFY(catcher.texts.front().contains(QStringLiteral("KV cache")));
    }
    QVERIFY(!q->running());
    // Replace the bad row with a cluster override of layer 2's R5 (what set_overrides does, as the Sensitivity
    // step's suggestion): each spec becomes a row.
    q->set_overrides({QStringLiteral("layers=1,ffn_hidden:abits=16,wbits=8"), QStringLiteral("layers=2,R5:clusters=3")});
    QCOMPARE(ed->table()->rowCount(), 2);
    QCOMPARE(ed->table()->item(1, 0)->text(), QStringLiteral("2"));
    QCOMPARE(ed->table()->item(1, 1)->text(), QStringLiteral("R5"));
    QCOMPARE(ed->table()->item(1, 2)->text(), QStringLiteral("clusters=3"));
    QVERIFY(ed->error().isEmpty());
    QVERIFY(q->config().describe().find("overrides layers=1,ffn_hidden:abits=16,wbits=8;layers=2,R5:clusters=3") !=
            std::string::npos);
    quantize_small(QStringLiteral("W4A8"));
    const rptq::QuantizedModel* m = w_->session()->quantized();
    QVERIFY(m);
    QCOMPARE(m->config().overrides.size(), std::size_t{2});
    for (int l = 0; l < m->layers(); ++l) {
      const rptq::TapQuantizer& h = m->layer(l).taps[static_cast<std::size_t>(rptq::Tap::FfnHidden)];
      QCOMPARE(h.bits, l == 1 ? 16 : 8);
      QCOMPARE(m->layer(l).reorder.r5.clusters(), l == 2 ? 3 : q->clusters_spin(5)->value());
      for (const rptq::NamedLinear& n : rptq::layer_linears(m->model().config(), m->model().layer(l)))
        if (std::string(n.name) == "fc2") {
          QVERIFY(n.weights->packed);
          QCOMPARE(n.weights->packed->bits, l == 1 ? 8 : 4);
        }
    }
    // The result table shows it.
    QVERIFY(q->layers_table()->item(1, 1)->text().contains(QStringLiteral("fc2 8-bit")));
    QVERIFY(q->layers_table()->item(1, 2)->text().contains(QStringLiteral("ffn_hidden FP")));
    QVERIFY(q->layers_table()->item(2, 2)->text().contains(QStringLiteral("ffn_hidden 8-bit (3 clusters)")));
    save_shot(w_.get(), QStringLiteral("quantize-overrides"));
    // Explore's "applied by quantization" view clusters each layer with that layer's count.
    rptq::ui::ExplorePage* e = w_->explore_page();
    w_->go_to(MainWindow::ExploreStep);
    e->source_combo()->setCurrentIndex(1);
    QVERIFY(e->showing_applied());
    for (int layer : {1, 2}) {
      e->select(layer, 5, 7);
      QTRY_VERIFY_WITH_TIMEOUT(e->up_to_date(), 30000);
      QVERIFY(e->shown());
      QCOMPARE(e->shown()->request.layer, layer);
      QCOMPARE(e->shown()->request.k, layer == 2 ? 3 : q->clusters_spin(5)->value());
    }
  }

  // After Quantize, Explore's "applied by quantization" view shows exactly the partition the quantized model uses
  // (its re-measured ranges, its k and seed), labelled as such; without a quantized model it is not offered.
  void exploreShowsAppliedClusters() {
    open_window();
    calibrate_small(tmp("stats.h5"));
    rptq::ui::ExplorePage* e = w_->explore_page();
    w_->go_to(MainWindow::ExploreStep);
    e->source_combo()->setCurrentIndex(1);
    QVERIFY(!e->showing_applied());
    QCOMPARE(e->source_combo()->currentIndex(), 0);
    quantize_small(QStringLiteral("W4A8"));
    const rptq::QuantizedModel* q = w_->session()->quantized();
    QVERIFY(q);
    w_->go_to(MainWindow::ExploreStep);
    e->source_combo()->setCurrentIndex(1);
    QVERIFY(e->showing_applied());
    QVERIFY(!e->k_spin()->isEnabled());
    for (int layer : {0, 3})
      for (int index : {1, 2, 3, 5}) {
        e->select(layer, index, 7);  // k is the quantization's in this view
        QTRY_VERIFY_WITH_TIMEOUT(e->up_to_date(), 30000);
        const rptq::ui::ClusterSnapshot* s = e->shown();
        QVERIFY(s);
        QVERIFY(s->request.applied);
        QCOMPARE(s->request.layer, layer);
        QCOMPARE(s->request.k, q->config().clusters_of(index));
        QCOMPARE(e->k_spin()->value(), q->config().clusters_of(index));
        QVERIFY2(s->order == q->layer(layer).reorder.index(index).order,
                 qPrintable(QStringLiteral("layer %1 R%2: Explore's partition is not the applied one").arg(layer).arg(index)));
        QVERIFY(e->findChild<QLabel*>(QStringLiteral("exploreInfo"))->text().startsWith(QStringLiteral("Applied by quantization")));
      }
    save_shot(w_.get(), QStringLiteral("explore-applied"));
    // Back to the calibration ranges: k is free again; a new statistics file drops the quantized model and the view.
    e->source_combo()->setCurrentIndex(0);
    QVERIFY(e->k_spin()->isEnabled());
    w_->session()->clear_quantized();
    QVERIFY(!e->showing_applied());
  }

  void comparesFpAndQuantized() {
    open_window();
    calibrate_small(tmp("stats.h5"));
    quantize_small();
    rptq::ui::ComparePage* c = w_->compare_page();
    w_->go_to(MainWindow::CompareStep);
    QCOMPARE(w_->current_step(), MainWindow::CompareStep);
    c->windows_spin()->setValue(2);
    c->seqlen_spin()->setValue(64);
    QVERIFY(c->compare_button()->isEnabled());
    QTest::mouseClick(c->compare_button(), Qt::LeftButton);
    QVERIFY(c->comparing());
    QTRY_VERIFY_WITH_TIMEOUT(!c->comparing(), kCalibrateTimeoutMs);
    QVERIFY(c->result());
    const rptq::CompareResult& r = *c->result();
    QVERIFY(std::isfinite(r.fp.ppl) && r.fp.ppl > 1);
    QVERIFY(std::isfinite(r.q.ppl) && r.q.ppl > 1);
    QVERIFY(std::isfinite(r.kl) && r.kl >= 0);
    QVERIFY(r.top1_agreement >= 0 && r.top1_agreement <= 1);
    QCOMPARE(r.fp.windows, 2);
    QTableWidget* t = c->metrics_table();
    bool ok = false;
    t->item(rptq::ui::ComparePage::PerplexityRow, 0)->text().toDouble(&ok);
    QVERIFY(ok);
    QVERIFY(t->item(rptq::ui::ComparePage::KlRow, 1)->text().contains(QStringLiteral("nats")));
    QVERIFY(t->item(rptq::ui::ComparePage::Top1Row, 1)->text().endsWith(QLatin1Char('%')));
    QVERIFY(t->item(rptq::ui::ComparePage::TokensPerSecondRow, 1)->text().toDouble() > 0);
    QVERIFY(t->item(rptq::ui::ComparePage::WeightMemoryRow, 1)->text().contains(QStringLiteral("MiB")));
    // Several texts in one table: by default the bundled WikiText-2 and C4 samples, one row each, the first the
    // metrics table's; the KL percentiles in order.
    QCOMPARE(c->texts().size(), 2);
    QCOMPARE(static_cast<int>(c->text_results().size()), 2);
    QTableWidget* tt = c->texts_table();
    QCOMPARE(tt->rowCount(), 2);
    QCOMPARE(tt->item(0, rptq::ui::ComparePage::TextNameColumn)->text(), QStringLiteral("wikitext2-sample.txt"));
    QCOMPARE(tt->item(1, rptq::ui::ComparePage::TextNameColumn)->text(), QStringLiteral("c4-sample.txt"));
    QCOMPARE(tt->item(0, rptq::ui::ComparePage::TextPplQColumn)->text(), QString::number(r.q.ppl, 'f', 3));
    for (const rptq::CompareResult& x : c->text_results()) {
      QCOMPARE(x.fp.windows, 2);
      QVERIFY(x.kl_p50 <= x.kl_p90 && x.kl_p90 <= x.kl_p99 && x.kl_p99 <= x.kl_max);
      QVERIFY(x.kl_max >= x.kl);  // the mean is at most the largest
      QVERIFY(std::abs(x.top1_changed - (1.0 - x.top1_agreement)) < 1e-12);
    }
    QCOMPARE(tt->item(1, rptq::ui::ComparePage::TextP90Column)->text(),
             QString::number(c->text_results()[1].kl_p90, 'f', 5));
    // The two texts differ: the C4 row is not a copy of the WikiText-2 row.
    QVERIFY(c->text_results()[0].q.ppl != c->text_results()[1].q.ppl);
    save_shot(w_.get(), QStringLiteral("compare-texts"));
    // One text alone (a ";"-list of one) gives one row.
    c->data_edit()->setText(rptq::ui::resources_dir() + QStringLiteral("/data/c4-sample.txt"));
    QTest::mouseClick(c->compare_button(), Qt::LeftButton);
    QTRY_VERIFY_WITH_TIMEOUT(!c->comparing(), kCalibrateTimeoutMs);
    QCOMPARE(c->texts_table()->rowCount(), 1);
    QCOMPARE(c->result()->q.ppl, c->text_results()[0].q.ppl);
    // The memory chart: FP16 against the quantization, following the sliders.
    rptq::ui::MemoryChart* m = c->memory_chart();
    QVERIFY(m->fp_estimate() && m->quantized_estimate());
    QVERIFY(m->quantized_estimate()->total_bytes < m->fp_estimate()->total_bytes);
    const std::uint64_t kv = m->fp_estimate()->kv_cache_bytes;
    m->batch_slider()->setValue(m->batch_slider()->value() * 2);
    QCOMPARE(m->fp_estimate()->kv_cache_bytes, 2 * kv);
    m->model_combo()->setCurrentIndex(m->model_combo()->findData(QStringLiteral("opt-13b")));
    QVERIFY(m->fp_estimate()->weights_bytes > 20ull << 30);
  }

  // The run history: a quantization and a comparison are recorded with their setting and results, listed for the
  // model (with a run `rptq` recorded into the same file), put side by side, and a run's setting re-opened.
  void historyListsRunsAndReopensOne() {
    open_window();
    calibrate_small(tmp("stats.h5"));
    rptq::ui::QuantizePage* q = w_->quantize_page();
    w_->go_to(MainWindow::QuantizeStep);
    q->set_overrides({QStringLiteral("layers=1,ffn_hidden:abits=16")});
    quantize_small(QStringLiteral("W4A8"));
    rptq::ui::ComparePage* c = w_->compare_page();
    w_->go_to(MainWindow::CompareStep);
    c->windows_spin()->setValue(2);
    c->seqlen_spin()->setValue(64);
    QTest::mouseClick(c->compare_button(), Qt::LeftButton);
    QTRY_VERIFY_WITH_TIMEOUT(!c->comparing(), kCalibrateTimeoutMs);
    QVERIFY(c->result());
    const rptq::CompareResult r = *c->result();
    // A run of another model and one that `rptq sweep` recorded for this model, in the same file.
    const rptq::RunHistory h = w_->session()->history();
    h.append(rptq::new_run_record("compare", "/elsewhere/other-model", "", rptq::QuantConfig::preset("W4A4")));
    rptq::RunRecord cli = rptq::new_run_record("sweep", w_->session()->model()->path.toStdString(), "",
                                               rptq::QuantConfig::preset("W4A4"));
    cli.results = {{"points", nlohmann::json::array()}};
    h.append(cli);

    rptq::ui::HistoryPage* p = w_->history_page();
    w_->go_to(MainWindow::HistoryStep);
    QCOMPARE(w_->current_step(), MainWindow::HistoryStep);
    p->reload();
    QCOMPARE(static_cast<int>(p->runs().size()), 3);  // not the other model's
    QCOMPARE(p->runs_table()->rowCount(), 3);
    QVERIFY(p->status_label()->text().contains(QStringLiteral("3 runs")));
    QCOMPARE(w_->step_list()->item(MainWindow::HistoryStep)->text().contains(QStringLiteral("3 runs")), true);
    const rptq::RunRecord& quant = p->runs()[0];
    const rptq::RunRecord& comp = p->runs()[1];
    QCOMPARE(QString::fromStdString(quant.kind), QStringLiteral("quantize"));
    QCOMPARE(QString::fromStdString(comp.kind), QStringLiteral("compare"));
    QCOMPARE(QString::fromStdString(comp.setting.overrides_spec()), QStringLiteral("layers=1,ffn_hidden:abits=16"));
    QCOMPARE(QString::fromStdString(comp.stats), QFileInfo(tmp("stats.h5")).absoluteFilePath());
    QCOMPARE(comp.results["ppl_fp"].get<double>(), r.fp.ppl);
    QCOMPARE(comp.results["ppl_q"].get<double>(), r.q.ppl);
    QCOMPARE(comp.results["kl"].get<double>(), r.kl);
    QCOMPARE(comp.options["windows"].get<int>(), 2);
    // The table row of the comparison shows its numbers as the Compare step did.
    int row = -1;
    for (int i = 0; i < p->runs_table()->rowCount(); ++i)
      if (p->run_at_row(i) && p->run_at_row(i)->id == comp.id) row = i;
    QVERIFY(row >= 0);
    QCOMPARE(p->runs_table()->item(row, 5)->text(), QString::number(r.q.ppl, 'f', 3));
    QCOMPARE(p->runs_table()->item(row, 6)->text(), QString::number(r.kl, 'f', 5));
    // Sorting by KL puts the runs without one first.
    p->runs_table()->sortItems(6, Qt::AscendingOrder);
    QCOMPARE(p->run_at_row(2)->id, comp.id);
    // Two runs side by side: the sweep (W4A4) against the comparison (W4A8): the setting rows differ.
    p->select_runs({1, 2});
    QTableWidget* pair = p->side_by_side();
    QVERIFY(pair->rowCount() > 10);
    QVERIFY(!pair->isColumnHidden(2));
    bool setting_differs = false, kind_row = false;
    for (int i = 0; i < pair->rowCount(); ++i) {
      if (pair->item(i, 0)->text() == QStringLiteral("Setting")) {
        setting_differs = pair->item(i, 1)->background() != QBrush();
        QVERIFY(pair->item(i, 1)->text() != pair->item(i, 2)->text());
      }
      if (pair->item(i, 0)->text() == QStringLiteral("Kind")) kind_row = true;
    }
    QVERIFY(setting_differs);
    QVERIFY(kind_row);
    QVERIFY(!p->reopen_button()->isEnabled());  // two selected
    save_shot(w_.get(), QStringLiteral("history"));
    // Re-open the comparison's setting after the Quantize step moved on to another one.
    QVERIFY(q->select_preset(QStringLiteral("W4A4")));
    q->set_overrides({});
    p->select_runs({1});
    QVERIFY(p->reopen_button()->isEnabled());
    QTest::mouseClick(p->reopen_button(), Qt::LeftButton);
    QCOMPARE(w_->current_step(), MainWindow::QuantizeStep);
    QCOMPARE(q->preset_combo()->currentData().toString(), QStringLiteral("W4A8"));
    QCOMPARE(q->overrides(), QStringList{QStringLiteral("layers=1,ffn_hidden:abits=16")});
    QCOMPARE(q->config().describe(), comp.setting.describe());
    // Deleting a run removes it from the file.
    w_->go_to(MainWindow::HistoryStep);
    p->select_runs({2});
    QTest::mouseClick(p->delete_button(), Qt::LeftButton);
    QCOMPARE(static_cast<int>(p->runs().size()), 2);
    QCOMPARE(static_cast<int>(rptq::RunHistory::of_model(h.load(), w_->session()->model()->path.toStdString()).size()), 2);
  }

  void generatesSideBySide() {
    open_window();
    calibrate_small(tmp("stats.h5"));
    quantize_small(QStringLiteral("W4A4KV"));
    rptq::ui::ComparePage* c = w_->compare_page();
    w_->go_to(MainWindow::CompareStep);
    c->prompt_edit()->setText(QStringLiteral("The capital of France"));
    c->new_tokens_spin()->setValue(16);
    QTest::mouseClick(c->generate_button(), Qt::LeftButton);
    QVERIFY(c->generating());
    QVERIFY(!c->compare_button()->isEnabled());
    QTRY_VERIFY_WITH_TIMEOUT(!c->generating(), kCalibrateTimeoutMs);
    for (QTextEdit* pane : {c->fp_pane(), c->quantized_pane()}) {
      const QString text = pane->toPlainText();
      QVERIFY2(text.startsWith(QStringLiteral("The capital of France")), qPrintable(text));
      QVERIFY2(text.size() > QStringLiteral("The capital of France").size(), qPrintable(text));
    }
    QVERIFY(c->generation_status()->text().contains(QStringLiteral("new tokens")));
    QVERIFY(c->compare_button()->isEnabled());
    save_shot(w_.get(), QStringLiteral("generated"));
  }

  void exportsCheckpointAndOpensIt() {
    open_window();
    calibrate_small(tmp("stats.h5"));
    quantize_small();
    rptq::ui::ExportPage* e = w_->export_page();
    w_->go_to(MainWindow::ExportStep);
    const QString out = tmp("export/tiny-w4a8.h5");
    e->output_edit()->setText(out);
    QVERIFY(e->export_button()->isEnabled());
    QTest::mouseClick(e->export_button(), Qt::LeftButton);
    QVERIFY(e->exporting());
    QTRY_VERIFY_WITH_TIMEOUT(!e->exporting(), kCalibrateTimeoutMs);
    QVERIFY2(QFileInfo::exists(out), qPrintable(e->result_label()->text()));
    QVERIFY(e->result_label()->text().contains(QStringLiteral("tiny-w4a8.h5")));
    QVERIFY(e->result_label()->text().contains(QStringLiteral("MiB")) ||
            e->result_label()->text().contains(QStringLiteral("KiB")));
    // Exporting again asks before replacing: the dialog is declined, so nothing is written.
    {
      DialogCatcher catcher;
      const QDateTime before = QFileInfo(out).lastModified();
      QTest::mouseClick(e->export_button(), Qt::LeftButton);
      QTRY_VERIFY(!catcher.texts.isEmpty());
      QVERIFY(catcher.texts.front().contains(QStringLiteral("Replace")));
      QVERIFY(!e->exporting());
      QCOMPARE(QFileInfo(out).lastModified(), before);
    }
    QVERIFY(e->open_button()->isEnabled());
    QTest::mouseClick(e->open_button(), Qt::LeftButton);
    QTRY_VERIFY_WITH_TIMEOUT(!w_->opening() && w_->session()->model() && !w_->session()->model()->is_folder(),
                             kOpenTimeoutMs);
    QCOMPARE(w_->current_step(), MainWindow::ModelStep);
    QVERIFY(w_->session()->model()->checkpoint);
    QCOMPARE(QString::fromStdString(w_->session()->model()->checkpoint->preset), QStringLiteral("W4A8"));
  }

  // The Hugging Face folder export: it reports progress like the checkpoint export, and Cancel stops it with
  // nothing written, after which the page works as before.
  void exportsFolderAndCancelsIt() {
    open_window();
    calibrate_small(tmp("stats.h5"));
    quantize_small();
    rptq::ui::ExportPage* e = w_->export_page();
    w_->go_to(MainWindow::ExportStep);
    const int folder = e->format_combo()->findText(QStringLiteral("safetensors"), Qt::MatchContains);
    QVERIFY(folder >= 0);
    e->format_combo()->setCurrentIndex(folder);
    const QString cancelled = tmp("export/cancelled-folder");
    e->output_edit()->setText(cancelled);
    QTest::mouseClick(e->export_button(), Qt::LeftButton);
    QVERIFY(e->exporting());
    QCOMPARE(e->progress_bar()->maximum(), 1000);  // a real progress bar, not a busy one
    QVERIFY(e->cancel_button()->isEnabled());
    // At once: the worker has at most begun the first of the model's tensors.
    QTest::mouseClick(e->cancel_button(), Qt::LeftButton);
    QTRY_VERIFY_WITH_TIMEOUT(!e->exporting(), kCalibrateTimeoutMs);
    QVERIFY2(e->status_label()->text().contains(QStringLiteral("Cancelled")), qPrintable(e->status_label()->text()));
    QVERIFY(!QFileInfo::exists(cancelled));
    QVERIFY(!e->cancel_button()->isEnabled());

    const QString out = tmp("export/folder");
    e->output_edit()->setText(out);
    QVERIFY(e->export_button()->isEnabled());
    QTest::mouseClick(e->export_button(), Qt::LeftButton);
    QTRY_VERIFY_WITH_TIMEOUT(!e->exporting(), kCalibrateTimeoutMs);
    QVERIFY2(QFileInfo::exists(out + QStringLiteral("/model.safetensors")), qPrintable(e->status_label()->text()));
    QVERIFY(QFileInfo::exists(out + QStringLiteral("/config.json")));
    QVERIFY(e->result_label()->text().contains(QStringLiteral("Hugging Face folder")));
    QCOMPARE(e->progress_bar()->value(), 1000);
  }

  // Serving with vLLM / SGLang: the Quantize step makes the compressed-tensors quantization (W4A16, group 128,
  // BF16 scales), the Export step then offers that format only, and writes the folder with its quantization_config.
  void exportsCompressedTensorsForServing() {
    open_window();
    calibrate_small(tmp("stats.h5"));
    rptq::ui::QuantizePage* q = w_->quantize_page();
    w_->go_to(MainWindow::QuantizeStep);
    q->serving_combo()->setCurrentIndex(q->serving_combo()->findData(static_cast<int>(rptq::ServeTarget::CompressedTensors)));
    QVERIFY(q->group_combo()->isEnabled());
    QVERIFY(!q->clusters_spin(1)->isEnabled());  // only R3 and R5 are kept for serving
    QVERIFY(q->clusters_spin(5)->isEnabled());
    QVERIFY(q->select_preset(QStringLiteral("W4A8")));  // activations: the format cannot hold them
    QVERIFY(q->config_label()->text().contains(QStringLiteral("stay in float")));
    QVERIFY(q->select_preset(QStringLiteral("W4A16")));
    QCOMPARE(q->config().target, rptq::ServeTarget::CompressedTensors);
    QCOMPARE(q->config().weight_group, 128);
    QCOMPARE(q->config().scale_dtype, rptq::DType::BF16);
    QVERIFY(!q->config().act_order);
    q->set_weight_method(rptq::WeightMethod::GPTQ);
    q->act_order_check()->setChecked(true);  // the serving recommendation
    QVERIFY(q->config().act_order);
    QVERIFY(q->config_label()->text().contains(QStringLiteral("act-order")));
    q->act_order_check()->setChecked(false);  // quantize_small uses RTN, which has no column order
    quantize_small(QStringLiteral("W4A16"));
    save_shot(w_.get(), QStringLiteral("quantize-served"));
    rptq::ui::ExportPage* e = w_->export_page();
    w_->go_to(MainWindow::ExportStep);
    QCOMPARE(e->format_combo()->currentData().toInt(), static_cast<int>(rptq::ui::ExportPage::CompressedTensors));
    e->format_combo()->setCurrentIndex(e->format_combo()->findData(static_cast<int>(rptq::ui::ExportPage::Hdf5)));
    QVERIFY(!e->export_button()->isEnabled());  // RPTQ's checkpoint cannot hold a serving quantization
    e->format_combo()->setCurrentIndex(
        e->format_combo()->findData(static_cast<int>(rptq::ui::ExportPage::CompressedTensors)));
    QVERIFY(e->export_button()->isEnabled());
    const QString out = tmp("export/served");
    e->output_edit()->setText(out);
    QTest::mouseClick(e->export_button(), Qt::LeftButton);
    QTRY_VERIFY_WITH_TIMEOUT(!e->exporting(), kCalibrateTimeoutMs);
    QVERIFY2(QFileInfo::exists(out + QStringLiteral("/model.safetensors")), qPrintable(e->status_label()->text()));
    QFile cfg(out + QStringLiteral("/config.json"));
    QVERIFY(cfg.open(QIODevice::ReadOnly));
    const auto j = nlohmann::json::parse(cfg.readAll().toStdString());
    QCOMPARE(QString::fromStdString(j["quantization_config"]["format"].get<std::string>()), QStringLiteral("pack-quantized"));
    QCOMPARE(j["quantization_config"]["config_groups"]["group_0"]["weights"]["group_size"].get<int>(), 128);
    QVERIFY(e->result_label()->text().contains(QStringLiteral("vllm serve")));
    QVERIFY(!e->open_button()->isEnabled());
    save_shot(w_.get(), QStringLiteral("export-served"));
  }

  void cancelsQuantizationMidway() {
    open_window();
    calibrate_small(tmp("stats.h5"), 64, 256);
    rptq::ui::QuantizePage* q = w_->quantize_page();
    w_->go_to(MainWindow::QuantizeStep);
    QVERIFY(q->select_preset(QStringLiteral("W4A4")));
    q->set_weight_method(rptq::WeightMethod::GPTQ);  // slower: time to cancel
    QTest::mouseClick(q->run_button(), Qt::LeftButton);
    QVERIFY(q->running());
    QVERIFY(!q->run_button()->isEnabled());
    QVERIFY(q->cancel_button()->isEnabled());
    QTRY_VERIFY_WITH_TIMEOUT(q->job()->progress().stage == rptq::ui::QuantizeProgress::Stage::Quantizing &&
                                 q->job()->progress().layers.done >= 1,
                             kCalibrateTimeoutMs);
    const rptq::LayerwiseProgress at_cancel = q->job()->progress().layers;
    QVERIFY2(at_cancel.done < at_cancel.total, "the quantization ended before it could be cancelled");
    QTest::mouseClick(q->cancel_button(), Qt::LeftButton);
    QTRY_VERIFY_WITH_TIMEOUT(!q->running(), 30000);
    QVERIFY(q->status_label()->text().startsWith(QStringLiteral("Cancelled")));
    QVERIFY(!w_->session()->quantized());
    QVERIFY(q->run_button()->isEnabled());
    QVERIFY(!q->cancel_button()->isEnabled());
    QVERIFY(q->preset_combo()->isEnabled());
    // The UI is usable: a quick quantization runs to the end.
    quantize_small();
    QVERIFY(w_->compare_page()->compare_button()->isEnabled());
  }

  void cancelActionStopsEveryJob() {
    // Run > Cancel (Ctrl+.) stops whatever runs: a quantization, a comparison, a generation, an export.
    open_window();
    calibrate_small(tmp("stats.h5"), 64, 256);
    QAction* cancel = w_->cancel_action();
    QVERIFY(!cancel->isEnabled());
    QCOMPARE(cancel->shortcut(), QKeySequence(Qt::CTRL | Qt::Key_Period));
    // A quantization (GPTQ: slow enough to catch midway).
    rptq::ui::QuantizePage* q = w_->quantize_page();
    w_->go_to(MainWindow::QuantizeStep);
    QVERIFY(q->select_preset(QStringLiteral("W4A4")));
    q->set_weight_method(rptq::WeightMethod::GPTQ);
    QTest::mouseClick(q->run_button(), Qt::LeftButton);
    QVERIFY(q->running());
    QVERIFY(cancel->isEnabled());
    QVERIFY2(cancel->text().contains(QStringLiteral("Quantization")), qPrintable(cancel->text()));
    QTRY_VERIFY_WITH_TIMEOUT(q->job()->progress().layers.done >= 1, kCalibrateTimeoutMs);
    cancel->trigger();
    QTRY_VERIFY_WITH_TIMEOUT(!q->running(), 30000);
    QVERIFY(q->status_label()->text().startsWith(QStringLiteral("Cancelled")));
    QVERIFY(!cancel->isEnabled());

    quantize_small();
    rptq::ui::ComparePage* c = w_->compare_page();
    w_->go_to(MainWindow::CompareStep);
    // A comparison: stopped before its first window ends.
    c->windows_spin()->setValue(64);
    c->seqlen_spin()->setValue(256);
    QTest::mouseClick(c->compare_button(), Qt::LeftButton);
    QVERIFY(c->comparing());
    QVERIFY(cancel->isEnabled());
    cancel->trigger();
    QTRY_VERIFY_WITH_TIMEOUT(!c->comparing(), 30000);
    QVERIFY(!c->result());
    QCOMPARE(c->findChild<QLabel*>(QStringLiteral("compareStatus"))->text(), QStringLiteral("Stopped."));
    QVERIFY(!cancel->isEnabled());
    // A generation: stopped once both sides have streamed a token.
    c->new_tokens_spin()->setValue(4000);
    bool triggered = false;
    auto conn = connect(c->generation_job(), &rptq::ui::GenerationJob::token, this, [&] {
      if (!triggered && c->generated_tokens(0) >= 1 && c->generated_tokens(1) >= 1) {
        triggered = true;
        cancel->trigger();
      }
    });
    QTest::mouseClick(c->generate_button(), Qt::LeftButton);
    QVERIFY(c->generating());
    QTRY_VERIFY_WITH_TIMEOUT(!c->generating(), kCalibrateTimeoutMs);
    disconnect(conn);
    QVERIFY(triggered);
    QVERIFY2(c->generation_status()->text().startsWith(QStringLiteral("Stopped")),
             qPrintable(c->generation_status()->text()));
    QVERIFY(c->generated_tokens(0) < 4000 && c->generated_tokens(1) < 4000);
    QVERIFY(!cancel->isEnabled());
    // An export: cancelled at its first tensor, or (a tiny model) already written; either way the UI is usable.
    rptq::ui::ExportPage* e = w_->export_page();
    w_->go_to(MainWindow::ExportStep);
    const QString out = tmp("cancelled.h5");
    e->output_edit()->setText(out);
    QTest::mouseClick(e->export_button(), Qt::LeftButton);
    QVERIFY(e->exporting());
    QVERIFY(cancel->isEnabled());
    QVERIFY(e->cancel_button()->isEnabled());
    cancel->trigger();
    QTRY_VERIFY_WITH_TIMEOUT(!e->exporting(), kCalibrateTimeoutMs);
    if (e->exported_path().isEmpty()) QVERIFY(!QFileInfo::exists(out));
    QVERIFY(e->export_button()->isEnabled());
    QVERIFY(!e->cancel_button()->isEnabled());
    QVERIFY(!cancel->isEnabled());
  }

  void stopEndsBothGenerationSides() {
    open_window();
    calibrate_small(tmp("stats.h5"));
    quantize_small(QStringLiteral("W4A4KV"));
    rptq::ui::ComparePage* c = w_->compare_page();
    w_->go_to(MainWindow::CompareStep);
    QPushButton* stop = c->stop_button();
    QVERIFY(!stop->isEnabled());
    c->new_tokens_spin()->setValue(4000);
    bool clicked = false;
    auto conn = connect(c->generation_job(), &rptq::ui::GenerationJob::token, this, [&] {
      if (!clicked && c->generated_tokens(0) >= 2 && c->generated_tokens(1) >= 2) {
        clicked = true;
        QVERIFY(stop->isEnabled());
        QTest::mouseClick(stop, Qt::LeftButton);
      }
    });
    QTest::mouseClick(c->generate_button(), Qt::LeftButton);
    QVERIFY(c->generating());
    QTRY_VERIFY_WITH_TIMEOUT(!c->generating(), kCalibrateTimeoutMs);
    disconnect(conn);
    QVERIFY(clicked);
    // Both sides ended (neither runs on unseen), far short of the tokens asked for, and nothing arrives later.
    const int fp = c->generated_tokens(0), qt = c->generated_tokens(1);
    QVERIFY2(fp >= 2 && fp < 4000 && qt >= 2 && qt < 4000, qPrintable(QStringLiteral("%1, %2").arg(fp).arg(qt)));
    const QString fp_text = c->fp_pane()->toPlainText(), q_text = c->quantized_pane()->toPlainText();
    QTest::qWait(300);
    QCOMPARE(c->fp_pane()->toPlainText(), fp_text);
    QCOMPARE(c->quantized_pane()->toPlainText(), q_text);
    QCOMPARE(c->generated_tokens(0), fp);
    QCOMPARE(c->generated_tokens(1), qt);
    QVERIFY2(c->generation_status()->text().startsWith(QStringLiteral("Stopped after")),
             qPrintable(c->generation_status()->text()));
    // The UI is usable: buttons back, the other jobs free to use the quantized model, a new generation completes.
    QVERIFY(!stop->isEnabled());
    QVERIFY(c->generate_button()->isEnabled());
    QVERIFY(c->compare_button()->isEnabled());
    QVERIFY(c->prompt_edit()->isEnabled());
    QVERIFY(!w_->session()->quantized_in_use());
    QVERIFY(w_->quantize_page()->run_button()->isEnabled());
    QVERIFY(w_->export_page()->export_button()->isEnabled());
    c->new_tokens_spin()->setValue(8);
    QTest::mouseClick(c->generate_button(), Qt::LeftButton);
    QTRY_VERIFY_WITH_TIMEOUT(!c->generating(), kCalibrateTimeoutMs);
    QVERIFY2(c->generation_status()->text().contains(QStringLiteral("new tokens")) &&
                 !c->generation_status()->text().startsWith(QStringLiteral("Stopped")),
             qPrintable(c->generation_status()->text()));
    QVERIFY(c->generated_tokens(0) >= 1 && c->generated_tokens(0) <= 8);
  }

  void quantizedModelUsedByOneJobAtATime() {
    // Re-quantizing while an export or a comparison reads the quantized model would replace it under them; the
    // steps wait for each other instead.
    open_window();
    calibrate_small(tmp("stats.h5"));
    quantize_small();
    rptq::ui::QuantizePage* q = w_->quantize_page();
    rptq::ui::ComparePage* c = w_->compare_page();
    rptq::ui::ExportPage* e = w_->export_page();
    rptq::QuantizedModel* quantized = w_->session()->quantized();
    // An export runs: Quantize, Compare and Generate wait.
    w_->go_to(MainWindow::ExportStep);
    e->output_edit()->setText(tmp("busy.h5"));
    QTest::mouseClick(e->export_button(), Qt::LeftButton);
    QVERIFY(e->exporting());
    QVERIFY(w_->session()->quantized_in_use());
    QVERIFY(!q->run_button()->isEnabled());
    QVERIFY2(q->status_label()->text().contains(QStringLiteral("export")), qPrintable(q->status_label()->text()));
    q->start();  // the slot itself refuses too (a shortcut or script could call it)
    QVERIFY(!q->running());
    QCOMPARE(w_->session()->quantized(), quantized);
    QVERIFY(!c->compare_button()->isEnabled());
    QVERIFY(!c->generate_button()->isEnabled());
    c->run_comparison();
    QVERIFY(!c->comparing());
    QTRY_VERIFY_WITH_TIMEOUT(!e->exporting(), kCalibrateTimeoutMs);
    QVERIFY(QFileInfo::exists(tmp("busy.h5")));
    QVERIFY(!w_->session()->quantized_in_use());
    QVERIFY(q->run_button()->isEnabled());
    QVERIFY(!q->status_label()->text().contains(QStringLiteral("export")));
    QVERIFY(c->compare_button()->isEnabled());
    // A comparison runs: Quantize and Export wait.
    w_->go_to(MainWindow::CompareStep);
    c->windows_spin()->setValue(2);
    c->seqlen_spin()->setValue(64);
    QTest::mouseClick(c->compare_button(), Qt::LeftButton);
    QVERIFY(c->comparing());
    QVERIFY(!q->run_button()->isEnabled());
    QVERIFY(!e->export_button()->isEnabled());
    e->output_edit()->setText(tmp("second.h5"));
    e->start();
    QVERIFY(!e->exporting());
    QTRY_VERIFY_WITH_TIMEOUT(!c->comparing(), kCalibrateTimeoutMs);
    QVERIFY(c->result());  // the comparison's result is kept: the model it compared is still the session's
    QVERIFY(!QFileInfo::exists(tmp("second.h5")));
    QVERIFY(q->run_button()->isEnabled());
    QVERIFY(e->export_button()->isEnabled());
    QCOMPARE(w_->session()->quantized(), quantized);
  }

  void screenshotOfExportLeavesNoTemporaryFiles() {
    QTemporaryDir tmpdir(tmp("TMPDIR-XXXXXX"));
    QVERIFY(tmpdir.isValid());
    QProcess p;
    QProcessEnvironment env = QProcessEnvironment::systemEnvironment();
    env.insert(QStringLiteral("QT_QPA_PLATFORM"), QStringLiteral("offscreen"));
    env.insert(QStringLiteral("TMPDIR"), tmpdir.path());
    // Qt puts its runtime folder under TMPDIR when XDG_RUNTIME_DIR is unset: give it one elsewhere.
    const QString runtime = tmp("xdg-runtime");
    QVERIFY(QDir().mkpath(runtime));
    QFile::setPermissions(runtime, QFileDevice::ReadOwner | QFileDevice::WriteOwner | QFileDevice::ExeOwner);
    env.insert(QStringLiteral("XDG_RUNTIME_DIR"), runtime);
    p.setProcessEnvironment(env);
    const QString out = tmp("export.png");
    p.start(QStringLiteral(RPTQ_WORKBENCH_PATH), {"--screenshot", out, "--step", "export", "--size", "1400x900"});
    QVERIFY(p.waitForFinished(240000));
    QVERIFY2(p.exitStatus() == QProcess::NormalExit && p.exitCode() == 0, p.readAllStandardError().constData());
    QCOMPARE(QImage(out).size(), QSize(1400, 900));
    const QStringList left = QDir(tmpdir.path()).entryList(QDir::AllEntries | QDir::NoDotAndDotDot | QDir::Hidden);
    QVERIFY2(left.isEmpty(), qPrintable(left.join(QStringLiteral(", "))));
  }

  void screenshotModeWritesPng() {
    QProcess p;
    QProcessEnvironment env = QProcessEnvironment::systemEnvironment();
    env.insert(QStringLiteral("QT_QPA_PLATFORM"), QStringLiteral("offscreen"));
    p.setProcessEnvironment(env);
    const QString out = tmp("shot.png");
    p.start(QStringLiteral(RPTQ_WORKBENCH_PATH),
            {"--screenshot", out, "--step", "explore", "--size", "1200x800", "--k", "6", "--index", "R4"});
    QVERIFY(p.waitForFinished(240000));
    QVERIFY2(p.exitStatus() == QProcess::NormalExit && p.exitCode() == 0, p.readAllStandardError().constData());
    QImage img(out);
    QCOMPARE(img.size(), QSize(1200, 800));
    // An unknown step is an error, not a hang.
    p.start(QStringLiteral(RPTQ_WORKBENCH_PATH), {"--screenshot", tmp("x.png"), "--step", "nonsense"});
    QVERIFY(p.waitForFinished(60000));
    QCOMPARE(p.exitCode(), 1);
    QVERIFY(!QFileInfo::exists(tmp("x.png")));
  }
};

int main(int argc, char** argv) {
  if (!qEnvironmentVariableIsSet("QT_QPA_PLATFORM")) qputenv("QT_QPA_PLATFORM", "offscreen");
  QDir().mkpath(QStringLiteral(RPTQ_GUI_TEST_TMP));
  QTemporaryDir root(QStringLiteral(RPTQ_GUI_TEST_TMP) + QStringLiteral("/run-XXXXXX"));
  if (!root.isValid()) return 2;
  g_root = root.path();
  // Settings, application data and the Hugging Face cache all in the temporary folder.
  qputenv("XDG_CONFIG_HOME", (g_root + "/config").toUtf8());
  qputenv("XDG_DATA_HOME", (g_root + "/data").toUtf8());
  qputenv("XDG_CACHE_HOME", (g_root + "/cache").toUtf8());
  qputenv("HF_HOME", (g_root + "/hf").toUtf8());
  qunsetenv("HF_HUB_CACHE");
  const QString snap = g_root + "/hf/hub/models--test-org--stories/snapshots/0123456789abcdef";
  QDir().mkpath(snap);
  QDir().mkpath(g_root + "/hf/hub/models--broken/snapshots/abc");  // no config.json: not listed
  const QString src = QStringLiteral(RPTQ_RESOURCES_DIR) + "/models/stories260k";
  for (const QString& f : QDir(src).entryList(QDir::Files)) {
    if (f == QLatin1String("config.json"))
      QFile::link(src + "/" + f, snap + "/" + f);
    else
      QFile::copy(src + "/" + f, snap + "/" + f);
  }

  QApplication app(argc, argv);
  QApplication::setOrganizationName(QStringLiteral("RPTQ"));
  QApplication::setApplicationName(QStringLiteral("rptq-workbench-test"));
  GuiTest t;
  const int rc = QTest::qExec(&t, argc, argv);
  // Jobs a test left running (a look-up, a cancelled run) end before the statics they use are destroyed, as the
  // application's main waits for them too.
  QThreadPool::globalInstance()->waitForDone();
  return rc;
}

#include "test_gui.moc"
