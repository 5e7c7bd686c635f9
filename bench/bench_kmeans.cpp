// Time of rptq::kmeans on channel-range points shaped like one wide RPTQ tap (OPT-66b fc1: 36,864 channels), for
// the interactive re-clustering goal: k = 32 with the default options in under 50 ms on the 2-core dev machine.
//
//   bench_kmeans [--n 36864] [--ks 4,8,32,64] [--threads 1,2] [--repeats 15] [--warmup 2] [--seed 1234]
//                [--restarts R] [--restart-work W] [--max-iterations M] [--outliers 0.005] [--no-quality]
//                [--wait-idle SECONDS]
//
// The points are (max, min) per channel, seeded: most channels in a narrow band (max ~ 1.5 e^(0.3 g), min ~
// -1.5 e^(0.3 g), g standard normal), and a fraction --outliers of channels 50-500x larger on one or both sides,
// like the outlier channels of LLM activations. Each case (k, threads) runs W + R times and reports, over the R
// timed runs, the median, min and max wall-clock milliseconds, this process's median CPU time, and the share of
// the CPUs that other processes used meanwhile (on a 2-core machine timings mean something only when that is near
// 0). It also reports the result's inertia and Lloyd iterations, checks that every thread count gives a
// bit-identical result, and (unless --no-quality) compares the inertia with a 64-restart run of the same k, as a
// yardstick for the default restarts. --wait-idle S: before each case, wait (up to S seconds) until other processes
// use under 5% of the CPUs for a second; the wait is reported. Every result is printed as one JSON line (starting with '{') and again in a
// table.
#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "rptq/method/kmeans.h"
#include "synthetic_ranges.h"

namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;

struct Args {
  std::int64_t n = 36864;
  std::vector<int> ks = {4, 8, 32, 64};
  std::vector<int> threads = {1, 2};
  int repeats = 15, warmup = 2;
  std::uint64_t seed = 1234;
  double outliers = 0.005;
  rptq::KMeansOptions opts;  // k is set per case
  bool quality = true;
  double wait_idle_s = 0;  // before each case, wait up to this long for the other processes to go quiet
};

[[noreturn]] void usage(const char* why) {
  std::fprintf(stderr,
               "%s\nusage: bench_kmeans [--n 36864] [--ks 4,8,32,64] [--threads 1,2] [--repeats 15] [--warmup 2] "
               "[--seed 1234] [--restarts R] [--restart-work W] [--max-iterations M] [--outliers 0.005] [--no-quality] "
               "[--wait-idle SECONDS]\n",
               why);
  std::exit(2);
}

std::vector<int> int_list(const std::string& s) {
  std::vector<int> v;
  std::stringstream in(s);
  std::string item;
  while (std::getline(in, item, ',')) v.push_back(std::stoi(item));
  if (v.empty()) usage(("empty list: " + s).c_str());
  return v;
}

Args parse_args(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string s = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage(("missing value after " + s).c_str());
      return argv[++i];
    };
    try {
      if (s == "--n") a.n = std::stoll(value());
      else if (s == "--ks") a.ks = int_list(value());
      else if (s == "--threads") a.threads = int_list(value());
      else if (s == "--repeats") a.repeats = std::stoi(value());
      else if (s == "--warmup") a.warmup = std::stoi(value());
      else if (s == "--seed") a.seed = std::stoull(value());
      else if (s == "--restarts") a.opts.restarts = std::stoi(value());
      else if (s == "--restart-work") a.opts.restart_work = std::stoll(value());
      else if (s == "--max-iterations") a.opts.max_iterations = std::stoi(value());
      else if (s == "--outliers") a.outliers = std::stod(value());
      else if (s == "--no-quality") a.quality = false;
      else if (s == "--wait-idle") a.wait_idle_s = std::stod(value());
      else if (s == "-h" || s == "--help") usage("");
      else usage(("unknown argument " + s).c_str());
    } catch (const std::logic_error&) {
      usage(("bad value for " + s).c_str());
    }
  }
  if (a.repeats < 1 || a.n < 1) usage("--repeats and --n must be positive");
  return a;
}

