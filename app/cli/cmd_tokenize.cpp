#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli.h"
#include "rptq/base/error.h"
#include "rptq/model/model_info.h"
#include "rptq/tokenizer/tokenizer.h"

namespace rptq::cli {

namespace {
struct TokenizeArgs {
  std::string model, text, file;
  bool json = false, decode = false, no_special = false;
};

// Ids given as JSON ({"ids": [...]} or [...]) or as numbers separated by spaces or commas.
std::vector<std::int32_t> parse_ids(const std::string& s) {
  std::vector<std::int32_t> ids;
  const auto first = s.find_first_not_of(" \t\r\n");
  if (first != std::string::npos && (s[first] == '{' || s[first] == '[')) {
    try {
      auto j = nlohmann::json::parse(s);
      if (j.is_object()) j = j.at("ids");
      for (const auto& v : j) ids.push_back(v.get<std::int32_t>());
      return ids;
    } catch (const nlohmann::json::exception& e) {
      throw InputError(std::string("cannot read token ids from JSON: ") + e.what());
    }
  }
  std::string t = s;
  for (char& c : t)
    if (c == ',') c = ' ';
  std::istringstream in(t);
  std::string word;
  while (in >> word) {
    std::size_t used = 0;
    long long v = 0;
    try {
      v = std::stoll(word, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != word.size() || v < 0 || v > INT32_MAX) throw InputError("\"" + word + "\" is not a token id");
    ids.push_back(static_cast<std::int32_t>(v));
  }
  return ids;
}

void run_tokenize(const TokenizeArgs& a) {
  auto tok = Tokenizer::load(a.model);
  const std::string input = a.file.empty() ? a.text : read_text_file(a.file);
  if (a.decode) {
    const auto ids = parse_ids(input);
    for (auto id : ids)
      if (id >= tok->vocab_size())
        throw InputError("token id " + std::to_string(id) + " is outside the vocabulary (size " +
                         std::to_string(tok->vocab_size()) + ")");
    const std::string text = tok->decode(ids);
    if (a.json)
      std::cout << nlohmann::json{{"text", text}}.dump() << "\n";
    else
      std::cout << text << "\n";
    return;
  }
  const auto ids = tok->encode(input, !a.no_special);
  if (a.json) {
    std::cout << nlohmann::json{{"ids", ids}}.dump() << "\n";
    return;
  }
  for (std::size_t i = 0; i < ids.size(); ++i) std::cout << (i ? " " : "") << ids[i];
  std::cout << "\n";
}
}  // namespace

void add_tokenize(CLI::App& app) {
  auto a = std::make_shared<TokenizeArgs>();
  auto* cmd = app.add_subcommand("tokenize", "Turn text into token ids with a model's tokenizer, or ids into text");
  cmd->add_option("MODEL", a->model, "Hugging Face model folder (its tokenizer files)")->required();
  auto* text = cmd->add_option("--text", a->text, "The text (with --decode: the ids)");
  auto* file = cmd->add_option("--file", a->file, "Read the text (with --decode: the ids) from a file");
  text->excludes(file);
  cmd->add_flag("--decode", a->decode, "Decode token ids (space or comma separated, or JSON) to text");
  cmd->add_flag("--no-special", a->no_special, "Do not add the BOS token the model's tokenizer adds");
  cmd->add_flag("--json", a->json, "Print JSON: {\"ids\": [...]} (or {\"text\": ...} with --decode)");
  cmd->callback([a, cmd] {
    if (cmd->count("--text") + cmd->count("--file") == 0) throw CLI::RequiredError("--text or --file");
    run_tokenize(*a);
  });
}

}  // namespace rptq::cli
