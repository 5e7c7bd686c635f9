// rptq-fuzz: seeded mutation fuzzing of every file type rptq opens, through the same library calls the CLI and the
// workbench make. Each mutated input is opened in a forked child with a time limit, so a crash or a hang is
// counted (and the input saved) instead of ending the run.
//
//   rptq-fuzz --kind KIND --seed-path PATH [--model DIR] [--iterations N] [--seed S] [--timeout SEC]
//             [--work DIR] [--save DIR] [--same-size]
// --same-size keeps every mutation the seed's length (byte changes only), so a finding is a list of byte patches.
//
// KIND and what is opened (PATH is the valid file whose mutations are tried):
//   stats        a statistics file: load_stats, then the clusters of layer 0 (rptq clusters)
//   checkpoint   an exported checkpoint: inspect_checkpoint, load_checkpoint, its tokenizer, a forward pass
//   safetensors  DIR's model.safetensors replaced by the mutation: the model folder loaded and run (rptq eval)
//   torch        a PyTorch checkpoint (zip + pickle, or legacy): read_torch_checkpoint, every tensor's bytes read
//   config       the same with DIR/config.json
//   tokenizer    DIR/<file name of PATH> (tokenizer.json, vocab.json, merges.txt, ...): the tokenizer loaded, a
//                text encoded and decoded
//   hf-export    a safetensors folder written by rptq export --format hf: same as safetensors
//
// Outcomes, per input: accepted (loaded, ran), refused (an InputError naming the file or its folder, one line of
// at most 1000 characters: what the CLI prints with exit status 2), and the failures: crash (a signal), hang (past
// the time limit), unnamed (an InputError that does not name the file), long (a multi-line or overlong message),
// internal (another exception: the CLI's exit status 1). Prints one line per failure and a summary line; exits 1
// when there was any failure.
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "rptq/base/error.h"
#include "rptq/export/qcheckpoint.h"
#include "rptq/export/stats_file.h"
#include "rptq/io/torch_pickle.h"
#include "rptq/method/cluster_view.h"
#include "rptq/method/quantize.h"
#include "rptq/model/model.h"
#include "rptq/model/model_info.h"
#include "rptq/tokenizer/tokenizer.h"

namespace fs = std::filesystem;

