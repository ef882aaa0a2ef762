#include "kvq_host/workload.hpp"

#include <random>

namespace kvq::host {

std::vector<RequestSpec> make_workload(const WorkloadSection& workload) {
  std::vector<RequestSpec> requests;
  requests.reserve(static_cast<size_t>(workload.num_prompts));
  // Its own stream, so arrival times do not shift the activations.
  std::mt19937_64 random(workload.seed ^ 0x61727269766Cull);
  std::exponential_distribution<double> gap(workload.request_rate > 0 ? workload.request_rate
                                                                      : 1.0);
  double arrival = 0.0;
  for (int64_t i = 0; i < workload.num_prompts; ++i) {
    if (workload.request_rate > 0 && i > 0) arrival += gap(random);
    requests.push_back(RequestSpec{i, workload.input_len, workload.output_len,
                                   workload.shared_prefix_len, arrival});
  }
  return requests;
}

}  // namespace kvq::host
