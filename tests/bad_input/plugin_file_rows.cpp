// Plugin files the host must refuse before running any of their code, or
// right after negotiation: each row checks the host's error message, that
// no Plugin object exists, and that the file was left as it was.
#include <fstream>
#include <functional>

#include "bad_input.hpp"
#include "kvq_engine/plugin.hpp"
#include "kvq_files/errors.hpp"
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

// A copy of the CPU plugin cut to its first `size` bytes.
fs::path truncated_copy(const fs::path& dir, uintmax_t size) {
  const fs::path to = copy_of(dir, host::testing::triton_plugin());
  fs::resize_file(to, size);
  return to;
}

// A copy of the CPU plugin with `bytes` written at `offset` of its ELF header.
fs::path patched_copy(const fs::path& dir, std::streamoff offset,
                      const std::vector<unsigned char>& bytes) {
  const fs::path to = copy_of(dir, host::testing::triton_plugin());
  std::fstream file(to, std::ios::in | std::ios::out | std::ios::binary);
  file.seekp(offset);
  file.write(reinterpret_cast<const char*>(bytes.data()),
             static_cast<std::streamsize>(bytes.size()));
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
       {"text.so: not a shared library (no ELF header)"}},
      {"TruncatedInTheMiddle",  // dlopen would map past the end: SIGBUS later
       [](const fs::path& d) { return truncated_copy(d, 64 * 1024); },  // inside the code
       {"truncated: loadable segment", "an interrupted copy?"}},
      {"TruncatedSectionHeaders",
       [](const fs::path& d) {
         return truncated_copy(d, fs::file_size(host::testing::triton_plugin()) - 64);
       },
       {"truncated: the section headers end at byte"}},
      {"ShorterThanAnElfHeader",
       [](const fs::path& d) { return truncated_copy(d, 40); },
       {"truncated: 40 bytes, shorter than an ELF header"}},
      {"BuiltForAnotherMachine",
       [](const fs::path& d) {
         return patched_copy(d, 18, {183, 0});
       },  // e_machine = AArch64
       {"built for AArch64; this process runs on x86-64"}},
      {"ThirtyTwoBitLibrary",
       [](const fs::path& d) { return patched_copy(d, 4, {1}); },  // EI_CLASS = ELFCLASS32
       {"a 32-bit ELF file"}},
      {"ExecutableNotALibrary",
       [](const fs::path& d) {
         return patched_copy(d, 16, {2, 0});
       },  // e_type = ET_EXEC
       {"not a shared library (not ET_DYN)"}},
      {"SymbolicLinkLoop",
       [](const fs::path& d) {
         fs::create_symlink(d / "b.so", d / "a.so");
         fs::create_symlink(d / "a.so", d / "b.so");
         return d / "a.so";
       },
       {"a.so: Too many levels of symbolic links"}},
      {"LibraryWithoutTheEntrySymbol",
       [](const fs::path& d) { return copy_of(d, KVQ_TEST_NOT_A_PLUGIN); },
       {"not a kvq plugin: it does not export kvq_plugin_entry"}},
      {"TableOfAnotherMajor",
       [](const fs::path& d) { return copy_of(d, KVQ_TEST_MAJOR2_PLUGIN); },
       {"speaks ABI major 2; this host speaks 1"}},
      {"DeploymentNeedsANewerMinor",
       [](const fs::path& d) { return copy_of(d, host::testing::triton_plugin()); },
       {"ABI minor >= 7 is required", "negotiated 1.1"},
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
    made.emplace(host::open_plugin(path, host::NegotiationOptions{row.min_minor, 1}));
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
