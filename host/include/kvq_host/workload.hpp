// The benchmark's requests: lengths, arrival times and the token content ids
// the activation generator is keyed by.
#pragma once

#include <cstdint>
#include <vector>

#include "kvq_host/deployment.hpp"

namespace kvq::host {

// Content id of the prefix every request shares (workload.shared_prefix_len):
// the same id gives the same activations, as the same text would.
inline constexpr uint64_t kSharedPrefixContent = ~uint64_t{0};

struct RequestSpec {
  int64_t id = 0;
  int64_t prompt_len = 0;
  int64_t output_len = 0;
  int64_t shared_prefix_len = 0;
  double arrival_s = 0.0;  // offset from the benchmark start

  // The content id of the token at `position`: shared for the common prefix.
  uint64_t content_at(int64_t position) const {
    return position < shared_prefix_len ? kSharedPrefixContent : static_cast<uint64_t>(id);
  }
};

// num_prompts requests of fixed lengths. request_rate 0: all arrive at 0;
// otherwise a Poisson process (exponential gaps, seeded by workload.seed), as
// vLLM's serving benchmark does.
std::vector<RequestSpec> make_workload(const WorkloadSection& workload);

}  // namespace kvq::host
