// max |x| for calculate_kv_scales (spec/triton_sim.md §5). Each block
// reduces a strided share of the rows, then one atomicMax on the result's
// bits: non-negative floats order like their bit patterns, and a maximum
// does not round, so the result is exact and independent of block order.
#include "codecs.cuh"
#include "common.cuh"

namespace kvq::cuda {
namespace {

__global__ void absmax_kernel(const AbsmaxArgs a) {
  const int64_t rows = a.num_tokens * a.num_heads;
  const int lane = threadIdx.x & 31, warps = blockDim.x >> 5;
  const int64_t es = a.dtype == codec::kDtypeF32 ? 4 : 2;
  float m = 0.0f;
  for (int64_t r = static_cast<int64_t>(blockIdx.x) * warps + (threadIdx.x >> 5); r < rows;
       r += static_cast<int64_t>(gridDim.x) * warps) {
    const int64_t t = r / a.num_heads, h = r % a.num_heads;
    if (a.slot_mapping != nullptr && a.slot_mapping[t] < 0) continue;
    const auto* row = static_cast<const unsigned char*>(a.x) +
                      (t * a.stride_token + h * a.stride_head) * es;
    for (int64_t i = lane; i < a.head_size; i += 32)
      m = fmaxf(m, fabsf(codec::load_element(a.dtype, row, i)));  // fmaxf skips NaN
  }
  m = detail::warp_max(m);
  __shared__ float part[32];
  if (lane == 0) part[threadIdx.x >> 5] = m;
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < warps; ++w) m = fmaxf(m, part[w]);
    atomicMax(reinterpret_cast<unsigned int*>(a.out), codec::float_bits(m));
  }
}

}  // namespace

int launch_absmax(const AbsmaxArgs& a, void* stream_ptr) {
  auto stream = static_cast<cudaStream_t>(stream_ptr);
  if (a.out == nullptr || a.num_tokens < 0 || a.num_heads < 0 || a.head_size < 0 ||
      (a.dtype != codec::kDtypeF32 && a.dtype != codec::kDtypeF16 &&
       a.dtype != codec::kDtypeBF16))
    return cudaErrorInvalidValue;
  if (const cudaError_t e = cudaMemsetAsync(a.out, 0, sizeof(float), stream); e) return e;
  const int64_t rows = a.num_tokens * a.num_heads;
  if (rows == 0 || a.head_size == 0) return 0;
  if (a.x == nullptr) return cudaErrorInvalidValue;
  constexpr int kThreads = 256;
  const int64_t blocks = (rows + kThreads / 32 - 1) / (kThreads / 32);
  absmax_kernel<<<static_cast<int>(blocks < 1024 ? blocks : 1024), kThreads, 0, stream>>>(a);
  return detail::last_launch_error();
}

}  // namespace kvq::cuda
