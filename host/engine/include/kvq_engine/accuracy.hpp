// The accuracy report: for sampled steps, attention recomputed in float64
// (kvq_reference) from the generator's unquantized K/V (in the model dtype,
// exactly what the plugin was given), compared with the plugin's output.
// What remains is the error the backend adds: KV quantization, its own
// arithmetic, and the output's rounding to the model dtype.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "kvq_engine/activation_generator.hpp"
#include "kvq_engine/step_batch.hpp"
#include "kvq_engine/workload.hpp"

namespace kvq::host {

struct AccuracyStats {
  int64_t sampled_steps = 0;
  int64_t sampled_rows = 0;  // (token, all heads) rows compared
  int64_t elements = 0;
  double max_abs_error = 0.0;
  double sum_abs_error = 0.0;
  double dot = 0.0;  // sum actual * expected
  double actual_squares = 0.0;
  double expected_squares = 0.0;
  double error_squares = 0.0;   // sum (actual - expected)^2
  double min_row_cosine = 1.0;  // the worst single (token, head) output vector
  int64_t non_finite = 0;

  double mean_abs_error() const {
    return elements ? sum_abs_error / static_cast<double>(elements) : 0.0;
  }
  // Cosine similarity of all sampled outputs taken as one vector.
  double cosine() const;
  // Normalised mean squared error, sum (a - e)^2 / sum e^2 (NaN when empty).
  double nmse() const;
  // Adds the comparison of `rows` output vectors of `dim` elements.
  void add(std::span<const double> actual, std::span<const double> expected, int64_t rows,
           int64_t dim);
};

// A model of what a KV cache stores (tests): rounds one generated K or V row,
// given in the model dtype, to the values the cache mode holds, in place.
using KvRowModel = std::function<void(Projection projection, int64_t layer, int64_t kv_head,
                                      std::span<double> row)>;

class AccuracyChecker {
 public:
  // By default, per sampled step at most this many sequences and the last
  // this many query rows of each, so a check costs O(rows x context), not
  // O(step^2). Tests lift the limits to check every output.
  static constexpr int64_t kMaxSequencesPerStep = 16;
  static constexpr int64_t kMaxRowsPerSequence = 8;

  // With a kv_model, each sampled step is also compared with float64
  // attention over the modelled cache values (vs_model) and that reference
  // with the unquantized one (model_error): the error the plugin should have.
  AccuracyChecker(const ActivationGenerator& generator, const std::vector<RequestSpec>& requests,
                  int64_t max_sequences = kMaxSequencesPerStep,
                  int64_t max_rows = kMaxRowsPerSequence, KvRowModel kv_model = {});

  // Compares `batch`'s output (after forward of `layer`) with the reference.
  // `request_ids` gives the request of each sequence of the batch.
  void check(const StepBatch& batch, const std::vector<int64_t>& request_ids, int64_t layer);

  const AccuracyStats& stats() const { return stats_; }
  const AccuracyStats& vs_model() const { return vs_model_; }
  const AccuracyStats& model_error() const { return model_error_; }

 private:
  const ActivationGenerator* generator_;
  const std::vector<RequestSpec>* requests_;
  int64_t max_sequences_;
  int64_t max_rows_;
  KvRowModel kv_model_;
  AccuracyStats stats_, vs_model_, model_error_;
};

}  // namespace kvq::host
