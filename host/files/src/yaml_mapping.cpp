#include "yaml_mapping.hpp"

#include <fmt/format.h>
#include <yaml-cpp/eventhandler.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <sstream>

#include "kvq_files/edit_distance.hpp"

namespace kvq::host {
namespace {

std::string describe_kind(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Map: return "a mapping";
    case YAML::NodeType::Sequence: return "a list";
    case YAML::NodeType::Null: return "nothing";
    case YAML::NodeType::Scalar: return fmt::format("'{}'", node.Scalar());
    default: return "an undefined value";
  }
}

std::string_view trim(std::string_view text) {
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.front())))
    text.remove_prefix(1);
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back())))
    text.remove_suffix(1);
  return text;
}

// Only where each document starts: enough to count documents without
// building them.
class DocumentStarts : public YAML::EventHandler {
 public:
  const std::vector<YAML::Mark>& starts() const { return starts_; }
  void OnDocumentStart(const YAML::Mark& mark) override { starts_.push_back(mark); }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t,
                const std::string&) override {}
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {}
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {}
  void OnMapEnd() override {}

 private:
  std::vector<YAML::Mark> starts_;
};

std::string format_range_integer(int64_t min, int64_t max) {
  if (max == std::numeric_limits<int64_t>::max()) return fmt::format(">= {}", min);
  return fmt::format("between {} and {}", min, max);
}

}  // namespace

// ---- YamlDocument ---------------------------------------------------------

SourceLocation YamlDocument::location(const YAML::Mark& mark) const {
  // yaml-cpp marks are 0-based; a node without a position has -1.
  if (mark.is_null() || mark.line < 0) return SourceLocation{source_, 1, 1};
  return SourceLocation{source_, mark.line + 1, mark.column + 1};
}

SourceLocation YamlDocument::location(const YAML::Node& node) const {
  return location(node.Mark());
}

void YamlDocument::fail(const SourceLocation& where, const std::string& message) const {
  throw DeploymentError(where, message);
}

YAML::Node YamlDocument::load_single_document(std::string_view text) const {
  YAML::Node root;
  try {
    // The documents are walked first, without YAML::LoadAll: on some invalid
    // text (a line starting with ',') yaml-cpp 0.7 yields empty documents
    // that consume nothing, and LoadAll collects them until memory runs out.
    std::istringstream stream{std::string(text)};
    YAML::Parser parser(stream);
    DocumentStarts walker;
    const auto& starts = walker.starts();
    // Up to three documents: a second one that is only such a no-progress
    // artefact shows as a third starting at the same place, and must be
    // called invalid YAML rather than a second document.
    while (starts.size() < 3 && parser.HandleNextDocument(walker)) {
      if (starts.size() >= 2 && starts.back().pos <= starts[starts.size() - 2].pos) {
        fail(location(starts.back()),
             "not valid YAML: the parser cannot read past this point (a character that cannot "
             "start a value here, such as ',' or '}' outside a flow collection?)");
      }
    }
    if (starts.size() >= 2) {
      fail(location(starts[1]),
           "a second YAML document (after '---'): a deployment is one document");
    }
    root = YAML::Load(std::string(text));
  } catch (const YAML::Exception& e) {
    fail(location(e.mark), fmt::format("not valid YAML: {}", e.msg));
  }
  return root;
}

// ---- YamlMapping ----------------------------------------------------------

YamlMapping::YamlMapping(const YamlDocument& document, const YAML::Node& node, std::string path,
                         std::vector<std::string> allowed_keys, const SourceLocation& where)
    : document_(&document), path_(std::move(path)), location_(where) {
  const std::string name =
      path_.empty() ? std::string("the deployment") : fmt::format("'{}'", path_);
  if (!node.IsMap()) {
    document.fail(location_, fmt::format("{} must be a mapping of keys to values, got {}", name,
                                         describe_kind(node)));
  }
  for (const auto& item : node) {
    const YAML::Node& key_node = item.first;
    const SourceLocation key_where = document.location(key_node);
    if (!key_node.IsScalar()) {
      document.fail(key_where, fmt::format("keys of {} must be plain names, got {}", name,
                                           describe_kind(key_node)));
    }
    const std::string key = key_node.Scalar();
    if (std::find(allowed_keys.begin(), allowed_keys.end(), key) == allowed_keys.end()) {
      std::string message = fmt::format("unknown key '{}' in {}", key, name);
      if (auto suggestion = nearest_candidate(key, allowed_keys)) {
        message += fmt::format("; did you mean '{}'?", *suggestion);
      }
      message += fmt::format(" (valid keys: {})", fmt::join(allowed_keys, ", "));
      document.fail(key_where, message);
    }
    if (find(key) != nullptr) {
      document.fail(key_where, fmt::format("duplicate key '{}' in {} (first given at {})", key,
                                           name, key_location(key).describe()));
    }
    entries_.push_back(Entry{key, key_node, item.second});
  }
}

const YamlMapping::Entry* YamlMapping::find(std::string_view key) const {
  for (const auto& entry : entries_) {
    if (entry.key == key) return &entry;
  }
  return nullptr;
}

std::string YamlMapping::qualified(std::string_view key) const {
  return path_.empty() ? std::string(key) : fmt::format("{}.{}", path_, key);
}

