// The benchmark's requests: lengths, arrival times and the token content ids
// the activation generator is keyed by.
#pragma once

#include <cstdint>
#include <vector>

#include "kvq_engine/token_content.hpp"
#include "kvq_files/deployment.hpp"

namespace kvq::host {

struct RequestSpec {
  int64_t id = 0;
  int64_t prompt_len = 0;
  int64_t output_len = 0;
  int64_t shared_prefix_len = 0;
  double arrival_s = 0.0;  // offset from the benchmark start
  uint64_t prefix_content = kSharedPrefixContent;

  // Own content = the request id; the first shared_prefix_len tokens share
  // `prefix_content` with every request that has it.
  TokenContent content() const {
    return TokenContent{static_cast<uint64_t>(id), prefix_content, shared_prefix_len};
  }
  uint64_t content_at(int64_t position) const { return content().at(position); }
};

// num_prompts requests (lengths fixed, or drawn with random_range_ratio).
// request_rate 0: all arrive at 0; otherwise a Poisson process (exponential
// gaps, seeded by workload.seed), as vLLM's serving benchmark does. Prefix
// group g has content id kSharedPrefixContent - g (request ids count up from
// 0, so they never meet).
std::vector<RequestSpec> make_workload(const WorkloadSection& workload);

}  // namespace kvq::host
