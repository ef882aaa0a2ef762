#include "kvq_files/edit_distance.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace kvq::host {
namespace {

TEST(EditDistanceTest, CountsInsertionsDeletionsSubstitutionsAndTranspositions) {
  EXPECT_EQ(edit_distance("block_size", "block_size"), 0u);
  EXPECT_EQ(edit_distance("blok_size", "block_size"), 1u);    // insertion
  EXPECT_EQ(edit_distance("blockk_size", "block_size"), 1u);  // deletion
  EXPECT_EQ(edit_distance("black_size", "block_size"), 1u);   // substitution
  EXPECT_EQ(edit_distance("blcok_size", "block_size"), 1u);   // transposition
  EXPECT_EQ(edit_distance("Block_Size", "block_size"), 0u);   // case-insensitive
  EXPECT_EQ(edit_distance("", "abc"), 3u);
}

TEST(EditDistanceTest, NearestCandidateOnlyForPlausibleTypos) {
  const std::vector<std::string> keys = {"dtype", "block_size", "memory_gib", "num_blocks",
                                         "prefix_caching"};
  EXPECT_EQ(nearest_candidate("blok_size", keys), "block_size");
  EXPECT_EQ(nearest_candidate("num_block", keys), "num_blocks");
  EXPECT_EQ(nearest_candidate("memory", keys), "memory_gib");  // an abbreviation
  EXPECT_EQ(nearest_candidate("zzzzzzzz", keys), std::nullopt);
}

}  // namespace
}  // namespace kvq::host