SourceLocation YamlMapping::key_location(std::string_view key) const {
  const Entry* entry = find(key);
  return entry ? document_->location(entry->key_node) : location_;
}

SourceLocation YamlMapping::value_location(std::string_view key) const {
  const Entry* entry = find(key);
  if (entry == nullptr) return location_;
  if (entry->value.IsNull() || entry->value.Mark().is_null())
    return document_->location(entry->key_node);
  return document_->location(entry->value);
}

void YamlMapping::fail_at_value(std::string_view key, const std::string& message) const {
  document_->fail(value_location(key), message);
}
void YamlMapping::fail_at_key(std::string_view key, const std::string& message) const {
  document_->fail(key_location(key), message);
}
void YamlMapping::fail(const std::string& message) const {
  document_->fail(location_, message);
}

std::optional<YamlMapping> YamlMapping::mapping(std::string_view key,
                                                std::vector<std::string> allowed_keys,
                                                bool required) const {
  const Entry* entry = find(key);
  if (entry == nullptr) {
    if (!required) return std::nullopt;
    fail(fmt::format("missing required key '{}'", qualified(key)));
  }
  return YamlMapping(*document_, entry->value, qualified(key), std::move(allowed_keys),
                     document_->location(entry->key_node));
}

std::string YamlMapping::scalar_text(const Entry& entry, std::string_view expected) const {
  if (entry.value.IsNull()) {
    fail_at_key(entry.key,
                fmt::format("'{}' has no value; expected {}", qualified(entry.key), expected));
  }
  if (!entry.value.IsScalar()) {
    fail_at_value(entry.key, fmt::format("'{}' must be {}, got {}", qualified(entry.key), expected,
                                         describe_kind(entry.value)));
  }
  return entry.value.Scalar();
}

int64_t YamlMapping::integer(std::string_view key, int64_t min, int64_t max,
                             std::optional<int64_t> fallback) const {
  const Entry* entry = find(key);
  if (entry == nullptr) {
    if (fallback) return *fallback;
    fail(fmt::format("missing required key '{}' (an integer {})", qualified(key),
                     format_range_integer(min, max)));
  }
  const std::string text = scalar_text(*entry, "an integer");
  std::string_view digits = trim(text);
  if (!digits.empty() && digits.front() == '+') digits.remove_prefix(1);
  int64_t value = 0;
  const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
  if (ec == std::errc::result_out_of_range) {
    fail_at_value(key, fmt::format("'{}' must be an integer {}, got {} (out of range)",
                                   qualified(key), format_range_integer(min, max), text));
  }
  if (digits.empty() || ec != std::errc() || end != digits.data() + digits.size()) {
    fail_at_value(key, fmt::format("'{}' must be an integer, got '{}'", qualified(key), text));
  }
  if (value < min || value > max) {
    fail_at_value(key, fmt::format("'{}' must be {}, got {}", qualified(key),
                                   format_range_integer(min, max), value));
  }
  return value;
}

double YamlMapping::number(std::string_view key, double min, bool min_exclusive, double max,
                           std::optional<double> fallback) const {
  const std::string range = fmt::format("{} {}{}", min_exclusive ? ">" : ">=", min,
                                        std::isfinite(max) ? fmt::format(" and <= {}", max) : "");
  const Entry* entry = find(key);
  if (entry == nullptr) {
    if (fallback) return *fallback;
    fail(fmt::format("missing required key '{}' (a number {})", qualified(key), range));
  }
  const std::string text = scalar_text(*entry, "a number");
  std::string_view digits = trim(text);
  if (!digits.empty() && digits.front() == '+') digits.remove_prefix(1);
  double value = 0;
  const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
  if (digits.empty() || ec != std::errc() || end != digits.data() + digits.size() ||
      !std::isfinite(value)) {
    fail_at_value(key, fmt::format("'{}' must be a finite number, got '{}'", qualified(key), text));
  }
  if ((min_exclusive ? value <= min : value < min) || value > max) {
    fail_at_value(key, fmt::format("'{}' must be {}, got {}", qualified(key), range, text));
  }
  return value;
}

bool YamlMapping::boolean(std::string_view key, std::optional<bool> fallback) const {
  const Entry* entry = find(key);
  if (entry == nullptr) {
    if (fallback) return *fallback;
    fail(fmt::format("missing required key '{}' (true or false)", qualified(key)));
  }
  const std::string text = scalar_text(*entry, "true or false");
  static const std::vector<std::string> kTrue = {"true", "True", "TRUE", "yes", "on"};
  static const std::vector<std::string> kFalse = {"false", "False", "FALSE", "no", "off"};
  if (std::find(kTrue.begin(), kTrue.end(), text) != kTrue.end()) return true;
  if (std::find(kFalse.begin(), kFalse.end(), text) != kFalse.end()) return false;
  fail_at_value(key, fmt::format("'{}' must be true or false, got '{}'", qualified(key), text));
}

std::string YamlMapping::string(std::string_view key, std::optional<std::string> fallback) const {
  const Entry* entry = find(key);
  if (entry == nullptr) {
    if (fallback) return *fallback;
    fail(fmt::format("missing required key '{}'", qualified(key)));
  }
  std::string text = scalar_text(*entry, "a string");
  if (trim(text).empty()) {
    fail_at_value(key, fmt::format("'{}' must not be empty", qualified(key)));
  }
  return text;
}

}  // namespace kvq::host
