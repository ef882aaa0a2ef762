// Tensor parallelism across processes: each rank is one `kvq run` process
// with its own plugin instance, holding num_heads / tp query heads and
// num_kv_heads / tp KV heads (their scales sharded by the plugin's loaders).
// Ranks are started by MPI (`mpirun -np N kvq run deploy.yaml`); every rank
// runs the same deterministic scheduler, the root decides arrivals and
// broadcasts them, and outputs, errors and accuracy figures are gathered to
// the root, which prints the report.
//
// Without MPI in the build, or when not started by mpirun, the group is the
// single rank 0 of size 1 and every collective is the identity.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "kvq_engine/accuracy.hpp"

namespace kvq::host {

class TensorParallelGroup {
 public:
  // The group this process belongs to for a deployment asking for
  // `tensor_parallel_size` ranks. Throws Error when the launch does not match
  // (e.g. size 2 without mpirun, or mpirun -np 3 for size 2), naming the fix.
  static TensorParallelGroup join(int64_t tensor_parallel_size);

  int rank() const { return rank_; }
  // The rank among the ranks on this machine (MPI's shared-memory split):
  // the device ordinal a rank takes when each has its own device.
  int local_rank() const { return local_rank_; }
  int size() const { return size_; }
  bool is_root() const { return rank_ == 0; }

  // The root's value on every rank.
  int64_t broadcast(int64_t value) const;
  // True on every rank when `ok` is true on every rank.
  bool all_ok(bool ok) const;
  // Every rank's string, on the root (empty elsewhere).
  std::vector<std::string> gather(const std::string& text) const;
  // Every rank's `local` bytes (equal sizes), concatenated in rank order on
  // the root (empty elsewhere).
  std::vector<std::byte> gather(std::span<const std::byte> local) const;
  // The accuracy figures of all ranks combined, on the root.
  AccuracyStats reduce(const AccuracyStats& local) const;

  // Whether this kvq was built with MPI.
  static bool built_with_mpi();

 private:
  TensorParallelGroup(int rank, int size, int local_rank)
      : rank_(rank), size_(size), local_rank_(local_rank) {}
  int rank_ = 0;
  int size_ = 1;
  int local_rank_ = 0;
};

}  // namespace kvq::host
