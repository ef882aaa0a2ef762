// Deployment YAML: strict validation with file/line/column messages, path
// resolution, and the embedded default.
#include "kvq_files/deployment.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "test_support.hpp"

namespace kvq::host {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using testing::ScratchDir;

// A valid deployment; `{plugin}` and the sections can be swapped by tests.
std::string valid_yaml(
    const std::string& kv_cache_body = "  dtype: bfloat16\n  block_size: 16\n  num_blocks: 64\n") {
  return "plugin: {path: fake_plugin.so, abi_major: 1, min_minor: 0}\n"
         "backend: triton\n"
         "model: {num_layers: 2, num_heads: 8, num_kv_heads: 2, head_size: 64, dtype: bf16}\n"
         "kv_cache:\n" +
         kv_cache_body;
}

class DeploymentTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_.write("fake_plugin.so", "not really a plugin"); }

  // Parses `yaml` written to deploy.yaml; returns the error message ("" if none).
  std::string error_of(const std::string& yaml) {
    const auto file = dir_.write("deploy.yaml", yaml);
    try {
      load_deployment_file(file, DeploymentParseOptions{"/opt/kvq/bin", true});
    } catch (const DeploymentError& e) {
      return e.what();
    } catch (const Error& e) {
      return std::string("(not a DeploymentError) ") + e.what();
    }
    return "";
  }
  Deployment parse(const std::string& yaml) {
    return load_deployment_file(dir_.write("deploy.yaml", yaml),
                                DeploymentParseOptions{"/opt/kvq/bin", true});
  }

  ScratchDir dir_;
};

TEST_F(DeploymentTest, ValidFileParsesWithDefaults) {
  const Deployment d = parse(valid_yaml());
  EXPECT_EQ(d.plugin.path, dir_.path() / "fake_plugin.so");
  EXPECT_EQ(d.backend, "triton");
  ASSERT_TRUE(d.model.has_value());
  EXPECT_EQ(d.model->num_layers, 2);
  EXPECT_EQ(d.model->num_heads, 8);
  EXPECT_EQ(d.model->num_kv_heads, 2);
  EXPECT_EQ(d.model->head_size, 64);
  EXPECT_EQ(d.model->dtype, ModelDtype::kBf16);
  EXPECT_EQ(d.kv_cache.dtype, "bfloat16");
  EXPECT_EQ(d.kv_cache.num_blocks, 64);
  EXPECT_FALSE(d.kv_cache.memory_gib.has_value());
  EXPECT_FALSE(d.kv_cache.prefix_caching);
  EXPECT_EQ(d.scheduler.max_num_seqs, 256);
  EXPECT_EQ(d.scheduler.max_num_batched_tokens, 2048);
  EXPECT_TRUE(d.scheduler.chunked_prefill);
  EXPECT_EQ(d.parallel.tensor_parallel_size, 1);
  EXPECT_EQ(d.workload.num_prompts, 8);
  EXPECT_EQ(d.threads, 0);
}

TEST_F(DeploymentTest, UnknownKeyNamesFileLineColumnAndSuggestion) {
  const std::string message = error_of(
      "backend: triton\n"
      "kv_cache:\n"
      "  blok_size: 16\n"
      "  dtype: bfloat16\n"
      "  num_blocks: 64\n"
      "plugin: {path: fake_plugin.so}\n"
      "model: {num_layers: 1, num_heads: 2, num_kv_heads: 1, head_size: 64, dtype: bf16}\n");
  EXPECT_THAT(message,
              AllOf(HasSubstr("deploy.yaml"), HasSubstr("line 3"), HasSubstr("column 3"),
                    HasSubstr("unknown key 'blok_size'"), HasSubstr("did you mean 'block_size'?")));
}

TEST_F(DeploymentTest, UnknownTopLevelKeySuggestsNearest) {
  const std::string message = error_of(valid_yaml() + "schedular: {max_num_seqs: 4}\n");
  EXPECT_THAT(message, AllOf(HasSubstr("line 8"), HasSubstr("column 1"),
                             HasSubstr("did you mean 'scheduler'?")));
}

