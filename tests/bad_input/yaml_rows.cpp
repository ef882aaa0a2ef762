// Bad deployment YAML: syntax, unknown keys, wrong types, out-of-range
// numbers, contradictions, and unusable plugin paths. Each row must raise a
// DeploymentError whose message names the file, line and column and says
// what is wrong; no Deployment is produced and no file is touched.
#include <sys/stat.h>

#include <functional>

#include "bad_input.hpp"
#include "kvq_files/deployment.hpp"
#include "test_support.hpp"

namespace kvq::bad_input {
namespace {

using host::testing::ScratchDir;

// A valid deployment, line by line; rows replace one part.
struct Yaml {
  std::string plugin = "plugin: {path: fake_plugin.so, abi_major: 1, min_minor: 0}\n";
  std::string backend = "backend: triton\n";
  std::string model =
      "model: {num_layers: 2, num_heads: 8, num_kv_heads: 2, head_size: 64, dtype: bf16}\n";
  std::string kv_cache = "kv_cache:\n  dtype: bfloat16\n  block_size: 16\n  num_blocks: 64\n";
  std::string extra;
  std::string text() const { return plugin + backend + model + kv_cache + extra; }
};

Yaml with_plugin(const std::string& line) {
  Yaml y;
  y.plugin = line;
  return y;
}
Yaml with_model(const std::string& line) {
  Yaml y;
  y.model = line;
  return y;
}
Yaml with_kv(const std::string& body) {
  Yaml y;
  y.kv_cache = "kv_cache:\n" + body;
  return y;
}
Yaml with_backend(const std::string& line) {
  Yaml y;
  y.backend = line;
  return y;
}
Yaml with_extra(const std::string& extra) {
  Yaml y;
  y.extra = extra;
  return y;
}

struct YamlRow {
  std::string name;
  std::string text;
  std::vector<std::string> message;  // fragments, the location first
  // Prepares the scratch folder beyond fake_plugin.so (e.g. permissions).
  std::function<void(const std::filesystem::path&)> setup = nullptr;
};

void PrintTo(const YamlRow& row, std::ostream* os) {
  *os << row.name;
}

void make_world_writable(const std::filesystem::path& dir) {
  std::filesystem::permissions(dir / "fake_plugin.so", std::filesystem::perms::others_write,
                               std::filesystem::perm_options::add);
}

const std::vector<YamlRow>& rows() {
  static const std::vector<YamlRow> kRows = {
      {"SyntaxUnclosedFlowMapping",
       with_plugin("plugin: {path: fake_plugin.so, abi_major: 1\n").text(),
       {"not valid YAML"}},
      {"SyntaxTabIndentation",
       with_kv("\tdtype: bfloat16\n  block_size: 16\n").text(),
       {"deploy.yaml: line 5", "not valid YAML"}},
      {"SyntaxBadIndentationOfAMappingValue",
       "backend: triton\n  model: x\nkv_cache: 1\n",
       {"deploy.yaml: line 2", "not valid YAML"}},
      {"EmptyDocument", "", {"deploy.yaml: line 1, column 1", "the deployment is empty"}},
      // Issue #17: input that used to be ignored or accepted without bound.
      {"SecondYamlDocument",
       Yaml().text() + "---\nbackend: ascend\n",
       {"deploy.yaml: line 8", "a second YAML document (after '---')",
        "a deployment is one document"}},
      {"ThirdYamlDocumentEmpty",
       Yaml().text() + "---\n---\n",
       {"a second YAML document (after '---')"}},
      // yaml-cpp 0.7 reads these as endless empty documents; YAML::LoadAll
      // then filled memory until the process died (found by fuzz_deployment).
      {"LineStartingWithACommaIsNotYaml",
       ",,,,,,,,a: b}\n",
       {"deploy.yaml: line 1, column 1", "not valid YAML: the parser cannot read past this point"}},
      {"CommaLineAfterAValidMapping",
       Yaml().text() + ",,,x: y}\nthreads: 1\n",
       {"not valid YAML"}},
      {"RequestRateThatNeverArrives",
       with_extra("workload: {num_prompts: 8, request_rate: 1e-300}\n").text(),
       {"deploy.yaml: line 8", "request_rate 1e-300", "the arrivals must fit in 86400 s (24 h)"}},
      {"RequestRateTooSlowForThePrompts",
       with_extra("workload: {num_prompts: 1000, request_rate: 0.001}\n").text(),
       {"spreads 1000 prompts over 1e+06 s", "at least 0.0116 req/s"}},
      {"ThreadsBeyondAnyMachine",
       with_extra("threads: 4096\n").text(),
       {"deploy.yaml: line 8", "'threads' must be between 0 and 256, got 4096"}},
      {"WorkloadOfAstronomicalSize",
       with_extra("workload: {num_prompts: 16000000, input_len: 16000000}\n").text(),
       {"deploy.yaml: line 8", "the workload asks for 2.56e+14 tokens", "at most 1e+09"}},
      {"DocumentIsAList", "- plugin\n- backend\n", {"the deployment must be a mapping", "a list"}},
      {"DocumentIsAScalar", "just some words\n", {"the deployment must be a mapping"}},
      {"KeyThatIsNotAName",
       "? [a, b]\n: 1\n" + Yaml().text(),
       {"deploy.yaml: line 1", "keys of the deployment must be plain names"}},
      {"UnknownTopLevelKey",
       with_extra("frobnicate: 1\n").text(),
       {"deploy.yaml: line 8, column 1", "unknown key 'frobnicate' in the deployment"}},
      {"UnknownNestedKeySuggestsTheNearest",
       with_kv("  dtype: bfloat16\n  blok_size: 16\n  num_blocks: 64\n").text(),
       {"deploy.yaml: line 6, column 3", "unknown key 'blok_size' in 'kv_cache'",
        "did you mean 'block_size'?"}},
      {"DuplicateKey",
       with_extra("backend: ascend\n").text(),
       {"deploy.yaml: line 8, column 1", "duplicate key 'backend'", "first given at",
        "line 2, column 1"}},
      {"MissingRequiredKey",
       with_backend("").text(),
       {"deploy.yaml: line 1, column 1", "missing required key 'backend'"}},
      {"MissingModelAndCheckpoint",
       with_model("").text(),
       {"missing required key 'model' (or 'checkpoint'"}},
      {"ModelAndCheckpointBoth",
       with_extra("checkpoint: ckpt\n").text(),
       {"deploy.yaml: line 8, column 1", "give model or checkpoint, not both"}},
      {"IntegerGivenAWord",
       with_kv("  dtype: bfloat16\n  block_size: 16\n  num_blocks: many\n").text(),
       {"deploy.yaml: line 7, column 15", "'kv_cache.num_blocks' must be an integer, got 'many'"}},
      {"IntegerGivenAFraction",
       with_kv("  dtype: bfloat16\n  block_size: 16.5\n  num_blocks: 64\n").text(),
       {"deploy.yaml: line 6", "'kv_cache.block_size' must be an integer, got '16.5'"}},
      {"StringGivenAMapping",
       with_backend("backend: {name: triton}\n").text(),
       {"deploy.yaml: line 2, column 10", "'backend' must be a string, got a mapping"}},
      {"SectionWithNoBody",
       with_kv("").text(),
       {"'kv_cache' must be a mapping of keys to values, got nothing"}},
      {"BooleanGivenAWord",
       with_kv("  dtype: bfloat16\n  block_size: 16\n  num_blocks: 64\n  prefix_caching: maybe\n")
           .text(),
       {"deploy.yaml: line 8", "'kv_cache.prefix_caching' must be true or false, got 'maybe'"}},
      {"ValueMissing",
       with_kv("  dtype:\n  block_size: 16\n  num_blocks: 64\n").text(),
       {"deploy.yaml: line 5, column 3", "'kv_cache.dtype' has no value"}},
      {"BlockSizeZero",
       with_kv("  dtype: bfloat16\n  block_size: 0\n  num_blocks: 64\n").text(),
       {"deploy.yaml: line 6", "'kv_cache.block_size' must be between 1 and 1024, got 0"}},
      {"NumLayersNegative",
       with_model("model: {num_layers: -3, num_heads: 8, num_kv_heads: 2, head_size: 64, dtype: "
                  "bf16}\n")
           .text(),
       {"deploy.yaml: line 3", "'model.num_layers' must be between 1 and 4096, got -3"}},
      {"IntegerBeyondInt64",
       with_kv("  dtype: bfloat16\n  block_size: 16\n  num_blocks: 99999999999999999999\n").text(),
       {"deploy.yaml: line 7", "'kv_cache.num_blocks'", "(out of range)"}},
      {"NumBlocksBeyondInt32BlockIds",
       with_kv("  dtype: bfloat16\n  block_size: 16\n  num_blocks: 4294967296\n").text(),
       {"deploy.yaml: line 7", "must be between 1 and 2147483647, got 4294967296"}},
      {"MemoryNotFinite",
       with_kv("  dtype: bfloat16\n  block_size: 16\n  memory_gib: .inf\n").text(),
       {"deploy.yaml: line 7", "'kv_cache.memory_gib' must be a finite number, got '.inf'"}},
      {"MemoryZero",
       with_kv("  dtype: bfloat16\n  block_size: 16\n  memory_gib: 0\n").text(),
       {"deploy.yaml: line 7", "'kv_cache.memory_gib' must be > 0"}},
      {"CacheSizeGivenTwice",
       with_kv("  dtype: bfloat16\n  block_size: 16\n  memory_gib: 1\n  num_blocks: 64\n").text(),
       {"deploy.yaml: line 8, column 3",
        "give kv_cache.memory_gib or kv_cache.num_blocks, not both"}},
      {"CacheSizeMissing",
       with_kv("  dtype: bfloat16\n  block_size: 16\n").text(),
       {"deploy.yaml: line 4", "kv_cache needs its size"}},
      {"HeadsNotAMultipleOfKvHeads",
       with_model("model: {num_layers: 2, num_heads: 8, num_kv_heads: 3, head_size: 64, dtype: "
                  "bf16}\n")
           .text(),
       {"deploy.yaml: line 3", "model.num_heads (8) must be a multiple of model.num_kv_heads (3)"}},
      {"UnknownModelDtype",
       with_model("model: {num_layers: 2, num_heads: 8, num_kv_heads: 2, head_size: 64, dtype: "
                  "int8}\n")
           .text(),
       {"deploy.yaml: line 3", "model.dtype must be one of bf16, fp16, fp32, got 'int8'"}},
      {"TokenBudgetBelowMaxSeqs",
       with_extra("scheduler: {max_num_seqs: 64, max_num_batched_tokens: 32}\n").text(),
       {"deploy.yaml: line 8",
        "max_num_batched_tokens (32) must be >= scheduler.max_num_seqs (64)"}},
      {"SharedPrefixLongerThanPrompt",
       with_extra("workload: {input_len: 16, shared_prefix_len: 17}\n").text(),
       {"deploy.yaml: line 8", "'workload.shared_prefix_len' must be between 0 and 16, got 17"}},
      {"TensorParallelNotDividingHeads",
       with_extra("parallel: {tensor_parallel_size: 3}\n").text(),
       {"deploy.yaml: line 8", "must be a multiple of parallel.tensor_parallel_size (3)"}},
      {"AbiMajorTwo",
       with_plugin("plugin: {path: fake_plugin.so, abi_major: 2}\n").text(),
       {"deploy.yaml: line 1", "plugin.abi_major is 2, but this host speaks ABI major 1"}},
      {"UnknownPathVariable",
       with_plugin("plugin: {path: '${home}/fake_plugin.so'}\n").text(),
       {"deploy.yaml: line 1", "unknown variable '${home}' in plugin.path"}},
      {"MissingPluginFile",
       with_plugin("plugin: {path: no_such_plugin.so}\n").text(),
       {"deploy.yaml: line 1, column 16", "no_such_plugin.so", "does not exist"}},
      {"PluginPathIsADirectory",
       with_plugin("plugin: {path: plugins}\n").text(),
       {"deploy.yaml: line 1, column 16", "is a directory, not a plugin library"},
       [](const std::filesystem::path& dir) {
         std::filesystem::create_directory(dir / "plugins");
       }},
      {"WorldWritablePluginFile",
       Yaml().text(),
       {"deploy.yaml: line 1, column 16", "fake_plugin.so", "is world-writable; refusing to load"},
       make_world_writable},
  };
  return kRows;
}

class YamlRowTest : public ::testing::TestWithParam<YamlRow> {};

TEST_P(YamlRowTest, IsRefusedWithItsLocationAndNothingChanges) {
  const YamlRow& row = GetParam();
  ScratchDir dir;
  dir.write("fake_plugin.so", "not really a plugin");
  if (row.setup) row.setup(dir.path());
  const auto file = dir.write("deploy.yaml", row.text);
  const DirSnapshot before = snapshot_dir(dir.path());

  std::optional<host::Deployment> made;
  try {
    made = host::load_deployment_file(file, host::DeploymentParseOptions{"/opt/kvq/bin", true});
    ADD_FAILURE() << "accepted:\n" << row.text;
  } catch (const host::DeploymentError& e) {
    expect_message(e.what(), row.message);
    EXPECT_EQ(e.location().file, file.string());
  } catch (const std::exception& e) {
    ADD_FAILURE() << "not a DeploymentError: " << e.what();
  }
  EXPECT_FALSE(made.has_value());
  EXPECT_EQ(snapshot_dir(dir.path()), before);
}

INSTANTIATE_TEST_SUITE_P(Yaml, YamlRowTest, ::testing::ValuesIn(rows()), RowName());

}  // namespace
}  // namespace kvq::bad_input
