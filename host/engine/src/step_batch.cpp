#include "kvq_engine/step_batch.hpp"

#include <algorithm>
#include <cstring>
#include <span>

#include "kvq_engine/float_codec.hpp"
#include "kvq_files/dtype.hpp"
#include "kvq_files/errors.hpp"

namespace kvq::host {

StepBatch::StepBatch(const ModelShape& shape, const Plugin& plugin)
    : shape_(shape),
      query_(plugin),
      key_(plugin),
      value_(plugin),
      output_(plugin),
      slot_mapping_(plugin),
      block_table_(plugin) {
  if (shape_.head_size_v == 0) shape_.head_size_v = shape_.head_size;
}

void StepBatch::prepare(const StepPlan& plan, const std::vector<RequestSpec>& requests,
                        int64_t block_size) {
  const auto num_seqs = static_cast<int64_t>(plan.chunks.size());
  const int64_t num_tokens = plan.num_tokens;
  attention_state_ = plan.attention_state;
  int64_t max_blocks = 1;
  for (const auto& chunk : plan.chunks) {
    max_blocks = std::max<int64_t>(max_blocks, static_cast<int64_t>(chunk.block_table.size()));
  }

  tokens_.clear();
  query_start_loc_host_.assign(1, 0);
  seq_lens_host_.clear();
  slot_mapping_.reshape(KVQ_DTYPE_I64, {num_tokens});
  query_start_loc_.reshape(KVQ_DTYPE_I32, {num_seqs + 1});
  seq_lens_.reshape(KVQ_DTYPE_I32, {num_seqs});
  block_table_.reshape(KVQ_DTYPE_I32, {num_seqs, max_blocks});
  auto* slots = slot_mapping_.as<int64_t>();
  auto* table = block_table_.as<int32_t>();
  // Unused table entries point at block 0: valid memory, never read, since
  // a sequence only reads the blocks covering its seq_len.
  std::fill(table, table + num_seqs * max_blocks, 0);

  for (int64_t s = 0; s < num_seqs; ++s) {
    const ScheduledChunk& chunk = plan.chunks[static_cast<size_t>(s)];
    const RequestSpec& request = requests.at(static_cast<size_t>(chunk.request_id));
    for (int64_t position = chunk.start; position < chunk.seq_len(); ++position) {
      slots[tokens_.size()] = chunk.slot(position, block_size);
      tokens_.push_back(TokenRef{request.content_at(position), position});
    }
    query_start_loc_host_.push_back(static_cast<int32_t>(tokens_.size()));
    seq_lens_host_.push_back(static_cast<int32_t>(chunk.seq_len()));
    std::copy(chunk.block_table.begin(), chunk.block_table.end(), table + s * max_blocks);
  }
  std::memcpy(query_start_loc_.data(), query_start_loc_host_.data(),
              query_start_loc_host_.size() * sizeof(int32_t));
  std::memcpy(seq_lens_.data(), seq_lens_host_.data(), seq_lens_host_.size() * sizeof(int32_t));
  slot_mapping_.upload();
  block_table_.upload();

  query_.reshape(shape_.dtype, {num_tokens, shape_.num_heads, shape_.head_size});
  key_.reshape(shape_.dtype, {num_tokens, shape_.num_kv_heads, shape_.head_size});
  value_.reshape(shape_.dtype, {num_tokens, shape_.num_kv_heads, shape_.head_size_v});
  output_.reshape(shape_.dtype, {num_tokens, shape_.num_heads, shape_.head_size_v});
}

void StepBatch::generate(const ActivationGenerator& generator, int64_t layer) {
  const int64_t element = query_.element_size();
  // This rank's heads of every token (all heads without tensor parallelism).
  auto fill = [&](PluginTensor& tensor, Projection projection, int64_t heads, int64_t first_head) {
    std::byte* base = tensor.host();
    const int64_t row = heads * generator.width(projection);
    scratch_.resize(static_cast<size_t>(row));
    for (size_t t = 0; t < tokens_.size(); ++t) {
      generator.fill_token(projection, tokens_[t].content, tokens_[t].position, layer, scratch_,
                           first_head);
      encode_floats(shape_.dtype, scratch_, base + static_cast<int64_t>(t) * row * element);
    }
    tensor.upload();
  };
  fill(query_, Projection::kQuery, shape_.num_heads, shape_.first_head());
  fill(key_, Projection::kKey, shape_.num_kv_heads, shape_.first_kv_head());
  fill(value_, Projection::kValue, shape_.num_kv_heads, shape_.first_kv_head());
}

client::CacheWriteArgs StepBatch::cache_write_args(const kvq_tensor& kv_cache) const {
  client::CacheWriteArgs args;
  args.key(key_.view()).value(value_.view()).slot_mapping(slot_mapping_.view()).kv_cache(kv_cache);
  return args;
}

client::ForwardArgs StepBatch::forward_args(const kvq_tensor& kv_cache) const {
  client::ForwardArgs args;
  args.attention_state(attention_state_)
      .query(query_.view())
      .key(key_.view())
      .value(value_.view())
      .kv_cache(kv_cache)
      .query_start_loc(query_start_loc_.view())
      .seq_lens(seq_lens_.view())
      .block_table(block_table_.view())
      .output(output_.view());
  return args;
}

}  // namespace kvq::host
