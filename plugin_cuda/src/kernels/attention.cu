// launch_attention: plan (attention_plan.cpp), then the launches.
//
// Kernels of one call, in stream order:
//   decode_kernel   sequences with query_len * group <= 8 (exit otherwise)
//   prefill_kernel  the others (only when max_query_len * group > 8)
//   merge_kernel    when either used more than one key split
// or simt_kernel alone for what the tensor-core kernels do not take.
#include "attention_launch.hpp"
#include "attention_plan.hpp"

#include <algorithm>
#include <map>
#include <mutex>
#include <tuple>

namespace kvq::cuda {
namespace {

using attn::Kind;
using attn::Params;
using attn::Plan;
using attn::TcLaunch;
using attn::TcOp;

template <int DP>
int run_dp(Kind k, const Params& p, const TcLaunch& l) {
  switch (k) {
    case Kind::kBF16: return attn::run_tc<Kind::kBF16, DP>(p, l);
    case Kind::kF16: return attn::run_tc<Kind::kF16, DP>(p, l);
    case Kind::kI8: return attn::run_tc<Kind::kI8, DP>(p, l);
    case Kind::kP8: return attn::run_tc<Kind::kP8, DP>(p, l);
    case Kind::kI4: return attn::run_tc<Kind::kI4, DP>(p, l);
    case Kind::kE4M3Q: return attn::run_tc<Kind::kE4M3Q, DP>(p, l);
    case Kind::kE5M2Q: return attn::run_tc<Kind::kE5M2Q, DP>(p, l);
    case Kind::kE4M3RB: return attn::run_tc<Kind::kE4M3RB, DP>(p, l);
    case Kind::kE4M3RH: return attn::run_tc<Kind::kE4M3RH, DP>(p, l);
    case Kind::kE5M2RB: return attn::run_tc<Kind::kE5M2RB, DP>(p, l);
    case Kind::kE5M2RH: return attn::run_tc<Kind::kE5M2RH, DP>(p, l);
    default: return cudaErrorInvalidValue;
  }
}
int run(const Plan& pl, const Params& p, const TcLaunch& l) {
  switch (pl.dp) {
    case 64: return run_dp<64>(pl.kind, p, l);
    case 128: return run_dp<128>(pl.kind, p, l);
    default: return run_dp<256>(pl.kind, p, l);
  }
}

// CTAs per SM of a plan's decode or prefill kernel, cached per (device,
// kind, head size, kernel, threads, shared bytes): the planner runs on every
// call and the occupancy query costs a driver round trip.
int occupancy(const Plan& pl, bool prefill) {
  int device = 0;
  cudaGetDevice(&device);
  const int threads = prefill ? pl.pre_threads : pl.dec_threads;
  const int smem = prefill ? pl.pre_smem : pl.dec_smem;
  const auto key = std::make_tuple(device, static_cast<int>(pl.kind), pl.dp, prefill, threads, smem);
  static std::mutex mu;
  static std::map<decltype(key), int> cache;
  {
    std::lock_guard<std::mutex> lock(mu);
    if (const auto it = cache.find(key); it != cache.end()) return it->second;
  }
  int occ = 0;
  Params dummy{};
  const TcLaunch l{prefill ? TcOp::kPrefillOccupancy : TcOp::kDecodeOccupancy, dim3(1), threads,
                   smem, nullptr, &occ};
  if (run(pl, dummy, l) != 0) return 1;
  occ = std::max(occ, 1);
  std::lock_guard<std::mutex> lock(mu);
  cache.emplace(key, occ);
  return occ;
}

Plan make_plan(const AttentionArgs& a, int num_sms) {
  return attn::make_plan(a, num_sms, occupancy);
}

int launch_kernels(const Plan& pl, const Params& p, const AttentionArgs& a, cudaStream_t stream) {
  if (pl.simt) return attn::launch_simt(p, stream);
  const int64_t dec_grid = a.num_seqs * pl.pub.decode_splits * pl.ngroups;
  if (dec_grid > INT32_MAX || pl.prefill_tiles > INT32_MAX || a.num_tokens * a.num_heads > INT32_MAX)
    return cudaErrorInvalidValue;
  const TcLaunch dec{TcOp::kDecode, dim3(static_cast<unsigned>(dec_grid)), pl.dec_threads,
                     pl.dec_smem, stream, nullptr};
  if (const int e = run(pl, p, dec)) return e;
  if (pl.prefill) {
    const TcLaunch pre{TcOp::kPrefill,
                       dim3(static_cast<unsigned>(pl.prefill_tiles), p.hkv, pl.pub.prefill_splits),
                       pl.pre_threads, pl.pre_smem, stream, nullptr};
    if (const int e = run(pl, p, pre)) return e;
  }
  if (pl.pub.decode_splits > 1 || pl.pub.prefill_splits > 1) return attn::launch_merge(p, stream);
  return 0;
}

}  // namespace

AttentionPlan attention_plan(const AttentionArgs& a, int num_sms) {
  return make_plan(a, num_sms).pub;
}

int64_t attention_workspace_bytes(const AttentionArgs& a, int num_sms) {
  return make_plan(a, num_sms).pub.workspace_bytes;
}

int launch_attention(const AttentionArgs& a, int num_sms, void* stream_ptr) {
  auto stream = static_cast<cudaStream_t>(stream_ptr);
  const Plan pl = make_plan(a, num_sms);
  if (pl.pub.error != 0) return pl.pub.error;
  if (pl.pub.workspace_bytes > 0 && (a.workspace == nullptr || a.workspace_bytes < pl.pub.workspace_bytes))
    return cudaErrorInvalidValue;
  if (a.verdict != nullptr)
    if (const cudaError_t e = cudaMemsetAsync(a.verdict, 0, sizeof(AttentionVerdict), stream); e)
      return e;
  if (a.num_tokens == 0 || a.num_seqs == 0) return 0;
  const Params p = attn::make_params(a, pl);
  if (const int e = launch_kernels(pl, p, a, stream)) return e;
  return a.verdict != nullptr ? attn::launch_verdict(p, stream) : 0;
}

}  // namespace kvq::cuda
