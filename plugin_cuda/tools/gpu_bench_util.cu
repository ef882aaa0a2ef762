// kvq_cuda_bench helpers: memory, random fills, spin, ceilings (see gpu_bench_util.cuh).
#include "gpu_bench_util.cuh"

#include "codecs.cuh"

#include <cublas_v2.h>

#include <cmath>
#include <cstdio>

namespace kvq::cuda::bench {

void die(const char* what, int err, const char* file, int line) {
  std::fprintf(stderr, "FATAL: %s -> error %d (%s) at %s:%d\n", what, err,
               cudaGetErrorString(static_cast<cudaError_t>(err)), file, line);
  std::exit(1);
}

DevMem::DevMem(size_t bytes) : n_(bytes) {
  if (bytes > 0) KVQ_CK(cudaMalloc(&p_, bytes));
}
DevMem& DevMem::operator=(DevMem&& o) noexcept {
  if (this != &o) {
    if (p_ != nullptr) cudaFree(p_);
    p_ = o.p_;
    n_ = o.n_;
    o.p_ = nullptr;
    o.n_ = 0;
  }
  return *this;
}
DevMem::~DevMem() {
  if (p_ != nullptr) cudaFree(p_);
}

double median(std::vector<double> v) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

namespace {

__device__ __forceinline__ uint64_t mix64(uint64_t x) {  // splitmix64 finalizer
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

__global__ void normal_bf16_kernel(uint16_t* out, size_t n, uint64_t seed, float sigma) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const uint64_t h = mix64(seed * 0x2545F4914F6CDD1Dull + i);
    const float u1 = (static_cast<float>(h >> 40) + 1.0f) * (1.0f / 16777217.0f);  // (0, 1]
    const float u2 = static_cast<float>(h & 0xFFFFFFull) * (1.0f / 16777216.0f);
    const float z = sqrtf(-2.0f * logf(u1)) * cospif(2.0f * u2);
    out[i] = codec::float_to_bf16(sigma * z);
  }
}

__global__ void nonfinite_kernel(const uint16_t* x, size_t n, unsigned long long* count) {
  unsigned long long c = 0;
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<size_t>(gridDim.x) * blockDim.x)
    c += (x[i] & 0x7F80u) == 0x7F80u;
  if (c != 0) atomicAdd(count, c);
}

__global__ void iota_kernel(int64_t* out, size_t n, int64_t start) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<size_t>(gridDim.x) * blockDim.x)
    out[i] = start + static_cast<int64_t>(i);
}

__global__ void spin_kernel(long long cycles) {
  const long long t0 = clock64();
  while (clock64() - t0 < cycles) {
  }
}

__device__ __forceinline__ void xor_into(uint4& a, const uint4& b) {
  a.x ^= b.x;
  a.y ^= b.y;
  a.z ^= b.z;
  a.w ^= b.w;
}

// Reads n 16-byte words: each iteration issues U independent loads per thread
// (coalesced across the warp, U accumulators, so none waits for another);
// the XOR of everything read goes to *sink (one atomic per warp), so no load is dead.
template <int U>
__global__ void read_kernel(const uint4* __restrict__ src, size_t n, unsigned* sink) {
  const size_t stride = static_cast<size_t>(gridDim.x) * blockDim.x;
  size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x;
  uint4 acc[U];
#pragma unroll
  for (int u = 0; u < U; ++u) acc[u] = make_uint4(0, 0, 0, 0);
  for (; i + (U - 1) * stride < n; i += U * stride) {
    uint4 v[U];
#pragma unroll
    for (int u = 0; u < U; ++u) v[u] = src[i + u * stride];
#pragma unroll
    for (int u = 0; u < U; ++u) xor_into(acc[u], v[u]);
  }
  for (; i < n; i += stride) xor_into(acc[0], src[i]);
#pragma unroll
  for (int u = 1; u < U; ++u) xor_into(acc[0], acc[u]);
  const unsigned w = __reduce_xor_sync(0xFFFFFFFFu, acc[0].x ^ acc[0].y ^ acc[0].z ^ acc[0].w);
  if ((threadIdx.x & 31) == 0) atomicXor(sink, w);
}

