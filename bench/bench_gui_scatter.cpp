// Time from a change of k to the redrawn Explore scatter, for 36,864 channels (OPT-66b fc1's width): the GUI goal
// of issue 6, "re-clustering and redrawing the scatter under 100 ms from k change to redrawn chart".
//
//   QT_QPA_PLATFORM=offscreen bench_gui_scatter [--n 36864] [--ks 8,16,32,64] [--rounds 6] [--warmup 1]
//                                               [--size 1400x900] [--outliers 0.005] [--seed 1234]
//                                               [--wait-idle SECONDS]
//
// It builds the real main window (as rptq-workbench does, not shown on a screen: the offscreen platform, raster
// painting), gives its session a synthetic statistics file of one layer whose taps have n channels each (the
// bench_kmeans shape: a narrow band plus a share of outlier channels 50-500x larger), opens Explore on R5 (the FFN
// hidden tap) and cycles k through --ks for --rounds rounds after --warmup rounds. For every change it measures,
// from the moment the k spin box gets the new value:
//   shown   - the new clustering has arrived from the worker and is in the charts and table (ExplorePage's
//             snapshot_shown), i.e. k-means + snapshot on the worker, the queued hand-over and the UI-side setting
//             of the scatter, the reordered range charts and the cluster table;
//   painted - the scatter's paint event with the new clustering has finished (the event loop paints it as the
//             application does; nothing is grabbed);
//   settled - the event loop is idle again (the range charts and the table painted too);
// and, from the snapshot, the k-means wall time on the worker. Then, outside the loop, where the UI time goes:
// each part's set_snapshot and a forced repaint of each chart, on the same snapshots.
// --wait-idle S: before the timed rounds, wait (up to S seconds) until other processes use under 5% of the CPUs for
// a second. The share other processes used during the timed rounds is printed: on a 2-core machine a concurrent
// build or test run makes the OpenMP k-means several times slower, so timings mean something only when it is near 0.
// Every change is printed as one JSON line (starting with '{'), then medians and p90 in a table.
#include <QApplication>
#include <QElapsedTimer>
#include <QEventLoop>
#include <QSettings>
#include <QSpinBox>
#include <QTimer>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "common/chart_view.h"
#include "explore/cluster_table_model.h"
#include "explore/explore_page.h"
#include "explore/range_order_chart.h"
#include "explore/scatter_chart.h"
#include "main/main_window.h"
#include "rptq/model/model.h"
#include "rptq/method/reorder.h"
#include "session/session.h"
#include "synthetic_ranges.h"

namespace {

using Clock = std::chrono::steady_clock;

struct Args {
  std::int64_t n = 36864;
  std::vector<int> ks = {8, 16, 32, 64};
  int rounds = 6, warmup = 1;
  int width = 1400, height = 900;
  double outliers = 0.005;
  std::uint64_t seed = 1234;
  double wait_idle_s = 0;  // before the timed rounds, wait up to this long for the other processes to go quiet
};

[[noreturn]] void usage(const char* why) {
  std::fprintf(stderr,
               "%s\nusage: bench_gui_scatter [--n 36864] [--ks 8,16,32,64] [--rounds 6] [--warmup 1] "
               "[--size 1400x900] [--outliers 0.005] [--seed 1234] [--wait-idle SECONDS]\n",
               why);
  std::exit(2);
}

Args parse_args(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string s = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage(("missing value after " + s).c_str());
      return argv[++i];
    };
    if (s == "--n") a.n = std::stoll(value());
    else if (s == "--ks") {
      a.ks.clear();
      std::stringstream in(value());
      std::string item;
      while (std::getline(in, item, ',')) a.ks.push_back(std::stoi(item));
      if (a.ks.size() < 2) usage("--ks needs at least two values");
    } else if (s == "--rounds") a.rounds = std::stoi(value());
    else if (s == "--warmup") a.warmup = std::stoi(value());
    else if (s == "--size") {
      const std::string v = value();
      if (std::sscanf(v.c_str(), "%dx%d", &a.width, &a.height) != 2) usage("--size WxH");
    } else if (s == "--outliers") a.outliers = std::stod(value());
    else if (s == "--seed") a.seed = std::stoull(value());
    else if (s == "--wait-idle") a.wait_idle_s = std::stod(value());
    else usage(("unknown option " + s).c_str());
  }
  if (a.n < 64 || a.rounds < 1) usage("--n >= 64 and --rounds >= 1");
  return a;
}

