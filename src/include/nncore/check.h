// Errors. The dispatch layer validates every op once and throws these; bindings.cpp maps them
// to Python: ValueError, TypeError, RuntimeError (CUDA failures) and MemoryError (device OOM).
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace nncore {

struct ValueError : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};
struct TypeError : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};
struct OutOfMemoryError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Concatenates its arguments with operator<< into one message.
template <typename... Parts>
std::string concat(const Parts&... parts) {
  std::ostringstream out;
  (out << ... << parts);
  return out.str();
}

}  // namespace nncore

// NNCORE_CHECK(cond, "op: message ", shape, ...) throws ValueError when cond is false.
#define NNCORE_CHECK(cond, ...)                                   \
  do {                                                            \
    if (!(cond)) throw ::nncore::ValueError(::nncore::concat(__VA_ARGS__)); \
  } while (0)
#define NNCORE_CHECK_TYPE(cond, ...)                              \
  do {                                                            \
    if (!(cond)) throw ::nncore::TypeError(::nncore::concat(__VA_ARGS__)); \
  } while (0)