TEST_F(DeploymentTest, WrongTypesAreErrors) {
  EXPECT_THAT(
      error_of("plugin: {path: fake_plugin.so}\nbackend: triton\n"
               "model: {num_layers: 1, num_heads: [1, 2], num_kv_heads: 1, head_size: 64, "
               "dtype: bf16}\nkv_cache: {dtype: bfloat16, block_size: 16, num_blocks: 8}\n"),
      AllOf(HasSubstr("line 3"), HasSubstr("'model.num_heads' must be an integer"),
            HasSubstr("a list")));
  EXPECT_THAT(error_of(valid_yaml() + "threads: many\n"),
              AllOf(HasSubstr("line 8"), HasSubstr("'threads' must be an integer, got 'many'")));
  EXPECT_THAT(error_of(valid_yaml() + "scheduler: 5\n"),
              AllOf(HasSubstr("line 8"), HasSubstr("'scheduler' must be a mapping")));
  EXPECT_THAT(error_of(valid_yaml() + "scheduler: {chunked_prefill: maybe}\n"),
              HasSubstr("must be true or false, got 'maybe'"));
  EXPECT_THAT(error_of(valid_yaml("  dtype: bfloat16\n  block_size: 1.5\n  num_blocks: 64\n")),
              AllOf(HasSubstr("line 6"), HasSubstr("must be an integer, got '1.5'")));
  EXPECT_THAT(error_of(valid_yaml() + "threads:\n"), HasSubstr("'threads' has no value"));
}

TEST_F(DeploymentTest, OutOfRangeNumbersAreErrors) {
  EXPECT_THAT(error_of(valid_yaml("  dtype: bfloat16\n  block_size: 0\n  num_blocks: 64\n")),
              AllOf(HasSubstr("line 6"), HasSubstr("column 15"),
                    HasSubstr("'kv_cache.block_size' must be between 1 and 1024, got 0")));
  EXPECT_THAT(error_of(valid_yaml("  dtype: bfloat16\n  block_size: 2048\n  num_blocks: 64\n")),
              HasSubstr("between 1 and 1024"));
  EXPECT_THAT(error_of(valid_yaml("  dtype: bfloat16\n  block_size: 16\n  memory_gib: 0\n")),
              AllOf(HasSubstr("line 7"), HasSubstr("'kv_cache.memory_gib' must be > 0")));
  EXPECT_THAT(error_of(valid_yaml() + "threads: -1\n"), HasSubstr("'threads' must be between 0"));
  EXPECT_THAT(error_of(valid_yaml() + "parallel: {tensor_parallel_size: 0}\n"),
              HasSubstr("'parallel.tensor_parallel_size' must be between 1"));
  EXPECT_THAT(
      error_of("plugin: {path: fake_plugin.so}\nbackend: triton\n"
               "model: {num_layers: 1, num_heads: 6, num_kv_heads: 4, head_size: 64, "
               "dtype: bf16}\nkv_cache: {dtype: bfloat16, block_size: 16, num_blocks: 8}\n"),
      AllOf(HasSubstr("line 3"), HasSubstr("num_heads (6) must be a multiple of "
                                           "model.num_kv_heads (4)")));
  EXPECT_THAT(error_of(valid_yaml() + "workload: {input_len: 10, shared_prefix_len: 11}\n"),
              HasSubstr("'workload.shared_prefix_len' must be between 0 and 10"));
  EXPECT_THAT(
      error_of(valid_yaml() + "scheduler: {max_num_seqs: 64, max_num_batched_tokens: 32}\n"),
      HasSubstr("must be >= scheduler.max_num_seqs"));
  EXPECT_THAT(
      error_of("plugin: {path: fake_plugin.so}\nbackend: triton\n"
               "model: {num_layers: 1, num_heads: 2, num_kv_heads: 1, head_size: 64, "
               "dtype: int8}\nkv_cache: {dtype: bfloat16, block_size: 16, num_blocks: 8}\n"),
      HasSubstr("model.dtype must be one of bf16, fp16, fp32, got 'int8'"));
}

TEST_F(DeploymentTest, KvCacheSizeIsExactlyOneOfMemoryAndBlocks) {
  EXPECT_THAT(error_of(valid_yaml(
                  "  dtype: bfloat16\n  block_size: 16\n  memory_gib: 1\n  num_blocks: 64\n")),
              AllOf(HasSubstr("line 8"), HasSubstr("memory_gib or kv_cache.num_blocks, not both")));
  EXPECT_THAT(error_of(valid_yaml("  dtype: bfloat16\n  block_size: 16\n")),
              AllOf(HasSubstr("line 4"), HasSubstr("memory_gib"), HasSubstr("num_blocks")));
  const Deployment d =
      parse(valid_yaml("  dtype: bfloat16\n  block_size: 16\n  memory_gib: 0.5\n"));
  EXPECT_DOUBLE_EQ(*d.kv_cache.memory_gib, 0.5);
  EXPECT_FALSE(d.kv_cache.num_blocks.has_value());
}

