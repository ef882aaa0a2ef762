// Tensor-core attention kernels for fp8 per-tensor caches with an fp8 query
// (see attention_tc.cuh).
#include "attention_tc.cuh"

namespace kvq::cuda::attn {
KVQ_INSTANTIATE_TC(Kind::kE4M3Q);
KVQ_INSTANTIATE_TC(Kind::kE5M2Q);
}  // namespace kvq::cuda::attn
