// Launchers of the cache write / init kernels (cache_write.cuh).
#include "cache_write.cuh"

namespace kvq::cuda {
namespace {

using namespace write_kernels;
using codec::kDtypeBF16;
using codec::kDtypeF16;
using codec::kDtypeF32;

int grid_for_rows(int64_t rows) {
  return static_cast<int>((rows + kWarpsPerBlock - 1) / kWarpsPerBlock);
}

}  // namespace

int launch_cache_write(const WriteArgs& a, void* stream_ptr) {
  auto stream = static_cast<cudaStream_t>(stream_ptr);
  const bool fp8_tensor = a.codec == Codec::kE4M3 || a.codec == Codec::kE5M2;
  if (!detail::layout_ok(a.codec, a.layout) || a.verdict == nullptr || a.num_tokens < 0 ||
      a.num_tokens >= (int64_t{1} << 36) ||
      (a.in_dtype != kDtypeF32 && a.in_dtype != kDtypeF16 && a.in_dtype != kDtypeBF16))
    return cudaErrorInvalidValue;
  if (a.num_tokens > 0 && (a.key == nullptr || a.value == nullptr || a.slot_mapping == nullptr ||
                           a.cache == nullptr))
    return cudaErrorInvalidValue;
  if (fp8_tensor && (a.k_scales == nullptr || a.v_scales == nullptr ||
                     (a.num_scales != 1 && a.num_scales != a.layout.num_kv_heads)))
    return cudaErrorInvalidValue;
  if (const cudaError_t e = cudaMemsetAsync(a.verdict, 0, sizeof(WriteVerdict), stream); e)
    return e;
  const int64_t rows = a.num_tokens * a.layout.num_kv_heads;
  if (rows == 0) return 0;
  const int64_t capacity = a.layout.num_blocks * a.layout.block_size;
  const int grid = grid_for_rows(rows);
  validate_kernel<<<grid, 32 * kWarpsPerBlock, 0, stream>>>(a, capacity, detail::quantized(a.codec));
  if (const int e = detail::last_launch_error()) return e;
  write_kernel<<<grid, 32 * kWarpsPerBlock, 0, stream>>>(a, capacity);
  return detail::last_launch_error();
}

int launch_cache_init(Codec codec, const CacheLayout& l, unsigned char* cache, void* stream_ptr) {
  auto stream = static_cast<cudaStream_t>(stream_ptr);
  if (!detail::layout_ok(codec, l) || (cache == nullptr && l.num_blocks > 0))
    return cudaErrorInvalidValue;
  const auto bytes = static_cast<size_t>(l.num_blocks * l.bytes_per_block);
  if (bytes == 0) return 0;
  if (const cudaError_t e = cudaMemsetAsync(cache, 0, bytes, stream); e) return e;
  if (!detail::per_token_head(codec)) return 0;
  int64_t k_off = l.head_size, v_off = l.head_size_v;  // int8 / fp8: after D bytes
  if (codec == Codec::kInt4Pth) {
    k_off = (l.head_size + 1) / 2;
    v_off = (l.head_size_v + 1) / 2;
  }
  const int64_t rows = l.num_blocks * 2 * l.block_size * l.num_kv_heads;
  const int grid = static_cast<int>(rows / 256 + 1 < 65536 ? rows / 256 + 1 : 65536);
  init_scales_kernel<<<grid, 256, 0, stream>>>(l, cache, k_off, v_off);
  return detail::last_launch_error();
}

}  // namespace kvq::cuda