TEST_F(DeploymentTest, MissingRequiredKeysAreErrors) {
  EXPECT_THAT(error_of("plugin: {path: fake_plugin.so}\nbackend: triton\n"
                       "model: {num_layers: 1, num_heads: 2, num_kv_heads: 1, dtype: bf16}\n"
                       "kv_cache: {dtype: bfloat16, block_size: 16, num_blocks: 8}\n"),
              AllOf(HasSubstr("line 3"), HasSubstr("missing required key 'model.head_size'")));
  EXPECT_THAT(
      error_of("plugin: {path: fake_plugin.so}\n"
               "model: {num_layers: 1, num_heads: 2, num_kv_heads: 1, head_size: 64, "
               "dtype: bf16}\nkv_cache: {dtype: bfloat16, block_size: 16, num_blocks: 8}\n"),
      HasSubstr("missing required key 'backend'"));
  EXPECT_THAT(error_of("plugin: {path: fake_plugin.so}\nbackend: triton\n"
                       "kv_cache: {dtype: bfloat16, block_size: 16, num_blocks: 8}\n"),
              HasSubstr("missing required key 'model'"));
  EXPECT_THAT(error_of("backend: triton\n"), HasSubstr("missing required key 'plugin'"));
  EXPECT_THAT(error_of(""), AllOf(HasSubstr("line 1"), HasSubstr("empty")));
}

TEST_F(DeploymentTest, DuplicateKeysAndBadYamlAreErrors) {
  EXPECT_THAT(error_of(valid_yaml() + "threads: 1\nthreads: 2\n"),
              AllOf(HasSubstr("line 9"), HasSubstr("duplicate key 'threads'")));
  EXPECT_THAT(error_of("plugin: {path: fake_plugin.so\nbackend: triton\n"),
              AllOf(HasSubstr("deploy.yaml"), HasSubstr("line"), HasSubstr("not valid YAML")));
}

TEST_F(DeploymentTest, PluginPathResolvesAgainstTheYamlFolder) {
  dir_.write("plugins/libx.so", "x");
  const Deployment d = parse(
      "plugin: {path: plugins/libx.so}\nbackend: b\n"
      "model: {num_layers: 1, num_heads: 2, num_kv_heads: 1, head_size: 64, dtype: fp16}\n"
      "kv_cache: {dtype: auto, block_size: 16, num_blocks: 8}\n");
  EXPECT_EQ(d.plugin.path, dir_.path() / "plugins" / "libx.so");
  EXPECT_EQ(d.model->dtype, ModelDtype::kFp16);
}

TEST_F(DeploymentTest, MissingPluginFileIsAnError) {
  const std::string message = error_of(
      "backend: triton\nplugin:\n  path: nowhere/libnothing.so\n"
      "model: {num_layers: 1, num_heads: 2, num_kv_heads: 1, head_size: 64, dtype: bf16}\n"
      "kv_cache: {dtype: bfloat16, block_size: 16, num_blocks: 8}\n");
  EXPECT_THAT(message, AllOf(HasSubstr("deploy.yaml: line 3, column 9"),
                             HasSubstr("nowhere/libnothing.so"), HasSubstr("does not exist")));
}

TEST_F(DeploymentTest, PluginPathThatIsADirectoryIsAnError) {
  std::filesystem::create_directories(dir_.path() / "a_folder");
  EXPECT_THAT(
      error_of("plugin: {path: a_folder}\nbackend: triton\n"
               "model: {num_layers: 1, num_heads: 2, num_kv_heads: 1, head_size: 64, "
               "dtype: bf16}\nkv_cache: {dtype: bfloat16, block_size: 16, num_blocks: 8}\n"),
      AllOf(HasSubstr("line 1"), HasSubstr("is a directory")));
}

