// Tensor parallelism of the C8 scale preparation (spec/ascend.md §4): the
// checkpoint holds the full per-channel vectors (8 KV heads x D); a layer on
// rank r of TP t with `local` KV heads takes heads
// [floor(r * total / t), +local), replicating heads when t > total. Checked
// through the derived antiquant parameters and the codes cache_write stores.
#include "ascend_harness.hpp"

#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace kvq::test::asc {
namespace {

constexpr int64_t kTotalKvHeads = 8, kDim = 8;

// Expects rank c, given the vectors `loaded`, to use the per-channel values
// `local` ([num_kv_heads * D]) in its antiquant parameters and written codes.
void expect_rank_uses(Plugin& p, const Config& c, const Scales& loaded, const Scales& local) {
  LayerPtr layer = make_c8_layer(p, c, loaded);
  ASSERT_EQ(rank_slice(loaded, c).k_scale, local.k_scale);  // the harness agrees

  const int64_t tokens = 6;
  Cache cache(p, layer.get(), 1);
  const auto [k, v] = random_kv(c.model_dtype, {tokens, c.num_kv_heads, kDim}, 1.0, 41);
  ASSERT_EQ(write_kv(p, layer.get(), k, v, {0, 1, 2, 3, 4, 5}, cache).code, 0);

  const std::vector<double>* vecs[] = {&local.k_scale, &local.k_offset, &local.v_scale,
                                       &local.v_offset};
  for (int i = 0; i < 4; ++i) {
    std::vector<double> want;
    for (double x : *vecs[i]) want.push_back(bf16(x));
    EXPECT_EQ(read_param(p, layer.get(), full_name(c, kAntiquantParams[i])), want)
        << kAntiquantParams[i];
  }
  const std::vector<double> kd = k.to_doubles(), vd = v.to_doubles();
  for (int64_t t = 0; t < tokens; ++t)
    for (int64_t h = 0; h < c.num_kv_heads; ++h)
      for (int64_t d = 0; d < kDim; ++d) {
        const size_t ch = static_cast<size_t>(h * kDim + d);
        const size_t x = static_cast<size_t>((t * c.num_kv_heads + h) * kDim + d);
        ASSERT_EQ(cache.code(t, 0, h, d),
                  ref_quantize(kd[x], ref_channel(local.k_scale[ch], local.k_offset[ch])))
            << "K token " << t << " local head " << h << " d " << d;
        ASSERT_EQ(cache.code(t, 1, h, d),
                  ref_quantize(vd[x], ref_channel(local.v_scale[ch], local.v_offset[ch])))
            << "V token " << t << " local head " << h << " d " << d;
      }
}

// Rank c loads the full vectors and must use KV heads `heads` of them.
void expect_rank_uses_heads(Plugin& p, const Config& c, const Scales& full,
                            const std::vector<int64_t>& heads) {
  Scales local;  // built from `heads`, not from rank_slice
  for (int64_t h : heads)
    for (int64_t d = 0; d < kDim; ++d) {
      const size_t i = static_cast<size_t>(h * kDim + d);
      local.k_scale.push_back(full.k_scale[i]);
      local.k_offset.push_back(full.k_offset[i]);
      local.v_scale.push_back(full.v_scale[i]);
      local.v_offset.push_back(full.v_offset[i]);
    }
  expect_rank_uses(p, c, full, local);
}

// A layer of `local_kv_heads` KV heads (2 query heads each) on rank `rank` of TP `tp_size`.
Config tp_config(int64_t local_kv_heads, int32_t rank, int32_t tp_size) {
  Config c;
  c.num_heads = 2 * local_kv_heads;
  c.num_kv_heads = local_kv_heads;
  c.head_size = kDim;
  c.tp_rank = rank;
  c.tp_size = tp_size;
  return c;
}

// Every rank of TP `tp_size` loads the full vectors (seed) and must use KV
// heads heads_of(rank).
void expect_every_rank_uses(int32_t tp_size, int64_t local_kv_heads, uint64_t seed,
                            const std::function<std::vector<int64_t>(int32_t)>& heads_of) {
  Plugin p(ascend_plugin_path());
  const Scales full = random_scales(kTotalKvHeads * kDim, seed);
  for (int32_t r = 0; r < tp_size; ++r) {
    SCOPED_TRACE("rank " + std::to_string(r));
    expect_rank_uses_heads(p, tp_config(local_kv_heads, r, tp_size), full, heads_of(r));
    if (::testing::Test::HasFatalFailure()) return;
  }
}

TEST(AscendC8TensorParallel, Tp4TwoLocalHeadsPerRank) {
  expect_every_rank_uses(4, 2, 4, [](int32_t r) { return std::vector<int64_t>{2 * r, 2 * r + 1}; });
}

TEST(AscendC8TensorParallel, Tp16ReplicatesEightKvHeads) {
  expect_every_rank_uses(16, 1, 16,
                         [](int32_t r) { return std::vector<int64_t>{r * kTotalKvHeads / 16}; });
}

// A vector that already holds local * D values is the rank's share, used as is.
TEST(AscendC8TensorParallel, LocalSizedVectorIsUsedAsIs) {
  Plugin p(ascend_plugin_path());
  const Scales full = random_scales(kTotalKvHeads * kDim, 5);
  const Config c = tp_config(2, 3, 4);
  // Pre-sliced heads 2..3 loaded on rank 3: used as they are (not heads 6..7).
  Scales pre;
  for (const auto& [dst, src] :
       {std::pair{&pre.k_scale, &full.k_scale}, std::pair{&pre.k_offset, &full.k_offset},
        std::pair{&pre.v_scale, &full.v_scale}, std::pair{&pre.v_offset, &full.v_offset}})
    dst->assign(src->begin() + 2 * kDim, src->begin() + 4 * kDim);
  expect_rank_uses(p, c, pre, pre);
}

TEST(AscendC8TensorParallel, VectorNotAMultipleOfHeadSizeIsInvalid) {
  Plugin p(ascend_plugin_path());
  const Config c = tp_config(2, 1, 4);
  Scales s = random_scales(kTotalKvHeads * kDim, 7);
  s.v_scale.resize(kTotalKvHeads * kDim - 3);  // 61 values, D = 8
  LayerPtr layer = make_c8_layer(p, c, s);
  Cache cache(p, layer.get(), 1);
  const OwnedTensor kv = random_tensor(c.model_dtype, {1, 2, kDim}, 1.0, 8);
  const CallResult r = write_kv(p, layer.get(), kv, kv, {0}, cache);
  EXPECT_EQ(r.code, KVQ_ERR_INVALID_ARGUMENT) << r.message;
  EXPECT_NE(r.message.find("head_size"), std::string::npos) << r.message;
}

}  // namespace
}  // namespace kvq::test::asc
