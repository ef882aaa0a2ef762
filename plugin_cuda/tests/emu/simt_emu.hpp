// A CPU emulator of the CUDA built-ins plugin_cuda's kernels use, so the
// kernels' own source (compiled by a host compiler with KVQ_EMU defined) runs
// in CPU tests: layouts, index arithmetic, masking, pipelines, merges.
//
// Model: a CTA runs its threads as cooperative fibers on one OS thread; every
// warp-collective (shuffles, votes, mma.sync, ldmatrix) and __syncthreads is a
// rendezvous of all threads involved (full-mask semantics: a missing lane is a
// deadlock, reported). mma.m16n8k16 and ldmatrix implement the PTX ISA's
// fragment layouts independently of the kernels, so a kernel that assumes a
// wrong layout computes wrong numbers here. cp.async copies happen either at
// issue (shows write-after-read hazards) or at the wait that covers them
// (shows reads before the wait). Shared and global accesses are checked for
// alignment and bounds; shared memory starts as random bytes.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>

namespace kvq_emu {

struct Dim3 {
  unsigned x = 1, y = 1, z = 1;
};
struct ThreadIds {
  Dim3 thread_idx, block_idx, block_dim, grid_dim;
};

// ---- runtime ---------------------------------------------------------------------

struct Options {
  bool eager_copies = true;  // cp.async lands at issue (else at the covering wait)
};
Options& options();

// Runs body() for every thread of every CTA of the grid.
void launch(Dim3 grid, Dim3 block, size_t dynamic_smem_bytes, const std::function<void()>& body);
// Global memory the kernels may read with cp.async (bounds-checked).
void register_global(const void* p, size_t bytes);
void clear_globals();
[[noreturn]] void fail(const std::string& what);

const ThreadIds& ids();
unsigned char* dynamic_smem();
uint32_t smem_offset(const void* p);

// ---- shared memory and cp.async ----------------------------------------------------

void check_smem(uint32_t addr, size_t bytes, size_t align);
template <class T>
T lds(uint32_t addr) {
  check_smem(addr, sizeof(T), sizeof(T) > 8 ? 16 : sizeof(T));
  T v;
  std::memcpy(&v, dynamic_smem() + addr, sizeof(T));
  return v;
}
template <class T>
void sts(uint32_t addr, const T& v) {
  check_smem(addr, sizeof(T), sizeof(T) > 8 ? 16 : sizeof(T));
  std::memcpy(dynamic_smem() + addr, &v, sizeof(T));
}
void cp_async16(uint32_t dst, const void* src);
void cp_async_commit();
void cp_async_wait(int n);

// ---- warp collectives ---------------------------------------------------------------

// Deposits `bytes` of this lane's input and returns all 32 lanes' inputs
// (lane i at offset i * kSlot) once every lane of the warp has arrived.
constexpr size_t kSlot = 32;
const unsigned char* warp_gather(int op, const void* in, size_t bytes);
void syncthreads();
int lane();

void mma16816(bool bf16, float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1);
void ldmatrix_x4(uint32_t r[4], uint32_t addr, bool trans);

template <class T>
T shfl_from(T v, int src_lane_of_me) {  // value of lane f(me)
  static_assert(sizeof(T) == 4);
  const unsigned char* all = warp_gather(1, &v, 4);
  T out;
  std::memcpy(&out, all + (src_lane_of_me & 31) * kSlot, 4);
  return out;
}

}  // namespace kvq_emu

// ---- CUDA spellings -------------------------------------------------------------------

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __align__(n) alignas(n)
#define __shared__ static

#define threadIdx (::kvq_emu::ids().thread_idx)
#define blockIdx (::kvq_emu::ids().block_idx)
#define blockDim (::kvq_emu::ids().block_dim)
#define gridDim (::kvq_emu::ids().grid_dim)

struct uint2 {
  uint32_t x, y;
};
struct float2 {
  float x, y;
};
struct alignas(16) float4 {
  float x, y, z, w;
};
inline float2 make_float2(float x, float y) {
  return float2{x, y};
}
inline float4 make_float4(float x, float y, float z, float w) {
  return float4{x, y, z, w};
}

using std::max;
using std::min;

inline uint32_t __float_as_uint(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
inline float __uint_as_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline float __expf(float x) {
  return std::exp(x);
}
inline int __ffs(unsigned x) {
  return __builtin_ffs(static_cast<int>(x));
}
inline uint32_t __byte_perm(uint32_t x, uint32_t y, uint32_t s) {
  const uint64_t v = (static_cast<uint64_t>(y) << 32) | x;
  uint32_t r = 0;
  for (int i = 0; i < 4; ++i) r |= static_cast<uint32_t>((v >> (8 * ((s >> (4 * i)) & 7))) & 0xFF) << (8 * i);
  return r;
}
inline void __syncthreads() {
  ::kvq_emu::syncthreads();
}
template <class T>
T __shfl_sync(unsigned, T v, int src) {
  return ::kvq_emu::shfl_from(v, src);
}
template <class T>
T __shfl_xor_sync(unsigned, T v, int m) {
  return ::kvq_emu::shfl_from(v, ::kvq_emu::lane() ^ m);
}
template <class T>
T __shfl_up_sync(unsigned, T v, int d) {
  const int src = ::kvq_emu::lane() - d;
  const T got = ::kvq_emu::shfl_from(v, src < 0 ? ::kvq_emu::lane() : src);
  return got;
}
unsigned __ballot_sync(unsigned, int pred);
inline bool __any_sync(unsigned m, int pred) {
  return __ballot_sync(m, pred) != 0;
}
int __reduce_min_sync(unsigned, int v);
int __reduce_max_sync(unsigned, int v);
inline unsigned atomicMax(unsigned* p, unsigned v) {
  const unsigned old = *p;
  if (v > old) *p = v;
  return old;
}
inline unsigned long long atomicMax(unsigned long long* p, unsigned long long v) {
  const unsigned long long old = *p;
  if (v > old) *p = v;
  return old;
}