TEST_F(DeploymentTest, PluginSectionRules) {
  EXPECT_THAT(
      error_of("plugin: {path: fake_plugin.so, abi_major: 2}\nbackend: triton\n"
               "model: {num_layers: 1, num_heads: 2, num_kv_heads: 1, head_size: 64, "
               "dtype: bf16}\nkv_cache: {dtype: bfloat16, block_size: 16, num_blocks: 8}\n"),
      HasSubstr("this host speaks ABI major 1"));
  EXPECT_THAT(
      error_of("plugin: {path: '${nope}/x.so'}\nbackend: triton\n"
               "model: {num_layers: 1, num_heads: 2, num_kv_heads: 1, head_size: 64, "
               "dtype: bf16}\nkv_cache: {dtype: bfloat16, block_size: 16, num_blocks: 8}\n"),
      HasSubstr("unknown variable '${nope}'"));
}

TEST_F(DeploymentTest, CheckpointIsAcceptedButExclusiveWithModel) {
  const Deployment d = parse(
      "plugin: {path: fake_plugin.so}\nbackend: triton\ncheckpoint: ckpt\n"
      "kv_cache: {dtype: bfloat16, block_size: 16, num_blocks: 8}\n");
  EXPECT_FALSE(d.model.has_value());
  EXPECT_EQ(*d.checkpoint, dir_.path() / "ckpt");
  EXPECT_EQ(d.locations.checkpoint.line, 3);
  EXPECT_THAT(error_of(valid_yaml() + "checkpoint: ckpt\n"),
              HasSubstr("model or checkpoint, not both"));
}

TEST_F(DeploymentTest, KvCacheDtypeMayComeFromTheCheckpoint) {
  const Deployment d = parse(
      "plugin: {path: fake_plugin.so}\nbackend: ascend\ncheckpoint: ckpt\n"
      "kv_cache: {block_size: 32, num_blocks: 8}\n");
  EXPECT_EQ(d.kv_cache.dtype, "");
  EXPECT_EQ(d.locations.kv_cache_dtype.line, 4);
  // Without a checkpoint it is still required.
  EXPECT_THAT(error_of("plugin: {path: fake_plugin.so}\nbackend: triton\n"
                       "model: {num_layers: 1, num_heads: 2, num_kv_heads: 1, head_size: 64, "
                       "dtype: bf16}\nkv_cache: {block_size: 16, num_blocks: 8}\n"),
              HasSubstr("dtype"));
}

TEST(EmbeddedDeploymentTest, DefaultParsesWithThePluginNextToTheExecutable) {
  const Deployment d = load_default_deployment(DeploymentParseOptions{"/opt/kvq/bin", false});
  EXPECT_EQ(d.source, kEmbeddedDeploymentName);
  EXPECT_EQ(d.plugin.path, std::filesystem::path("/opt/kvq/lib/libkvq_triton_sim.so"));
  EXPECT_EQ(d.backend, "triton");
  EXPECT_EQ(d.kv_cache.dtype, "bfloat16");
  EXPECT_EQ(d.kv_cache.block_size, 16);
  EXPECT_EQ(d.kv_cache.num_blocks, 512);
  ASSERT_TRUE(d.model.has_value());
  EXPECT_EQ(d.model->num_layers, 2);
  EXPECT_EQ(d.model->num_heads, 8);
  EXPECT_EQ(d.model->num_kv_heads, 2);
  EXPECT_EQ(d.model->head_size, 64);
  EXPECT_EQ(d.workload.num_prompts, 8);
  EXPECT_EQ(d.workload.input_len, 256);
  EXPECT_EQ(d.workload.output_len, 32);
}

TEST(EmbeddedDeploymentTest, EmbeddedTextIsDeployDefaultYaml) {
  EXPECT_EQ(embedded_default_deployment_yaml(),
            testing::read_text(std::filesystem::path(KVQ_SOURCE_DIR) / "deploy" / "default.yaml"));
}

TEST(EmbeddedDeploymentTest, ShippedExamplesParse) {
  for (const char* name :
       {"default.yaml", "triton_bf16.yaml", "ascend_bf16.yaml", "ascend_c8_checkpoint.yaml"}) {
    SCOPED_TRACE(name);
    const Deployment d =
        load_deployment_file(std::filesystem::path(KVQ_SOURCE_DIR) / "deploy" / name,
                             DeploymentParseOptions{"/opt/kvq/bin", false});
    EXPECT_EQ(d.plugin.path.parent_path(), std::filesystem::path("/opt/kvq/lib"));
  }
}

}  // namespace
}  // namespace kvq::host
