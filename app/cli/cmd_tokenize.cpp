#include <cstdint>
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

// Ids given as JSON ({"ids": [...]} or [...]) or as numbers separated by spaces or commas; `source` (--text or the
// file) names where they came from in errors. Each must be a whole number in 0..vocab-1.
std::vector<std::int32_t> parse_ids(const std::string& s, const std::string& source, std::int32_t vocab) {
  std::vector<std::int32_t> ids;
  const auto bad = [&](const std::string& shown, const std::string& why) -> InputError {
    const std::string cut = shown.size() > 40 ? shown.substr(0, 40) + "..." : shown;
    return InputError(source + ": token id " + cut + " " + why);
  };
  const auto checked = [&](long long v, const std::string& shown) {
    if (v < 0 || v >= vocab)
      throw bad(shown, "is outside the vocabulary (0.." + std::to_string(vocab - 1) + ")");
    return static_cast<std::int32_t>(v);
  };
  const auto first = s.find_first_not_of(" \t\r\n");
  if (first != std::string::npos && (s[first] == '{' || s[first] == '[')) {
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(s);
    } catch (const nlohmann::json::exception& e) {
      throw InputError(source + ": cannot read token ids from JSON: " + e.what());
    }
    if (j.is_object()) {
      if (!j.contains("ids")) throw InputError(source + ": a JSON object of token ids needs an \"ids\" list");
      j = j.at("ids");
    }
    if (!j.is_array()) throw InputError(source + ": token ids must be a JSON list of whole numbers");
    for (const auto& v : j) {
      const std::string shown = v.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
      if (v.is_number_unsigned()) {
        const auto u = v.get<std::uint64_t>();  // may exceed what a long long holds
        ids.push_back(checked(u > static_cast<std::uint64_t>(INT32_MAX) ? -1LL : static_cast<long long>(u), shown));
      } else if (v.is_number_integer()) {
        ids.push_back(checked(v.get<long long>(), shown));
      } else {
        throw bad(shown, "is not a whole number");
      }
    }
    return ids;
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
    } catch (const std::out_of_range&) {
      throw bad(word, "is outside the vocabulary (0.." + std::to_string(vocab - 1) + ")");
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != word.size()) throw bad("\"" + word + "\"", "is not a whole number");
    ids.push_back(checked(v, word));
  }
  return ids;
}

void run_tokenize(const TokenizeArgs& a) {
  auto tok = Tokenizer::load(a.model);
  const std::string input = a.file.empty() ? a.text : read_text_file(a.file);
  if (a.decode) {
    const auto ids = parse_ids(input, a.file.empty() ? std::string("--text") : a.file, tok->vocab_size());
    const std::string text = tok->decode(ids);
    if (a.json)
      std::cout << json_text(nlohmann::json{{"text", text}}, -1) << "\n";
    else
      std::cout << text << "\n";
    return;
  }
  const auto ids = tok->encode(input, !a.no_special);
  if (a.json) {
    std::cout << json_text(nlohmann::json{{"ids", ids}}, -1) << "\n";
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
