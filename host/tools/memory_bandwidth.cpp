#include "memory_bandwidth.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

namespace kvq::host {
namespace {

// 64-byte vectors (GCC vector extensions): the compiler uses the widest
// loads of the baseline ISA, so the loops are bound by memory, not issue.
using U64x8 = uint64_t __attribute__((vector_size(64)));
using F64x8 = double __attribute__((vector_size(64)));

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

Bandwidth measure_bandwidth(int threads, size_t bytes, int repeats) {
  threads = std::max(1, threads);
  Bandwidth out;
  {
    const size_t n = bytes / sizeof(U64x8);
    Buffer buf = allocate(n * sizeof(U64x8));
    auto* p = reinterpret_cast<U64x8*>(buf.get());
    parallel(threads, n, [p](size_t b, size_t e) {
      std::memset(static_cast<void*>(p + b), 1, (e - b) * sizeof(U64x8));
    });
    std::atomic<uint64_t> sink{0};  // an atomic add the compiler cannot drop
    for (int r = 0; r < repeats; ++r) {
      const auto t0 = std::chrono::steady_clock::now();
      parallel(threads, n, [&, p](size_t b, size_t e) {
        // Two accumulators: enough independent adds to keep loads in flight.
        U64x8 s0{}, s1{};
        size_t i = b;
        for (; i + 1 < e; i += 2) {
          s0 += p[i];
          s1 += p[i + 1];
        }
        if (i < e) s0 += p[i];
        s0 += s1;
        uint64_t total = 0;
        for (int l = 0; l < 8; ++l) total += s0[l];
        sink.fetch_add(total, std::memory_order_relaxed);
      });
      const double t = seconds_since(t0);
      out.read = std::max(out.read, static_cast<double>(n * sizeof(U64x8)) / t);
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
