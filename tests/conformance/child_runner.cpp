#include "child_runner.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <thread>

namespace kvq::conform {
namespace {

using Clock = std::chrono::steady_clock;

struct FileCloser {
  void operator()(std::FILE* f) const { std::fclose(f); }
};
using File = std::unique_ptr<std::FILE, FileCloser>;

nlohmann::json result(const std::string& name, Status status, const std::string& detail) {
  return {{"type", "result"}, {"case", name}, {"status", status_name(status)}, {"detail", detail}};
}

// The first bytes of what the plugin printed, with control characters escaped
// so the report stays one line.
std::string printable_prefix(std::FILE* f, size_t* total) {
  std::fflush(f);
  const off_t size = ::lseek(fileno(f), 0, SEEK_END);
  *total = size > 0 ? static_cast<size_t>(size) : 0;
  std::string raw(std::min<size_t>(*total, 120), '\0');
  if (!raw.empty() && ::pread(fileno(f), raw.data(), raw.size(), 0) < 0) raw.clear();
  std::string out;
  for (unsigned char c : raw) {
    if (c >= 0x20 && c < 0x7F) {
      out += static_cast<char>(c);
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    }
  }
  return out;
}

[[noreturn]] void child_main(int write_fd, int out_fd, int err_fd,
                             const std::function<void(CaseLog&)>& body) {
  ::dup2(out_fd, STDOUT_FILENO);
  ::dup2(err_fd, STDERR_FILENO);
  const int null_fd = ::open("/dev/null", O_RDONLY);
  if (null_fd >= 0) ::dup2(null_fd, STDIN_FILENO);
  int code = 0;
  try {
    CaseLog log(write_fd);
    body(log);
  } catch (...) {
    code = 3;  // the parent reports a non-zero exit
  }
  // _exit: skip atexit handlers and stdio flushes the parent already owns.
  ::_exit(code);
}

// "SIGSEGV" for SIGSEGV, etc.
std::string signal_name(int signal_number) {
  if (const char* abbrev = sigabbrev_np(signal_number)) return std::string("SIG") + abbrev;
  return "signal " + std::to_string(signal_number);
}

}  // namespace

void run_in_child(double timeout_seconds, const std::function<void(CaseLog&)>& body,
                  const std::function<void(const nlohmann::json&)>& on_message) {
  File out(std::tmpfile()), err(std::tmpfile());
  int fds[2];
  if (!out || !err || ::pipe2(fds, O_CLOEXEC) != 0) {
    on_message(result("suite.child", Status::kFail,
                      std::string("cannot set up the child: ") + std::strerror(errno)));
    return;
  }
  std::fflush(stdout);
  std::fflush(stderr);
  const pid_t pid = ::fork();
  if (pid < 0) {
    ::close(fds[0]);
    ::close(fds[1]);
    on_message(result("suite.child", Status::kFail, std::string("fork: ") + std::strerror(errno)));
    return;
  }
  if (pid == 0) {
    ::close(fds[0]);
    child_main(fds[1], fileno(out.get()), fileno(err.get()), body);
  }
  ::close(fds[1]);

  const auto deadline =
      Clock::now() + std::chrono::milliseconds(static_cast<int64_t>(timeout_seconds * 1000));
  std::string pending, current_case;
  bool timed_out = false, eof = false;
  while (!eof) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) {
      timed_out = true;
      break;
    }
    pollfd p{fds[0], POLLIN, 0};
    const int ready = ::poll(&p, 1, static_cast<int>(std::min<int64_t>(left, 1000)));
    if (ready < 0 && errno != EINTR) break;
    if (ready <= 0) continue;
    char buf[65536];
    const ssize_t n = ::read(fds[0], buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      eof = true;
      break;
    }
    pending.append(buf, static_cast<size_t>(n));
    for (size_t nl; (nl = pending.find('\n')) != std::string::npos;) {
      const std::string line = pending.substr(0, nl);
      pending.erase(0, nl + 1);
      nlohmann::json message = nlohmann::json::parse(line, nullptr, false);
      if (message.is_discarded() || !message.is_object()) {
        on_message(result("suite.protocol", Status::kFail, "unreadable line from the child"));
        continue;
      }
      const std::string type = message.value("type", "");
      if (type == "begin") {
        current_case = message.value("case", "");
        continue;  // not a result: only remembered for crash reports
      }
      if (type == "result") current_case.clear();
      on_message(message);
    }
  }
  ::close(fds[0]);

  // The child closed its end (normally: it is exiting) or ran out of time.
  int wstatus = 0;
  if (!timed_out) {
    while (::waitpid(pid, &wstatus, WNOHANG) == 0) {
      if (Clock::now() >= deadline) {
        timed_out = true;
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }
  if (timed_out) {
    ::kill(pid, SIGKILL);
    while (::waitpid(pid, &wstatus, 0) < 0 && errno == EINTR) {
    }
    const std::string where = current_case.empty() ? "suite.child" : current_case;
    char limit[32];
    std::snprintf(limit, sizeof limit, "%g", timeout_seconds);
    on_message(result(where, Status::kFail,
                      std::string("timed out after ") + limit + " s; remaining cases not run"));
  } else if (WIFSIGNALED(wstatus)) {
    const std::string where = current_case.empty() ? "suite.child" : current_case;
    on_message(result(where, Status::kFail,
                      "crashed: " + signal_name(WTERMSIG(wstatus)) + "; remaining cases not run"));
  } else if (WIFEXITED(wstatus) && WEXITSTATUS(wstatus) != 0) {
    on_message(result(current_case.empty() ? "suite.child" : current_case, Status::kFail,
                      "child exited with status " + std::to_string(WEXITSTATUS(wstatus)) +
                          " (a plugin called exit?); remaining cases not run"));
  } else if (!current_case.empty()) {
    on_message(result(current_case, Status::kFail, "child ended without finishing the case"));
  }

  // Rule 9: a plugin reports through the host's log callback, never stdio.
  for (auto [stream, file] : {std::pair{"stdout", out.get()}, std::pair{"stderr", err.get()}}) {
    size_t total = 0;
    const std::string prefix = printable_prefix(file, &total);
    const std::string name = std::string("contract.silent_") + stream;
    if (total == 0) {
      on_message(result(name, Status::kPass, std::string("nothing written to ") + stream));
    } else {
      on_message(result(name, Status::kFail,
                        "plugin printed to " + std::string(stream) + " (" + std::to_string(total) +
                            " bytes): \"" + prefix + "\""));
    }
  }
}

}  // namespace kvq::conform
