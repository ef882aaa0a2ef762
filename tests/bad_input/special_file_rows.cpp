// Special files where kvq reads a text input (issue #17, class 2): a FIFO
// must not block the host, /dev/zero must not exhaust its memory, a directory
// or a link loop must say what it is. Every text input (the deployment,
// config.json, quant_model_description.json, a kvq compare report) is refused
// with an Error naming the file and its kind, at once, and nothing changes.
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <functional>

#include "bad_input.hpp"
#include "compare_command.hpp"
#include "kvq_engine/checkpoint.hpp"
#include "kvq_files/deployment.hpp"
#include "kvq_files/errors.hpp"
#include "test_support.hpp"

namespace kvq::bad_input {
namespace {

using host::testing::ScratchDir;
namespace fs = std::filesystem;

enum class Reader { kDeployment, kCheckpoint, kCompare };

struct SpecialFileRow {
  std::string name;
  Reader reader;
  // Makes the input under the scratch folder and returns what to hand over.
  std::function<fs::path(const fs::path&)> make;
  std::vector<std::string> message;
};
void PrintTo(const SpecialFileRow& row, std::ostream* os) {
  *os << row.name;
}

fs::path fifo(const fs::path& at) {
  if (mkfifo(at.c_str(), 0600) != 0) throw std::runtime_error("mkfifo failed");
  return at;
}
fs::path link_to(const fs::path& at, const fs::path& target) {
  fs::create_symlink(target, at);
  return at;
}
// A valid checkpoint folder whose `broken` file the row replaces.
fs::path checkpoint_with(const fs::path& dir, const std::string& broken,
                         const std::function<void(const fs::path&)>& make) {
  const fs::path c = dir / "ckpt";
  fs::create_directories(c);
  if (broken != "config.json")
    std::ofstream(c / "config.json") << R"({"num_hidden_layers": 1, "num_attention_heads": 4,
      "num_key_value_heads": 2, "head_dim": 64, "torch_dtype": "bfloat16"})";
  make(c / broken);
  return c;
}

std::vector<SpecialFileRow> rows() {
  return {
      {"DeploymentIsAFifo",
       Reader::kDeployment,
       [](const fs::path& d) { return fifo(d / "deploy.yaml"); },
       {"deploy.yaml: is a FIFO, not a regular file"}},
      {"DeploymentIsDevZero",
       Reader::kDeployment,
       [](const fs::path& d) { return link_to(d / "deploy.yaml", "/dev/zero"); },
       {"deploy.yaml: is a character device, not a regular file"}},
      {"DeploymentIsADirectory",
       Reader::kDeployment,
       [](const fs::path& d) {
         fs::create_directory(d / "deploy.yaml");
         return d / "deploy.yaml";
       },
       {"deploy.yaml: is a directory, not a regular file"}},
      {"DeploymentLinkLoop",
       Reader::kDeployment,
       [](const fs::path& d) {
         link_to(d / "b.yaml", d / "a.yaml");
         return link_to(d / "a.yaml", d / "b.yaml");
       },
       {"a.yaml: too many levels of symbolic links (a link loop?)"}},
      {"DeploymentOverTheSizeCap",
       Reader::kDeployment,
       [](const fs::path& d) {
         std::ofstream(d / "deploy.yaml") << std::string(2 << 20, '#');
         return d / "deploy.yaml";
       },
       {"deploy.yaml: 2097152 bytes, more than the 1048576 bytes a deployment may have"}},
      {"ConfigJsonIsADirectory",
       Reader::kCheckpoint,
       [](const fs::path& d) {
         return checkpoint_with(d, "config.json",
                                [](const fs::path& p) { fs::create_directory(p); });
       },
       {"config.json: is a directory, not a regular file"}},
      {"ConfigJsonIsAFifo",
       Reader::kCheckpoint,
       [](const fs::path& d) {
         return checkpoint_with(d, "config.json", [](const fs::path& p) { fifo(p); });
       },
       {"config.json: is a FIFO, not a regular file"}},
      {"DescriptionIsAFifo",
       Reader::kCheckpoint,
       [](const fs::path& d) {
         return checkpoint_with(d, "quant_model_description.json",
                                [](const fs::path& p) { fifo(p); });
       },
       {"quant_model_description.json: is a FIFO, not a regular file"}},
      {"DescriptionIsDevZero",
       Reader::kCheckpoint,
       [](const fs::path& d) {
         return checkpoint_with(d, "quant_model_description.json",
                                [](const fs::path& p) { link_to(p, "/dev/zero"); });
       },
       {"quant_model_description.json: is a character device, not a regular file"}},
      {"CompareReportIsAFifo",
       Reader::kCompare,
       [](const fs::path& d) { return fifo(d / "a.json"); },
       {"run report", "a.json: is a FIFO, not a regular file"}},
      {"CompareReportIsDevZero",
       Reader::kCompare,
       [](const fs::path& d) { return link_to(d / "a.json", "/dev/zero"); },
       {"a.json: is a character device, not a regular file"}},
  };
}

class SpecialFileRowTest : public ::testing::TestWithParam<SpecialFileRow> {};

TEST_P(SpecialFileRowTest, IsRefusedAtOnceNamingWhatItIs) {
  const SpecialFileRow& row = GetParam();
  const ScratchDir dir;
  const fs::path input = row.make(dir.path());
  const DirSnapshot before = snapshot_dir(dir.path());
  const auto start = std::chrono::steady_clock::now();
  try {
    switch (row.reader) {
      case Reader::kDeployment:
        host::load_deployment_file(input, host::DeploymentParseOptions{});
        break;
      case Reader::kCheckpoint: host::Checkpoint::open(input); break;
      case Reader::kCompare: host::compare_report_files(input, input); break;
    }
    ADD_FAILURE() << "accepted";
  } catch (const host::Error& e) {
    expect_message(e.what(), row.message);
  }
  // "At once": a FIFO read would block for ever, /dev/zero for gigabytes.
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
  EXPECT_EQ(snapshot_dir(dir.path()), before);
}

INSTANTIATE_TEST_SUITE_P(SpecialFiles, SpecialFileRowTest, ::testing::ValuesIn(rows()), RowName());

}  // namespace
}  // namespace kvq::bad_input