namespace {

struct Args {
  std::string kind, seed_path, model, work = "/tmp/rptq-fuzz", save;
  long iterations = 1000;
  std::uint64_t seed = 1;
  int timeout = 30;
  bool same_size = false;
};

std::string read_bytes(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

void write_bytes(const fs::path& p, const std::string& b) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f.write(b.data(), static_cast<std::streamsize>(b.size()));
}

// One mutation of `in`: a few byte changes of several kinds, sometimes a structural change.
std::string mutate(const std::string& in, std::mt19937_64& rng, bool same_size) {
  std::string b = in;
  auto pick = [&](std::size_t n) { return static_cast<std::size_t>(rng() % std::max<std::size_t>(n, 1)); };
  const int edits = 1 + static_cast<int>(rng() % 4) * static_cast<int>(rng() % 3);
  for (int e = 0; e < edits && !b.empty(); ++e) {
    int kind = static_cast<int>(rng() % 10);
    if (same_size && kind >= 6 && kind <= 8) kind = 0;
    switch (kind) {
      case 0: case 1: case 2:  // flip one bit
        b[pick(b.size())] ^= static_cast<char>(1u << (rng() % 8));
        break;
      case 3: case 4:  // a random byte
        b[pick(b.size())] = static_cast<char>(rng() & 0xff);
        break;
      case 5: {  // an interesting value, little-endian, at an aligned offset
        static const std::uint64_t vals[] = {0, 1, 0x7f, 0x80, 0xff, 0x7fff, 0xffff, 0x7fffffff, 0xffffffff,
                                             0x8000000000000000ull, ~0ull, 0x100, 0x10000};
        const std::uint64_t v = vals[rng() % (sizeof vals / sizeof vals[0])];
        const std::size_t w = std::size_t{1} << (rng() % 4);
        if (b.size() < w) break;
        const std::size_t at = pick(b.size() - w + 1) & ~(w - 1);
        for (std::size_t i = 0; i < w; ++i) b[at + i] = static_cast<char>((v >> (8 * i)) & 0xff);
        break;
      }
      case 6:  // truncate
        b.resize(pick(b.size()));
        break;
      case 7: {  // delete a span
        const std::size_t at = pick(b.size()), n = std::min<std::size_t>(b.size() - at, 1 + pick(64));
        b.erase(at, n);
        break;
      }
      case 8: {  // duplicate a span elsewhere
        const std::size_t from = pick(b.size()), n = std::min<std::size_t>(b.size() - from, 1 + pick(64));
        b.insert(pick(b.size()), b.substr(from, n));
        break;
      }
      default: {  // copy a span over another (same length)
        const std::size_t n = 1 + pick(std::min<std::size_t>(b.size(), 32));
        if (b.size() < n) break;
        const std::size_t from = pick(b.size() - n + 1), to = pick(b.size() - n + 1);
        std::memmove(&b[to], &b[from], n);
        break;
      }
    }
  }
  return b;
}

// What the product does with the file (everything a user's command would do with it).
void open_it(const Args& a, const fs::path& input, const fs::path& folder) {
  using namespace rptq;
  if (a.kind == "stats") {
    const ChannelStats s = load_stats(input);
    (void)cluster_view(s, 0, 1, 4, s.settings.stat, 4, QuantGrid::Exact);
    return;
  }
  if (a.kind == "checkpoint") {
    (void)inspect_checkpoint(input);
    auto q = load_checkpoint(input);
    auto tok = load_checkpoint_tokenizer(input);  // as rptq eval and generate load it
    std::vector<std::int32_t> ids = tok->encode("Once upon a time");
    if (ids.empty()) ids.push_back(0);
    (void)q->model().forward(ids, 1, nullptr, q->hook());
    return;
  }
  if (a.kind == "torch") {
    std::uint64_t sum = 0;
    for (const RawTensor& t : read_torch_checkpoint(input))
      for (std::size_t i = 0; i < t.nbytes(); i += 4096) sum += std::to_integer<unsigned>(t.data[i]);
    if (sum == 42) std::cerr << "";  // keep the reads
    return;
  }
  if (a.kind == "tokenizer") {
    auto tok = Tokenizer::load(folder);
    const auto ids = tok->encode("Once upon a time, there was a caf\xc3\xa9 \xf0\x9f\x98\x80 \x01 123 4567.");
    (void)tok->decode(ids);
    return;
  }
  // A model folder.
  (void)inspect_model(folder);
  auto m = Model::load(folder);
  auto tok = Tokenizer::load(folder);
  std::vector<std::int32_t> ids = tok->encode("Once upon a time there was");
  if (ids.empty()) ids.push_back(0);
  (void)m->forward(ids, 1);
}

enum Outcome { Accepted, Refused, Crash, Hang, Unnamed, Long, Internal, kOutcomes };
const char* kNames[] = {"accepted", "refused", "crash", "hang", "unnamed", "long", "internal"};

// Runs open_it in a child; returns the outcome and the child's message.
Outcome run_one(const Args& a, const fs::path& input, const fs::path& folder, std::string& message) {
  int fds[2];
  if (::pipe(fds) != 0) throw std::runtime_error("pipe failed");
  const pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    ::close(fds[0]);
    int code = Accepted;
    std::string msg;
    try {
      open_it(a, input, folder);
    } catch (const rptq::InputError& e) {
      msg = e.what();
      const bool named = msg.find(input.string()) != std::string::npos ||
                         (a.kind != "stats" && a.kind != "checkpoint" && msg.find(folder.string()) != std::string::npos);
      code = !named ? Unnamed : (msg.find('\n') != std::string::npos || msg.size() > 1000) ? Long : Refused;
    } catch (const std::exception& e) {
      msg = e.what();
      code = Internal;
    }
    if (::write(fds[1], msg.data(), std::min<std::size_t>(msg.size(), 4000)) < 0) code = Internal;
    ::_exit(code);
  }
  ::close(fds[1]);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(a.timeout);
  bool hung = false;
  for (;;) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count();
    if (left <= 0) {
      hung = true;
      break;
    }
    pollfd p{fds[0], POLLIN, 0};
    const int r = ::poll(&p, 1, static_cast<int>(std::min<long>(left, 1000)));
    if (r <= 0) continue;
    char buf[4096];
    const ssize_t n = ::read(fds[0], buf, sizeof buf);
    if (n <= 0) break;
    message.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fds[0]);
  if (hung) ::kill(-pid, SIGKILL), ::kill(pid, SIGKILL);
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (hung) return Hang;
  if (WIFSIGNALED(status)) {
    message = std::string("signal ") + strsignal(WTERMSIG(status));
    return Crash;
  }
  const int code = WIFEXITED(status) ? WEXITSTATUS(status) : Internal;
  return code >= 0 && code < kOutcomes ? static_cast<Outcome>(code) : Internal;
}

