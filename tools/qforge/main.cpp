// qforge: the command-line tool. Errors are printed as one line naming the
// thing at fault, with exit status 1; bad usage exits with 2.
#include <cstdio>
#include <vector>

#include "commands.h"
#include "qforge/error.h"

int main(int argc, char** argv) {
  CLI::App app{"qforge: quantize neural networks and run them fast, in C++"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("qforge ") + QFORGE_VERSION);
  const std::vector<qforge::cli::Command> commands = {
      qforge::cli::add_doctor(app),
      qforge::cli::add_roundtrip(app),
      qforge::cli::add_inspect(app),
      qforge::cli::add_run(app),
      qforge::cli::add_quantize(app),
      qforge::cli::add_eval(app),
      qforge::cli::add_bench(app),
      qforge::cli::add_compare(app),
      qforge::cli::add_report(app),
      qforge::cli::add_demo(app),
  };
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    for (const auto& c : commands)
      if (c.sub->parsed()) return c.run();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "qforge: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
