// Reads one golden-vector case (shared/vectors/<case>/case.json plus its raw
// little-endian arrays), as described in shared/vectors/README.md.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "buffers.hpp"

namespace kvq::conform {

struct VectorArray {
  int32_t dtype = 0;  // KVQ_DTYPE_*
  std::vector<int64_t> shape;
  std::vector<unsigned char> bytes;
};

class VectorCase {
 public:
  // Throws std::runtime_error on a missing file or a size that disagrees
  // with the declared shape.
  static VectorCase load(const std::filesystem::path& dir);

  const nlohmann::json& json() const { return json_; }
  bool has(const std::string& name) const { return arrays_.count(name) != 0; }
  const VectorArray& array(const std::string& name) const;
  std::vector<double> doubles(const std::string& name) const;
  std::vector<int64_t> ints(const std::string& name) const;
  // The array as a guarded tensor with its exact bytes.
  HostTensor tensor(const std::string& name) const;

 private:
  nlohmann::json json_;
  std::map<std::string, VectorArray> arrays_;
};

// "bf16" -> KVQ_DTYPE_BF16 etc.; throws on an unknown name.
int32_t vector_dtype(const std::string& name);

}  // namespace kvq::conform
