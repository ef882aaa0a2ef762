// "Did you mean ...?" suggestions for unknown keys and names.
#pragma once

#include <cstddef>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace kvq::host {

// Optimal-string-alignment distance (Levenshtein plus adjacent
// transpositions, so "blokc_size" is one edit from "block_size"),
// case-insensitive.
size_t edit_distance(std::string_view a, std::string_view b);

// The candidate nearest to `word`, if it is near enough to be a plausible
// typo (at most max(2, |word| / 3) edits; ties go to the earlier candidate),
// else the first candidate that `word` abbreviates (is a prefix of).
std::optional<std::string> nearest_candidate(std::string_view word,
                                             std::span<const std::string> candidates);

}  // namespace kvq::host
