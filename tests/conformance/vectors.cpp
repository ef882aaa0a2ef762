#include "vectors.hpp"

#include <cstring>
#include <fstream>
#include <iterator>
#include <stdexcept>

#include "kvq_ref/reference.hpp"

namespace kvq::conform {

int32_t vector_dtype(const std::string& name) {
  static const std::map<std::string, int32_t> names = {
      {"bf16", KVQ_DTYPE_BF16}, {"float16", KVQ_DTYPE_F16},        {"float32", KVQ_DTYPE_F32},
      {"int32", KVQ_DTYPE_I32}, {"int64", KVQ_DTYPE_I64},          {"int8", KVQ_DTYPE_I8},
      {"uint8", KVQ_DTYPE_U8},  {"fp8_e4m3", KVQ_DTYPE_F8_E4M3FN}, {"fp8_e5m2", KVQ_DTYPE_F8_E5M2},
  };
  const auto it = names.find(name);
  if (it == names.end()) throw std::runtime_error("unknown vector dtype \"" + name + "\"");
  return it->second;
}

VectorCase VectorCase::load(const std::filesystem::path& dir) {
  VectorCase c;
  std::ifstream json_file(dir / "case.json");
  if (!json_file) throw std::runtime_error("cannot read " + (dir / "case.json").string());
  c.json_ = nlohmann::json::parse(json_file);
  for (const auto& [name, spec] : c.json_.at("arrays").items()) {
    VectorArray a;
    a.dtype = vector_dtype(spec.at("dtype").get<std::string>());
    a.shape = spec.at("shape").get<std::vector<int64_t>>();
    const auto path = dir / spec.at("file").get<std::string>();
    std::ifstream file(path, std::ios::binary);
    if (!file) throw std::runtime_error("cannot read " + path.string());
    a.bytes.assign(std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>());
    int64_t n = kvq::ref::dtype_size(a.dtype);
    for (int64_t d : a.shape) n *= d;
    if (static_cast<int64_t>(a.bytes.size()) != n)
      throw std::runtime_error(path.string() + " holds " + std::to_string(a.bytes.size()) +
                               " bytes, its shape needs " + std::to_string(n));
    c.arrays_.emplace(name, std::move(a));
  }
  return c;
}

const VectorArray& VectorCase::array(const std::string& name) const {
  const auto it = arrays_.find(name);
  if (it == arrays_.end()) throw std::runtime_error("the case has no array \"" + name + "\"");
  return it->second;
}

std::vector<double> VectorCase::doubles(const std::string& name) const {
  const VectorArray& a = array(name);
  std::vector<double> out(a.bytes.size() / static_cast<size_t>(kvq::ref::dtype_size(a.dtype)));
  for (size_t i = 0; i < out.size(); ++i)
    out[i] = kvq::ref::load(a.dtype, a.bytes.data(), static_cast<int64_t>(i));
  return out;
}

std::vector<int64_t> VectorCase::ints(const std::string& name) const {
  const std::vector<double> d = doubles(name);
  return {d.begin(), d.end()};
}

HostTensor VectorCase::tensor(const std::string& name) const {
  const VectorArray& a = array(name);
  HostTensor t(a.dtype, a.shape);
  std::memcpy(t.bytes(), a.bytes.data(), a.bytes.size());
  return t;
}

}  // namespace kvq::conform
