#include "kvq_engine/accuracy.hpp"

#include <kvq_ref/reference.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <span>
#include <utility>

#include "kvq_engine/float_codec.hpp"

namespace kvq::host {
namespace {

// One head of generated activations as the plugin saw them: rounded to the
// model dtype, then widened to float64.
void generate_rounded(const ActivationGenerator& generator, int32_t dtype, Projection projection,
                      uint64_t content, int64_t position, int64_t layer, int64_t head,
                      std::vector<float>& scratch, std::vector<uint64_t>& encoded, double* out) {
  generator.fill(projection, content, position, layer, head, scratch);
  encoded.resize(scratch.size());  // 8 bytes per element: room for any model dtype
  encode_floats(dtype, scratch, encoded.data());
  decode_to_doubles(dtype, encoded.data(), std::span<double>(out, scratch.size()));
}

}  // namespace

double AccuracyStats::cosine() const {
  if (actual_squares == 0.0 || expected_squares == 0.0) return 0.0;
  return dot / std::sqrt(actual_squares * expected_squares);
}

double AccuracyStats::nmse() const {
  return expected_squares > 0.0 ? error_squares / expected_squares
                                : std::numeric_limits<double>::quiet_NaN();
}

void AccuracyStats::add(std::span<const double> actual, std::span<const double> expected,
                        int64_t rows, int64_t dim) {
  for (int64_t row = 0; row < rows; ++row) {
    double row_dot = 0, aa = 0, ee = 0;
    for (int64_t c = 0; c < dim; ++c) {
      const auto i = static_cast<size_t>(row * dim + c);
      const double a = actual[i];
      const double e = expected[i];
      if (!std::isfinite(a)) {
        ++non_finite;
        continue;
      }
      const double error = std::fabs(a - e);
      max_abs_error = std::max(max_abs_error, error);
      sum_abs_error += error;
      error_squares += error * error;
      ++elements;
      row_dot += a * e;
      aa += a * a;
      ee += e * e;
    }
    dot += row_dot;
    actual_squares += aa;
    expected_squares += ee;
    if (aa > 0 && ee > 0) min_row_cosine = std::min(min_row_cosine, row_dot / std::sqrt(aa * ee));
  }
}

AccuracyChecker::AccuracyChecker(const ActivationGenerator& generator,
                                 const std::vector<RequestSpec>& requests, int64_t max_sequences,
                                 int64_t max_rows, KvRowModel kv_model)
    : generator_(&generator),
      requests_(&requests),
      max_sequences_(max_sequences),
      max_rows_(max_rows),
      kv_model_(std::move(kv_model)) {}

void AccuracyChecker::check(const StepBatch& batch, const std::vector<int64_t>& request_ids,
                            int64_t layer) {
  const ModelShape& shape = batch.shape();
  const int64_t hq = shape.num_heads;
  const int64_t hkv = shape.num_kv_heads;
  const int64_t d = shape.head_size;
  const int64_t dv = shape.head_size_v;
  const auto& qsl = batch.query_start_loc();
  const auto& seq_lens = batch.seq_lens();
  const auto num_seqs = static_cast<int64_t>(seq_lens.size());

  std::vector<float> scratch;
  std::vector<uint64_t> encoded;

  // Spread the sampled sequences over the batch (decodes and prefills).
  const int64_t sampled = std::min(num_seqs, max_sequences_);
  for (int64_t k = 0; k < sampled; ++k) {
    const int64_t s = k * num_seqs / sampled;
    const RequestSpec& request =
        requests_->at(static_cast<size_t>(request_ids[static_cast<size_t>(s)]));
    const int64_t seq_len = seq_lens[static_cast<size_t>(s)];
    const int64_t first_row = qsl[static_cast<size_t>(s)];
    const int64_t query_len = qsl[static_cast<size_t>(s) + 1] - first_row;
    const int64_t rows = std::min(query_len, max_rows_);
    const int64_t skipped = query_len - rows;  // earlier rows of the chunk, not checked

    kvq::ref::AttentionProblem problem;
    problem.num_heads = hq;
    problem.num_kv_heads = hkv;
    problem.head_size = d;
    problem.head_size_v = dv;
    problem.query_start_loc = {0, static_cast<int32_t>(rows)};
    // The last `rows` queries of the chunk see the same keys as in the step
    // (bottom-right alignment keeps their positions).
    problem.seq_lens = {static_cast<int32_t>(seq_len)};

    std::vector<double> query(static_cast<size_t>(rows * hq * d));
    const int64_t element = batch.query().element_size();
    const auto* q_bytes = batch.query().host();
    decode_to_doubles(shape.dtype, q_bytes + (first_row + skipped) * hq * d * element, query);

    std::vector<std::vector<double>> keys(
        1, std::vector<double>(static_cast<size_t>(seq_len * hkv * d)));
    std::vector<std::vector<double>> values(
        1, std::vector<double>(static_cast<size_t>(seq_len * hkv * dv)));
    for (int64_t position = 0; position < seq_len; ++position) {
      const uint64_t content = request.content_at(position);
      for (int64_t h = 0; h < hkv; ++h) {
        scratch.resize(static_cast<size_t>(d));
        // This rank's KV heads are a contiguous range of the model's.
        const int64_t model_head = shape.first_kv_head() + h;
        generate_rounded(*generator_, shape.dtype, Projection::kKey, content, position, layer,
                         model_head, scratch, encoded, keys[0].data() + (position * hkv + h) * d);
        scratch.resize(static_cast<size_t>(dv));
        generate_rounded(*generator_, shape.dtype, Projection::kValue, content, position, layer,
                         model_head, scratch, encoded,
                         values[0].data() + (position * hkv + h) * dv);
      }
    }
    const std::vector<double> expected = kvq::ref::attention(problem, query, keys, values);

    std::vector<double> actual(expected.size());
    const auto* out_bytes = batch.output().host();
    decode_to_doubles(shape.dtype, out_bytes + (first_row + skipped) * hq * dv * element, actual);

    stats_.add(actual, expected, rows * hq, dv);
    stats_.sampled_rows += rows;
    if (kv_model_) {
      for (int64_t position = 0; position < seq_len; ++position)
        for (int64_t h = 0; h < hkv; ++h) {
          const int64_t model_head = shape.first_kv_head() + h;
          kv_model_(
              Projection::kKey, layer, model_head,
              std::span<double>(keys[0].data() + (position * hkv + h) * d, static_cast<size_t>(d)));
          kv_model_(Projection::kValue, layer, model_head,
                    std::span<double>(values[0].data() + (position * hkv + h) * dv,
                                      static_cast<size_t>(dv)));
        }
      const std::vector<double> modelled = kvq::ref::attention(problem, query, keys, values);
      vs_model_.add(actual, modelled, rows * hq, dv);
      model_error_.add(modelled, expected, rows * hq, dv);
      vs_model_.sampled_rows += rows;
      model_error_.sampled_rows += rows;
    }
  }
  ++stats_.sampled_steps;
  if (kv_model_) {
    ++vs_model_.sampled_steps;
    ++model_error_.sampled_steps;
  }
}

}  // namespace kvq::host
