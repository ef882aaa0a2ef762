#include "tensor_parallel.hpp"

#include <fmt/format.h>

#include <charconv>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <utility>

#include "kvq_files/errors.hpp"

#ifdef KVQ_HAVE_MPI
#include <mpi.h>
#endif

namespace kvq::host {
namespace {

// The world size mpirun announces to its children (Open MPI, MPICH/PMI),
// with the variable that said so; 1 and "" when there is none.
std::pair<int, std::string> launched_world_size() {
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE"}) {
    if (const char* value = std::getenv(name)) {
      int n = 0;
      const char* end = value + std::strlen(value);
      const auto [ptr, ec] = std::from_chars(value, end, n);
      if (ec != std::errc() || ptr != end || n < 1)
        throw Error(fmt::format("the environment sets {}={}, not a number of ranks", name, value));
      return {n, fmt::format("{}={}", name, value)};
    }
  }
  return {1, ""};
}

#ifdef KVQ_HAVE_MPI
// MPI lives as long as the process: initialised by the first multi-rank
// group, finalised at exit (MPI_Init may only run once per process).
class MpiRuntime {
 public:
  static void ensure_initialized() { static MpiRuntime runtime; }
  ~MpiRuntime() { MPI_Finalize(); }

 private:
  MpiRuntime() {
    int provided = 0;
    MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided);
  }
};

int checked_int(size_t n) {
  if (n > static_cast<size_t>(std::numeric_limits<int>::max())) {
    throw Error("tensor parallel: a message larger than 2 GiB");
  }
  return static_cast<int>(n);
}
#endif

}  // namespace

bool TensorParallelGroup::built_with_mpi() {
#ifdef KVQ_HAVE_MPI
  return true;
#else
  return false;
#endif
}

TensorParallelGroup TensorParallelGroup::join(int64_t tensor_parallel_size) {
  const auto [world, announced_by] = launched_world_size();
  if (tensor_parallel_size == 1 && world == 1) return TensorParallelGroup(0, 1, 0);
  if (!built_with_mpi()) {
    throw Error(fmt::format(
        "tensor_parallel_size {} needs MPI, and this kvq was built without it (install Debian's "
        "libopenmpi-dev and openmpi-bin, rebuild, and run mpirun -np {} kvq run ...)",
        tensor_parallel_size, tensor_parallel_size));
  }
  if (world != tensor_parallel_size) {
    throw Error(fmt::format(
        "tensor_parallel_size is {} but {} rank{} started: run mpirun -np {} kvq run ...",
        tensor_parallel_size, world, world == 1 ? " was" : "s were", tensor_parallel_size));
  }
#ifdef KVQ_HAVE_MPI
  MpiRuntime::ensure_initialized();
  int rank = 0;
  int size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  // Launcher variables copied into a plain shell start MPI as a singleton:
  // one rank that would serve alone while the deployment says more.
  if (size != tensor_parallel_size)
    throw Error(fmt::format(
        "the environment announces {} ranks ({}), but MPI started {}: launch with mpirun -np {} "
        "kvq run ... (not with copied launcher variables)",
        world, announced_by, size, tensor_parallel_size));
  // The ranks sharing this machine, in rank order: mpirun places them, and a
  // rank's position among them picks its device.
  MPI_Comm node = MPI_COMM_NULL;
  MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &node);
  int local_rank = 0;
  MPI_Comm_rank(node, &local_rank);
  MPI_Comm_free(&node);
  return TensorParallelGroup(rank, size, local_rank);
#else
  return TensorParallelGroup(0, 1, 0);
#endif
}

int64_t TensorParallelGroup::broadcast(int64_t value) const {
#ifdef KVQ_HAVE_MPI
  if (size_ > 1) MPI_Bcast(&value, 1, MPI_INT64_T, 0, MPI_COMM_WORLD);
#endif
  return value;
}

bool TensorParallelGroup::all_ok(bool ok) const {
  int local = ok ? 1 : 0;
  int all = local;
#ifdef KVQ_HAVE_MPI
  if (size_ > 1) MPI_Allreduce(&local, &all, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
#endif
  return all == 1;
}

std::vector<std::string> TensorParallelGroup::gather(const std::string& text) const {
  if (size_ == 1) return {text};
  std::vector<std::string> out;
#ifdef KVQ_HAVE_MPI
  int length = checked_int(text.size());
  std::vector<int> lengths(static_cast<size_t>(size_));
  MPI_Gather(&length, 1, MPI_INT, lengths.data(), 1, MPI_INT, 0, MPI_COMM_WORLD);
  std::vector<int> offsets(static_cast<size_t>(size_), 0);
  size_t total = 0;
  for (size_t r = 0; r < lengths.size(); ++r) {
    offsets[r] = checked_int(total);
    total += static_cast<size_t>(lengths[r]);
  }
  std::string all(is_root() ? total : 0, '\0');
  MPI_Gatherv(text.data(), length, MPI_CHAR, all.data(), lengths.data(), offsets.data(), MPI_CHAR,
              0, MPI_COMM_WORLD);
  if (is_root()) {
    for (size_t r = 0; r < lengths.size(); ++r) {
      out.push_back(all.substr(static_cast<size_t>(offsets[r]), static_cast<size_t>(lengths[r])));
    }
  }
#endif
  return out;
}

std::vector<std::byte> TensorParallelGroup::gather(std::span<const std::byte> local) const {
  if (size_ == 1) return {local.begin(), local.end()};
  std::vector<std::byte> out;
#ifdef KVQ_HAVE_MPI
  const int n = checked_int(local.size());
  if (is_root()) out.resize(local.size() * static_cast<size_t>(size_));
  MPI_Gather(local.data(), n, MPI_BYTE, out.data(), n, MPI_BYTE, 0, MPI_COMM_WORLD);
#endif
  return out;
}

AccuracyStats TensorParallelGroup::reduce(const AccuracyStats& local) const {
  AccuracyStats out = local;
#ifdef KVQ_HAVE_MPI
  if (size_ == 1) return out;
  double sums[] = {static_cast<double>(local.sampled_rows),
                   static_cast<double>(local.elements),
                   local.sum_abs_error,
                   local.dot,
                   local.actual_squares,
                   local.expected_squares,
                   static_cast<double>(local.non_finite),
                   local.error_squares};
  double summed[std::size(sums)] = {};
  MPI_Reduce(sums, summed, static_cast<int>(std::size(sums)), MPI_DOUBLE, MPI_SUM, 0,
             MPI_COMM_WORLD);
  double max_error = local.max_abs_error;
  double min_cosine = local.min_row_cosine;
  MPI_Reduce(&local.max_abs_error, &max_error, 1, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
  MPI_Reduce(&local.min_row_cosine, &min_cosine, 1, MPI_DOUBLE, MPI_MIN, 0, MPI_COMM_WORLD);
  // Every rank checks the same steps (its own heads), so the step count is
  // the root's; rows count (token, heads of one rank) pairs per rank.
  out.sampled_rows = static_cast<int64_t>(summed[0]);
  out.elements = static_cast<int64_t>(summed[1]);
  out.sum_abs_error = summed[2];
  out.dot = summed[3];
  out.actual_squares = summed[4];
  out.expected_squares = summed[5];
  out.non_finite = static_cast<int64_t>(summed[6]);
  out.error_squares = summed[7];
  out.max_abs_error = max_error;
  out.min_row_cosine = min_cosine;
#endif
  return out;
}

}  // namespace kvq::host
