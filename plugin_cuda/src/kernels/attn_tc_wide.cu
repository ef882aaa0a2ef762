// Tensor-core attention kernels for bf16 and fp16 caches (see attention_tc.cuh).
#include "attention_tc.cuh"

namespace kvq::cuda::attn {
KVQ_INSTANTIATE_TC(Kind::kBF16);
KVQ_INSTANTIATE_TC(Kind::kF16);
}  // namespace kvq::cuda::attn
