// The plan of one attention call: argument checks, which kernels run, how
// many key splits (a pure function of the shapes, num_sms and the kernels'
// occupancy, so the same call always splits the same way: deterministic),
// and the parameter block. Plain C++: the emulator tests use it too.
#pragma once

#include "attention_params.hpp"
#include "kernels.hpp"

#include <functional>

namespace kvq::cuda::attn {

struct Plan {
  AttentionPlan pub{};
  bool simt = false;
  Kind kind = Kind::kBF16;
  int dp = 0;
  int hc = 1, ngroups = 1;      // decode: KV heads per CTA, CTAs per (sequence, split)
  int dec_threads = 0, dec_smem = 0;
  int pre_threads = 0, pre_smem = 0;
  bool prefill = false;         // launch the prefill kernel
  int64_t prefill_tiles = 0;    // its grid.x (an upper bound of the 64-row tiles)
  int64_t ws_prefill_base = 0;  // first prefill partial row in the workspace
};

// CTAs per SM of the decode (false) or prefill (true) kernel of a plan.
using OccupancyFn = std::function<int(const Plan&, bool prefill)>;

Plan make_plan(const AttentionArgs& args, int num_sms, const OccupancyFn& occupancy);
Params make_params(const AttentionArgs& args, const Plan& plan);

}  // namespace kvq::cuda::attn
