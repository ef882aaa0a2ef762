// The child side of the suite: runs named cases and reports each one to the
// parent over a pipe, one JSON object per line. A line is sent before a case
// starts, so when the plugin crashes or hangs the parent knows which case it
// was in.
#pragma once

#include <functional>
#include <stdexcept>
#include <string>

#include <nlohmann/json.hpp>

namespace kvq::conform {

enum class Status { kPass, kFail, kSkip };

const char* status_name(Status status);

struct Outcome {
  Status status = Status::kPass;
  std::string detail;
};

inline Outcome pass(std::string detail = {}) {
  return {Status::kPass, std::move(detail)};
}
inline Outcome fail(std::string detail) {
  return {Status::kFail, std::move(detail)};
}
inline Outcome skip(std::string detail) {
  return {Status::kSkip, std::move(detail)};
}

// Thrown anywhere inside a case to end it as failed / skipped with a reason.
struct CaseFailure : std::runtime_error {
  using std::runtime_error::runtime_error;
};
struct CaseSkip : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class CaseLog {
 public:
  explicit CaseLog(int fd) : fd_(fd) {}

  // Runs `body` as case `name`. An exception that escapes it fails the case
  // (CaseSkip skips it), so a case can stop at its first broken expectation.
  void run(const std::string& name, const std::function<Outcome()>& body);
  // Reports a case that needs no running (e.g. skipped up front).
  void report(const std::string& name, const Outcome& outcome);
  // Any other message for the parent (support matrix, plugin identity).
  void send(const nlohmann::json& message);

 private:
  int fd_;
};

}  // namespace kvq::conform
