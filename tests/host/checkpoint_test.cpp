// Checkpoint directories loaded into real plugins through the ABI: a C8
// checkpoint (real quant_model_description.json, safetensors scales with
// non-zero offsets) turns every ascend layer into C8 with exactly the file's
// scales (also at TP 2, where the preparation shards them), every attention
// state then matches a float64 reference computed from the int8 cache bytes,
// and every way a checkpoint can be wrong stops the engine from starting
// with a message naming the file, tensor and layer.
// (`kvq make-checkpoint` end to end: make_checkpoint_test.cpp.)
#include "kvq_engine/checkpoint.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <kvq_abi.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <cmath>
#include <kvq_ref/reference.hpp>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "kv_models.hpp"
#include "kvq_engine/activation_generator.hpp"
#include "kvq_engine/engine.hpp"
#include "kvq_engine/float_codec.hpp"
#include "kvq_engine/host_tensor.hpp"
#include "kvq_engine/kv_cache_buffer.hpp"
#include "kvq_engine/make_checkpoint.hpp"
#include "kvq_files/deployment.hpp"
#include "kvq_files/errors.hpp"
#include "kvq_files/safetensors.hpp"
#include "test_support.hpp"

namespace kvq::host {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;
using testing::ScratchDir;

constexpr int64_t kLayers = 2;
constexpr int64_t kHeads = 4;
constexpr int64_t kKvHeads = 2;
constexpr int64_t kHeadSize = 64;
constexpr int64_t kChannels = kKvHeads * kHeadSize;
constexpr int64_t kBlockSize = 32;  // C8 needs a multiple of 32

float bf16(float x) {
  return bf16_bits_to_float(float_to_bf16_bits(x));
}

std::string layer_prefix(int64_t layer) {
  return "model.layers." + std::to_string(layer) + ".self_attn";
}

// Per-channel C8 scales of one layer as the file holds them.
struct LayerScales {
  std::vector<float> k_scale, k_offset, v_scale, v_offset;
};

// A C8 checkpoint written by the test: random per-channel scales in [0.03,
// 0.05] and non-zero integer offsets in [-8, 8].
struct C8Checkpoint {
  std::vector<LayerScales> layers;
  nlohmann::json description = {
      {"model_quant_type", "W8A8"}, {"version", "1.0.0"}, {"kv_cache_type", "C8"}};
  std::vector<NamedTensor> extra_tensors;

  C8Checkpoint() {
    std::mt19937 random(7);
    std::uniform_real_distribution<float> scale(0.03f, 0.05f);
    std::uniform_int_distribution<int> offset(-8, 8);
    const auto nonzero = [&] {
      const int o = offset(random);
      return static_cast<float>(o == 0 ? 3 : o);
    };
    for (int64_t l = 0; l < kLayers; ++l) {
      LayerScales s;
      for (int64_t c = 0; c < kChannels; ++c) {
        s.k_scale.push_back(scale(random));
        s.k_offset.push_back(nonzero());
        s.v_scale.push_back(scale(random));
        s.v_offset.push_back(nonzero());
      }
      layers.push_back(std::move(s));
      for (const char* proj : {"k_proj", "v_proj"}) {
        for (const char* what : {"kv_cache_scale", "kv_cache_offset"}) {
          description[layer_prefix(l) + "." + proj + "." + what] = "C8";
        }
      }
      description[layer_prefix(l) + ".q_proj.weight"] = "W8A8";
    }
  }

  std::vector<NamedTensor> tensors() const {
    std::vector<NamedTensor> out;
    for (int64_t l = 0; l < kLayers; ++l) {
      const LayerScales& s = layers[static_cast<size_t>(l)];
      const std::string p = layer_prefix(l);
      out.push_back(NamedTensor::f32(p + ".k_proj.kv_cache_scale", {kChannels}, s.k_scale));
      out.push_back(NamedTensor::f32(p + ".k_proj.kv_cache_offset", {kChannels}, s.k_offset));
      out.push_back(NamedTensor::f32(p + ".v_proj.kv_cache_scale", {kChannels}, s.v_scale));
      out.push_back(NamedTensor::f32(p + ".v_proj.kv_cache_offset", {kChannels}, s.v_offset));
    }
    for (const auto& t : extra_tensors) out.push_back(t);
    return out;
  }

