#include "memory_bandwidth.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#elif defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace kvq::host {
namespace {

// 64-byte vectors (GCC vector extensions) for the triad: the compiler uses
// the widest stores and loads of the baseline ISA.
using F64x8 = double __attribute__((vector_size(64)));

// The read loops: eight independent accumulators held in registers (so the
// loads, not the latency of the adds, set the pace), one per SIMD level.
// Each sums 64-bit lanes over [p, p + bytes), bytes a multiple of 512.
uint64_t read_baseline(const unsigned char* p, size_t bytes) {
#if defined(__SSE2__)
  __m128i a[8];
  for (__m128i& x : a) x = _mm_setzero_si128();
  for (size_t i = 0; i < bytes; i += 128)
#pragma GCC unroll 8
    for (int k = 0; k < 8; ++k)
      a[k] = _mm_add_epi64(a[k], _mm_load_si128(reinterpret_cast<const __m128i*>(p + i) + k));
  for (int k = 1; k < 8; ++k) a[0] = _mm_add_epi64(a[0], a[k]);
  uint64_t lanes[2];
  std::memcpy(lanes, &a[0], 16);
  return lanes[0] + lanes[1];
#else
  uint64_t a[8] = {};
  for (size_t i = 0; i < bytes; i += 64)
    for (int k = 0; k < 8; ++k) {
      uint64_t x;
      std::memcpy(&x, p + i + 8 * k, 8);
      a[k] += x;
    }
  return a[0] + a[1] + a[2] + a[3] + a[4] + a[5] + a[6] + a[7];
#endif
}

#if defined(__x86_64__)
__attribute__((target("avx2"))) uint64_t read_avx2(const unsigned char* p, size_t bytes) {
  __m256i a[8];
  for (__m256i& x : a) x = _mm256_setzero_si256();
  for (size_t i = 0; i < bytes; i += 256)
#pragma GCC unroll 8
    for (int k = 0; k < 8; ++k)
      a[k] = _mm256_add_epi64(a[k], _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i) + k));
  for (int k = 1; k < 8; ++k) a[0] = _mm256_add_epi64(a[0], a[k]);
  uint64_t lanes[4];
  std::memcpy(lanes, &a[0], 32);
  return lanes[0] + lanes[1] + lanes[2] + lanes[3];
}

__attribute__((target("avx512f"))) uint64_t read_avx512(const unsigned char* p, size_t bytes) {
  __m512i a[8];
  for (__m512i& x : a) x = _mm512_setzero_si512();
  for (size_t i = 0; i < bytes; i += 512)
#pragma GCC unroll 8
    for (int k = 0; k < 8; ++k) a[k] = _mm512_add_epi64(a[k], _mm512_load_si512(p + i + 64 * k));
  for (int k = 1; k < 8; ++k) a[0] = _mm512_add_epi64(a[0], a[k]);
  uint64_t lanes[8];
  std::memcpy(lanes, &a[0], 64);
  uint64_t total = 0;
  for (uint64_t x : lanes) total += x;
  return total;
}
#endif

uint64_t read_sum(ReadIsa isa, const unsigned char* p, size_t bytes) {
#if defined(__x86_64__)
  if (isa == ReadIsa::kAvx512) return read_avx512(p, bytes);
  if (isa == ReadIsa::kAvx2) return read_avx2(p, bytes);
#else
  (void)isa;
#endif
  return read_baseline(p, bytes);
}

struct FreeDeleter {
  void operator()(void* p) const noexcept { std::free(p); }
};
using Buffer = std::unique_ptr<unsigned char, FreeDeleter>;

Buffer allocate(size_t bytes) {
  return Buffer(static_cast<unsigned char*>(std::aligned_alloc(64, (bytes + 63) / 64 * 64)));
}

// Runs fn(begin, end) over [0, n) split into `threads` contiguous parts,
// the same split every time (so each thread reads the pages it touched).
template <class Fn>
void parallel(int threads, size_t n, Fn fn) {
  std::vector<std::thread> pool;
  const size_t per = (n + static_cast<size_t>(threads) - 1) / static_cast<size_t>(threads);
  for (int t = 1; t < threads; ++t) {
    const size_t b = std::min(n, per * static_cast<size_t>(t)), e = std::min(n, b + per);
    pool.emplace_back([=] { fn(b, e); });
  }
  fn(0, std::min(n, per));
  for (auto& th : pool) th.join();
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

const char* read_isa_name(ReadIsa isa) {
  switch (isa) {
    case ReadIsa::kAvx512: return "avx512";
    case ReadIsa::kAvx2: return "avx2";
    case ReadIsa::kBaseline: break;
  }
  return "baseline";
}

ReadIsa read_isa_for(const std::string& simd_level) {
#if defined(__x86_64__)
  __builtin_cpu_init();
  if (simd_level == "avx512" && __builtin_cpu_supports("avx512f")) return ReadIsa::kAvx512;
  if ((simd_level == "avx512" || simd_level == "avx2") && __builtin_cpu_supports("avx2"))
    return ReadIsa::kAvx2;
#else
  (void)simd_level;
#endif
  return ReadIsa::kBaseline;
}

Bandwidth measure_bandwidth(int threads, size_t bytes, int repeats, ReadIsa isa) {
  threads = std::max(1, threads);
  Bandwidth out;
  {
    constexpr size_t kUnit = 512;  // bytes per iteration of the widest read loop
    const size_t n = bytes / kUnit;
    Buffer buf = allocate(n * kUnit);
    unsigned char* p = buf.get();
    parallel(threads, n,
             [p](size_t b, size_t e) { std::memset(p + b * kUnit, 1, (e - b) * kUnit); });
    std::atomic<uint64_t> sink{0};  // an atomic add the compiler cannot drop
    for (int r = 0; r < repeats; ++r) {
      const auto t0 = std::chrono::steady_clock::now();
      parallel(threads, n, [&, p](size_t b, size_t e) {
        sink.fetch_add(read_sum(isa, p + b * kUnit, (e - b) * kUnit), std::memory_order_relaxed);
      });
      const double t = seconds_since(t0);
      out.read = std::max(out.read, static_cast<double>(n * kUnit) / t);
    }
  }
  {
    const size_t n = bytes / 3 / sizeof(F64x8);
    Buffer ab = allocate(n * sizeof(F64x8)), bb = allocate(n * sizeof(F64x8)),
           cb = allocate(n * sizeof(F64x8));
    auto* a = reinterpret_cast<F64x8*>(ab.get());
    auto* b = reinterpret_cast<F64x8*>(bb.get());
    auto* c = reinterpret_cast<F64x8*>(cb.get());
    parallel(threads, n, [=](size_t lo, size_t hi) {
      for (size_t i = lo; i < hi; ++i) {
        a[i] = F64x8{} + 1.0;
        b[i] = F64x8{} + 2.0;
        c[i] = F64x8{} + 0.5;
      }
    });
    const double s = 3.0;
    for (int r = 0; r < repeats; ++r) {
      const auto t0 = std::chrono::steady_clock::now();
      parallel(threads, n, [=](size_t lo, size_t hi) {
        for (size_t i = lo; i < hi; ++i) a[i] = b[i] + s * c[i];
      });
      const double t = seconds_since(t0);
      out.triad = std::max(out.triad, static_cast<double>(3 * n * sizeof(F64x8)) / t);
    }
    // The triad's result is read back once so the stores stay live.
    if (a[0][0] != 3.5) out.triad = 0.0;
  }
  return out;
}

}  // namespace kvq::host
