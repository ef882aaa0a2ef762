// Shared pieces of the bad-input table (issue #6): every row is its own test
// instance with a readable name and checks three things: the error code (an
// ABI code, or the host's exception type), the message text, and that
// nothing changed (cache bytes, layer state, files on disk, no object made).
#pragma once

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <string>
#include <vector>

namespace kvq::bad_input {

// Every expected fragment must appear in the message.
inline void expect_message(const std::string& message, const std::vector<std::string>& parts) {
  for (const auto& part : parts) EXPECT_THAT(message, ::testing::HasSubstr(part));
}

// The row's name as the test instance's name (rows are named in CamelCase).
struct RowName {
  template <typename Info>
  std::string operator()(const Info& info) const {
    return info.param.name;
  }
};

// Every file under `dir` (recursively) with its bytes and permissions, so a
// row can prove that a failed call wrote, removed and chmod-ed nothing.
using DirSnapshot = std::map<std::string, std::string>;
DirSnapshot snapshot_dir(const std::filesystem::path& dir);

}  // namespace kvq::bad_input