  std::filesystem::path write(const ScratchDir& dir, const std::string& name = "ckpt") const {
    const nlohmann::json config = {{"architectures", {"Qwen3ForCausalLM"}},
                                   {"num_hidden_layers", kLayers},
                                   {"num_attention_heads", kHeads},
                                   {"num_key_value_heads", kKvHeads},
                                   {"head_dim", kHeadSize},
                                   {"hidden_size", kHeads * kHeadSize},
                                   {"torch_dtype", "bfloat16"}};
    dir.write(name + "/config.json", config.dump(2));
    dir.write(name + "/quant_model_description.json", description.dump(2));
    write_safetensors(dir.path() / name / "model.safetensors", tensors());
    return dir.path() / name;
  }
};

std::vector<float> read_f32(const Layer& layer, const std::string& name, int64_t count) {
  HostTensor t(KVQ_DTYPE_F32, {count});
  layer.param_read(name, t.view());
  return {t.as<float>(), t.as<float>() + count};
}

std::vector<float> read_bf16(const Layer& layer, const std::string& name, int64_t count) {
  HostTensor t(KVQ_DTYPE_BF16, {count});
  layer.param_read(name, t.view());
  std::vector<float> out;
  for (int64_t i = 0; i < count; ++i) out.push_back(bf16_bits_to_float(t.as<uint16_t>()[i]));
  return out;
}

std::vector<float> slice(const std::vector<float>& v, int64_t begin, int64_t count) {
  return {v.begin() + begin, v.begin() + begin + count};
}

// Captures the default logger's output (the host's and, through the log
// callback, the plugins') while alive.
class LogCapture {
 public:
  LogCapture() : previous_(spdlog::default_logger()) {
    auto logger = std::make_shared<spdlog::logger>(
        "capture", std::make_shared<spdlog::sinks::ostream_sink_mt>(stream_));
    logger->set_level(spdlog::level::debug);
    spdlog::set_default_logger(logger);
  }
  ~LogCapture() { spdlog::set_default_logger(previous_); }
  std::string text() const { return stream_.str(); }

 private:
  std::ostringstream stream_;
  std::shared_ptr<spdlog::logger> previous_;
};

// ---- driving one C8 layer through every attention state --------------------

// One C8 layer with its own KV cache. Keeps every token's (bf16) K/V, so the
// reference can use the float K/V where the plugin does, and dequantizes the
// int8 cache bytes with the file's scales everywhere else.
class C8Driver {
 public:
  // `scales` are this rank's channels (num_kv_heads x head_size).
  C8Driver(const Plugin& plugin, Layer& layer, int64_t num_heads, int64_t num_kv_heads,
           LayerScales scales)
      : layer_(layer),
        heads_(num_heads),
        kv_heads_(num_kv_heads),
        scales_(std::move(scales)),
        geometry_(layer.cache_geometry()),
        cache_(plugin, kNumBlocks, geometry_),
        history_(kSequences) {
    layer_.cache_init(cache_.tensor());
  }

