// Deterministic Q/K/V activations in place of a model (no weights can be
// downloaded here; spec/host.md "Activations without a model").
//
// Every value is a pure function of (seed, projection, content, position,
// layer, head, channel): no state, so any token can be regenerated in any
// order, which the accuracy check relies on, and the same seed gives the same
// bytes on every run. `content` identifies the text a token belongs to: the
// request id, or one shared id for a prefix common to all requests, so shared
// prefixes have identical K/V as they would in a real model.
//
// The statistics are the ones that make KV-cache quantization hard:
//  * base values: independent standard normals (a counter-based hash of
//    the key, through the inverse normal CDF);
//  * heavy-tailed tokens: about 1 token in 16 is 2-4x larger in Q, K and V
//    ("massive activations");
//  * K outlier channels: per (layer, KV head) a few fixed channels carry a
//    value of fixed sign 10-50x the typical magnitude (+-10% per token), as
//    in real keys. They sit in the most slowly rotating (lowest-frequency)
//    quarter of the rotary pairs, where real outliers survive RoPE. Q is small (x0.1) in those
//    channels, as in real models, so outliers shift all scores of a query
//    together instead of dominating the softmax;
//  * rotary position embedding (NeoX halves, base 10000) on Q and K;
//  * an attention sink: after rotation, the key at position 0 gets
//    1.25*sqrt(D) along a unit direction fixed per (layer, KV head) and every
//    query 0.5*sqrt(D) along it, so position 0 draws about 0.6*sqrt(D) more
//    logit than other keys;
//  * V: normal with a fixed per-channel scale in [0.5, 1.5], no outliers.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace kvq::host {

enum class Projection : uint8_t { kQuery = 1, kKey = 2, kValue = 3 };

struct ActivationShape {
  int64_t num_layers = 1;
  int64_t num_heads = 1;     // query heads
  int64_t num_kv_heads = 1;  // key/value heads
  int64_t head_size = 64;    // query/key channels
  int64_t head_size_v = 0;   // value channels; 0 = head_size
};

class ActivationGenerator {
 public:
  ActivationGenerator(uint64_t seed, const ActivationShape& shape);

  // Writes one head of one token: head_size floats for Q and K, head_size_v
  // for V. `head` is a query head for Q and a KV head for K and V.
  void fill(Projection projection, uint64_t content, int64_t position, int64_t layer, int64_t head,
            std::span<float> out) const;
  // Writes heads [first_head, first_head + out.size() / head size) of one
  // token (every head by default; one rank's share with tensor parallelism);
  // the same values as fill() per head, with the rotation computed once.
  void fill_token(Projection projection, uint64_t content, int64_t position, int64_t layer,
                  std::span<float> out, int64_t first_head = 0) const;
  int64_t width(Projection projection) const;  // head_size, or head_size_v for V
  int64_t heads(Projection projection) const;  // num_heads for Q, num_kv_heads for K and V

  // Number of K outlier channels per (layer, KV head).
  static constexpr int kOutlierChannels = 4;

  const ActivationShape& shape() const { return shape_; }

 private:
  struct KvHeadTraits {
    std::vector<int64_t> outlier_channels;
    std::vector<float> outlier_values;  // signed magnitude of each outlier channel
    std::vector<float> sink_direction;  // unit vector, head_size
    std::vector<float> value_scale;     // per V channel
  };
  struct Rotation {
    std::vector<double> cos;  // per rotary pair
    std::vector<double> sin;
  };
  const KvHeadTraits& traits(int64_t layer, int64_t kv_head) const;
  Rotation rotation_at(int64_t position) const;
  void check(Projection projection, int64_t position, int64_t layer, int64_t head) const;
  void fill_head(Projection projection, uint64_t content, int64_t position, int64_t layer,
                 int64_t head, const Rotation& rotation, std::span<float> out) const;

  uint64_t seed_;
  ActivationShape shape_;
  std::vector<double> inverse_frequency_;  // per rotary pair
  std::vector<KvHeadTraits> traits_;       // [layer][kv head]
};

}  // namespace kvq::host
