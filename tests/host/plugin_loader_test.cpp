// Loading and negotiation: every refusal names the reason; the stub plugin
// negotiates, logs through spdlog, and its errors arrive as PluginError.
#include <dlfcn.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <spdlog/sinks/ringbuffer_sink.h>
#include <spdlog/spdlog.h>

#include <cstdio>

#include "kvq_engine/plugin.hpp"
#include "kvq_files/errors.hpp"
#include "test_support.hpp"

namespace kvq::host {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

std::string load_error(const std::string& path, const NegotiationOptions& options = {}) {
  try {
    open_plugin(path, options);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(PluginLoaderTest, RefusesAMissingFile) {
  EXPECT_THAT(load_error("/nonexistent/libkvq_nothing.so"),
              AllOf(HasSubstr("/nonexistent/libkvq_nothing.so"), HasSubstr("no such file")));
}

TEST(PluginLoaderTest, RefusesADirectory) {
  const testing::ScratchDir dir;
  EXPECT_THAT(load_error(dir.path().string()), HasSubstr("is a directory"));
}

TEST(PluginLoaderTest, RefusesATextFileBeforeDlopen) {
  const testing::ScratchDir dir;
  const auto file = dir.write("libfake.so", "this is not an ELF file\n");
  EXPECT_THAT(load_error(file.string()),
              AllOf(HasSubstr("not a shared library (no ELF header)"), HasSubstr("libfake.so")));
}

TEST(PluginLoaderTest, RefusesALibraryWithoutTheEntrySymbol) {
  Dl_info info{};
  ASSERT_NE(dladdr(reinterpret_cast<void*>(&std::printf), &info), 0);
  EXPECT_THAT(load_error(info.dli_fname),
              AllOf(HasSubstr("not a kvq plugin"), HasSubstr("kvq_plugin_entry")));
}

TEST(PluginLoaderTest, RefusesAnotherAbiMajor) {
  EXPECT_THAT(load_error(KVQ_TEST_MAJOR2_PLUGIN),
              AllOf(HasSubstr("speaks ABI major 2"), HasSubstr("this host speaks 1")));
}

// Version skew: the stub is built against the released v1.0 header, so this
// 1.1 host negotiates 1.0 with it and reads only its 1.0 fields.
TEST(PluginLoaderTest, NegotiatesWithTheStub) {
  const Plugin plugin = open_plugin(KVQ_TEST_STUB_PLUGIN);
  EXPECT_EQ(plugin.info().name, "kvq_host_stub");
  EXPECT_EQ(plugin.info().abi_major, 1u);
  EXPECT_EQ(plugin.info().abi_minor, 0u);
  EXPECT_EQ(plugin.info().plugin_abi_minor, 0u);
  ASSERT_EQ(plugin.info().backends.size(), 1u);
  EXPECT_EQ(plugin.info().backends[0].name, "stub");
  ASSERT_EQ(plugin.info().backends[0].kv_modes.size(), 1u);
  EXPECT_TRUE(plugin.info().backends[0].kv_modes[0].supported);
  EXPECT_FALSE(plugin.probe().has_value());  // the stub has no probe
}

TEST(PluginLoaderTest, RefusesANegotiatedMinorBelowTheDeploymentsMinimum) {
  EXPECT_THAT(load_error(KVQ_TEST_STUB_PLUGIN, NegotiationOptions{1, 0}),
              AllOf(HasSubstr("ABI minor >= 1 is required"), HasSubstr("negotiated 1.0"),
                    HasSubstr("the plugin implements 1.0")));
}

TEST(PluginLoaderTest, PluginLogsGoToSpdlogWithThePluginName) {
  const auto sink = std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(16);
  const auto previous = spdlog::default_logger();
  spdlog::set_default_logger(std::make_shared<spdlog::logger>("capture", sink));
  { const Plugin plugin = open_plugin(KVQ_TEST_STUB_PLUGIN); }
  spdlog::set_default_logger(previous);
  const auto lines = sink->last_formatted();
  ASSERT_FALSE(lines.empty());
  EXPECT_THAT(lines.back(), AllOf(HasSubstr("[libkvq_host_test_stub.so]"),
                                  HasSubstr("hello from the stub plugin"), HasSubstr("info")));
}

TEST(PluginLoaderTest, PluginErrorsCarryTheirCodeName) {
  const Plugin plugin = open_plugin(KVQ_TEST_STUB_PLUGIN);
  kvq_layer_config config{};
  config.backend = "stub";
  config.layer_name = "model.layers.0.self_attn.attn";
  config.kv_cache_dtype = "refuse";
  config.model_dtype = KVQ_DTYPE_BF16;
  try {
    plugin.create_layer(config);
    FAIL() << "the stub refuses this mode";
  } catch (const PluginError& e) {
    EXPECT_EQ(e.code(), KVQ_ERR_UNSUPPORTED);
    EXPECT_EQ(e.plugin_message(), "the stub refuses kv_cache_dtype 'refuse'");
    EXPECT_THAT(std::string(e.what()),
                AllOf(HasSubstr("kvq_host_stub"), HasSubstr("layer_create"),
                      HasSubstr("UNSUPPORTED: the stub refuses kv_cache_dtype 'refuse'")));
  }
}

TEST(PluginLoaderTest, ErrorCodeNames) {
  EXPECT_EQ(error_code_name(KVQ_ERR_OUT_OF_RANGE), "OUT_OF_RANGE");
  EXPECT_EQ(error_code_name(KVQ_ERR_NON_FINITE), "NON_FINITE");
  EXPECT_EQ(error_code_name(77), "UNKNOWN_ERROR_77");
}

}  // namespace
}  // namespace kvq::host
