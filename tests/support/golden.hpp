// Reads the golden JSON files in tests/golden: just enough JSON for `"key": number` and
// `"key": [nested arrays of numbers]` (flattened in row-major order).
#pragma once

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace contrastive::testing {

inline std::string golden_path(const std::string& file) {
  return std::string(CONTRASTIVE_GOLDEN_DIR) + "/" + file;
}

inline std::vector<double> golden_numbers(const std::string& file, const std::string& key) {
  std::ifstream stream(golden_path(file));
  if (!stream) throw std::runtime_error("cannot open golden file " + golden_path(file));
  std::stringstream buffer;
  buffer << stream.rdbuf();
  const std::string text = buffer.str();
  const std::size_t found = text.find("\"" + key + "\"");
  if (found == std::string::npos) throw std::runtime_error("no key " + key + " in " + file);
  std::size_t at = text.find_first_not_of(" \t\r\n", text.find(':', found) + 1);
  std::vector<double> numbers;
  int depth = 0;
  do {  // a number, or an array of (arrays of) numbers
    const char c = text[at];
    if (c == '[') {
      ++depth;
      ++at;
    } else if (c == ']') {
      --depth;
      ++at;
    } else if (c == ',' || c == ' ' || c == '\n' || c == '\r' || c == '\t') {
      ++at;
    } else {
      char* end = nullptr;
      numbers.push_back(std::strtod(text.c_str() + at, &end));
      if (end == text.c_str() + at) throw std::runtime_error("bad number for " + key);
      at = static_cast<std::size_t>(end - text.c_str());
    }
  } while (depth > 0 && at < text.size());
  if (numbers.empty()) throw std::runtime_error("no numbers for " + key + " in " + file);
  return numbers;
}

}  // namespace contrastive::testing
