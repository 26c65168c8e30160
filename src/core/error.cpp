#include "qforge/error.h"

namespace qforge {
namespace {

std::string compose(const std::string& subject, const std::string& problem,
                    const std::string& expected) {
  std::string m = subject.empty() ? problem : subject + ": " + problem;
  if (!expected.empty()) m += " (expected " + expected + ")";
  return m;
}

}  // namespace

const char* errc_name(Errc c) {
  switch (c) {
    case Errc::kInvalidArgument: return "invalid argument";
    case Errc::kShapeMismatch: return "shape mismatch";
    case Errc::kTypeMismatch: return "type mismatch";
    case Errc::kNotFound: return "not found";
    case Errc::kIo: return "i/o error";
    case Errc::kCorrupt: return "corrupt input";
    case Errc::kUnsupported: return "unsupported";
    case Errc::kInternal: return "internal error";
  }
  return "error";
}

Error::Error(Errc code, std::string subject, std::string problem, std::string expected)
    : std::runtime_error(compose(subject, problem, expected)),
      code_(code),
      subject_(std::move(subject)),
      problem_(std::move(problem)),
      expected_(std::move(expected)) {}

}  // namespace qforge
