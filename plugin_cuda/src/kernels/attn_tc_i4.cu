// Tensor-core attention kernels for Kind::kI4 (see attention_tc.cuh).
#include "attention_tc.cuh"

namespace kvq::cuda::attn {
KVQ_INSTANTIATE_TC(Kind::kI4);
}  // namespace kvq::cuda::attn
