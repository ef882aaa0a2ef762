#include "progress_bar.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>

namespace kvq::host {

ProgressBar::ProgressBar(int64_t total, bool enabled, std::FILE* stream)
    : total_(total), enabled_(enabled && isatty(fileno(stream)) == 1), stream_(stream) {}

ProgressBar::~ProgressBar() {
  if (enabled_) fmt::print(stream_, "\r\033[K");
}

std::string ProgressBar::line(int64_t done, int64_t total, int64_t running, int64_t waiting) {
  constexpr int64_t kWidth = 30;
  const int64_t filled = total > 0 ? std::clamp<int64_t>(done * kWidth / total, 0, kWidth) : 0;
  return fmt::format("[{}{}] {}/{} requests, {} running, {} waiting",
                     std::string(static_cast<size_t>(filled), '#'),
                     std::string(static_cast<size_t>(kWidth - filled), '-'), done, total, running,
                     waiting);
}

void ProgressBar::update(int64_t done, int64_t running, int64_t waiting) {
  if (!enabled_) return;
  const auto now = std::chrono::steady_clock::now();
  if (done < total_ && now - last_draw_ < std::chrono::milliseconds(100)) return;
  last_draw_ = now;
  fmt::print(stream_, "\r\033[K{}", line(done, total_, running, waiting));
  std::fflush(stream_);
}

}  // namespace kvq::host
