// Device helpers shared by the kernel translation units. Compiled by nvcc,
// or by a host C++ compiler with KVQ_EMU defined (plugin_cuda/tests/emu:
// the kernels run on the CPU under a SIMT emulator in the tests).
#pragma once

#include "kernels.hpp"
#include "layout.hpp"

#if defined(KVQ_EMU)
#include "simt_emu.hpp"
#else
#include <cuda_runtime.h>
#endif

#include <cstdint>

// A kernel defined in a header that one translation unit includes.
#if defined(KVQ_EMU)
#define KVQ_KERNEL static
#define KVQ_DYNAMIC_SMEM(name) unsigned char* name = ::kvq_emu::dynamic_smem()
#else
#define KVQ_KERNEL static __global__
#define KVQ_DYNAMIC_SMEM(name) extern __shared__ __align__(16) unsigned char name[]
#endif

namespace kvq::cuda::detail {

constexpr unsigned kFullMask = 0xFFFFFFFFu;

#if !defined(KVQ_EMU)
// A launch's error, or the sticky error of an earlier asynchronous one.
inline int last_launch_error() {
  return static_cast<int>(cudaGetLastError());
}
#endif

__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(kFullMask, v, o));
  return v;
}
__device__ __forceinline__ float warp_min(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fminf(v, __shfl_xor_sync(kFullMask, v, o));
  return v;
}

}  // namespace kvq::cuda::detail
