// The client's session objects against the real plugins and the 1.0 stub:
// negotiation (minimum minor, threads, device ordinal, log sink), owned
// plugin information incl. the 1.1 fields (and their defaults for a 1.0
// plugin), layers through the 1.1 struct variants, and the error texts.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <mutex>
#include <vector>

#include "client_test_support.hpp"

namespace kvq::client {
namespace {

using ::testing::AllOf;
using testing::error_of;
using ::testing::HasSubstr;

TEST(ClientSession, ReadsTheTritonPluginsInfoIncludingThe1_1Fields) {
  const Plugin plugin = Plugin::load(testing::triton_plugin());
  const PluginInfo& info = plugin.info();
  EXPECT_EQ(info.name, "kvq_triton_sim");
  EXPECT_EQ(info.abi_minor, 1u);
  EXPECT_EQ(plugin.negotiated_minor(), 1u);
  EXPECT_EQ(info.device_type, KVQ_DEVICE_CPU);
  EXPECT_FALSE(plugin.on_device());
  EXPECT_FALSE(info.has_device_memory);
  EXPECT_FALSE(info.device_name.empty());  // the CPU's model name
  const BackendInfo* triton = info.find_backend("triton");
  ASSERT_NE(triton, nullptr);
  EXPECT_TRUE(triton->lists_layer_options);
  ASSERT_EQ(triton->layer_options.size(), 1u);
  EXPECT_EQ(triton->layer_options[0].name, "calculate_kv_scales");
  EXPECT_EQ(triton->layer_options[0].default_value, "false");
  const SchemeInfo* scheme = info.find_scheme("int8_per_token_head", "attention");
  ASSERT_NE(scheme, nullptr);
  EXPECT_EQ(scheme->backend, "triton");
  EXPECT_EQ(info.backend_claiming("int4_per_token_head"), triton);
  EXPECT_EQ(info.backend_claiming("no_such_mode"), nullptr);
}

// Version skew: the stub is built against the released 1.0 header, so its
// records end before the 1.1 fields; the client keeps their defaults.
TEST(ClientSession, A1_0PluginGetsThe1_0SessionAndDefaults) {
  const Plugin plugin = Plugin::load(testing::stub_plugin());
  const PluginInfo& info = plugin.info();
  EXPECT_EQ(info.abi_minor, 0u);
  EXPECT_EQ(info.plugin_abi_minor, 0u);
  EXPECT_EQ(info.device_type, KVQ_DEVICE_CPU);
  EXPECT_EQ(info.device_count, 1);
  EXPECT_TRUE(info.device_name.empty());
  ASSERT_EQ(info.backends.size(), 1u);
  EXPECT_FALSE(info.backends[0].lists_layer_options);
  EXPECT_TRUE(info.backends[0].layer_options.empty());
  EXPECT_FALSE(plugin.probe().has_value());
}

TEST(ClientSession, RefusesASessionBelowTheMinimumMinor) {
  PluginOptions options;
  options.min_minor = 1;
  EXPECT_THAT(error_of([&] { Plugin::load(testing::stub_plugin(), options); }),
              AllOf(HasSubstr("kvq_host_stub"), HasSubstr("ABI minor >= 1 is required"),
                    HasSubstr("negotiated 1.0"), HasSubstr("the plugin implements 1.0")));
}

TEST(ClientSession, RefusesAMissingLibraryNamingThePath) {
  EXPECT_THAT(error_of([] { Plugin::load("/nonexistent/libkvq_none.so"); }),
              AllOf(HasSubstr("/nonexistent/libkvq_none.so"), HasSubstr("no such file")));
}

TEST(ClientSession, LogLinesReachTheSinkWithThePluginsName) {
  struct Line {
    std::string plugin;
    int32_t level;
    std::string message;
  };
  std::vector<Line> lines;
  PluginOptions options;
  options.log = [&](std::string_view plugin, int32_t level, std::string_view message) {
    lines.push_back({std::string(plugin), level, std::string(message)});
  };
  { const Plugin plugin = Plugin::load(testing::stub_plugin(), options); }
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0].plugin, "libkvq_host_test_stub.so");  // before get_info names it
  EXPECT_EQ(lines[0].level, KVQ_LOG_INFO);
  EXPECT_EQ(lines[0].message, "hello from the stub plugin");
}

TEST(ClientSession, ASinkThatThrowsLosesTheLineOnly) {
  PluginOptions options;
  options.log = [](std::string_view, int32_t, std::string_view) { throw Error("sink failed"); };
  EXPECT_NO_THROW(Plugin::load(testing::stub_plugin(), options));
}

TEST(ClientSession, PluginErrorsCarryCodeMessageAndContext) {
  const Plugin plugin = Plugin::load(testing::stub_plugin());
  LayerConfig config;
  config.backend = "stub";
  config.layer_name = "model.layers.0.self_attn.attn";
  config.kv_cache_dtype = "refuse";
  try {
    plugin.create_layer(config);
    FAIL() << "the stub refuses this mode";
  } catch (const PluginError& e) {
    EXPECT_EQ(e.code(), KVQ_ERR_UNSUPPORTED);
    EXPECT_EQ(e.plugin_message(), "the stub refuses kv_cache_dtype 'refuse'");
    EXPECT_EQ(e.context(), "plugin 'kvq_host_stub': layer_create (model.layers.0.self_attn.attn)");
    EXPECT_EQ(std::string(e.what()),
              "plugin 'kvq_host_stub': layer_create (model.layers.0.self_attn.attn): "
              "UNSUPPORTED: the stub refuses kv_cache_dtype 'refuse'");
  }
  EXPECT_EQ(error_code_name(KVQ_ERR_NON_FINITE), "NON_FINITE");
  EXPECT_EQ(error_code_name(77), "UNKNOWN_ERROR_77");
}

