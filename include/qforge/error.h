// qforge's error type. Every error names the thing it is about (a file, a
// node, a tensor, a dimension) and says what was expected, so a user can act
// on the message alone. Public functions throw qforge::Error on bad input;
// assertions are kept for programmer errors inside qforge.
#pragma once

#include <stdexcept>
#include <string>

namespace qforge {

enum class Errc {
  kInvalidArgument,  // a value is out of its allowed domain
  kShapeMismatch,    // shapes or dimensions disagree
  kTypeMismatch,     // dtypes disagree or are not supported here
  kNotFound,         // a file, tensor, node or attribute is missing
  kIo,               // reading or writing a file failed
  kCorrupt,          // a file's content is malformed
  kUnsupported,      // valid input that qforge does not handle (yet)
  kInternal,         // a broken invariant inside qforge
};

const char* errc_name(Errc c);

class Error : public std::runtime_error {
 public:
  // subject:  what the error is about, e.g. "tensor 'x'", "file 'a.npy'".
  // problem:  what is wrong with it, e.g. "contains NaN at index 3".
  // expected: optional, what would have been right, e.g. "finite values".
  Error(Errc code, std::string subject, std::string problem, std::string expected = {});

  Errc code() const noexcept { return code_; }
  const std::string& subject() const noexcept { return subject_; }
  const std::string& problem() const noexcept { return problem_; }
  const std::string& expected() const noexcept { return expected_; }

 private:
  Errc code_;
  std::string subject_, problem_, expected_;
};

// Throws Error(code, subject, problem, expected) when cond is false. Its
// arguments are built on every call: on hot paths (per element, per tensor
// access, per node run) use QFORGE_CHECK, which builds them only on failure.
inline void check(bool cond, Errc code, const std::string& subject, const std::string& problem,
                  const std::string& expected = {}) {
  if (!cond) throw Error(code, subject, problem, expected);
}

}  // namespace qforge

// check() with its message built only when cond is false:
// QFORGE_CHECK(cond, code, subject, problem[, expected]).
#define QFORGE_CHECK(cond, ...)                                    \
  do {                                                             \
    if (!(cond)) [[unlikely]] throw ::qforge::Error(__VA_ARGS__);  \
  } while (0)