  // One step: `chunks` = (sequence, new tokens); sequences keep their order.
  void step(int32_t state, const std::vector<std::pair<int, int64_t>>& chunks) {
    std::vector<int32_t> query_start{0};
    std::vector<int32_t> seq_lens;
    std::vector<int64_t> contexts;
    std::vector<int64_t> slots;
    std::vector<float> q, k, v;
    for (const auto& [seq, count] : chunks) {
      auto& h = history_[static_cast<size_t>(seq)];
      contexts.push_back(static_cast<int64_t>(h.size()));
      for (int64_t i = 0; i < count; ++i) {
        const int64_t position = static_cast<int64_t>(h.size());
        Token token;
        for (int64_t x = 0; x < kv_heads_ * kHeadSize; ++x) {
          token.k.push_back(bf16(uniform_(random_)));
          token.v.push_back(bf16(uniform_(random_)));
        }
        k.insert(k.end(), token.k.begin(), token.k.end());
        v.insert(v.end(), token.v.begin(), token.v.end());
        for (int64_t x = 0; x < heads_ * kHeadSize; ++x) q.push_back(bf16(uniform_(random_)));
        slots.push_back(block_of(seq, position) * kBlockSize + position % kBlockSize);
        h.push_back(std::move(token));
      }
      query_start.push_back(query_start.back() + static_cast<int32_t>(count));
      seq_lens.push_back(static_cast<int32_t>(h.size()));
    }
    const auto tokens = static_cast<int64_t>(slots.size());
    const auto num_seqs = static_cast<int64_t>(chunks.size());
    HostTensor query(KVQ_DTYPE_BF16, {tokens, heads_, kHeadSize});
    HostTensor key(KVQ_DTYPE_BF16, {tokens, kv_heads_, kHeadSize});
    HostTensor value(KVQ_DTYPE_BF16, {tokens, kv_heads_, kHeadSize});
    HostTensor output(KVQ_DTYPE_BF16, {tokens, heads_, kHeadSize});
    HostTensor slot_mapping(KVQ_DTYPE_I64, {tokens});
    HostTensor qsl(KVQ_DTYPE_I32, {num_seqs + 1});
    HostTensor lens(KVQ_DTYPE_I32, {num_seqs});
    HostTensor table(KVQ_DTYPE_I32, {num_seqs, kBlocksPerSequence});
    encode_floats(KVQ_DTYPE_BF16, q, query.data());
    encode_floats(KVQ_DTYPE_BF16, k, key.data());
    encode_floats(KVQ_DTYPE_BF16, v, value.data());
    std::copy(slots.begin(), slots.end(), slot_mapping.as<int64_t>());
    std::copy(query_start.begin(), query_start.end(), qsl.as<int32_t>());
    std::copy(seq_lens.begin(), seq_lens.end(), lens.as<int32_t>());
    for (int64_t s = 0; s < num_seqs; ++s) {
      for (int64_t b = 0; b < kBlocksPerSequence; ++b) {
        table.as<int32_t>()[s * kBlocksPerSequence + b] =
            static_cast<int32_t>(block_of(chunks[static_cast<size_t>(s)].first, b * kBlockSize));
      }
    }

    layer_.cache_write(client::CacheWriteArgs()
                           .key(key.view())
                           .value(value.view())
                           .slot_mapping(slot_mapping.view())
                           .kv_cache(cache_.tensor()));
    cache_bytes_ = cache_.read();
    check_quantization(chunks);

    layer_.forward(client::ForwardArgs()
                       .attention_state(state)
                       .query(query.view())
                       .key(key.view())
                       .value(value.view())
                       .kv_cache(cache_.tensor())
                       .query_start_loc(qsl.view())
                       .seq_lens(lens.view())
                       .block_table(table.view())
                       .output(output.view()));

    // Where the plugin reads each sequence's keys (spec/ascend.md §6).
    std::vector<bool> float_kv(chunks.size(), false);
    if (state == KVQ_ATTN_PREFILL_NO_CACHE) float_kv.assign(chunks.size(), true);
    if (state == KVQ_ATTN_CHUNKED_PREFILL) {
      bool prefill_context = false;
      for (size_t s = 0; s < chunks.size(); ++s) {
        if (chunks[s].second != 1 && contexts[s] > 0) prefill_context = true;
      }
      for (size_t s = 0; s < chunks.size(); ++s) {
        float_kv[s] = !prefill_context && chunks[s].second != 1;
      }
    }
    kvq::ref::AttentionProblem problem;
    problem.num_heads = heads_;
    problem.num_kv_heads = kv_heads_;
    problem.head_size = kHeadSize;
    problem.head_size_v = kHeadSize;
    problem.query_start_loc = query_start;
    problem.seq_lens = seq_lens;
    std::vector<std::vector<double>> keys(chunks.size()), values(chunks.size());
    for (size_t s = 0; s < chunks.size(); ++s) {
      const int seq = chunks[s].first;
      for (int64_t j = 0; j < seq_lens[s]; ++j) {
        for (int64_t h = 0; h < kv_heads_; ++h) {
          for (int64_t d = 0; d < kHeadSize; ++d) {
            const int64_t c = h * kHeadSize + d;
            const Token& t = history_[static_cast<size_t>(seq)][static_cast<size_t>(j)];
            keys[s].push_back(float_kv[s] ? t.k[static_cast<size_t>(c)]
                                          : dequantized(seq, j, 0, h, d));
            values[s].push_back(float_kv[s] ? t.v[static_cast<size_t>(c)]
                                            : dequantized(seq, j, 1, h, d));
          }
        }
      }
    }
    const std::vector<double> query_values(q.begin(), q.end());
    const std::vector<double> expected = kvq::ref::attention(problem, query_values, keys, values);
    std::vector<double> actual(expected.size());
    decode_to_doubles(KVQ_DTYPE_BF16, output.data(), actual);
    const kvq::ref::Comparison cmp = kvq::ref::compare(actual, expected, 1e-2, 1e-2);
    EXPECT_EQ(cmp.violations, 0) << "state " << state << ": max abs error " << cmp.max_abs_error
                                 << " at element " << cmp.worst_index;
    EXPECT_EQ(cmp.non_finite, 0);
    EXPECT_GT(cmp.cosine, 0.9999) << "state " << state;
    ++steps_;
  }

