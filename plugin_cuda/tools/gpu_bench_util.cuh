// Device-side helpers of kvq_cuda_bench (gpu_bench.cu): error checks, owned
// device memory, random fills, the timer (CUDA events; CUDA graphs for short
// runs) and the device's ceilings (read and copy bandwidth, cuBLAS bf16
// GEMM), all measured in the same run as the kernels they are compared with.
#pragma once

#include "gpu_bench_report.hpp"

#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace kvq::cuda::bench {

[[noreturn]] void die(const char* what, int err, const char* file, int line);
inline void check_cuda(int err, const char* what, const char* file, int line) {
  if (err != 0) die(what, err, file, line);
}
#define KVQ_CK(x) ::kvq::cuda::bench::check_cuda(static_cast<int>(x), #x, __FILE__, __LINE__)

// Device memory owned by one object.
class DevMem {
 public:
  DevMem() = default;
  explicit DevMem(size_t bytes);
  DevMem(const DevMem&) = delete;
  DevMem& operator=(const DevMem&) = delete;
  DevMem(DevMem&& o) noexcept : p_(o.p_), n_(o.n_) {
    o.p_ = nullptr;
    o.n_ = 0;
  }
  DevMem& operator=(DevMem&& o) noexcept;
  ~DevMem();
  template <class T = void>
  T* get() const {
    return static_cast<T*>(p_);
  }
  size_t bytes() const { return n_; }

 private:
  void* p_ = nullptr;
  size_t n_ = 0;
};

template <class T>
DevMem upload(const std::vector<T>& v, cudaStream_t s) {
  DevMem m(std::max<size_t>(16, v.size() * sizeof(T)));
  if (!v.empty())
    KVQ_CK(cudaMemcpyAsync(m.get(), v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice, s));
  KVQ_CK(cudaStreamSynchronize(s));
  return m;
}

// n bf16 values ~ N(0, sigma^2) from (seed, index) (same bits for the same seed).
void fill_normal_bf16(uint16_t* out, size_t n, uint64_t seed, float sigma, cudaStream_t s);
// Adds to *count (device) the number of NaN/Inf among n bf16 values.
void count_nonfinite_bf16(const uint16_t* x, size_t n, unsigned long long* count, cudaStream_t s);
// out[i] = start + i (int64 slot mapping).
void fill_iota_i64(int64_t* out, size_t n, int64_t start, cudaStream_t s);
// Occupies one SM for about `cycles` SM clocks, so the launches queued behind
// it reach the GPU before it ends (host launch latency never shows in a timing).
void spin(long long cycles, cudaStream_t s);

// ---- timer ----------------------------------------------------------------------------

struct Timing {
  double us = 0;          // median time of one run
  double min_us = 0, max_us = 0;
  int samples = 0;        // timed samples (the median is over these)
  int runs_per_sample = 1;  // > 1: a CUDA graph of this many runs per sample, time divided
  const char* mode = "events";
};

struct TimerOpts {
  int reps = 30;           // timed samples, >= 20
  int warmup = 3;          // untimed runs first
  double graph_below_us = 50.0;  // runs shorter than this are timed as CUDA graphs
  double graph_min_us = 300.0;   // one graph sample runs at least this long
};

double median(std::vector<double> v);

// Times run(i) (i counts every run, so a caller rotating its data by i % copies
// never reads the same copy twice in a row; run returns 0 or an error code, fatal
// outside a graph capture): warm-up, a probe of 5 runs; runs of `graph_below_us`
// or more get `reps` samples of one run each, bracketed by events, queued behind a
// spin kernel; shorter ones are captured `per` times into a CUDA graph (per a
// multiple of `rotate`, at least graph_min_us long) and each of `reps` graph
// launches is timed and divided by per. A capture that fails falls back to events.
template <class F>
Timing time_runs(cudaStream_t s, int rotate, const TimerOpts& o, F&& run) {
  long long next = 0;
  auto one = [&] { KVQ_CK(run(next++)); };
  for (int i = 0; i < o.warmup; ++i) one();
  KVQ_CK(cudaStreamSynchronize(s));
  auto timed = [&](int n, auto&& body) {  // n event-bracketed samples of body()
    std::vector<cudaEvent_t> ev(2 * static_cast<size_t>(n));
    for (auto& e : ev) KVQ_CK(cudaEventCreate(&e));
    spin(40000000LL, s);
    for (int i = 0; i < n; ++i) {
      KVQ_CK(cudaEventRecord(ev[2 * i], s));
      body();
      KVQ_CK(cudaEventRecord(ev[2 * i + 1], s));
    }
    KVQ_CK(cudaStreamSynchronize(s));
    std::vector<double> us(static_cast<size_t>(n));
    for (int i = 0; i < n; ++i) {
      float ms = 0;
      KVQ_CK(cudaEventElapsedTime(&ms, ev[2 * i], ev[2 * i + 1]));
      us[static_cast<size_t>(i)] = ms * 1000.0;
    }
    for (auto& e : ev) cudaEventDestroy(e);
    return us;
  };
  const std::vector<double> probe = timed(5, one);
  const double probe_us = median(probe);
  Timing t;
  std::vector<double> us;
  if (probe_us < o.graph_below_us) {
    rotate = std::max(rotate, 1);
    const double want = o.graph_min_us / std::max(probe_us, 0.5);
    const int rounds = std::max(1, static_cast<int>((want + rotate - 1) / rotate));
    const int per = rotate * rounds;
    cudaGraph_t graph = nullptr;
    cudaGraphExec_t exec = nullptr;
    KVQ_CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeRelaxed));
    int err = 0;
    for (int i = 0; i < per && err == 0; ++i) err = run(next++);
    const int end_err = static_cast<int>(cudaStreamEndCapture(s, &graph));
    if (err == 0) err = end_err;
    if (err == 0) err = static_cast<int>(cudaGraphInstantiate(&exec, graph, 0));
    if (err == 0) {
      for (int i = 0; i < 2; ++i) KVQ_CK(cudaGraphLaunch(exec, s));
      KVQ_CK(cudaStreamSynchronize(s));
      us = timed(o.reps, [&] { KVQ_CK(cudaGraphLaunch(exec, s)); });
      for (double& x : us) x /= per;
      t.runs_per_sample = per;
      t.mode = "graph";
    } else {
      std::fprintf(stderr, "note: CUDA graph capture failed (error %d); timed with events\n", err);
      cudaGetLastError();  // clear a non-sticky capture error
      t.mode = "events (graph capture failed)";
    }
    if (exec != nullptr) KVQ_CK(cudaGraphExecDestroy(exec));
    if (graph != nullptr) KVQ_CK(cudaGraphDestroy(graph));
  }
  if (us.empty()) us = timed(o.reps, one);
  t.us = median(us);
  t.min_us = *std::min_element(us.begin(), us.end());
  t.max_us = *std::max_element(us.begin(), us.end());
  t.samples = static_cast<int>(us.size());
  return t;
}

// ---- ceilings -------------------------------------------------------------------------

// Read and copy bandwidth over buffers of `bytes` (several kernel shapes, the
// best median is kept) and the cuBLAS bf16 GEMM rate at n^3.
Ceilings measure_ceilings(cudaStream_t s, int num_sms, size_t bytes, int gemm_n, const TimerOpts& o);

}  // namespace kvq::cuda::bench
