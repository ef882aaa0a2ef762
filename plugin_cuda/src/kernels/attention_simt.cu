// Launchers of the SIMT and merge kernels (attention_simt.cuh).
#include "attention_launch.hpp"
#include "attention_simt.cuh"

namespace kvq::cuda::attn {

int launch_simt(const Params& p, cudaStream_t stream) {
  simt_kernel<<<dim3(static_cast<unsigned>(p.num_tokens), p.hq), kSimtWarps * 32, 0, stream>>>(p);
  return detail::last_launch_error();
}

int launch_merge(const Params& p, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>(p.num_tokens * p.hq),
                  static_cast<unsigned>((p.dv + kMergeDims - 1) / kMergeDims));
  merge_kernel<<<grid, kMergeThreads, 0, stream>>>(p);
  return detail::last_launch_error();
}

int launch_verdict(const Params& p, cudaStream_t stream) {
  verdict_kernel<<<1, 1, 0, stream>>>(p);
  return detail::last_launch_error();
}

}  // namespace kvq::cuda::attn
