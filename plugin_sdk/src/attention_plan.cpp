// The attention core's plan (attention_core.hpp): how a batch is cut into
// work items and tasks.
#include "attention_core.hpp"
#include "attention_kernels.hpp"
#include "kvq_sdk/plugin.hpp"

#include <algorithm>

namespace kvq::sdk::attention {

Plan plan(const LayerConfig& c, const ForwardBatch& b, const AttentionOptions& o) {
  const int64_t hkv = c.num_kv_heads, group = c.num_heads / hkv;
  const int64_t num_seqs = static_cast<int64_t>(b.seqs.size());
  constexpr int64_t kKeyTile = kernels::kKeyTile;

  // A task is what one thread runs: the items of one (sequence, query chunk,
  // key segment) for one KV head, or for all KV heads when the chunk has few
  // rows (decode): then each tile of blocks is read for every head at once,
  // a sequential sweep the hardware prefetchers follow, instead of one row
  // in num_kv_heads per head.
  const auto grouped = [&](int64_t chunk_len) {
    return chunk_len * group <= 2 * kernels::kRowBlock;
  };

  // Key segments per chunk: split long decodes when there are too few tasks
  // to keep every thread busy. Four tasks per thread, not one, so a thread
  // that the OS delays does not hold up the call; segments of at least
  // kMinSegmentTiles tiles keep the prefetch ahead of the kernels.
  int64_t splits = o.num_splits, min_segment = kKeyTile;
  if (splits <= 0) {
    splits = 1;
    const int64_t tasks = grouped(1) ? num_seqs : num_seqs * hkv;
    if (b.max_query_len == 1 && o.num_threads > 1 && tasks > 0 && tasks < 4 * o.num_threads) {
      splits = std::min<int64_t>(16, (4 * o.num_threads + tasks - 1) / tasks);
      min_segment = kMinSegmentTiles * kKeyTile;
    }
  }

  // Build the work list; every item owns rows [out_slot, out_slot + rows) of
  // the partial buffers. Items are ordered (sequence, chunk, KV head,
  // segment), as merge() expects.
  Plan out;
  std::vector<WorkItem>& items = out.items;
  std::vector<Task>& tasks = out.tasks;
  int64_t& total_rows = out.total_rows;
  int64_t query_chunk = kQueryChunk;
  while (query_chunk < kMaxQueryChunk &&
         num_seqs * hkv * ((b.max_query_len + 2 * query_chunk - 1) / (2 * query_chunk)) >=
             4 * static_cast<int64_t>(o.num_threads))
    query_chunk *= 2;
  for (int64_t s = 0; s < num_seqs; ++s) {
    const SequenceSlice& q = b.seqs[static_cast<size_t>(s)];
    for (int64_t q0 = 0; q0 < q.query_len; q0 += query_chunk) {
      const int64_t q1 = std::min(q.query_len, q0 + query_chunk);
      const int64_t hi = std::min(q.seq_len, q.context_len + q1);
      const int64_t lo = o.sliding_window > 0
                             ? std::max<int64_t>(0, q.context_len + q0 - o.sliding_window + 1)
                             : 0;
      const int64_t n_split = std::max<int64_t>(1, std::min(splits, (hi - lo) / min_segment));
      const int64_t per = (hi - lo + n_split - 1) / n_split;
      const size_t base = items.size();
      for (int64_t g = 0; g < hkv; ++g)
        for (int64_t sp = 0; sp < n_split; ++sp) {
          const int64_t kb = std::min(hi, lo + sp * per), ke = std::min(hi, lo + (sp + 1) * per);
          items.push_back({s, g, q0, q1, kb, ke, total_rows});
          total_rows += (q1 - q0) * group;
        }
      const auto stride = static_cast<size_t>(n_split);
      for (int64_t sp = 0; sp < n_split; ++sp) {
        const size_t first = base + static_cast<size_t>(sp);
        if (grouped(q1 - q0))
          tasks.push_back({first, stride, hkv});
        else
          for (int64_t g = 0; g < hkv; ++g)
            tasks.push_back({first + static_cast<size_t>(g) * stride, stride, 1});
      }
    }
  }

  return out;
}

}  // namespace kvq::sdk::attention
