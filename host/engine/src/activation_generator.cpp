#include "kvq_engine/activation_generator.hpp"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "kvq_files/errors.hpp"

namespace kvq::host {
namespace {

// SplitMix64 finaliser: a bijective 64-bit mix, good enough for test data.
uint64_t mix(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

uint64_t key(std::initializer_list<uint64_t> fields) {
  uint64_t h = 0x6B76712D67656E31ull;  // "kvq-gen1"
  for (uint64_t f : fields) h = mix(h ^ f);
  return h;
}

// Uniform in (0, 1]: never 0, so log() below is finite.
double uniform(uint64_t bits) {
  return (static_cast<double>(bits >> 11) + 1.0) * 0x1.0p-53;
}

// A standard normal from 64 random bits by inverting the normal CDF
// (Acklam's rational approximation, relative error < 1.2e-9): pure
// arithmetic in the central 95%, a log and a sqrt only in the tails, so it
// is several times cheaper than Box-Muller.
double standard_normal(uint64_t bits) {
  static constexpr double a[] = {-3.969683028665376e+01, 2.209460984245205e+02,
                                 -2.759285104469687e+02, 1.383577518672690e+02,
                                 -3.066479806614716e+01, 2.506628277459239e+00};
  static constexpr double b[] = {-5.447609879822406e+01, 1.615858368580409e+02,
                                 -1.556989798598866e+02, 6.680131188771972e+01,
                                 -1.328068155288572e+01};
  static constexpr double c[] = {-7.784894002430293e-03, -3.223964580411365e-01,
                                 -2.400758277161838e+00, -2.549732539343734e+00,
                                 4.374664141464968e+00,  2.938163982698783e+00};
  static constexpr double d[] = {7.784695709041462e-03, 3.224671290700398e-01,
                                 2.445134137142996e+00, 3.754408661907416e+00};
  constexpr double kLow = 0.02425;
  const double p = uniform(bits) - 0x1.0p-54;  // in (0, 1): never exactly 1
  if (p < kLow || p > 1.0 - kLow) {
    const double q = std::sqrt(-2.0 * std::log(p < kLow ? p : 1.0 - p));
    const double x = (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
                     ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1.0);
    return p < kLow ? x : -x;
  }
  const double q = p - 0.5;
  const double r = q * q;
  return (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q /
         (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1.0);
}

enum Stream : uint64_t {
  kBase = 1,
  kTokenGain = 2,
  kOutlierPick = 3,
  kSinkDirection = 4,
  kValueScale = 5,
};

}  // namespace

ActivationGenerator::ActivationGenerator(uint64_t seed, const ActivationShape& shape)
    : seed_(seed), shape_(shape) {
  if (shape_.head_size_v == 0) shape_.head_size_v = shape_.head_size;
  if (shape_.num_layers < 1 || shape_.num_heads < 1 || shape_.num_kv_heads < 1 ||
      shape_.head_size < 1 || shape_.head_size_v < 1 ||
      shape_.num_heads % shape_.num_kv_heads != 0) {
    throw Error("ActivationGenerator: invalid shape");
  }
  const int64_t d = shape_.head_size;
  const int64_t pairs = d / 2;  // an odd last channel is not rotated
  inverse_frequency_.resize(static_cast<size_t>(pairs));
  for (int64_t i = 0; i < pairs; ++i) {
    inverse_frequency_[static_cast<size_t>(i)] =
        std::pow(10000.0, -2.0 * static_cast<double>(i) / static_cast<double>(2 * pairs));
  }

  traits_.resize(static_cast<size_t>(shape_.num_layers * shape_.num_kv_heads));
  for (int64_t layer = 0; layer < shape_.num_layers; ++layer) {
    for (int64_t head = 0; head < shape_.num_kv_heads; ++head) {
      KvHeadTraits& t = traits_[static_cast<size_t>(layer * shape_.num_kv_heads + head)];
      const auto l = static_cast<uint64_t>(layer);
      const auto h = static_cast<uint64_t>(head);
      // Outliers in distinct pairs of the lowest-frequency quarter
      // [3/4 pairs, pairs), on either member of the pair: they rotate by less
      // than a radian over the first thousand positions.
      const int64_t first_pair = pairs - std::max<int64_t>(1, pairs / 4);
      const int64_t candidates = pairs - first_pair;
      const int64_t count = pairs > 0 ? std::min<int64_t>(kOutlierChannels, candidates) : 0;
      std::vector<int64_t> chosen_pairs;
      for (uint64_t attempt = 0; static_cast<int64_t>(chosen_pairs.size()) < count; ++attempt) {
        const uint64_t r = key({seed_, kOutlierPick, l, h, attempt});
        const int64_t pair =
            first_pair + static_cast<int64_t>(r % static_cast<uint64_t>(candidates));
        if (std::find(chosen_pairs.begin(), chosen_pairs.end(), pair) != chosen_pairs.end())
          continue;
        chosen_pairs.push_back(pair);
        const int64_t channel = ((r >> 32) & 1) ? pair + pairs : pair;
        const double magnitude = 10.0 + 40.0 * uniform(mix(r));
        const double sign = ((r >> 33) & 1) ? -1.0 : 1.0;
        t.outlier_channels.push_back(channel);
        t.outlier_values.push_back(static_cast<float>(sign * magnitude));
      }
      t.sink_direction.resize(static_cast<size_t>(d));
      double norm = 0.0;
      for (int64_t c = 0; c < d; ++c) {
        const double x =
            standard_normal(key({seed_, kSinkDirection, l, h, static_cast<uint64_t>(c)}));
        t.sink_direction[static_cast<size_t>(c)] = static_cast<float>(x);
        norm += x * x;
      }
      for (auto& v : t.sink_direction) v = static_cast<float>(v / std::sqrt(norm));
      t.value_scale.resize(static_cast<size_t>(shape_.head_size_v));
      for (int64_t c = 0; c < shape_.head_size_v; ++c) {
        t.value_scale[static_cast<size_t>(c)] = static_cast<float>(
            0.5 + uniform(key({seed_, kValueScale, l, h, static_cast<uint64_t>(c)})));
      }
    }
  }
}

const ActivationGenerator::KvHeadTraits& ActivationGenerator::traits(int64_t layer,
                                                                     int64_t kv_head) const {
  return traits_[static_cast<size_t>(layer * shape_.num_kv_heads + kv_head)];
}

ActivationGenerator::Rotation ActivationGenerator::rotation_at(int64_t position) const {
  Rotation rotation;
  rotation.cos.resize(inverse_frequency_.size());
  rotation.sin.resize(inverse_frequency_.size());
  for (size_t i = 0; i < inverse_frequency_.size(); ++i) {
    const double angle = static_cast<double>(position) * inverse_frequency_[i];
    rotation.cos[i] = std::cos(angle);
    rotation.sin[i] = std::sin(angle);
  }
  return rotation;
}

void ActivationGenerator::check(Projection projection, int64_t position, int64_t layer,
                                int64_t head) const {
  const int64_t head_limit =
      projection == Projection::kQuery ? shape_.num_heads : shape_.num_kv_heads;
  if (layer < 0 || layer >= shape_.num_layers || head < 0 || head >= head_limit || position < 0) {
    throw Error("ActivationGenerator: layer, head or position out of range");
  }
}

int64_t ActivationGenerator::width(Projection projection) const {
  return projection == Projection::kValue ? shape_.head_size_v : shape_.head_size;
}

int64_t ActivationGenerator::heads(Projection projection) const {
  return projection == Projection::kQuery ? shape_.num_heads : shape_.num_kv_heads;
}

void ActivationGenerator::fill(Projection projection, uint64_t content, int64_t position,
                               int64_t layer, int64_t head, std::span<float> out) const {
  check(projection, position, layer, head);
  if (static_cast<int64_t>(out.size()) != width(projection)) {
    throw Error("ActivationGenerator::fill: output size is not the head size");
  }
  fill_head(projection, content, position, layer, head, rotation_at(position), out);
}

void ActivationGenerator::fill_token(Projection projection, uint64_t content, int64_t position,
                                     int64_t layer, std::span<float> out,
                                     int64_t first_head) const {
  check(projection, position, layer, first_head);
  const int64_t w = width(projection);
  const auto n = static_cast<int64_t>(out.size()) / w;
  if (n * w != static_cast<int64_t>(out.size()) || n < 1 || first_head + n > heads(projection)) {
    throw Error("ActivationGenerator::fill_token: output size is not heads x head size");
  }
  const Rotation rotation = rotation_at(position);  // once per token, shared by its heads
  for (int64_t h = 0; h < n; ++h) {
    fill_head(projection, content, position, layer, first_head + h, rotation,
              out.subspan(static_cast<size_t>(h * w), static_cast<size_t>(w)));
  }
}

void ActivationGenerator::fill_head(Projection projection, uint64_t content, int64_t position,
                                    int64_t layer, int64_t head, const Rotation& rotation,
                                    std::span<float> out) const {
  const bool is_value = projection == Projection::kValue;
  const auto w = static_cast<int64_t>(out.size());
  const int64_t kv_head =
      projection == Projection::kQuery ? head / (shape_.num_heads / shape_.num_kv_heads) : head;
  const KvHeadTraits& t = traits(layer, kv_head);
  const auto pos = static_cast<uint64_t>(position);
  const auto l = static_cast<uint64_t>(layer);

  // Heavy-tailed tokens: the gain is a property of the token (shared by Q, K
  // and V and by all heads of the layer).
  const uint64_t gain_bits = key({seed_, kTokenGain, content, pos, l});
  const double gain = (gain_bits & 15) == 0 ? 2.0 + 2.0 * uniform(mix(gain_bits)) : 1.0;

  const uint64_t base = key({seed_, kBase, static_cast<uint64_t>(projection), content, pos, l,
                             static_cast<uint64_t>(head)});
  for (int64_t c = 0; c < w; ++c) {
    const double x = standard_normal(mix(base + static_cast<uint64_t>(c) * 0x9E3779B97F4A7C15ull));
    out[static_cast<size_t>(c)] = static_cast<float>(x * gain);
  }

  if (is_value) {
    for (int64_t c = 0; c < w; ++c)
      out[static_cast<size_t>(c)] *= t.value_scale[static_cast<size_t>(c)];
    return;
  }

  for (size_t i = 0; i < t.outlier_channels.size(); ++i) {
    auto& x = out[static_cast<size_t>(t.outlier_channels[i])];
    if (projection == Projection::kKey) {
      x = static_cast<float>(t.outlier_values[i] * (1.0 + 0.1 * x) * gain);
    } else {
      x = static_cast<float>(0.1 * x);
    }
  }

  // Rotary embedding: pair (i, i + pairs) turns by position * frequency_i.
  const size_t pairs = rotation.cos.size();
  for (size_t i = 0; i < pairs; ++i) {
    const double a = out[i];
    const double b = out[i + pairs];
    out[i] = static_cast<float>(a * rotation.cos[i] - b * rotation.sin[i]);
    out[i + pairs] = static_cast<float>(a * rotation.sin[i] + b * rotation.cos[i]);
  }

  const double root_d = std::sqrt(static_cast<double>(shape_.head_size));
  const double sink = projection == Projection::kQuery ? 0.5 * root_d
                      : position == 0                  ? 1.25 * root_d
                                                       : 0.0;
  if (sink != 0.0) {
    for (int64_t c = 0; c < w; ++c) {
      out[static_cast<size_t>(c)] +=
          static_cast<float>(sink * t.sink_direction[static_cast<size_t>(c)]);
    }
  }
}

}  // namespace kvq::host
