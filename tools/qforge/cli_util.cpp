#include "cli_util.h"

#include <unistd.h>

#include <cstdio>
#include <fstream>

#include "qforge/error.h"

namespace qforge::cli {

std::string human_bytes(int64_t b) {
  char buf[32];
  if (b >= (int64_t{1} << 20)) std::snprintf(buf, sizeof buf, "%.2f MiB", static_cast<double>(b) / (1 << 20));
  else if (b >= 1024) std::snprintf(buf, sizeof buf, "%.1f KiB", static_cast<double>(b) / 1024);
  else std::snprintf(buf, sizeof buf, "%lld B", static_cast<long long>(b));
  return buf;
}

void write_file_atomic(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  bool ok;
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    ok = static_cast<bool>(f);
    if (ok) {
      f.write(text.data(), static_cast<std::streamsize>(text.size()));
      f.close();
      ok = !f.fail();
    }
  }
  if (!ok || std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    throw Error(Errc::kIo, "output file '" + path + "'", "can't be written",
                "a writable path (does the folder exist?)");
  }
}

bool progress_enabled(bool quiet) { return !quiet && isatty(STDERR_FILENO); }

ProgressBar::ProgressBar(bool enabled, std::string verb, std::string unit)
    : enabled_(enabled), verb_(std::move(verb)), unit_(std::move(unit)) {}

ProgressBar::~ProgressBar() {
  if (dirty_) std::fputs("\n", stderr);
}

void ProgressBar::update(int64_t done, int64_t total, double seconds, int64_t samples) {
  if (!enabled_) return;
  const auto now = std::chrono::steady_clock::now();
  const bool last = total > 0 && done >= total;
  if (!last && now - drawn_ < std::chrono::milliseconds(100)) return;
  drawn_ = now;
  std::string rate;
  if (samples > 0 && seconds > 0) {
    char r[48];
    std::snprintf(r, sizeof r, ", %.0f samples/s", static_cast<double>(samples) / seconds);
    rate = r;
  }
  char line[200];
  if (total > 0) {
    const int width = 24;
    const int filled = static_cast<int>(width * done / total);
    const double left = done > 0 ? seconds * static_cast<double>(total - done) / static_cast<double>(done) : 0;
    std::snprintf(line, sizeof line, "\r%s [%s%s] %lld/%lld %s%s, %.0fs left ", verb_.c_str(),
                  std::string(static_cast<size_t>(filled), '#').c_str(),
                  std::string(static_cast<size_t>(width - filled), '.').c_str(), static_cast<long long>(done),
                  static_cast<long long>(total), unit_.c_str(), rate.c_str(), left);
  } else {
    std::snprintf(line, sizeof line, "\r%s %lld %s%s ", verb_.c_str(), static_cast<long long>(done), unit_.c_str(),
                  rate.c_str());
  }
  std::fputs(line, stderr);
  dirty_ = true;
}

}  // namespace qforge::cli
