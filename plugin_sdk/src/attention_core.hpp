// The attention core (paged_attention.hpp) in its three phases, each in its
// own file:
//   plan  (attention_plan.cpp):  the batch cut into work items (sequence, KV
//         head, query chunk, key segment) and the tasks threads run;
//   run   (attention_run.cpp):   every task's partial results (running max,
//         exp-sum and weighted V sum per query row), by the block-streaming
//         decode kernel or the tile kernels;
//   merge (attention_merge.cpp): the key segments of each row combined by
//         their maxima and exp-sums (with sinks) and stored as the output.
// The plan is plain data and the partials are the only state passed between
// phases, so each phase can be read (and tested) on its own.
#pragma once

#include "kvq_sdk/paged_attention.hpp"

#include <cstddef>
#include <cstdint>
#include <vector>

namespace kvq::sdk {

struct LayerConfig;

namespace attention {

// Query tokens per work item: kQueryChunk, doubled up to kMaxQueryChunk
// while every thread keeps >= 4 tasks. Each key tile is decoded once per
// item, so long prefills amortize the decode over more rows.
inline constexpr int64_t kQueryChunk = 32;
inline constexpr int64_t kMaxQueryChunk = 128;
inline constexpr int64_t kMinSegmentTiles = 4;  // key tiles per decode segment, at least

// Keys [k_begin, k_end) of query tokens [q_begin, q_end) of one sequence for
// one KV head; its (q_end - q_begin) * group query rows own rows
// [out_slot, out_slot + rows) of the partial buffers.
struct WorkItem {
  int64_t seq, kv_head, q_begin, q_end, k_begin, k_end;
  int64_t out_slot;
};

// What one thread runs: the items of one (sequence, query chunk, key
// segment) for `heads` consecutive KV heads (all of them when the chunk has
// few rows, so each cache tile is read once for every head).
struct Task {
  size_t first;   // item of the first KV head
  size_t stride;  // items between consecutive KV heads
  int64_t heads;  // KV heads in the task
};

struct Plan {
  // Ordered (sequence, query chunk, KV head, key segment): the merge takes
  // runs of items that differ only in their key segment.
  std::vector<WorkItem> items;
  std::vector<Task> tasks;
  int64_t total_rows = 0;  // query rows over all items
};

// Per query row of every item: running max m, exp-sum l and the weighted
// sum of V rows acc[dv] (online softmax state).
struct Partials {
  Partials(int64_t rows, int64_t dv)
      : maxes(static_cast<size_t>(rows)),
        sums(static_cast<size_t>(rows)),
        acc(static_cast<size_t>(rows * dv)) {}
  std::vector<float> maxes, sums, acc;
};

// One value for every head (size 1), one per head, or 1 when empty.
inline float scale_for(const std::vector<float>& scales, int64_t head) {
  if (scales.empty()) return 1.0f;
  return scales.size() == 1 ? scales[0] : scales[static_cast<size_t>(head)];
}

Plan plan(const LayerConfig& config, const ForwardBatch& batch, const AttentionOptions& options);
void run(const LayerConfig& config, const ForwardBatch& batch, const KvSource& kv,
         const AttentionOptions& options, const Plan& plan, Partials& partials);
void merge(const LayerConfig& config, const ForwardBatch& batch, const AttentionOptions& options,
           const Plan& plan, const Partials& partials);

}  // namespace attention
}  // namespace kvq::sdk
