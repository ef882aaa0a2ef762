#include "case_log.hpp"

#include <unistd.h>

#include <cerrno>
#include <exception>

namespace kvq::conform {

const char* status_name(Status status) {
  switch (status) {
    case Status::kPass: return "PASS";
    case Status::kFail: return "FAIL";
    case Status::kSkip: return "SKIP";
  }
  return "FAIL";
}

void CaseLog::send(const nlohmann::json& message) {
  // Plain write(2): stdio in the child is redirected to catch plugin output,
  // and a line must reach the parent before the next plugin call can crash.
  const std::string line =
      message.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  size_t done = 0;
  while (done < line.size()) {
    const ssize_t n = ::write(fd_, line.data() + done, line.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // the parent is gone; nothing left to tell
    done += static_cast<size_t>(n);
  }
}

void CaseLog::report(const std::string& name, const Outcome& outcome) {
  send({{"type", "result"},
        {"case", name},
        {"status", status_name(outcome.status)},
        {"detail", outcome.detail}});
}

void CaseLog::run(const std::string& name, const std::function<Outcome()>& body) {
  send({{"type", "begin"}, {"case", name}});
  Outcome outcome;
  try {
    outcome = body();
  } catch (const CaseSkip& e) {
    outcome = skip(e.what());
  } catch (const std::exception& e) {
    outcome = fail(e.what());
  } catch (...) {
    outcome = fail("unknown exception");
  }
  report(name, outcome);
}

}  // namespace kvq::conform
