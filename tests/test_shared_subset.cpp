// The part of ../shared the repo carries (tests/data/shared, resources/models, resources/data: what
// rptq::test::shared_file() finds first) is what ../shared holds: copies byte for byte, the first rows of a logits
// file, and text heads whose tokens are the whole files' first tokens. These tests need ../shared itself.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <map>

#include "rptq/tokenizer/tokenizer.h"
#include "test_support.h"

namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using rptq::test::carried_shared_dir;
using rptq::test::read_file;
using rptq::test::resources_dir;
using rptq::test::shared_dir;

// Every file under `carried` whose name ../shared also has at `original`, compared byte for byte; returns how many.
int expect_same_files(const fs::path& carried, const fs::path& original) {
  int same = 0;
  for (const auto& e : fs::recursive_directory_iterator(carried)) {
    if (!e.is_regular_file()) continue;
    const fs::path there = original / fs::relative(e.path(), carried);
    if (!fs::exists(there)) continue;
    EXPECT_TRUE(read_file(e.path()) == read_file(there)) << e.path() << " differs from " << there;
    ++same;
  }
  return same;
}

TEST(SharedSubset, CopiesAreTheSharedFiles) {
  RPTQ_REQUIRE_SHARED();
  EXPECT_EQ(expect_same_files(carried_shared_dir(), shared_dir()), 5);  // the reference files carried whole
  // The shipped models hold every file of ../shared's, and the shipped stories.txt is ../shared's.
  for (const char* name : {"stories260k", "tiny-opt-16m"}) {
    SCOPED_TRACE(name);
    int files = 0;
    for (const auto& e : fs::directory_iterator(shared_dir() / "models" / name)) {
      ASSERT_TRUE(fs::exists(resources_dir() / "models" / name / e.path().filename())) << e.path();
      ++files;
    }
    EXPECT_EQ(expect_same_files(resources_dir() / "models" / name, shared_dir() / "models" / name), files);
  }
  EXPECT_EQ(read_file(resources_dir() / "data" / "stories.txt"), read_file(shared_dir() / "data" / "stories.txt"));
}

TEST(SharedSubset, LogitsHeadIsTheFirstRows) {
  RPTQ_REQUIRE_SHARED();
  const json head = json::parse(read_file(carried_shared_dir() / "reference" / "logits-tiny-opt-16m-head8.json"));
  const json whole = json::parse(read_file(shared_dir() / "reference" / "logits-tiny-opt-16m.json"));
  const auto ids = whole.at("ids").get<std::vector<std::int32_t>>();
  const std::int64_t rows = head.at("shape")[0], vocab = whole.at("shape")[1];
  EXPECT_EQ(rows, 8);
  EXPECT_EQ(head.at("shape")[1], vocab);
  EXPECT_EQ(head.at("ids").get<std::vector<std::int32_t>>(),
            std::vector<std::int32_t>(ids.begin(), ids.begin() + rows));
  EXPECT_EQ(head.at("model"), whole.at("model"));
  EXPECT_EQ(head.at("text"), whole.at("text"));
  const std::string cut = read_file(carried_shared_dir() / "reference" / "logits-tiny-opt-16m-head8.f32");
  const std::string all = read_file(shared_dir() / "reference" / "logits-tiny-opt-16m.f32");
  ASSERT_EQ(cut.size(), static_cast<std::size_t>(rows * vocab * 4));
  EXPECT_TRUE(all.compare(0, cut.size(), cut) == 0);
}

// Each text head is the first lines of its file, and tokenizes (tiny-opt-16m, one BOS, as perplexity.json's rows)
// to exactly the first tokens of the whole file, at least as many as any row of that file reads.
TEST(SharedSubset, TextHeadsTokenizeToTheWholeFilesFirstTokens) {
  RPTQ_REQUIRE_SHARED();
  std::map<std::string, std::int64_t> needed;  // data file -> the most tokens a row reads
  for (const auto& row : json::parse(read_file(shared_dir() / "reference" / "perplexity.json")))
    if (!row.at("max_windows").is_null()) {
      auto& n = needed[row.at("data").get<std::string>()];
      n = std::max(n, row.at("max_windows").get<std::int64_t>() * row.at("seqlen").get<std::int64_t>());
    }
  auto tok = rptq::Tokenizer::load(shared_dir() / "models" / "tiny-opt-16m");
  int heads = 0;
  for (const auto& e : fs::directory_iterator(carried_shared_dir() / "data")) {
    const std::string name = e.path().filename().string();
    ASSERT_TRUE(name.ends_with("-head.txt")) << name;
    const std::string data = "data/" + name.substr(0, name.size() - 9) + ".txt";
    SCOPED_TRACE(data);
    const std::string head = read_file(e.path()), whole = read_file(shared_dir() / data);
    ASSERT_FALSE(head.empty());
    EXPECT_EQ(head.back(), '\n');
    EXPECT_TRUE(whole.starts_with(head));
    const auto head_ids = tok->encode(head), whole_ids = tok->encode(whole);
    ASSERT_LE(head_ids.size(), whole_ids.size());
    EXPECT_TRUE(std::equal(head_ids.begin(), head_ids.end(), whole_ids.begin()));
    ASSERT_TRUE(needed.count(data)) << "no perplexity row reads " << data;
    EXPECT_GE(static_cast<std::int64_t>(head_ids.size()), needed[data]);
    ++heads;
  }
  EXPECT_EQ(heads, 2);
}

}  // namespace
