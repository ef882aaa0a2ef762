// Mean / median / percentiles of latencies, as vLLM's serving benchmark
// computes them (numpy's default linear-interpolation percentile).
#pragma once

#include <vector>

namespace kvq::host {

struct LatencySummary {
  double mean_ms = 0.0;
  double median_ms = 0.0;
  double p90_ms = 0.0;
  double p99_ms = 0.0;
  double std_ms = 0.0;
  std::vector<double> samples_ms;  // unsorted, as measured
};

// `q` in [0, 100]; `sorted` ascending and not empty.
double percentile(const std::vector<double>& sorted, double q);

// Summarises latencies given in seconds; all zero for no samples.
LatencySummary summarize_seconds(const std::vector<double>& seconds);

}  // namespace kvq::host
