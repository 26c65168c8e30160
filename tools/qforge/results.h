// The measurements of eval, bench and compare as JSON (each with a "kind"),
// which `qforge report` reads back, and the tables the commands print.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "qforge/evaluate.h"

namespace qforge::cli {

nlohmann::json to_json(const EvalResult& r);
nlohmann::json to_json(const std::vector<BenchResult>& r, const BenchOptions& o);
nlohmann::json to_json(const CompareResult& r);
nlohmann::json to_json(const SensitivityResult& r);

void print_eval(const EvalResult& r);
void print_bench(const std::vector<BenchResult>& r, const BenchOptions& o);
void print_compare(const CompareResult& r, size_t top);
void print_sensitivity(const SensitivityResult& r);

// Writes j (indented) to path, whole or not at all.
void write_json(const std::string& path, const nlohmann::json& j);

}  // namespace qforge::cli
