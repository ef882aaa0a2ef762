// The attention core's merge phase (attention_core.hpp): the key segments
// of each query row combined by their maxima and exp-sums, with the sink
// logit, scaled and stored in the output dtype.
#include "attention_core.hpp"
#include "kvq_sdk/dtype.hpp"
#include "kvq_sdk/plugin.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

namespace kvq::sdk::attention {

void merge(const LayerConfig& c, const ForwardBatch& b, const AttentionOptions& o, const Plan& plan,
           const Partials& partials) {
  const int64_t group = c.num_heads / c.num_kv_heads, dv = c.head_size_v;
  const std::vector<WorkItem>& items = plan.items;
  const bool has_sinks = b.sinks.present();
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();

  // Merge the key segments of each (sequence, KV head, query chunk) and store.
  const int32_t out_dtype = b.output.dtype();
  const int64_t out_es = dtype_size(out_dtype);
  std::vector<float> merged(static_cast<size_t>(dv));
  size_t it = 0;
  while (it < items.size()) {
    size_t end = it + 1;
    while (end < items.size() && items[end].seq == items[it].seq &&
           items[end].kv_head == items[it].kv_head && items[end].q_begin == items[it].q_begin)
      ++end;
    const WorkItem& w = items[it];
    const SequenceSlice& q = b.seqs[static_cast<size_t>(w.seq)];
    const int64_t rows = (w.q_end - w.q_begin) * group;
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t h = w.kv_head * group + r % group;
      float m = kNegInf;
      for (size_t k = it; k < end; ++k)
        m = std::max(m, partials.maxes[static_cast<size_t>(items[k].out_slot + r)]);
      float sink = kNegInf;
      if (has_sinks) {
        std::memcpy(&sink, b.sinks.at({h}), 4);
        m = std::max(m, sink);
      }
      float l = has_sinks ? std::exp(sink - m) : 0.0f;
      std::fill(merged.begin(), merged.end(), 0.0f);
      for (size_t k = it; k < end; ++k) {
        const auto slot = static_cast<size_t>(items[k].out_slot + r);
        if (partials.maxes[slot] == kNegInf) continue;
        const float f = std::exp(partials.maxes[slot] - m);
        l += partials.sums[slot] * f;
        const float* a = &partials.acc[static_cast<size_t>((items[k].out_slot + r) * dv)];
        for (int64_t c2 = 0; c2 < dv; ++c2) merged[static_cast<size_t>(c2)] += a[c2] * f;
      }
      const float inv = l > 0.0f ? scale_for(o.output_scales, h) / l : 0.0f;
      const int64_t token = q.query_start + w.q_begin + r / group;
      unsigned char* dst = b.output.at_mut({token, h, 0});
      for (int64_t c2 = 0; c2 < dv; ++c2)
        store_float(out_dtype, dst + c2 * b.output.stride(2) * out_es,
                    merged[static_cast<size_t>(c2)] * inv);
    }
    it = end;
  }
}

}  // namespace kvq::sdk::attention
