// Strict reading of one YAML mapping: unknown keys (with a "did you mean"),
// duplicate keys, wrong types, missing keys and out-of-range numbers are all
// DeploymentErrors that name the file, line and column.
#pragma once

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kvq_files/deployment.hpp"

namespace kvq::host {

// Names the document in messages and turns yaml-cpp marks into locations.
class YamlDocument {
 public:
  explicit YamlDocument(std::string source_name) : source_(std::move(source_name)) {}
  const std::string& source() const { return source_; }
  SourceLocation location(const YAML::Node& node) const;
  SourceLocation location(const YAML::Mark& mark) const;
  [[noreturn]] void fail(const SourceLocation& where, const std::string& message) const;
  // The text's one document (a null node when it is empty). A second document
  // (after "---") and invalid YAML are DeploymentErrors naming where they start.
  YAML::Node load_single_document(std::string_view text) const;

 private:
  std::string source_;
};

class YamlMapping {
 public:
  // `path` is the mapping's dotted name ("kv_cache"; "" for the document).
  // `where` is where the mapping is named (its key), the position given for
  // errors about the mapping as a whole, such as a missing key.
  YamlMapping(const YamlDocument& document, const YAML::Node& node, std::string path,
              std::vector<std::string> allowed_keys, const SourceLocation& where);

  bool has(std::string_view key) const { return find(key) != nullptr; }
  SourceLocation location() const { return location_; }
  // The key's position (the value may be empty).
  SourceLocation key_location(std::string_view key) const;
  // The value's position, or the key's when the value is empty.
  SourceLocation value_location(std::string_view key) const;
  std::string qualified(std::string_view key) const;

  // A nested mapping; nullopt when absent and not required.
  std::optional<YamlMapping> mapping(std::string_view key, std::vector<std::string> allowed_keys,
                                     bool required) const;

  // Scalars. A missing key yields `fallback`, or is an error without one.
  int64_t integer(std::string_view key, int64_t min, int64_t max,
                  std::optional<int64_t> fallback = std::nullopt) const;
  double number(std::string_view key, double min, bool min_exclusive, double max,
                std::optional<double> fallback = std::nullopt) const;
  bool boolean(std::string_view key, std::optional<bool> fallback = std::nullopt) const;
  std::string string(std::string_view key,
                     std::optional<std::string> fallback = std::nullopt) const;

  [[noreturn]] void fail_at_value(std::string_view key, const std::string& message) const;
  [[noreturn]] void fail_at_key(std::string_view key, const std::string& message) const;
  [[noreturn]] void fail(const std::string& message) const;

 private:
  struct Entry {
    std::string key;
    YAML::Node key_node;
    YAML::Node value;
  };
  const Entry* find(std::string_view key) const;
  // The value as scalar text; errors for a missing value or a non-scalar.
  std::string scalar_text(const Entry& entry, std::string_view expected) const;

  const YamlDocument* document_;
  std::string path_;
  SourceLocation location_;
  std::vector<Entry> entries_;
};

}  // namespace kvq::host
