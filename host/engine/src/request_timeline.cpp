#include "kvq_engine/request_timeline.hpp"

namespace kvq::host {

void summarize_requests(const std::vector<RequestSpec>& requests,
                        const std::vector<RequestTimeline>& timelines, double duration,
                        BenchmarkReport& report) {
  std::vector<double> ttfts, tpots, itls, e2els;
  for (size_t i = 0; i < requests.size(); ++i) {
    const RequestSpec& spec = requests[i];
    const RequestTimeline& t = timelines[i];
    RequestOutcome outcome{spec.id,
                           spec.prompt_len,
                           static_cast<int64_t>(t.token_times.size()),
                           !t.failed && t.done,
                           0.0,
                           0.0,
                           t.error};
    if (outcome.success) {
      const double ttft = t.token_times.front() - t.sent;
      const double latency = t.token_times.back() - t.sent;
      outcome.ttft_ms = ttft * 1000.0;
      outcome.latency_ms = latency * 1000.0;
      ++report.completed;
      report.total_input_tokens += spec.prompt_len;
      report.total_output_tokens += outcome.output_len;
      ttfts.push_back(ttft);
      e2els.push_back(latency);
      if (t.token_times.size() > 1) {
        tpots.push_back((t.token_times.back() - t.token_times.front()) /
                        static_cast<double>(t.token_times.size() - 1));
        for (size_t k = 1; k < t.token_times.size(); ++k) {
          itls.push_back(t.token_times[k] - t.token_times[k - 1]);
        }
      }
    } else {
      ++report.failed;
      ++report.errors[t.error];
    }
    report.requests.push_back(std::move(outcome));
  }
  report.duration_s = duration;
  if (duration > 0) {
    report.request_throughput = static_cast<double>(report.completed) / duration;
    report.output_throughput = static_cast<double>(report.total_output_tokens) / duration;
    report.total_token_throughput =
        static_cast<double>(report.total_input_tokens + report.total_output_tokens) / duration;
  }
  report.ttft = summarize_seconds(ttfts);
  report.tpot = summarize_seconds(tpots);
  report.itl = summarize_seconds(itls);
  report.e2el = summarize_seconds(e2els);
}

}  // namespace kvq::host
