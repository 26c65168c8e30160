// What several subcommands share: a progress bar on stderr, byte sizes for
// people, and writing an output file whole or not at all.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace qforge::cli {

std::string human_bytes(int64_t b);  // "415.5 KiB"

// Writes `text` to `path` through a temporary file renamed into place, so a
// failure never leaves a partly written file. Error(kIo) naming the path.
void write_file_atomic(const std::string& path, const std::string& text);

// A one-line progress bar on stderr, redrawn at most ten times a second;
// silent unless `enabled` (the commands enable it when stderr is a terminal
// and --quiet isn't given). `verb` says what is going on ("calibrating").
class ProgressBar {
 public:
  ProgressBar(bool enabled, std::string verb, std::string unit = "batches");
  ~ProgressBar();
  ProgressBar(const ProgressBar&) = delete;
  ProgressBar& operator=(const ProgressBar&) = delete;
  // done of total (-1: unknown) after `seconds`; `samples` (0: not shown) gives the rate.
  void update(int64_t done, int64_t total, double seconds, int64_t samples = 0);

 private:
  bool enabled_;
  std::string verb_, unit_;
  bool dirty_ = false;
  std::chrono::steady_clock::time_point drawn_{};
};

// True when progress bars should be drawn: stderr is a terminal and not quiet.
bool progress_enabled(bool quiet);

}  // namespace qforge::cli
