#include "kvq_engine/workload.hpp"

#include <algorithm>
#include <cmath>
#include <random>

namespace kvq::host {

std::vector<RequestSpec> make_workload(const WorkloadSection& workload) {
  std::vector<RequestSpec> requests;
  requests.reserve(static_cast<size_t>(workload.num_prompts));
  // Its own stream, so arrival times do not shift the activations.
  std::mt19937_64 random(workload.seed ^ 0x61727269766Cull);
  std::exponential_distribution<double> gap(workload.request_rate > 0 ? workload.request_rate
                                                                      : 1.0);
  const auto draw_length = [&](int64_t nominal) {
    if (workload.random_range_ratio == 0.0) return nominal;
    const auto lo = std::max<int64_t>(
        1, static_cast<int64_t>(std::floor(nominal * (1.0 - workload.random_range_ratio))));
    const auto hi = static_cast<int64_t>(std::ceil(nominal * (1.0 + workload.random_range_ratio)));
    return std::uniform_int_distribution<int64_t>(lo, std::max(lo, hi))(random);
  };
  double arrival = 0.0;
  for (int64_t i = 0; i < workload.num_prompts; ++i) {
    if (workload.request_rate > 0 && i > 0) arrival += gap(random);
    const int64_t prompt_len = draw_length(workload.input_len);
    const int64_t output_len = draw_length(workload.output_len);
    const uint64_t group = static_cast<uint64_t>(i % workload.prefix_groups);
    requests.push_back(RequestSpec{i, prompt_len, output_len,
                                   std::min(workload.shared_prefix_len, prompt_len), arrival,
                                   kSharedPrefixContent - group});
  }
  return requests;
}

}  // namespace kvq::host
