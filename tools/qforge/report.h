// The report writer, shared by `qforge report` and `qforge demo`.
#pragma once

#include <string>
#include <vector>

namespace qforge::cli {

struct ReportFiles {
  std::string html, markdown, json;
};

// Reads the results files (JSON of eval, bench, compare) and writes the HTML
// page at html_path and its .md and .json beside it, each whole or not at all.
ReportFiles write_report(const std::vector<std::string>& inputs, const std::string& html_path);

}  // namespace qforge::cli