// A tap's ranges, drawn as bench_kmeans draws its points (synthetic_ranges.h).
void fill_ranges(rptq::TapRanges& tr, std::int64_t n, double outlier_share, rptq::bench::Rng& rng) {
  rptq::bench::append_channel_ranges(n, outlier_share, rng, tr.max, tr.min);
  tr.ema_max = tr.max;
  tr.ema_min = tr.min;
  tr.samples = 1;
}

// One OPT-shaped layer whose FFN hidden tap (R5) has n channels; hidden = n / 4 as in OPT.
std::shared_ptr<rptq::ChannelStats> synthetic_stats(const Args& a) {
  auto st = std::make_shared<rptq::ChannelStats>();
  st->model_type = "opt";
  st->layers = 1;
  st->head_dim = 128;
  st->hidden = std::max<std::int64_t>(st->head_dim, a.n / 4 / st->head_dim * st->head_dim);
  st->heads = st->hidden / st->head_dim;
  st->kv_heads = st->heads;
  st->intermediate = a.n;
  st->ranges.resize(1);
  rptq::bench::Rng rng{a.seed};
  for (rptq::Tap t : rptq::kAllTaps)
    fill_ranges(st->ranges[0].tap(t), rptq::tap_channels(st->model_shape(), t), a.outliers, rng);
  return st;
}

// CPU time in clock ticks: all CPUs busy (from /proc/stat), and this process (utime + stime of /proc/self/stat).
struct CpuTicks {
  double busy = 0, total = 0, self = 0;
};
CpuTicks cpu_ticks() {
  CpuTicks t;
  if (std::FILE* f = std::fopen("/proc/stat", "r")) {
    double v[10] = {};
    if (std::fscanf(f, "cpu %lf %lf %lf %lf %lf %lf %lf %lf", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6],
                    &v[7]) == 8) {
      for (int i = 0; i < 8; ++i) t.total += v[i];
      t.busy = t.total - v[3] - v[4];  // minus idle and iowait
    }
    std::fclose(f);
  }
  if (std::FILE* f = std::fopen("/proc/self/stat", "r")) {
    char buf[1024] = {};
    const std::size_t n = std::fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = 0;
    std::fclose(f);
    if (const char* p = std::strrchr(buf, ')')) {
      unsigned long long utime = 0, stime = 0;
      // fields after the command: state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime
      if (std::sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime, &stime) == 2)
        t.self = static_cast<double>(utime + stime);
    }
  }
  return t;
}
// The share of all CPUs that other processes used between two readings, in percent.
double others_percent(const CpuTicks& a, const CpuTicks& b) {
  const double total = b.total - a.total;
  return total > 0 ? std::max(0.0, 100.0 * ((b.busy - a.busy) - (b.self - a.self)) / total) : 0.0;
}

double ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

double quantile(std::vector<double> v, double q) {
  if (v.empty()) return NAN;
  std::sort(v.begin(), v.end());
  const double pos = q * static_cast<double>(v.size() - 1);
  const auto lo = static_cast<std::size_t>(std::floor(pos));
  const auto hi = std::min(v.size() - 1, lo + 1);
  return v[lo] + (v[hi] - v[lo]) * (pos - static_cast<double>(lo));
}

struct Change {
  int from = 0, to = 0;
  double kmeans = 0, shown = 0, painted = 0, settled = 0;
};

}  // namespace