template <int U>
__global__ void copy_kernel(uint4* __restrict__ dst, const uint4* __restrict__ src, size_t n) {
  const size_t stride = static_cast<size_t>(gridDim.x) * blockDim.x;
  size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x;
  for (; i + (U - 1) * stride < n; i += U * stride) {
    uint4 v[U];
#pragma unroll
    for (int u = 0; u < U; ++u) v[u] = src[i + u * stride];
#pragma unroll
    for (int u = 0; u < U; ++u) dst[i + u * stride] = v[u];
  }
  for (; i < n; i += stride) dst[i] = src[i];
}

unsigned grid_for(size_t n) {
  return static_cast<unsigned>(std::min<size_t>((n + 255) / 256, 65536));
}

void check_cublas(cublasStatus_t st, const char* what, int line) {
  if (st != CUBLAS_STATUS_SUCCESS) {
    std::fprintf(stderr, "FATAL: %s -> cuBLAS status %d at line %d\n", what, static_cast<int>(st), line);
    std::exit(1);
  }
}
#define KVQ_CB(x) check_cublas((x), #x, __LINE__)

}  // namespace

void fill_normal_bf16(uint16_t* out, size_t n, uint64_t seed, float sigma, cudaStream_t s) {
  if (n == 0) return;
  normal_bf16_kernel<<<grid_for(n), 256, 0, s>>>(out, n, seed, sigma);
  KVQ_CK(cudaGetLastError());
}

void count_nonfinite_bf16(const uint16_t* x, size_t n, unsigned long long* count, cudaStream_t s) {
  if (n == 0) return;
  nonfinite_kernel<<<grid_for(n), 256, 0, s>>>(x, n, count);
  KVQ_CK(cudaGetLastError());
}

void fill_iota_i64(int64_t* out, size_t n, int64_t start, cudaStream_t s) {
  if (n == 0) return;
  iota_kernel<<<grid_for(n), 256, 0, s>>>(out, n, start);
  KVQ_CK(cudaGetLastError());
}

void spin(long long cycles, cudaStream_t s) {
  spin_kernel<<<1, 1, 0, s>>>(cycles);
  KVQ_CK(cudaGetLastError());
}

