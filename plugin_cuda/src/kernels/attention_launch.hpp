// Internal launch interface between the attention planner (attention.cu) and
// the kernel translation units (one per group of kinds, so nvcc can build
// them in parallel). Not part of the library's public interface.
#pragma once

#include "attention_common.cuh"

#include <cuda_runtime.h>

namespace kvq::cuda::attn {

int launch_simt(const Params& p, cudaStream_t stream);
int launch_merge(const Params& p, cudaStream_t stream);
int launch_verdict(const Params& p, cudaStream_t stream);  // when p.verdict != nullptr

// What run_tc does: launch the decode or prefill kernel, or report its
// occupancy (CTAs per SM) for `threads` threads and `smem` dynamic bytes.
enum class TcOp : int { kDecode, kPrefill, kDecodeOccupancy, kPrefillOccupancy };
struct TcLaunch {
  TcOp op;
  dim3 grid;
  int threads;
  int smem;
  cudaStream_t stream;
  int* occupancy;
};
template <Kind K, int DP>
int run_tc(const Params& p, const TcLaunch& l);

}  // namespace kvq::cuda::attn
