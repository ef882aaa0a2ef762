// What the client sees of each request (when it was sent, when each token
// came back) and the serving metrics computed from it, as vLLM's serving
// benchmark computes them: TTFT from sending to the first token, TPOT over
// the remaining tokens, ITL between consecutive tokens; throughput over the
// benchmark duration, counting successful requests only.
#pragma once

#include <string>
#include <vector>

#include "kvq_engine/report.hpp"
#include "kvq_engine/workload.hpp"

namespace kvq::host {

struct RequestTimeline {
  double sent = 0.0;                // benchmark seconds
  std::vector<double> token_times;  // benchmark seconds of every sampled token
  bool done = false;
  bool failed = false;
  std::string error;
};

// Fills the serving part of `report` (counts, tokens, throughput, TTFT,
// TPOT, ITL, end-to-end latency, per-request outcomes, errors).
// `timelines` is indexed like `requests`.
void summarize_requests(const std::vector<RequestSpec>& requests,
                        const std::vector<RequestTimeline>& timelines, double duration,
                        BenchmarkReport& report);

}  // namespace kvq::host