TEST(ClientSession, TakeGivesTheCodeAndMessageOfARawCall) {
  const Plugin plugin = Plugin::load(testing::triton_plugin());
  const Status status = plugin.take(plugin.api().layer_create(plugin.instance(), nullptr, nullptr));
  EXPECT_EQ(status.code, KVQ_ERR_INVALID_ARGUMENT);
  EXPECT_FALSE(status.message.empty());
  EXPECT_TRUE(plugin.take(nullptr).ok());
  EXPECT_THAT(error_of([&] { plugin.check(plugin.api().forward(nullptr, nullptr), "forward"); }),
              AllOf(HasSubstr("plugin 'kvq_triton_sim': forward: INVALID_ARGUMENT")));
}

// Parameters through param_info2 / param_load2 / param_read2 (the triton
// plugin has them): roles and load shapes come along.
TEST(ClientLayer, ParametersThroughThe1_1Variants) {
  const Plugin plugin = Plugin::load(testing::triton_plugin());
  LayerConfig config;
  config.backend = "triton";
  config.layer_name = "model.layers.0.self_attn.attn";
  config.kv_cache_dtype = "fp8";
  config.num_heads = 4;
  config.num_kv_heads = 2;
  config.head_size = 64;
  config.block_size = 16;
  Layer layer = plugin.create_layer(config);
  const std::optional<ParamInfo> k_scale = layer.param(config.layer_name + ".k_scale");
  ASSERT_TRUE(k_scale.has_value());
  EXPECT_EQ(k_scale->role, KVQ_PARAM_ROLE_K_SCALE);
  EXPECT_FALSE(k_scale->load_shapes.empty());
  EXPECT_FALSE(layer.param(config.layer_name + ".no_such").has_value());
  bool saw_q_scale = false;
  for (const ParamInfo& p : layer.params()) saw_q_scale |= p.role == KVQ_PARAM_ROLE_Q_SCALE;
  EXPECT_TRUE(saw_q_scale);

  const float loaded = 0.25f;
  layer.param_load(k_scale->name, describe(&loaded, KVQ_DTYPE_F32, {1}), 0, 1);
  float read = 0.0f;
  layer.param_read(k_scale->name, describe(&read, KVQ_DTYPE_F32, {1}));
  EXPECT_EQ(read, 0.25f);
  EXPECT_THAT(
      error_of([&] {
        layer.param_read(config.layer_name + ".no_such", describe(&read, KVQ_DTYPE_F32, {1}));
      }),
      AllOf(HasSubstr("param_read model.layers.0.self_attn.attn.no_such"), HasSubstr("NOT_FOUND")));
}

TEST(ClientLayer, SchemesAndSchemeSelection) {
  const Plugin plugin = Plugin::load(testing::ascend_plugin());
  const std::optional<std::string> chosen = plugin.select_scheme(
      R"({"kv_cache_type": "C8"})", "quant.json", "model.layers.0.self_attn", "attention");
  ASSERT_TRUE(chosen.has_value());
  EXPECT_EQ(*chosen, "C8");
  EXPECT_THAT(
      error_of([&] {
        plugin.select_scheme("{not json", "quant.json", "model.layers.0.self_attn", "attention");
      }),
      AllOf(HasSubstr("select_scheme (model.layers.0.self_attn)"), HasSubstr("INVALID_ARGUMENT"),
            HasSubstr("quant.json")));
  LayerConfig config;
  config.backend = "ascend";
  config.layer_name = "model.layers.0.self_attn.attn";
  config.kv_cache_dtype = "auto";
  config.num_heads = 4;
  config.num_kv_heads = 2;
  config.head_size = 64;
  config.block_size = 32;  // C8 needs a multiple of 32
  Layer layer = plugin.create_layer(config);
  layer.apply_scheme("C8", "attention");
  EXPECT_EQ(layer.info().scheme, "C8");
  EXPECT_EQ(layer.info().impl_name, "ascend_c8_attention");
  EXPECT_THAT(error_of([&] { layer.apply_scheme("C8", "attention"); }),
              HasSubstr("FAILED_PRECONDITION"));
}

// The stub negotiated 1.0: its cache_write / forward structs end before the
// stream field, so a stream would be ignored; the client refuses instead.
TEST(ClientLayer, AStreamOnA1_0SessionIsRefused) {
  const Plugin plugin = Plugin::load(testing::stub_plugin());
  LayerConfig config;
  config.backend = "stub";
  config.layer_name = "layer";
  config.kv_cache_dtype = "bfloat16";
  config.num_heads = 2;
  config.num_kv_heads = 1;
  config.head_size = 8;
  config.block_size = 4;
  Layer layer = plugin.create_layer(config);
  kvq_stream* some_stream = reinterpret_cast<kvq_stream*>(uintptr_t{64});
  EXPECT_THAT(error_of([&] { layer.forward(ForwardArgs().stream(some_stream)); }),
              HasSubstr("forward (layer): a stream needs ABI 1.1, but the session negotiated 1.0"));
  EXPECT_THAT(error_of([&] { layer.cache_write(CacheWriteArgs().stream(some_stream)); }),
              HasSubstr("cache_write (layer): a stream needs ABI 1.1"));
}

}  // namespace
}  // namespace kvq::client
