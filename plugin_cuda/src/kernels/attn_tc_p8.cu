// Tensor-core attention kernels for Kind::kP8 (see attention_tc.cuh).
#include "attention_tc.cuh"

namespace kvq::cuda::attn {
KVQ_INSTANTIATE_TC(Kind::kP8);
}  // namespace kvq::cuda::attn