// Interleaved (max, min) points of n synthetic channels (synthetic_ranges.h).
std::vector<float> channel_ranges(std::int64_t n, double outlier_share, std::uint64_t seed) {
  rptq::bench::Rng rng{seed};
  std::vector<float> mx, mn;
  rptq::bench::append_channel_ranges(n, outlier_share, rng, mx, mn);
  std::vector<float> p(static_cast<std::size_t>(n) * 2);
  for (std::size_t i = 0; i < mx.size(); ++i) {
    p[2 * i] = mx[i];
    p[2 * i + 1] = mn[i];
  }
  return p;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

double process_cpu_ms() {
  timespec t{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return t.tv_sec * 1e3 + t.tv_nsec * 1e-6;
}

// Busy and total jiffies of all CPUs (/proc/stat), to tell how much of the machine others used during a case.
struct CpuTimes {
  double busy = 0, total = 0;
};

CpuTimes cpu_times() {
  std::ifstream f("/proc/stat");
  std::string cpu;
  double user = 0, nice = 0, sys = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0;
  f >> cpu >> user >> nice >> sys >> idle >> iowait >> irq >> softirq >> steal;
  const double busy = user + nice + sys + irq + softirq + steal;
  return {busy, busy + idle + iowait};
}

// Waits until other processes keep less than 5% of the CPUs busy over one second, at most max_s seconds; returns
// the seconds waited.
double wait_for_idle(double max_s) {
  const auto t0 = Clock::now();
  const double jiffy_ms = 1000.0 / static_cast<double>(sysconf(_SC_CLK_TCK));
  while (true) {
    const double waited = std::chrono::duration<double>(Clock::now() - t0).count();
    if (waited >= max_s) return waited;
    const CpuTimes c0 = cpu_times();
    const double own0 = process_cpu_ms();
    ::usleep(1000000);
    const CpuTimes c1 = cpu_times();
    const double all_ms = (c1.total - c0.total) * jiffy_ms;
    const double others = all_ms > 0 ? ((c1.busy - c0.busy) * jiffy_ms - (process_cpu_ms() - own0)) / all_ms : 0.0;
    if (others < 0.05) return std::chrono::duration<double>(Clock::now() - t0).count();
  }
}

bool same_result(const rptq::KMeansResult& a, const rptq::KMeansResult& b) {
  return a.k == b.k && a.labels == b.labels && a.iterations == b.iterations &&
         std::memcmp(&a.inertia, &b.inertia, sizeof(double)) == 0 && a.centroids.size() == b.centroids.size() &&
         std::memcmp(a.centroids.data(), b.centroids.data(), a.centroids.size() * sizeof(float)) == 0;
}

}  // namespace

int main(int argc, char** argv) {
  const Args a = parse_args(argc, argv);
  const std::vector<float> pts = channel_ranges(a.n, a.outliers, a.seed);
  float lo = pts[0], hi = pts[0];
  for (float v : pts) lo = std::min(lo, v), hi = std::max(hi, v);
  std::cout << json{{"kind", "config"},
                    {"n", a.n},
                    {"dims", 2},
                    {"outliers", a.outliers},
                    {"seed", a.seed},
                    {"restarts", a.opts.restarts},
                    {"restart_work", a.opts.restart_work},
                    {"max_iterations", a.opts.max_iterations},
                    {"repeats", a.repeats},
                    {"warmup", a.warmup},
                    {"omp_procs", omp_get_num_procs()},
                    {"value_min", lo},
                    {"value_max", hi}}
                   .dump()
            << "\n";

  struct Row {
    int k, k_used, threads, iterations;
    double median_ms, min_ms, max_ms, cpu_ms, others_busy, inertia, inertia_64;
    bool identical;
  };
  std::vector<Row> rows;
  for (int k : a.ks) {
    rptq::KMeansOptions o = a.opts;
    o.k = k;
    double inertia_64 = 0;
    if (a.quality) {
      rptq::KMeansOptions q = o;
      q.restarts = 64;
      inertia_64 = rptq::kmeans(pts, 2, q).inertia;
    }
    rptq::KMeansResult first;
    for (std::size_t ti = 0; ti < a.threads.size(); ++ti) {
      const int t = a.threads[ti];
      const double waited = a.wait_idle_s > 0 ? wait_for_idle(a.wait_idle_s) : 0.0;
      omp_set_num_threads(t);
      rptq::KMeansResult r;
      std::vector<double> ms, cpu;
      CpuTimes m0{};
      double own0 = 0;
      for (int rep = 0; rep < a.warmup + a.repeats; ++rep) {
        if (rep == a.warmup) m0 = cpu_times(), own0 = process_cpu_ms();
        const double c0 = process_cpu_ms();
        const auto t0 = Clock::now();
        r = rptq::kmeans(pts, 2, o);
        const double dt = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
        if (rep >= a.warmup) ms.push_back(dt), cpu.push_back(process_cpu_ms() - c0);
      }
      // Share of all CPUs that other processes kept busy while the timed runs ran (0 on an idle machine).
      const CpuTimes m1 = cpu_times();
      const double jiffy_ms = 1000.0 / static_cast<double>(sysconf(_SC_CLK_TCK));
      const double all_ms = (m1.total - m0.total) * jiffy_ms, busy_ms = (m1.busy - m0.busy) * jiffy_ms;
      const double others = all_ms > 0 ? std::max(0.0, (busy_ms - (process_cpu_ms() - own0)) / all_ms) : 0.0;
      const bool identical = ti == 0 || same_result(first, r);
      if (ti == 0) first = r;
      const Row row{k, r.k, t, r.iterations, median(ms), *std::min_element(ms.begin(), ms.end()),
                    *std::max_element(ms.begin(), ms.end()), median(cpu), others, r.inertia, inertia_64, identical};
      rows.push_back(row);
      json j = {{"kind", "kmeans"},
                {"n", a.n},
                {"dims", 2},
                {"k", k},
                {"k_used", r.k},
                {"threads", t},
                {"restarts", o.restarts},
                {"max_iterations", o.max_iterations},
                {"runs", a.repeats},
                {"median_ms", row.median_ms},
                {"min_ms", row.min_ms},
                {"max_ms", row.max_ms},
                {"cpu_ms_median", row.cpu_ms},
                {"others_cpu_share", row.others_busy},
                {"waited_for_idle_s", waited},
                {"inertia", r.inertia},
                {"iterations", r.iterations},
                {"identical_to_first_thread_count", identical}};
      if (a.quality) {
        j["inertia_64_restarts"] = inertia_64;
        j["inertia_over_64_restarts"] = r.inertia / inertia_64;
      }
      std::cout << j.dump() << "\n";
    }
  }

  std::printf("\n== rptq::kmeans: %lld 2-D channel ranges (%.2f%% outliers), restarts %d, max_iterations %d, "
              "median of %d runs after %d warm-up\n",
              static_cast<long long>(a.n), 100.0 * a.outliers, a.opts.restarts, a.opts.max_iterations, a.repeats,
              a.warmup);
  std::printf("   %4s %7s %10s %10s %10s %10s %7s %14s %6s %14s %9s\n", "k", "threads", "median ms", "min ms",
              "max ms", "cpu ms", "others", "inertia", "iters", "vs 64 restarts", "identical");
  for (const Row& r : rows) {
    char q[32] = "-";
    if (a.quality) std::snprintf(q, sizeof q, "%.4f", r.inertia / r.inertia_64);
    std::printf("   %4d %7d %10.2f %10.2f %10.2f %10.2f %6.0f%% %14.6g %6d %14s %9s\n", r.k_used, r.threads,
                r.median_ms, r.min_ms, r.max_ms, r.cpu_ms, 100.0 * r.others_busy, r.inertia, r.iterations, q,
                r.identical ? "yes" : "NO");
  }
  std::printf("   (cpu ms: this process's CPU time per run, median; others: share of all CPUs busy with other "
              "processes during the timed runs)\n");
  return 0;
}
