// One function per subcommand: it registers the subcommand and its options
// on the CLI11 app and returns the action to run when that one is chosen.
#pragma once

#include <functional>

#include <CLI/CLI.hpp>

namespace qforge::cli {

struct Command {
  CLI::App* sub;
  std::function<int()> run;
};

Command add_doctor(CLI::App& app);
Command add_roundtrip(CLI::App& app);
Command add_inspect(CLI::App& app);
Command add_run(CLI::App& app);
Command add_quantize(CLI::App& app);
Command add_eval(CLI::App& app);
Command add_bench(CLI::App& app);
Command add_compare(CLI::App& app);
Command add_report(CLI::App& app);
Command add_demo(CLI::App& app);

}  // namespace qforge::cli