  int64_t steps() const { return steps_; }

 private:
  static constexpr int kSequences = 3;
  static constexpr int64_t kBlocksPerSequence = 4;
  static constexpr int64_t kNumBlocks = kSequences * kBlocksPerSequence;

  struct Token {
    std::vector<float> k, v;  // [kv head][channel], bf16 values
  };

  static int64_t block_of(int seq, int64_t position) {
    // Sequences own interleaved blocks, so block ids differ from positions.
    return (position / kBlockSize) * kSequences + (kSequences - 1 - seq);
  }

  const int8_t* row(int seq, int64_t position, int kv, int64_t head) const {
    const int64_t block = block_of(seq, position);
    const int64_t offset =
        block * geometry_.bytes_per_block +
        ((kv * kBlockSize + position % kBlockSize) * kv_heads_ + head) * geometry_.row_bytes;
    return reinterpret_cast<const int8_t*>(cache_bytes_.data() + offset);
  }

  // (q - offset) * scale, each step rounded to bf16 (c8_impl.cpp), with the
  // file's scale and offset of the channel.
  double dequantized(int seq, int64_t position, int kv, int64_t head, int64_t d) const {
    const size_t c = static_cast<size_t>(head * kHeadSize + d);
    const float scale = bf16(kv == 0 ? scales_.k_scale[c] : scales_.v_scale[c]);
    const float offset = bf16(kv == 0 ? scales_.k_offset[c] : scales_.v_offset[c]);
    const int8_t q = row(seq, position, kv, head)[d];
    return bf16(bf16(static_cast<float>(q) - offset) * scale);
  }

  // The new tokens' int8 bytes, dequantized with the file's parameters, are
  // within 1.5 steps of the float input: the plugin quantized with the
  // file's (non-zero) offsets and scales.
  void check_quantization(const std::vector<std::pair<int, int64_t>>& chunks) const {
    for (const auto& [seq, count] : chunks) {
      const auto& h = history_[static_cast<size_t>(seq)];
      for (int64_t j = static_cast<int64_t>(h.size()) - count; j < static_cast<int64_t>(h.size());
           ++j) {
        for (int64_t head = 0; head < kv_heads_; ++head) {
          for (int64_t d = 0; d < kHeadSize; ++d) {
            const size_t c = static_cast<size_t>(head * kHeadSize + d);
            ASSERT_NEAR(dequantized(seq, j, 0, head, d), h[static_cast<size_t>(j)].k[c],
                        1.5 * scales_.k_scale[c]);
            ASSERT_NEAR(dequantized(seq, j, 1, head, d), h[static_cast<size_t>(j)].v[c],
                        1.5 * scales_.v_scale[c]);
          }
        }
      }
    }
  }

