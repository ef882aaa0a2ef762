// Plugin files the host must refuse before running any of their code, or
// right after negotiation: each row checks the host's error message, that
// no Plugin object exists, and that the file was left as it was.
#include <fstream>
#include <functional>

#include "bad_input.hpp"
#include "kvq_host/errors.hpp"
#include "kvq_host/plugin.hpp"
#include "test_support.hpp"

namespace kvq::bad_input {
namespace {

using host::testing::ScratchDir;
namespace fs = std::filesystem;

struct PluginFileRow {
  std::string name;
  // Returns the path to load, prepared inside the scratch folder.
  std::function<fs::path(const fs::path& dir)> prepare;
  std::vector<std::string> message;
  uint32_t min_minor = 0;
  int32_t plugin_code = 0;  // a PluginError's ABI code; 0 = a plain host Error
};
void PrintTo(const PluginFileRow& row, std::ostream* os) {
  *os << row.name;
}

fs::path copy_of(const fs::path& dir, const std::string& plugin, fs::perms add = fs::perms::none) {
  const fs::path to = dir / fs::path(plugin).filename();
  fs::copy_file(plugin, to);
  fs::permissions(to, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                          fs::perms::others_read | fs::perms::others_exec | add);
  return to;
}

const std::vector<PluginFileRow>& rows() {
  static const std::vector<PluginFileRow> kRows = {
      {"MissingFile",
       [](const fs::path& d) { return d / "absent.so"; },
       {"absent.so: no such file"}},
      {"PathIsADirectory",
       [](const fs::path& d) {
         fs::create_directory(d / "lib");
         return d / "lib";
       },
       {"is a directory, not a plugin library"}},
      {"WorldWritableLibrary",
       [](const fs::path& d) {
         return copy_of(d, host::testing::triton_plugin(), fs::perms::others_write);
       },
       {"refusing a world-writable plugin library", "chmod o-w"}},
      {"NotASharedLibrary",
       [](const fs::path& d) {
         const fs::path f = d / "text.so";
         std::ofstream(f) << "#!/bin/sh\necho not a library\n";
         return f;
       },
       {"text.so: cannot load:"}},
      {"LibraryWithoutTheEntrySymbol",
       [](const fs::path& d) { return copy_of(d, KVQ_TEST_NOT_A_PLUGIN); },
       {"not a kvq plugin: it does not export kvq_plugin_entry"}},
      {"TableOfAnotherMajor",
       [](const fs::path& d) { return copy_of(d, KVQ_TEST_MAJOR2_PLUGIN); },
       {"speaks ABI major 2; this host speaks 1"}},
      {"DeploymentNeedsANewerMinor",
       [](const fs::path& d) { return copy_of(d, host::testing::triton_plugin()); },
       {"the deployment needs ABI minor >= 7", "negotiated 1.1"},
       7},
  };
  return kRows;
}

class PluginFileRowTest : public ::testing::TestWithParam<PluginFileRow> {};

TEST_P(PluginFileRowTest, IsRefusedAndNothingIsCreated) {
  const PluginFileRow& row = GetParam();
  if (host::testing::triton_plugin().empty()) GTEST_SKIP() << "no triton plugin in this build";
  ScratchDir dir;
  const fs::path path = row.prepare(dir.path());
  const DirSnapshot before = snapshot_dir(dir.path());

  std::optional<host::Plugin> made;
  try {
    made.emplace(host::Plugin::load(path, host::NegotiationOptions{row.min_minor, 1}));
    ADD_FAILURE() << "loaded " << path;
  } catch (const host::PluginError& e) {
    EXPECT_EQ(e.code(), row.plugin_code) << e.what();
    expect_message(e.what(), row.message);
  } catch (const host::Error& e) {
    EXPECT_EQ(row.plugin_code, 0) << "expected a PluginError: " << e.what();
    expect_message(e.what(), row.message);
    EXPECT_THAT(e.what(), ::testing::HasSubstr(path.filename().string()));
  }
  EXPECT_FALSE(made.has_value());
  EXPECT_EQ(snapshot_dir(dir.path()), before);
}

INSTANTIATE_TEST_SUITE_P(PluginFile, PluginFileRowTest, ::testing::ValuesIn(rows()), RowName());

}  // namespace
}  // namespace kvq::bad_input
