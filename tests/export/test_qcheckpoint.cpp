// The quantized checkpoint (HDF5): what `export_checkpoint` writes, read back by `inspect_checkpoint` and by the h5py
// example of docs/checkpoint-format.md; atomic writes under SIGKILL; clear errors for bad files.
#include <hdf5.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fcntl.h>

#include <chrono>
#include <cstring>
#include <regex>
#include <thread>

#include "cli_support.h"
#include "rptq/base/bitpack.h"
#include "rptq/method/calibration.h"
#include "rptq/base/error.h"
#include "rptq/eval/generate.h"
#include "rptq/eval/perplexity.h"
#include "rptq/export/qcheckpoint.h"
#include "rptq/export/stats_file.h"
#include "rptq/tokenizer/tokenizer.h"
#include "test_support.h"

namespace {

using rptq::test::shared_file;
using rptq::test::shared_model;

struct Quantized {
  std::filesystem::path model_dir;
  rptq::ChannelStats stats;
  std::unique_ptr<rptq::QuantizedModel> q;
};

Quantized quantize_shared(const char* name, rptq::QuantConfig cfg) {
  Quantized r;
  r.model_dir = shared_model(name);
  auto fp = rptq::Model::load(r.model_dir);
  auto tok = rptq::Tokenizer::load(r.model_dir);
  const auto ids = tok->encode(rptq::test::read_file(shared_file("data/stories.txt")), true);
  rptq::CalibrationSettings cs;
  cs.samples = 2;
  cs.seqlen = 64;
  r.stats = rptq::calibrate(*fp, r.model_dir.string(), ids, "stories.txt", "", cs);
  r.q = rptq::quantize(std::move(fp), r.stats, cfg);
  return r;
}

rptq::QuantConfig rtn(const char* preset) {
  rptq::QuantConfig c = rptq::QuantConfig::preset(preset);
  c.weight_method = rptq::WeightMethod::RTN;
  return c;
}

class CheckpointExport : public ::testing::TestWithParam<const char*> {};

// Every preset writes a checkpoint whose metadata and packed sizes are what the quantized model holds.
TEST_P(CheckpointExport, InspectReportsWhatWasWritten) {
  const auto dir = rptq::test::temp_dir(std::string("ckpt-") + GetParam());
  for (const std::string& preset : rptq::QuantConfig::preset_names()) {
    SCOPED_TRACE(preset);
    Quantized m = quantize_shared(GetParam(), rtn(preset.c_str()));
    const auto out = dir / (preset + ".h5");
    int calls = 0;
    rptq::ExportOptions eo;
    eo.progress = [&](double f, const std::string&) {
      EXPECT_GE(f, 0.0);
      EXPECT_LE(f, 1.0);
      ++calls;
      return true;
    };
    rptq::export_checkpoint(*m.q, m.stats, m.model_dir, out, eo);
    EXPECT_GT(calls, m.q->layers());
    const rptq::CheckpointInfo info = rptq::inspect_checkpoint(out);
    EXPECT_EQ(info.format_version, rptq::kCheckpointFormatVersion);
    EXPECT_EQ(info.preset, preset);
    EXPECT_EQ(info.wbits, m.q->config().wbits);
    EXPECT_EQ(info.kv_bits, m.q->config().kv_bits());
    EXPECT_EQ(info.clusters, (std::vector<int>{32, 4, 4, 32, 32}));
    EXPECT_EQ(info.layers, m.q->layers());
    const std::size_t per_layer = m.q->model().config().arch == rptq::Architecture::OPT ? 6 : 7;
    ASSERT_EQ(info.linears.size(), per_layer * static_cast<std::size_t>(m.q->layers()));
    for (const auto& l : info.linears) {
      EXPECT_EQ(l.bits, m.q->config().wbits) << l.name;
      if (l.bits < 16) {
        EXPECT_EQ(l.packed_bytes, rptq::packed_bytes(l.out * l.in, l.bits)) << l.name;
      }
    }
    EXPECT_EQ(info.file_bytes, std::filesystem::file_size(out));
    // An existing file is not overwritten without overwrite.
    EXPECT_THROW(rptq::export_checkpoint(*m.q, m.stats, m.model_dir, out), rptq::InputError);
  }
}

// Loaded back, every preset's checkpoint computes exactly what the in-memory quantized model computes: the same
// logits bit for bit (same arithmetic on the same values), so the same perplexity, and the same generated tokens
// with the packed KV cache.
TEST_P(CheckpointExport, LoadedCheckpointGivesIdenticalLogits) {
  const auto dir = rptq::test::temp_dir(std::string("ckpt-load-") + GetParam());
  auto tok = rptq::Tokenizer::load(shared_model(GetParam()));
  const auto ids = tok->encode(rptq::test::read_file(shared_file("data/stories.txt")), true);
  const auto win = std::span(ids).first(96);
  for (const std::string& preset : rptq::QuantConfig::preset_names()) {
    SCOPED_TRACE(preset);
    rptq::QuantConfig c = rptq::QuantConfig::preset(preset);
    if (preset != "W4A4") c.weight_method = rptq::WeightMethod::RTN;  // GPTQ once is enough (slow on 2 cores)
    Quantized m = quantize_shared(GetParam(), c);
    const auto out = dir / (preset + ".h5");
    rptq::export_checkpoint(*m.q, m.stats, m.model_dir, out);
    auto loaded = rptq::load_checkpoint(out);
    EXPECT_EQ(loaded->config().describe(), m.q->config().describe());
    const rptq::Tensor a = m.q->model().forward(win, 1, nullptr, m.q->hook());
    const rptq::Tensor b = loaded->model().forward(win, 1, nullptr, loaded->hook());
    ASSERT_EQ(a.shape(), b.shape());
    EXPECT_EQ(std::memcmp(a.data(), b.data(), static_cast<std::size_t>(a.numel()) * 4), 0) << "logits differ";
    rptq::PerplexityOptions po;
    po.seqlen = 64;
    const double pa = rptq::perplexity(m.q->model(), ids, po, m.q->hook()).ppl;
    const double pb = rptq::perplexity(loaded->model(), ids, po, loaded->hook()).ppl;
    EXPECT_EQ(pa, pb);
    if (m.q->config().quantizes(rptq::Tap::K)) {
      rptq::GenerateOptions go;
      go.max_new_tokens = 12;
      go.stop_at_eos = false;
      go.kv_quant = m.q->kv_quantization();
      const auto ga = rptq::generate(m.q->model(), win.first(8), go, {}, m.q->hook());
      go.kv_quant = loaded->kv_quantization();
      const auto gb = rptq::generate(loaded->model(), win.first(8), go, {}, loaded->hook());
      EXPECT_EQ(ga.tokens, gb.tokens);
      EXPECT_EQ(ga.kv_cache_bytes, gb.kv_cache_bytes);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(SharedModels, CheckpointExport, ::testing::Values("stories260k", "tiny-opt-16m"));

// 4-bit weights: with groups of 128 and of 32 columns (32 clusters over OPT-1.3b's and OPT-125m's... widths: 64
// and 24 columns) the linear layers take under 30% of their FP16 bytes, scales included (codes are 25%; an FP16
// scale and a packed zero point per group come on top). With tiny-opt-16m's default 32 clusters over 256 channels
// (8-column groups) the parameters alone are 2.5 bytes per 8 weights: about 40% in all, printed, bounded at 45%.
TEST(Checkpoint, FourBitLinearsUnderThirtyPercentOfFp16) {
  for (int group : {128, 32, 0}) {
    SCOPED_TRACE("weight group " + std::to_string(group));
    rptq::QuantConfig c = rtn("W4A16");
    c.weight_group = group;
    Quantized m = quantize_shared("tiny-opt-16m", c);
    const auto out = rptq::test::temp_dir("ckpt-g" + std::to_string(group)) / "w4.h5";
    rptq::export_checkpoint(*m.q, m.stats, m.model_dir, out);
    const rptq::CheckpointInfo info = rptq::inspect_checkpoint(out);
    const double ratio = static_cast<double>(info.linear_packed_bytes + info.linear_param_bytes) /
                         static_cast<double>(info.linear_fp16_bytes);
    std::printf("4-bit linears, %s: %.1f%% of FP16\n",
                group ? ("groups of " + std::to_string(group)).c_str() : "default clusters", 100 * ratio);
    EXPECT_LT(ratio, group ? 0.30 : 0.45);
    EXPECT_GT(ratio, 0.25);  // 4 bits are a quarter of 16; the scales and zero points come on top
  }
}

// The h5py example in docs/checkpoint-format.md dequantizes a layer's packed weights to exactly the weights the
// quantized model computes with.
TEST(Checkpoint, H5pyExampleDequantizesExactly) {
  if (std::system("/usr/bin/python3 -c 'import h5py, numpy' >/dev/null 2>&1") != 0)
    GTEST_SKIP() << "Debian's python3-h5py is not installed (scripts/install-deps.sh installs it)";
  const std::string doc = rptq::test::read_file(std::filesystem::path(RPTQ_RESOURCES_DIR).parent_path() / "docs" /
                                                "checkpoint-format.md");
  const auto a = doc.find("```python\n"), b = doc.find("```\n", a + 10);
  ASSERT_NE(a, std::string::npos);
  ASSERT_NE(b, std::string::npos);
  const auto dir = rptq::test::temp_dir("ckpt-h5py");
  rptq::test::write_file(dir / "example.py", doc.substr(a + 10, b - a - 10));
  for (const char* model : {"tiny-opt-16m", "stories260k"}) {
    rptq::QuantConfig c = rtn("W4A4");
    Quantized m = quantize_shared(model, c);
    const auto out = dir / (std::string(model) + ".h5");
    rptq::export_checkpoint(*m.q, m.stats, m.model_dir, out);
    const bool opt = m.q->model().config().arch == rptq::Architecture::OPT;
    for (const char* name : {"q", "o", opt ? "fc2" : "down"}) {
      const auto raw = dir / "w.f32";
      const std::string cmd = "/usr/bin/python3 " + (dir / "example.py").string() + " " + out.string() + " 1 " +
                              name + " " + raw.string();
      ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
      const std::string bytes = rptq::test::read_file(raw);
      const rptq::DecoderLayerWeights& w = m.q->model().layer(1);
      const rptq::Tensor t = (std::string(name) == "q"   ? w.q
                              : std::string(name) == "o" ? w.o
                              : opt                      ? w.fc2
                                                         : w.down)
                                 .dense();
      ASSERT_EQ(bytes.size(), static_cast<std::size_t>(t.numel()) * 4) << model << " " << name;
      EXPECT_EQ(std::memcmp(bytes.data(), t.data(), bytes.size()), 0) << model << " " << name << ": not bit-exact";
    }
  }
}

// Files of earlier format versions still load, to the same logits bit for bit: format 2 (the HDF5 layout before
// version 3: no checksums, variable-length strings; written here with RPTQ_HDF5_LEGACY_LAYOUT=1 and its version
// attribute set to 2) and format 1 (float32 scales; int8 zero points, or float32 when they do not fit; made from the
// format 2 file with Debian's h5py).
TEST(Checkpoint, FormatOneAndTwoFilesStillLoad) {
  if (std::system("/usr/bin/python3 -c 'import h5py, numpy' >/dev/null 2>&1") != 0)
    GTEST_SKIP() << "Debian's python3-h5py is not installed (scripts/install-deps.sh installs it)";
  const auto dir = rptq::test::temp_dir("ckpt-v1");
  rptq::test::write_file(dir / "downgrade.py", R"(import sys, h5py, numpy as np
with h5py.File(sys.argv[1], "r+") as f:
    assert f.attrs["format_version"] == 2
    f.attrs["format_version"] = np.int64(1)
    for l in f["layers"]:
        for name, g in f["layers"][l]["linear"].items():
            if int(g.attrs["bits"]) == 16:
                continue
            rows, groups = g["scales"].shape
            scale = np.ldexp(g["scales"][:].astype(np.float32), g["scale_exponents"][:].astype(np.int32)[:, None])
            del g["scales"], g["scale_exponents"]
            g["scales"] = scale.astype(np.float32)
            zb, off = int(g.attrs["zero_point_bits"]), int(g.attrs["zero_point_offset"])
            bits = np.unpackbits(g["zero_points"][:], bitorder="little")[: rows * groups * zb]
            zero = (bits.reshape(-1, zb).astype(np.int64) @ (1 << np.arange(zb)) + off).astype(np.float32)
            zero[g["zero_point_exceptions"][:]] = g["zero_point_exception_values"][:]
            del g["zero_points"], g["zero_point_exceptions"], g["zero_point_exception_values"]
            del g.attrs["zero_point_bits"], g.attrs["zero_point_offset"]
            zero = zero.reshape(rows, groups)
            fits = np.all(np.abs(zero) <= 127)
            g["zero_points"] = zero.astype(np.int8) if fits else zero
)");
  rptq::test::write_file(dir / "version2.py", R"(import sys, h5py, numpy as np
with h5py.File(sys.argv[1], "r+") as f:
    assert f.attrs["format_version"] == 3 and isinstance(f.attrs["format"], str)  # the legacy layout's VL strings
    f.attrs["format_version"] = np.int64(2)
)");
  Quantized m = quantize_shared("tiny-opt-16m", rtn("W4A4"));
  const auto v3 = dir / "v3.h5", v2 = dir / "v2.h5", v1 = dir / "v1.h5";
  rptq::export_checkpoint(*m.q, m.stats, m.model_dir, v3);
  ::setenv("RPTQ_HDF5_LEGACY_LAYOUT", "1", 1);
  rptq::export_checkpoint(*m.q, m.stats, m.model_dir, v2);
  ::unsetenv("RPTQ_HDF5_LEGACY_LAYOUT");
  for (const char* script : {"version2.py", "downgrade.py"}) {
    if (std::string(script) == "downgrade.py")
      std::filesystem::copy_file(v2, v1, std::filesystem::copy_options::overwrite_existing);
    const std::string cmd = "/usr/bin/python3 " + (dir / script).string() + " " +
                            (std::string(script) == "downgrade.py" ? v1 : v2).string();
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  }
  EXPECT_EQ(rptq::inspect_checkpoint(v1).format_version, 1);
  EXPECT_EQ(rptq::inspect_checkpoint(v2).format_version, 2);
  EXPECT_EQ(rptq::inspect_checkpoint(v3).format_version, 3);
  EXPECT_GT(rptq::inspect_checkpoint(v1).linear_param_bytes, rptq::inspect_checkpoint(v2).linear_param_bytes);
  auto a = rptq::load_checkpoint(v1), b = rptq::load_checkpoint(v2), c = rptq::load_checkpoint(v3);
  const auto ids = rptq::test::some_ids(48, static_cast<std::int32_t>(a->model().config().vocab), 3);
  const rptq::Tensor la = a->model().forward(ids, 1, nullptr, a->hook()), lb = b->model().forward(ids, 1, nullptr, b->hook());
  const rptq::Tensor lc = c->model().forward(ids, 1, nullptr, c->hook());
  ASSERT_EQ(la.numel(), lb.numel());
  ASSERT_EQ(la.numel(), lc.numel());
  EXPECT_EQ(std::memcmp(la.data(), lb.data(), static_cast<std::size_t>(la.numel()) * 4), 0);
  EXPECT_EQ(std::memcmp(la.data(), lc.data(), static_cast<std::size_t>(la.numel()) * 4), 0);
}

void expect_inspect_error(const std::filesystem::path& p, const std::string& needle) {
  try {
    rptq::inspect_checkpoint(p);
    ADD_FAILURE() << "expected InputError for " << p;
  } catch (const rptq::InputError& e) {
    EXPECT_NE(std::string(e.what()).find(p.string()), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(Checkpoint, BadFilesGiveClearErrors) {
  const auto dir = rptq::test::temp_dir("ckpt-bad");
  Quantized m = quantize_shared("stories260k", rtn("W4A4KV"));
  const auto good = dir / "good.h5";
  rptq::export_checkpoint(*m.q, m.stats, m.model_dir, good);
  expect_inspect_error(dir / "missing.h5", "no such file");
  rptq::test::write_file(dir / "text.h5", "not HDF5\n");
  expect_inspect_error(dir / "text.h5", "not an HDF5 file");
  rptq::save_stats(dir / "stats.h5", m.stats);  // a foreign HDF5 file: our own statistics file
  expect_inspect_error(dir / "stats.h5", "not an RPTQ quantized checkpoint");
  const std::string bytes = rptq::test::read_file(good);
  for (std::size_t cut : {std::size_t{64}, bytes.size() / 3, bytes.size() - 100}) {
    const auto p = dir / ("cut" + std::to_string(cut) + ".h5");
    rptq::test::write_file(p, bytes.substr(0, cut));
    try {
      rptq::inspect_checkpoint(p);
      ADD_FAILURE() << "a checkpoint cut at " << cut << " of " << bytes.size() << " bytes passed inspection";
    } catch (const rptq::InputError& e) {
      EXPECT_NE(std::string(e.what()).find(p.string()), std::string::npos) << e.what();
    }
  }
  {
    hid_t f = H5Fopen(good.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t a = H5Aopen(f, "format_version", H5P_DEFAULT);
    const std::int64_t v = rptq::kCheckpointFormatVersion + 1;
    H5Awrite(a, H5T_NATIVE_INT64, &v);
    H5Aclose(a);
    H5Fclose(f);
  }
  expect_inspect_error(good, "newer than this tool");
}

// `rptq export` killed with SIGKILL while it writes leaves nothing at the target path; a run left alone completes a
// valid checkpoint there.
TEST(Checkpoint, KilledExportLeavesNoFileAtTheTarget) {
  const auto dir = rptq::test::temp_dir("ckpt-kill");
  const auto stats = dir / "stats.h5";
  const auto model = shared_model("tiny-opt-16m").string();
  ASSERT_EQ(rptq::test::rptq_cli({"calibrate", model, "--data", shared_file("data/stories.txt").string(),
                                  "--samples", "2", "--seqlen", "64", "--out", stats.string()})
                .code,
            0);
  const auto target = dir / "out.h5";
  bool killed_while_writing = false;
  for (int attempt = 0; attempt < 5 && !killed_while_writing; ++attempt) {
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      const int devnull = ::open("/dev/null", O_WRONLY);
      dup2(devnull, 1);
      dup2(devnull, 2);
      execl(RPTQ_CLI_PATH, RPTQ_CLI_PATH, "export", model.c_str(), "--stats", stats.c_str(), "--preset", "W4A4",
            "--weights", "rtn", "--threads", "1", "--out", target.c_str(), static_cast<char*>(nullptr));
      _exit(127);
    }
    // Wait for the temporary file beside the target, then kill the writer in the middle of writing it.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (std::chrono::steady_clock::now() < deadline) {
      bool temp = false;
      for (const auto& e : std::filesystem::directory_iterator(dir))
        temp = temp || e.path().filename().string().rfind(".out.h5.tmp-", 0) == 0;
      if (temp) {
        ::kill(pid, SIGKILL);
        killed_while_writing = true;
        break;
      }
      int st = 0;
      if (waitpid(pid, &st, WNOHANG) == pid) break;  // finished before we saw it: try again
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    int st = 0;
    waitpid(pid, &st, 0);
    if (killed_while_writing) {
      EXPECT_TRUE(WIFSIGNALED(st));
      EXPECT_FALSE(std::filesystem::exists(target)) << "a killed export left a file at the target";
    } else {
      std::filesystem::remove(target);
    }
  }
  EXPECT_TRUE(killed_while_writing) << "the export never showed its temporary file";
  // Left alone, the same command writes a valid checkpoint.
  const auto r = rptq::test::rptq_cli({"export", model, "--stats", stats.string(), "--preset", "W4A4", "--weights",
                                       "rtn", "--out", target.string()});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NO_THROW(rptq::inspect_checkpoint(target));
  const auto again = rptq::test::rptq_cli({"export", model, "--stats", stats.string(), "--preset", "W4A4", "--out",
                                           target.string()});
  EXPECT_EQ(again.code, 2);
  EXPECT_NE(again.err.find("--force"), std::string::npos) << again.err;
  const auto inspect = rptq::test::rptq_cli({"inspect", target.string(), "--json"});
  ASSERT_EQ(inspect.code, 0) << inspect.err;
  EXPECT_NE(inspect.out.find("\"linear_ratio_to_fp16\""), std::string::npos);

  // eval and generate take the checkpoint wherever they take a model folder, and compute what the in-memory
  // quantized model computes.
  const std::string data = shared_file("data/stories.txt").string();
  const auto from_file = rptq::test::rptq_cli({"eval", target.string(), "--data", data, "--seqlen", "64", "--json"});
  const auto in_memory = rptq::test::rptq_cli({"eval", model, "--stats", stats.string(), "--preset", "W4A4",
                                               "--weights", "rtn", "--data", data, "--seqlen", "64", "--json"});
  ASSERT_EQ(from_file.code, 0) << from_file.err;
  ASSERT_EQ(in_memory.code, 0) << in_memory.err;
  const auto ppl_of = [](const std::string& out) {
    const auto k = out.find("\"ppl\": ");
    return k == std::string::npos ? -1.0 : std::stod(out.substr(k + 7));
  };
  EXPECT_GT(ppl_of(from_file.out), 1.0);
  EXPECT_EQ(ppl_of(from_file.out), ppl_of(in_memory.out));
  // The loaded checkpoint holds its linears packed: the same weight bytes in memory as the freshly quantized model,
  // fewer than the float model's.
  const auto fp = rptq::test::rptq_cli({"eval", model, "--data", data, "--seqlen", "64", "--max-windows", "1", "--json"});
  ASSERT_EQ(fp.code, 0) << fp.err;
  const auto bytes_of = [](const std::string& out) {
    const auto k = out.find("\"weight_bytes\": ");
    return k == std::string::npos ? -1.0 : std::stod(out.substr(k + 16));
  };
  EXPECT_GT(bytes_of(from_file.out), 0.0);
  EXPECT_EQ(bytes_of(from_file.out), bytes_of(in_memory.out));
  EXPECT_LT(bytes_of(from_file.out), bytes_of(fp.out));
  const auto gen = rptq::test::rptq_cli({"generate", target.string(), "--prompt", "Once upon a time",
                                         "--max-new-tokens", "8", "--json"});
  ASSERT_EQ(gen.code, 0) << gen.err;
  EXPECT_NE(gen.out.find("\"kv_cache_bits\": 4"), std::string::npos) << gen.out;
  const auto both = rptq::test::rptq_cli({"eval", target.string(), "--stats", stats.string(), "--preset", "W4A8",
                                          "--data", data});
  EXPECT_EQ(both.code, 2);
}

}  // namespace