int main(int argc, char** argv) {
  if (!qEnvironmentVariableIsSet("QT_QPA_PLATFORM")) qputenv("QT_QPA_PLATFORM", "offscreen");
  QApplication app(argc, argv);
  QApplication::setOrganizationName(QStringLiteral("RPTQ"));
  QApplication::setApplicationName(QStringLiteral("rptq-bench-gui-scatter"));  // settings of its own, reset
  QSettings().clear();
  const Args a = parse_args(argc, argv);

  rptq::ui::MainWindow w;
  w.resize(a.width, a.height);
  w.show();
  rptq::ui::ExplorePage* e = w.explore_page();
  rptq::ui::ScatterChart* scatter = e->scatter();

  std::printf("== bench_gui_scatter: %lld channels (R5, %.2f%% outliers), k cycling", static_cast<long long>(a.n),
              100.0 * a.outliers);
  for (int k : a.ks) std::printf(" %d", k);
  std::printf(", %d warm-up + %d timed rounds; platform %s, OpenGL %s, window %dx%d, threads %d (hardware %u)\n",
              a.warmup, a.rounds, qPrintable(QGuiApplication::platformName()),
              rptq::ui::ChartView::opengl_enabled() ? "on" : "off", a.width, a.height, rptq::num_threads(),
              std::thread::hardware_concurrency());

  // Waits (event loop running) until the clustering for k is shown and the scatter has painted it.
  Change c;
  Clock::time_point t0;
  std::uint64_t before = 0;
  bool shown = false, painted = false;
  QEventLoop loop;
  QObject::connect(e, &rptq::ui::ExplorePage::snapshot_shown, [&](std::uint64_t id) {
    if (id <= before || !e->shown() || e->shown()->request.k != c.to) return;
    c.shown = ms(Clock::now() - t0);
    c.kmeans = e->shown()->seconds * 1e3;
    shown = true;
  });
  QObject::connect(scatter, &rptq::ui::ScatterChart::painted, [&] {
    if (!shown || painted) return;
    painted = true;
    c.painted = ms(Clock::now() - t0);
    QTimer::singleShot(0, [&] {
      c.settled = ms(Clock::now() - t0);
      loop.quit();
    });
  });
  QTimer timeout;
  timeout.setSingleShot(true);
  QObject::connect(&timeout, &QTimer::timeout, [&] {
    std::fprintf(stderr, "bench_gui_scatter: k %d -> %d: no redraw within 30 s\n", c.from, c.to);
    std::exit(1);
  });
  auto change_k = [&](int k) {
    c = Change{};
    c.from = e->k_spin()->value();
    c.to = k;
    before = e->shown() ? e->shown()->request.id : 0;
    shown = painted = false;
    timeout.start(30000);
    t0 = Clock::now();
    e->k_spin()->setValue(k);
    loop.exec();
    timeout.stop();
    return c;
  };

  // Open Explore on R5 and let the first clustering and the overview finish.
  w.session()->set_stats(synthetic_stats(a), QStringLiteral("synthetic"));
  w.go_to(rptq::ui::MainWindow::ExploreStep);
  e->select(0, 5, a.ks.back());
  {
    QElapsedTimer t;
    t.start();
    while (!e->up_to_date() && t.elapsed() < 60000) QApplication::processEvents(QEventLoop::AllEvents, 50);
    if (!e->up_to_date() || !e->shown()) {
      std::fprintf(stderr, "bench_gui_scatter: the first clustering did not finish\n");
      return 1;
    }
    QApplication::processEvents();
  }
  std::printf("   scatter: %d points drawn by %s\n", scatter->point_count(),
              scatter->uses_opengl() ? "OpenGL series" : scatter->uses_point_cloud() ? "the point cloud item"
                                                                                    : "raster series");

  if (a.wait_idle_s > 0) {
    const auto until = Clock::now() + std::chrono::duration<double>(a.wait_idle_s);
    double busy = 100;
    int waited = 0;
    while (Clock::now() < until) {
      const CpuTicks t = cpu_ticks();
      std::this_thread::sleep_for(std::chrono::seconds(1));
      ++waited;
      busy = others_percent(t, cpu_ticks());
      if (busy < 5) break;
    }
    std::printf("   waited %d s for idle CPUs (others %.1f%% in the last second)\n", waited, busy);
  }
  std::vector<Change> timed;
  std::vector<std::shared_ptr<const rptq::ui::ClusterSnapshot>> snaps;
  CpuTicks cpu_before;
  for (int round = 0; round < a.warmup + a.rounds; ++round)
    for (int k : a.ks) {
      if (round == a.warmup && timed.empty()) cpu_before = cpu_ticks();
      const Change r = change_k(k);
      if (round < a.warmup) continue;
      timed.push_back(r);
      if (round == a.warmup) snaps.push_back(std::make_shared<const rptq::ui::ClusterSnapshot>(*e->shown()));
      std::printf("{\"from\": %d, \"to\": %d, \"kmeans_ms\": %.2f, \"shown_ms\": %.2f, \"painted_ms\": %.2f, "
                  "\"settled_ms\": %.2f}\n",
                  r.from, r.to, r.kmeans, r.shown, r.painted, r.settled);
    }

  const double others = others_percent(cpu_before, cpu_ticks());
  auto column = [&](auto f, int k) {
    std::vector<double> v;
    for (const Change& r : timed)
      if (k == 0 || r.to == k) v.push_back(f(r));
    return v;
  };
  std::printf("\n   k change -> redrawn scatter, ms (median / p90 over the changes to that k; 'all': every change)\n");
  std::printf("   %-6s %5s | %15s | %15s | %15s | %15s | %15s\n", "to k", "n", "k-means", "shown",
              "painted (goal)", "settled", "UI (painted-km)");
  std::vector<int> rows = {0};
  rows.insert(rows.end(), a.ks.begin(), a.ks.end());
  for (int k : rows) {
    const auto km = column([](const Change& r) { return r.kmeans; }, k);
    const auto sh = column([](const Change& r) { return r.shown; }, k);
    const auto pa = column([](const Change& r) { return r.painted; }, k);
    const auto se = column([](const Change& r) { return r.settled; }, k);
    const auto ui = column([](const Change& r) { return r.painted - r.kmeans; }, k);
    std::printf("   %-6s %5zu | %6.1f / %6.1f | %6.1f / %6.1f | %6.1f / %6.1f | %6.1f / %6.1f | %6.1f / %6.1f\n",
                k == 0 ? "all" : std::to_string(k).c_str(), km.size(), quantile(km, 0.5), quantile(km, 0.9),
                quantile(sh, 0.5), quantile(sh, 0.9), quantile(pa, 0.5), quantile(pa, 0.9), quantile(se, 0.5),
                quantile(se, 0.9), quantile(ui, 0.5), quantile(ui, 0.9));
  }
  const auto all = column([](const Change& r) { return r.painted; }, 0);
  std::printf("{\"summary\": true, \"changes\": %zu, \"painted_median_ms\": %.2f, \"painted_p90_ms\": %.2f, "
              "\"kmeans_median_ms\": %.2f, \"ui_median_ms\": %.2f, \"others_cpu_percent\": %.1f}\n",
              all.size(), quantile(all, 0.5), quantile(all, 0.9),
              quantile(column([](const Change& r) { return r.kmeans; }, 0), 0.5),
              quantile(column([](const Change& r) { return r.painted - r.kmeans; }, 0), 0.5), others);
  std::printf("   other processes used %.1f%% of the CPUs during the timed changes (timings mean little unless "
              "near 0)\n",
              others);

  // The same clustering called directly on this (the main) thread, as bench_kmeans calls rptq::kmeans: tells the
  // engine's time on these points from what the worker thread adds.
  std::printf("\n   rptq::cluster_reorder_index(R5) on the main thread, ms (median of 5):");
  for (int k : a.ks) {
    std::vector<double> t;
    for (int i = 0; i < 5; ++i) {
      const auto t0c = Clock::now();
      rptq::cluster_reorder_index(5, w.session()->stats()->model_shape(), w.session()->stats()->ranges[0], k, 0, 0);
      t.push_back(ms(Clock::now() - t0c));
    }
    std::printf("  k %d: %.1f", k, quantile(t, 0.5));
  }
  std::printf("\n");

  // Where the UI time goes: each part on its own, on the snapshots of the first timed round (median of 5 passes).
  std::printf("\n   UI parts, ms per snapshot (median over %d passes of the %zu snapshots), on the UI thread:\n", 5,
              snaps.size());
  struct Part {
    const char* name;
    std::function<void(const std::shared_ptr<const rptq::ui::ClusterSnapshot>&)> run;
  };
  const std::vector<Part> parts = {
      {"scatter set_snapshot", [&](const auto& s) { scatter->set_snapshot(s); }},
      {"scatter repaint", [&](const auto&) { scatter->viewport()->repaint(); }},
      {"range charts set_snapshot", [&](const auto& s) { e->ranges()->set_snapshot(s); }},
      {"range charts repaint",
       [&](const auto&) {
         e->ranges()->original_view()->viewport()->repaint();
         e->ranges()->reordered_view()->viewport()->repaint();
       }},
      {"cluster table set_snapshot", [&](const auto& s) { e->cluster_model()->set_snapshot(s); }},
  };
  std::vector<std::vector<double>> part_ms(parts.size());
  for (int pass = 0; pass < 5; ++pass)
    for (const auto& s : snaps)
      for (std::size_t p = 0; p < parts.size(); ++p) {
        QApplication::processEvents();
        const auto t = Clock::now();
        parts[p].run(s);
        part_ms[p].push_back(ms(Clock::now() - t));
      }
  for (std::size_t p = 0; p < parts.size(); ++p)
    std::printf("   %-28s %7.2f (p90 %.2f)\n", parts[p].name, quantile(part_ms[p], 0.5), quantile(part_ms[p], 0.9));
  return 0;
}
