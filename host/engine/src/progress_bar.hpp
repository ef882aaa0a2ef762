// A one-line progress bar for long runs, drawn on stderr only when stderr is
// a terminal (logs and CI output stay clean), redrawn at most 10 times a
// second and cleared when done.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

namespace kvq::host {

class ProgressBar {
 public:
  ProgressBar(int64_t total, bool enabled, std::FILE* stream = stderr);
  ~ProgressBar();
  ProgressBar(const ProgressBar&) = delete;
  ProgressBar& operator=(const ProgressBar&) = delete;

  void update(int64_t done, int64_t running, int64_t waiting);

  // "[#####-----]  50/100 requests" (for tests).
  static std::string line(int64_t done, int64_t total, int64_t running, int64_t waiting);

 private:
  int64_t total_;
  bool enabled_;
  std::FILE* stream_;
  std::chrono::steady_clock::time_point last_draw_{};
};

}  // namespace kvq::host