int usage() {
  std::cerr << "usage: rptq-fuzz --kind stats|checkpoint|safetensors|torch|config|tokenizer|hf-export --seed-path PATH"
               " [--model DIR] [--iterations N] [--seed S] [--timeout SEC] [--work DIR] [--save DIR]\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    if (k == "--same-size") {
      a.same_size = true;
      continue;
    }
    if (i + 1 >= argc) return usage();
    const std::string v = argv[++i];
    if (k == "--kind") a.kind = v;
    else if (k == "--seed-path") a.seed_path = v;
    else if (k == "--model") a.model = v;
    else if (k == "--iterations") a.iterations = std::stol(v);
    else if (k == "--seed") a.seed = std::stoull(v);
    else if (k == "--timeout") a.timeout = std::stoi(v);
    else if (k == "--work") a.work = v;
    else if (k == "--save") a.save = v;
    else return usage();
  }
  const bool folder_kind = a.kind == "safetensors" || a.kind == "config" ||
                           a.kind == "tokenizer" || a.kind == "hf-export";
  if (a.seed_path.empty() || (a.kind != "stats" && a.kind != "checkpoint" && a.kind != "torch" && !folder_kind) ||
      (folder_kind && a.model.empty()))
    return usage();

  const std::string seed_bytes = read_bytes(a.seed_path);
  if (seed_bytes.empty()) {
    std::cerr << "rptq-fuzz: cannot read " << a.seed_path << "\n";
    return 2;
  }
  const fs::path work = fs::path(a.work) / (a.kind + "-" + std::to_string(a.seed));
  fs::remove_all(work);
  fs::create_directories(work);
  fs::path input, folder = work;
  if (folder_kind) {
    // A copy of the model folder in which the one file is replaced by each mutation.
    folder = work / "model";
    fs::copy(a.model, folder, fs::copy_options::recursive);
    input = folder / fs::path(a.seed_path).filename();
  } else {
    input = work / fs::path(a.seed_path).filename();
  }
  if (!a.save.empty()) fs::create_directories(a.save);

  // The unmutated seed must be accepted, or the run measures nothing.
  write_bytes(input, seed_bytes);
  std::string msg;
  const Outcome base = run_one(a, input, folder, msg);
  if (base != Accepted) {
    std::cerr << "rptq-fuzz: the unmutated seed is not accepted (" << kNames[base] << "): " << msg << "\n";
    return 2;
  }

  std::mt19937_64 rng(a.seed);
  long counts[kOutcomes] = {};
  const auto t0 = std::chrono::steady_clock::now();
  for (long it = 0; it < a.iterations; ++it) {
    const std::string b = mutate(seed_bytes, rng, a.same_size);
    write_bytes(input, b);
    msg.clear();
    const Outcome o = run_one(a, input, folder, msg);
    ++counts[o];
    if (o >= Crash) {
      std::string saved;
      if (!a.save.empty()) {
        saved = (fs::path(a.save) / (a.kind + "-" + std::to_string(a.seed) + "-" + std::to_string(it) + "-" +
                                     kNames[o] + "-" + fs::path(a.seed_path).filename().string()))
                    .string();
        write_bytes(saved, b);
      }
      if (msg.size() > 300) msg = msg.substr(0, 300) + "...";
      for (char& c : msg)
        if (c == '\n') c = ' ';
      std::cout << "FAIL " << a.kind << " iteration " << it << " " << kNames[o] << ": " << msg
                << (saved.empty() ? "" : " [saved " + saved + "]") << std::endl;
    }
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::cout << "kind=" << a.kind << " seed_file=" << fs::path(a.seed_path).filename().string() << " seed=" << a.seed
            << " iterations=" << a.iterations;
  for (int o = 0; o < kOutcomes; ++o) std::cout << " " << kNames[o] << "=" << counts[o];
  std::cout << " seconds=" << secs << std::endl;
  fs::remove_all(work);
  long failures = 0;
  for (int o = Crash; o < kOutcomes; ++o) failures += counts[o];
  return failures ? 1 : 0;
}