Ceilings measure_ceilings(cudaStream_t s, int num_sms, size_t bytes, int gemm_n, const TimerOpts& o) {
  Ceilings c;
  char buf[256];
  bytes = bytes / 4096 * 4096;
  const size_t n = bytes / 16;
  {  // read: U independent 16-byte loads per thread and iteration, one full wave of CTAs
    DevMem src(bytes), sink(16);
    fill_normal_bf16(src.get<uint16_t>(), bytes / 2, 17, 1.0f, s);
    KVQ_CK(cudaMemsetAsync(sink.get(), 0, 16, s));
    for (int u : {2, 4, 8}) {
      const void* fn = u == 2   ? reinterpret_cast<const void*>(&read_kernel<2>)
                       : u == 4 ? reinterpret_cast<const void*>(&read_kernel<4>)
                                : reinterpret_cast<const void*>(&read_kernel<8>);
      int occ = 0;
      KVQ_CK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&occ, fn, 256, 0));
      const unsigned grid = static_cast<unsigned>(num_sms * std::max(occ, 1));
      const Timing t = time_runs(s, 1, o, [&](long long) {
        if (u == 2)
          read_kernel<2><<<grid, 256, 0, s>>>(src.get<uint4>(), n, sink.get<unsigned>());
        else if (u == 4)
          read_kernel<4><<<grid, 256, 0, s>>>(src.get<uint4>(), n, sink.get<unsigned>());
        else
          read_kernel<8><<<grid, 256, 0, s>>>(src.get<uint4>(), n, sink.get<unsigned>());
        return static_cast<int>(cudaGetLastError());
      });
      const double gbs = static_cast<double>(bytes) / (t.us * 1e3);
      if (gbs > c.read_gbs) {
        c.read_gbs = gbs;
        std::snprintf(buf, sizeof buf,
                      "read-only kernel, %d independent 16-byte loads per thread and iteration, "
                      "%d CTAs x 256 per SM, %.2f GiB, XOR-reduced; best of 2/4/8 loads, median of %d",
                      u, occ, bytes / 1073741824.0, t.samples);
        c.read_how = buf;
      }
    }
  }
  {  // copy: counted as bytes read + bytes written
    DevMem a(bytes), b(bytes);
    fill_normal_bf16(a.get<uint16_t>(), bytes / 2, 18, 1.0f, s);
    int occ = 0;
    KVQ_CK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&occ, copy_kernel<4>, 256, 0));
    const unsigned grid = static_cast<unsigned>(num_sms * std::max(occ, 1));
    Timing t = time_runs(s, 1, o, [&](long long) {
      copy_kernel<4><<<grid, 256, 0, s>>>(b.get<uint4>(), a.get<uint4>(), n);
      return static_cast<int>(cudaGetLastError());
    });
    c.copy_gbs = 2.0 * static_cast<double>(bytes) / (t.us * 1e3);
    std::snprintf(buf, sizeof buf,
                  "copy kernel, 4 x 16-byte loads then stores per thread, %d CTAs x 256 per SM, "
                  "%.2f GiB to another, median of %d",
                  occ, bytes / 1073741824.0, t.samples);
    c.copy_how = buf;
    t = time_runs(s, 1, o, [&](long long) {
      return static_cast<int>(cudaMemcpyAsync(b.get(), a.get(), bytes, cudaMemcpyDeviceToDevice, s));
    });
    const double gbs = 2.0 * static_cast<double>(bytes) / (t.us * 1e3);
    if (gbs > c.copy_gbs) {
      c.copy_gbs = gbs;
      std::snprintf(buf, sizeof buf, "cudaMemcpyAsync device to device, %.2f GiB, median of %d",
                    bytes / 1073741824.0, t.samples);
      c.copy_how = buf;
    }
  }
  {  // cuBLAS bf16 GEMM, fp32 compute, random N(0,1) data (zeros run faster)
    const size_t e = static_cast<size_t>(gemm_n) * gemm_n;
    DevMem a(e * 2), b(e * 2), d(e * 2);
    fill_normal_bf16(a.get<uint16_t>(), e, 19, 1.0f, s);
    fill_normal_bf16(b.get<uint16_t>(), e, 20, 1.0f, s);
    cublasHandle_t h = nullptr;
    KVQ_CB(cublasCreate(&h));
    KVQ_CB(cublasSetStream(h, s));
    const float alpha = 1.0f, beta = 0.0f;
    const double flops = 2.0 * gemm_n * static_cast<double>(gemm_n) * gemm_n;
    TimerOpts go = o;
    go.warmup = 5;
    go.reps = std::max(o.reps, 20);
    for (const cublasOperation_t ta : {CUBLAS_OP_N, CUBLAS_OP_T}) {
      const Timing t = time_runs(s, 1, go, [&](long long) {
        KVQ_CB(cublasGemmEx(h, ta, CUBLAS_OP_N, gemm_n, gemm_n, gemm_n, &alpha, a.get(), CUDA_R_16BF,
                            gemm_n, b.get(), CUDA_R_16BF, gemm_n, &beta, d.get(), CUDA_R_16BF, gemm_n,
                            CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
        return 0;
      });
      const double tf = flops / (t.us * 1e6);
      if (tf > c.gemm_tflops) {
        c.gemm_tflops = tf;
        std::snprintf(buf, sizeof buf,
                      "cublasGemmEx %d^3 %s, bf16 in/out, fp32 compute, N(0,1) data, median of %d "
                      "after 5 warm-up (%s)",
                      gemm_n, ta == CUBLAS_OP_N ? "NN" : "TN", t.samples, t.mode);
        c.gemm_how = buf;
      }
    }
    KVQ_CB(cublasDestroy(h));
  }
  KVQ_CK(cudaStreamSynchronize(s));
  return c;
}

}  // namespace kvq::cuda::bench
