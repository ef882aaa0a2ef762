// The attention core's entry point (paged_attention.hpp): plan, run, merge
// (attention_core.hpp).
#include "kvq_sdk/paged_attention.hpp"

#include "attention_core.hpp"
#include "kvq_sdk/plugin.hpp"

#include <cmath>

namespace kvq::sdk {

AttentionOptions attention_options(const LayerConfig& c, int num_threads) {
  AttentionOptions o;
  o.softmax_scale = static_cast<float>(
      c.softmax_scale != 0.0 ? c.softmax_scale : 1.0 / std::sqrt(static_cast<double>(c.head_size)));
  o.sliding_window = c.sliding_window;
  o.softcap = static_cast<float>(c.softcap);
  o.num_threads = num_threads;
  return o;
}

void paged_attention(const LayerConfig& config, const ForwardBatch& batch, const KvSource& kv,
                     const AttentionOptions& options) {
  const attention::Plan plan = attention::plan(config, batch, options);
  attention::Partials partials(plan.total_rows, config.head_size_v);
  attention::run(config, batch, kv, options, plan, partials);
  attention::merge(config, batch, options, plan, partials);
}

}  // namespace kvq::sdk
