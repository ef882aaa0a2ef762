#include "kvq_engine/latency_stats.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace kvq::host {

double percentile(const std::vector<double>& sorted, double q) {
  const double rank = q / 100.0 * static_cast<double>(sorted.size() - 1);
  const auto below = static_cast<size_t>(std::floor(rank));
  const size_t above = std::min(below + 1, sorted.size() - 1);
  const double fraction = rank - static_cast<double>(below);
  return sorted[below] + (sorted[above] - sorted[below]) * fraction;
}

LatencySummary summarize_seconds(const std::vector<double>& seconds) {
  LatencySummary summary;
  if (seconds.empty()) return summary;
  summary.samples_ms.reserve(seconds.size());
  for (const double s : seconds) summary.samples_ms.push_back(s * 1000.0);
  std::vector<double> sorted = summary.samples_ms;
  std::sort(sorted.begin(), sorted.end());
  const auto n = static_cast<double>(sorted.size());
  summary.mean_ms = std::accumulate(sorted.begin(), sorted.end(), 0.0) / n;
  double squares = 0.0;
  for (const double v : sorted) squares += (v - summary.mean_ms) * (v - summary.mean_ms);
  summary.std_ms = std::sqrt(squares / n);  // population std, as numpy.std
  summary.median_ms = percentile(sorted, 50);
  summary.p90_ms = percentile(sorted, 90);
  summary.p99_ms = percentile(sorted, 99);
  return summary;
}

}  // namespace kvq::host