  Layer& layer_;
  int64_t heads_, kv_heads_;
  LayerScales scales_;
  kvq_cache_geometry geometry_;
  KvCacheBuffer cache_;
  std::vector<std::byte> cache_bytes_;  // the cache after the last write
  std::vector<std::vector<Token>> history_;
  std::mt19937 random_{11};
  std::uniform_real_distribution<float> uniform_{-2.0f, 2.0f};
  int64_t steps_ = 0;
};

// Every attention state, in an order a scheduler could produce.
void run_every_state(C8Driver& driver) {
  driver.step(KVQ_ATTN_PREFILL_NO_CACHE, {{0, 40}, {1, 20}});
  driver.step(KVQ_ATTN_DECODE_ONLY, {{0, 1}, {1, 1}});
  driver.step(KVQ_ATTN_CHUNKED_PREFILL, {{0, 1}, {2, 12}});   // new prefill: float K/V
  driver.step(KVQ_ATTN_CHUNKED_PREFILL, {{1, 1}, {2, 10}});   // prefill with context: cache
  driver.step(KVQ_ATTN_PREFILL_CACHE_HIT, {{0, 9}, {1, 5}});  // crosses a block boundary
  driver.step(KVQ_ATTN_SPEC_DECODING, {{0, 3}, {2, 2}});
}

class CheckpointTest : public ::testing::Test {
 protected:
  Plugin ascend() const { return open_plugin(testing::ascend_plugin()); }
  ScratchDir dir_;
};

// ---- loading C8 into ascend --------------------------------------------------

TEST_F(CheckpointTest, C8CheckpointTurnsEveryAttentionLayerIntoC8WithTheFilesScales) {
  REQUIRE_PLUGIN(testing::ascend_plugin());
  const C8Checkpoint file;
  const Checkpoint checkpoint = Checkpoint::open(file.write(dir_));
  EXPECT_EQ(checkpoint.config().num_layers, kLayers);
  EXPECT_EQ(checkpoint.config().head_size, kHeadSize);
  ASSERT_TRUE(checkpoint.description().has_value());
  const Plugin plugin = ascend();

  for (int64_t l = 0; l < kLayers; ++l) {
    LoadedLayer loaded =
        create_checkpoint_layer(plugin, checkpoint, l, {"ascend", "", kBlockSize, 0, 1});
    const LayerInfo info = loaded.layer.info();
    EXPECT_EQ(info.impl_name, "ascend_c8_attention");
    EXPECT_EQ(info.kv_cache_dtype, "int8");
    EXPECT_EQ(info.scheme, "C8");
    EXPECT_EQ(loaded.plan.scheme, "C8");
    EXPECT_EQ(loaded.plan.create_mode, "auto");
    EXPECT_EQ(loaded.report.loaded_params.size(), 4u);
    EXPECT_TRUE(loaded.report.dropped_tensors.empty());
    EXPECT_TRUE(loaded.report.unloaded_parameters.empty());

    const std::string attn = layer_prefix(l) + ".attn.";
    const LayerScales& s = file.layers[static_cast<size_t>(l)];
    EXPECT_EQ(read_f32(loaded.layer, attn + "k_cache_scale", kChannels), s.k_scale);
    EXPECT_EQ(read_f32(loaded.layer, attn + "k_cache_offset", kChannels), s.k_offset);
    EXPECT_EQ(read_f32(loaded.layer, attn + "v_cache_scale", kChannels), s.v_scale);
    EXPECT_EQ(read_f32(loaded.layer, attn + "v_cache_offset", kChannels), s.v_offset);
    for (const ParamInfo& p : loaded.layer.params()) {
      if (p.loader.empty()) continue;
      EXPECT_TRUE(p.loaded) << p.name;
      EXPECT_EQ(p.shape, (std::vector<int64_t>{kChannels})) << p.name;
    }
  }
}

TEST_F(CheckpointTest, EveryAttentionStateMatchesAReferenceFromTheInt8Cache) {
  REQUIRE_PLUGIN(testing::ascend_plugin());
  const C8Checkpoint file;
  const Checkpoint checkpoint = Checkpoint::open(file.write(dir_));
  const Plugin plugin = ascend();
  LoadedLayer loaded =
      create_checkpoint_layer(plugin, checkpoint, 1, {"ascend", "", kBlockSize, 0, 1});
  C8Driver driver(plugin, loaded.layer, kHeads, kKvHeads, file.layers[1]);
  run_every_state(driver);
  EXPECT_EQ(driver.steps(), 6);
}

TEST_F(CheckpointTest, TensorParallelRankOneGetsItsShareOfTheScales) {
  REQUIRE_PLUGIN(testing::ascend_plugin());
  const C8Checkpoint file;
  const Checkpoint checkpoint = Checkpoint::open(file.write(dir_));
  const Plugin plugin = ascend();
  LoadedLayer loaded =
      create_checkpoint_layer(plugin, checkpoint, 0, {"ascend", "", kBlockSize, 1, 2});
  const LayerScales& s = file.layers[0];
  // The checkpoint holds all KV heads; the loader keeps them whole.
  EXPECT_EQ(read_f32(loaded.layer, layer_prefix(0) + ".attn.k_cache_scale", kChannels), s.k_scale);

  // This rank has KV head 1 of 2: the preparation (at the first cache write
  // or forward) takes channels [64, 128) of the file's vectors.
  const LayerScales local{
      slice(s.k_scale, kHeadSize, kHeadSize), slice(s.k_offset, kHeadSize, kHeadSize),
      slice(s.v_scale, kHeadSize, kHeadSize), slice(s.v_offset, kHeadSize, kHeadSize)};
  C8Driver driver(plugin, loaded.layer, kHeads / 2, kKvHeads / 2, local);
  driver.step(KVQ_ATTN_PREFILL_NO_CACHE, {{0, 33}});
  const std::string attn = layer_prefix(0) + ".attn.";
  std::vector<float> expected_scale, expected_offset, expected_v_scale;
  for (int64_t d = 0; d < kHeadSize; ++d) {
    expected_scale.push_back(bf16(local.k_scale[static_cast<size_t>(d)]));
    expected_offset.push_back(bf16(local.k_offset[static_cast<size_t>(d)]));
    expected_v_scale.push_back(bf16(local.v_scale[static_cast<size_t>(d)]));
  }
  EXPECT_EQ(read_bf16(loaded.layer, attn + "antiquant_key_scale", kHeadSize), expected_scale);
  EXPECT_EQ(read_bf16(loaded.layer, attn + "antiquant_key_offset", kHeadSize), expected_offset);
  EXPECT_EQ(read_bf16(loaded.layer, attn + "antiquant_value_scale", kHeadSize), expected_v_scale);
  // And the rank's attention reads its own heads' scales in every state.
  driver.step(KVQ_ATTN_DECODE_ONLY, {{0, 1}});
  driver.step(KVQ_ATTN_PREFILL_CACHE_HIT, {{0, 7}});
}

// ---- what is dropped, what is refused ----------------------------------------

TEST_F(CheckpointTest, AMappedNameWithoutAParameterIsLoggedAndDropped) {
  REQUIRE_PLUGIN(testing::ascend_plugin());
  C8Checkpoint file;
  // Matches the C8 rule ".k_proj.kv_cache_scale", but maps to
  // "...self_attn.extra.attn.k_cache_scale", which no layer declares.
  const std::vector<float> junk(kChannels, 1.0f);
  file.extra_tensors.push_back(
      NamedTensor::f32(layer_prefix(0) + ".extra.k_proj.kv_cache_scale", {kChannels}, junk));
  // Not mapped by any rule and not a parameter: ignored without a warning.
  file.extra_tensors.push_back(
      NamedTensor::f32(layer_prefix(0) + ".q_proj.weight", {2}, {junk.data(), 2}));
  const Checkpoint checkpoint = Checkpoint::open(file.write(dir_));
  const Plugin plugin = ascend();
  const LogCapture log;
  LoadedLayer loaded =
      create_checkpoint_layer(plugin, checkpoint, 0, {"ascend", "", kBlockSize, 0, 1});
  EXPECT_EQ(loaded.report.dropped_tensors,
            std::vector<std::string>{layer_prefix(0) + ".extra.k_proj.kv_cache_scale"});
  EXPECT_EQ(loaded.report.loaded_params.size(), 4u);
  EXPECT_THAT(log.text(),
              AllOf(HasSubstr("[warning]"),
                    HasSubstr("tensor '" + layer_prefix(0) + ".extra.k_proj.kv_cache_scale'"),
                    HasSubstr("maps to '" + layer_prefix(0) + ".extra.attn.k_cache_scale'"),
                    HasSubstr("does not declare; dropped")));
  EXPECT_THAT(log.text(), Not(HasSubstr("q_proj.weight' of")));
  EXPECT_EQ(loaded.layer.info().impl_name, "ascend_c8_attention");
}

TEST_F(CheckpointTest, AnUnknownQuantTypeFailsNamingTheFileAndKey) {
  REQUIRE_PLUGIN(testing::ascend_plugin());
  C8Checkpoint file;
  file.description["kv_cache_type"] = "C9";
  const std::filesystem::path dir = file.write(dir_);
  const Checkpoint checkpoint = Checkpoint::open(dir);
  const Plugin plugin = ascend();
  try {
    create_checkpoint_layer(plugin, checkpoint, 0, {"ascend", "", kBlockSize, 0, 1});
    FAIL() << "an unknown quant type was accepted";
  } catch (const Error& e) {
    EXPECT_THAT(std::string(e.what()),
                AllOf(HasSubstr((dir / "quant_model_description.json").string()),
                      HasSubstr("\"kv_cache_type\""), HasSubstr("C9")));
  }
}

// The engine with a deployment naming the checkpoint: throws before serving.
std::string run_refusal(const ScratchDir& dir, const std::filesystem::path& checkpoint,
                        const std::string& plugin, const std::string& backend,
                        const std::string& kv_dtype = "") {
  const std::string yaml =
      "plugin: {path: '" + plugin + "'}\nbackend: " + backend + "\ncheckpoint: '" +
      checkpoint.string() + "'\nkv_cache: {" +
      (kv_dtype.empty() ? "" : "dtype: " + kv_dtype + ", ") +
      "block_size: 32, num_blocks: 16}\nworkload: {num_prompts: 1, input_len: 8, output_len: 2}\n";
  try {
    run_benchmark(load_deployment_file(dir.write("deploy.yaml", yaml), DeploymentParseOptions{}));
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "the engine started";
  return "";
}

TEST_F(CheckpointTest, MissingScalesStopTheEngineNamingTheLayer) {
  REQUIRE_PLUGIN(testing::ascend_plugin());
  const C8Checkpoint file;
  std::vector<NamedTensor> tensors = file.tensors();
  std::erase_if(tensors,
                [](const NamedTensor& t) { return t.name.starts_with("model.layers.1."); });
  const std::filesystem::path dir = file.write(dir_);
  write_safetensors(dir / "model.safetensors", tensors);
  EXPECT_THAT(
      run_refusal(dir_, dir, testing::ascend_plugin(), "ascend"),
      AllOf(HasSubstr("layer model.layers.1.self_attn.attn"), HasSubstr("cannot run after loading"),
            HasSubstr("not in the checkpoint: model.layers.1.self_attn.attn.k_cache_offset"),
            HasSubstr("never loaded")));
}

TEST_F(CheckpointTest, AMalformedScaleStopsTheEngineNamingFileTensorAndLayer) {
  REQUIRE_PLUGIN(testing::ascend_plugin());
  const C8Checkpoint file;
  std::vector<NamedTensor> tensors = file.tensors();
  for (auto& t : tensors) {
    if (t.name == layer_prefix(0) + ".v_proj.kv_cache_scale") {
      t = NamedTensor::f32(t.name, {3}, std::vector<float>{1.0f, 1.0f, 1.0f});
    }
  }
  const std::filesystem::path dir = file.write(dir_);
  write_safetensors(dir / "model.safetensors", tensors);
  EXPECT_THAT(run_refusal(dir_, dir, testing::ascend_plugin(), "ascend"),
              AllOf(HasSubstr("layer model.layers.0.self_attn.attn"),
                    HasSubstr("'model.layers.0.self_attn.v_proj.kv_cache_scale' from " +
                              (dir / "model.safetensors").string()),
                    HasSubstr("v_cache_scale has 3 values")));
}

TEST_F(CheckpointTest, ALoaderRefusalNamesFileTensorAndLayer) {
  REQUIRE_PLUGIN(testing::triton_plugin());
  // An fp8 checkpoint for the triton plugin (which has no select_scheme: the
  // host reads kv_cache_scheme) with a k_scale of 3 values for 2 KV heads.
  const std::filesystem::path dir = dir_.path() / "fp8";
  MakeCheckpointOptions options;
  options.mode = "fp8";
  options.num_layers = 1;
  options.num_heads = kHeads;
  options.num_kv_heads = kKvHeads;
  options.head_size = kHeadSize;
  make_checkpoint(dir, options);
  const std::vector<float> bad = {0.1f, 0.1f, 0.1f};
  write_safetensors(dir / "model.safetensors",
                    {NamedTensor::f32("model.layers.0.self_attn.k_scale", {3}, bad)});
  EXPECT_THAT(run_refusal(dir_, dir, testing::triton_plugin(), "triton"),
              AllOf(HasSubstr("layer model.layers.0.self_attn.attn"),
                    HasSubstr("tensor 'model.layers.0.self_attn.k_scale' (F32 [3]) from " +
                              (dir / "model.safetensors").string()),
                    HasSubstr("into parameter 'model.layers.0.self_attn.attn.k_scale'"),
                    HasSubstr("neither a scalar")));
}

TEST_F(CheckpointTest, AQuantizedKvCacheDtypeConflictsWithTheDescription) {
  REQUIRE_PLUGIN(testing::ascend_plugin());
  const std::filesystem::path dir = C8Checkpoint().write(dir_);
  EXPECT_THAT(run_refusal(dir_, dir, testing::ascend_plugin(), "ascend", "int8"),
              AllOf(HasSubstr("kv_cache.dtype 'int8' is a quantized cache mode"),
                    HasSubstr("selects scheme C8")));
}

TEST_F(CheckpointTest, AFloatKvCacheDtypeIsTheModeTheSchemeStartsFrom) {
  REQUIRE_PLUGIN(testing::ascend_plugin());
  const Checkpoint checkpoint = Checkpoint::open(C8Checkpoint().write(dir_));
  const Plugin plugin = ascend();
  for (const char* mode : {"bfloat16", "auto"}) {
    LoadedLayer loaded =
        create_checkpoint_layer(plugin, checkpoint, 0, {"ascend", mode, kBlockSize, 0, 1});
    EXPECT_EQ(loaded.plan.create_mode, mode);
    EXPECT_EQ(loaded.layer.info().impl_name, "ascend_c8_attention");
  }
}

TEST_F(CheckpointTest, WithoutADescriptionTheKvCacheDtypeDecides) {
  REQUIRE_PLUGIN(testing::ascend_plugin());
  const std::filesystem::path dir = C8Checkpoint().write(dir_);
  std::filesystem::remove(dir / "quant_model_description.json");
  const Checkpoint checkpoint = Checkpoint::open(dir);
  const Plugin plugin = ascend();
  // No scheme: the layer stays unquantized and the C8 tensors are not loaded.
  LoadedLayer plain = create_checkpoint_layer(plugin, checkpoint, 0, {"ascend", "", kBlockSize});
  EXPECT_EQ(plain.plan.scheme, "");
  EXPECT_EQ(plain.layer.info().impl_name, "ascend_attention");
  EXPECT_TRUE(plain.report.loaded_params.empty());
  // kv_cache.dtype naming a scheme reaches it through the registry.
  LoadedLayer c8 = create_checkpoint_layer(plugin, checkpoint, 0, {"ascend", "C8", kBlockSize});
  EXPECT_EQ(c8.plan.scheme, "C8");
  EXPECT_EQ(c8.plan.scheme_source, "kv_cache.dtype");
  EXPECT_EQ(c8.layer.info().impl_name, "ascend_c8_attention");
  EXPECT_EQ(c8.report.loaded_params.size(), 4u);
}

TEST_F(CheckpointTest, BadDirectoriesAreRefusedNamingTheFile) {
  EXPECT_THAT(
      [&] {
        try {
          Checkpoint::open(dir_.path() / "nothing");
        } catch (const Error& e) {
          return std::string(e.what());
        }
        return std::string();
      }(),
      HasSubstr("does not exist"));
  const auto refusal = [&](const std::string& config, const std::string& description = "{}") {
    const ScratchDir dir;
    dir.write("c/config.json", config);
    dir.write("c/quant_model_description.json", description);
    try {
      Checkpoint::open(dir.path() / "c");
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  EXPECT_THAT(
      refusal(R"({"num_attention_heads": 4, "head_dim": 64})"),
      AllOf(HasSubstr("config.json"), HasSubstr("missing required key \"num_hidden_layers\"")));
  EXPECT_THAT(refusal(R"({"num_hidden_layers": 2, "num_attention_heads": 4,
                          "num_key_value_heads": 3, "head_dim": 64})"),
              HasSubstr("must be a multiple of num_key_value_heads (3)"));
  EXPECT_THAT(refusal(R"({"num_hidden_layers": 2, "num_attention_heads": 4, "head_dim": 64,
                          "torch_dtype": "float64"})"),
              HasSubstr("\"torch_dtype\" is \"float64\""));
  EXPECT_THAT(
      refusal(R"({"num_hidden_layers": 2, "num_attention_heads": 4, "head_dim": 64})", "{not json"),
      AllOf(HasSubstr("quant_model_description.json"), HasSubstr("not valid JSON")));
  // head_dim from hidden_size / num_attention_heads; KV heads default to the heads.
  const ScratchDir ok;
  ok.write("c/config.json",
           R"({"num_hidden_layers": 3, "num_attention_heads": 8, "hidden_size": 1024,
               "torch_dtype": "float16", "kv_lora_rank": 512})");
  const Checkpoint c = Checkpoint::open(ok.path() / "c");
  EXPECT_EQ(c.config().head_size, 128);
  EXPECT_EQ(c.config().num_kv_heads, 8);
  EXPECT_EQ(c.config().dtype, ModelDtype::kFp16);
  EXPECT_FALSE(c.description().has_value());
  EXPECT_EQ(c.scheme_options(), (SchemeOptions{{"kv_lora_rank", "512"}}));
}

TEST_F(CheckpointTest, ATensorInTwoFilesIsRefused) {
  const C8Checkpoint file;
  const std::filesystem::path dir = file.write(dir_);
  write_safetensors(dir / "model-00002.safetensors", {file.tensors().front()});
  try {
    Checkpoint::open(dir);
    FAIL() << "accepted";
  } catch (const Error& e) {
    EXPECT_THAT(std::string(e.what()),
                AllOf(HasSubstr("tensor '" + file.tensors().front().name + "' is in both"),
                      HasSubstr("model-00002.safetensors")));
  }
}

}  // namespace
}  // namespace kvq::host
