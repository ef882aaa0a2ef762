// Tensor-core attention kernels for fp8 per-tensor caches with a bf16 / f16
// query: K and V dequantized and rounded to the model dtype (see attention_tc.cuh).
#include "attention_tc.cuh"

namespace kvq::cuda::attn {
KVQ_INSTANTIATE_TC(Kind::kE4M3RB);
KVQ_INSTANTIATE_TC(Kind::kE4M3RH);
KVQ_INSTANTIATE_TC(Kind::kE5M2RB);
KVQ_INSTANTIATE_TC(Kind::kE5M2RH);
}  // namespace kvq::cuda::attn
