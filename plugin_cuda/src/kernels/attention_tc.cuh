// run_tc: the launcher of one (kind, padded head size) pair of tensor-core
// kernels; explicitly instantiated by the attn_tc_*.cu translation units.
#pragma once

#include "attention_decode.cuh"
#include "attention_launch.hpp"
#include "attention_prefill.cuh"

namespace kvq::cuda::attn {

template <Kind K, int DP>
int run_tc(const Params& p, const TcLaunch& l) {
  const bool prefill = l.op == TcOp::kPrefill || l.op == TcOp::kPrefillOccupancy;
  const void* fn = prefill ? reinterpret_cast<const void*>(&prefill_kernel<K, DP>)
                           : reinterpret_cast<const void*>(&decode_kernel<K, DP>);
  if (const cudaError_t e =
          cudaFuncSetAttribute(fn, cudaFuncAttributeMaxDynamicSharedMemorySize, l.smem);
      e != cudaSuccess)
    return e;
  if (l.op == TcOp::kDecodeOccupancy || l.op == TcOp::kPrefillOccupancy)
    return cudaOccupancyMaxActiveBlocksPerMultiprocessor(l.occupancy, fn, l.threads, l.smem);
  if (prefill)
    prefill_kernel<K, DP><<<l.grid, l.threads, l.smem, l.stream>>>(p);
  else
    decode_kernel<K, DP><<<l.grid, l.threads, l.smem, l.stream>>>(p);
  return detail::last_launch_error();
}

#define KVQ_INSTANTIATE_TC(KIND)                                          \
  template int run_tc<KIND, 64>(const Params&, const TcLaunch&);          \
  template int run_tc<KIND, 128>(const Params&, const TcLaunch&);         \
  template int run_tc<KIND, 256>(const Params&, const TcLaunch&)

}  // namespace kvq::cuda::attn
