// The INT8_DYNAMIC lightning indexer (spec/ascend.md §8), the CPU stand-in
// for npu_lightning_indexer_quant.
//
// Rotation R (D = index_head_dim): indexer.q_rot / indexer.k_rot when both
// were loaded, else the normalised Sylvester Hadamard H/sqrt(D) for both (D
// must then be a power of two). x_rot = x @ R, accumulated in float64 and
// rounded once to float32. The rotation is fixed by the first cache_write or
// forward; loading a different one afterwards is FAILED_PRECONDITION (the
// cached keys were rotated with the old one).
//
// Cache (KVQ_CACHE_LAYOUT_BLOCK_SLOT_HEAD, keys only, one KV head): a row is
// D int8 codes, the fp16 scale (little-endian) at byte D, zero padding up to
// row_bytes = round_up(D + 2, 4) (D = 128: 132 bytes).
//
// Dynamic int8 of a rotated row x (a key, or one head of a query), fp32:
//   s = max(max|x| / 127, 1e-6)      (the floor keeps all-zero rows finite)
//   code = clamp(rne(x / s), -127, 127)
// the scale is kept as fp16(s) (round to nearest even); a scale beyond the
// fp16 range is NON_FINITE. Scores use only the fp16 scales.
//
// Scores of query token t (position pos in its sequence) over keys j <= pos:
//   wq[t,h]    = fp16(fp32(w[t,h] * fp16(sq[t,h])))
//   score[t,j] = fp16(sk[j]) * sum_h wq[t,h] * max(q_code[t,h] . k_code[j], 0)
// (integer dot products, the head sum in float64 in head order). Output:
// I32 [T, index_topk], the key positions (0-based in the sequence) with the
// highest scores in descending order, ties to the lower position, -1 padded.
#pragma once

#include "kvq_sdk/plugin.hpp"

#include <cstdint>
#include <vector>

namespace kvq::ascend {

inline constexpr const char* kIndexerQRot = "indexer.q_rot";
inline constexpr const char* kIndexerKRot = "indexer.k_rot";
inline constexpr int64_t kIndexerMaxTopk = int64_t{1} << 24;
inline constexpr float kIndexerScaleFloor = 1e-6f;

// round_up(head_dim + 2, 4)
int64_t indexer_row_bytes(int64_t head_dim);

class IndexerImpl final : public sdk::LayerImpl {
 public:
  explicit IndexerImpl(int64_t index_topk) : topk_(index_topk) {}
  const char* name() const override { return "ascend_int8_indexer"; }
  kvq_cache_geometry geometry(const sdk::Layer& layer) const override;
  // Zero codes, fp16 scale 1.0 in every row.
  void cache_init(const sdk::Layer& layer, const sdk::CacheView& cache) const override;
  void cache_write(sdk::Layer& layer, const sdk::WriteBatch& batch) override;
  // Queries in the model dtype, output I32 [T, index_topk], head_weights required.
  sdk::ForwardSpec forward_spec(const sdk::Layer& layer) const override;
  void check_forward(const sdk::Layer& layer, const sdk::ForwardBatch& batch) const override;
  void forward(sdk::Layer& layer, const sdk::ForwardBatch& batch) override;
  // Checks that a rotation is available (no state change).
  void process_weights(sdk::Layer& layer) override;

  int64_t topk() const { return topk_; }

 private:
  struct Rotation {
    std::vector<double> q, k;  // [D][D] row-major: x_rot[j] = sum_i x[i] * R[i][j]
    bool loaded = false;
    std::vector<unsigned char> q_bytes, k_bytes;  // the raw parameters it came from
  };
  Rotation resolve(const sdk::Layer& layer) const;
  // FAILED_PRECONDITION when the parameters no longer match the fixed rotation.
  void check_unchanged(const sdk::Layer& layer) const;
  const Rotation& prepare(sdk::Layer& layer);

  int64_t topk_;
  bool fixed_ = false;
  Rotation rot_;
};

}  // namespace kvq::ascend
