#include "kvq_files/safetensors.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <kvq_abi_names.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <kvq_client/tensor.hpp>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>

#include "kvq_files/dtype.hpp"
#include "kvq_files/errors.hpp"

namespace kvq::host {
namespace {

using nlohmann::json;

// The ABI's dtypes carry the safetensors spellings (kvq_abi_names.h), so
// that table is the file format's table too.
constexpr int32_t kDtypes[] = {KVQ_DTYPE_F32, KVQ_DTYPE_F16,       KVQ_DTYPE_BF16,    KVQ_DTYPE_I8,
                               KVQ_DTYPE_U8,  KVQ_DTYPE_F8_E4M3FN, KVQ_DTYPE_F8_E5M2, KVQ_DTYPE_I32,
                               KVQ_DTYPE_I64, KVQ_DTYPE_F64};

std::string known_dtypes() {
  std::string out;
  for (const int32_t d : kDtypes) out += (out.empty() ? "" : ", ") + std::string(kvq_dtype_name(d));
  return out;
}

std::string shape_text(const std::vector<int64_t>& shape) {
  return fmt::format("[{}]", fmt::join(shape, ", "));
}

// Everything the reader refuses goes through here, so every message starts
// the same way.
[[noreturn]] void refuse(const std::filesystem::path& path, const std::string& message) {
  throw Error(fmt::format("safetensors file {}: {}", path.string(), message));
}
[[noreturn]] void refuse_tensor(const std::filesystem::path& path, const std::string& name,
                                const std::string& message) {
  refuse(path, fmt::format("tensor '{}': {}", name, message));
}

// Parses the header, remembering the first key that appears twice in one
// object (nlohmann keeps the last silently).
json parse_header(const std::filesystem::path& path, std::string_view text) {
  std::vector<std::set<std::string>> open_objects;
  std::optional<std::string> duplicate;
  std::string duplicate_owner;
  std::vector<std::string> owners;  // the key that names each open object ("" for the top)
  std::string last_key;
  const json::parser_callback_t callback = [&](int, json::parse_event_t event, json& parsed) {
    switch (event) {
      case json::parse_event_t::object_start:
        owners.push_back(open_objects.empty() ? std::string() : last_key);
        open_objects.emplace_back();
        break;
      case json::parse_event_t::object_end:
        if (!open_objects.empty()) open_objects.pop_back();
        if (!owners.empty()) owners.pop_back();
        break;
      case json::parse_event_t::key:
        last_key = parsed.get<std::string>();
        if (!open_objects.empty() && !open_objects.back().insert(last_key).second && !duplicate) {
          duplicate = last_key;
          duplicate_owner = owners.empty() ? std::string() : owners.back();
        }
        break;
      default: break;
    }
    return true;
  };
  json header;
  try {
    header = json::parse(text.begin(), text.end(), callback);
  } catch (const json::exception& e) {
    refuse(path, fmt::format("the header is not valid JSON: {}", e.what()));
  }
  if (!header.is_object()) {
    refuse(path, fmt::format("the header is not a JSON object (it is {})", header.type_name()));
  }
  if (duplicate) {
    if (duplicate_owner.empty()) {
      refuse(path, fmt::format("duplicate key '{}' in the header", *duplicate));
    }
    refuse(path,
           fmt::format("duplicate key '{}' in the header entry '{}'", *duplicate, duplicate_owner));
  }
  return header;
}

// A JSON number as a non-negative integer; nullopt for anything else.
std::optional<uint64_t> unsigned_value(const json& value) {
  if (value.is_number_unsigned()) return value.get<uint64_t>();
  if (value.is_number_integer() && value.get<int64_t>() >= 0) {
    return static_cast<uint64_t>(value.get<int64_t>());
  }
  return std::nullopt;
}

std::vector<int64_t> read_shape(const std::filesystem::path& path, const std::string& name,
                                const json& entry) {
  const auto it = entry.find("shape");
  if (it == entry.end()) refuse_tensor(path, name, "missing \"shape\"");
  if (!it->is_array()) {
    refuse_tensor(path, name, fmt::format("\"shape\" must be an array, not {}", it->dump()));
  }
  std::vector<int64_t> shape;
  for (size_t i = 0; i < it->size(); ++i) {
    const json& dim = (*it)[i];
    const auto value = unsigned_value(dim);
    if (!value) {
      refuse_tensor(path, name,
                    fmt::format("shape entry {} is {}; shape entries must be non-negative integers",
                                i, dim.dump()));
    }
    if (*value > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      refuse_tensor(path, name, fmt::format("shape entry {} ({}) overflows", i, *value));
    }
    shape.push_back(static_cast<int64_t>(*value));
  }
  return shape;
}

std::pair<uint64_t, uint64_t> read_offsets(const std::filesystem::path& path,
                                           const std::string& name, const json& entry) {
  const auto it = entry.find("data_offsets");
  if (it == entry.end()) refuse_tensor(path, name, "missing \"data_offsets\"");
  if (!it->is_array() || it->size() != 2 || !unsigned_value((*it)[0]) ||
      !unsigned_value((*it)[1])) {
    refuse_tensor(path, name,
                  fmt::format("\"data_offsets\" must be [begin, end] with non-negative integers, "
                              "not {}",
                              it->dump()));
  }
  return {*unsigned_value((*it)[0]), *unsigned_value((*it)[1])};
}

SafetensorsTensor read_entry(const std::filesystem::path& path, const std::string& name,
                             const json& entry, uint64_t data_size) {
  if (!entry.is_object()) {
    refuse_tensor(path, name,
                  fmt::format("the header entry must be an object with dtype, shape and "
                              "data_offsets, not {}",
                              entry.type_name()));
  }
  SafetensorsTensor t;
  t.name = name;
  const auto dtype_it = entry.find("dtype");
  if (dtype_it == entry.end()) refuse_tensor(path, name, "missing \"dtype\"");
  if (!dtype_it->is_string()) {
    refuse_tensor(path, name, fmt::format("\"dtype\" must be a string, not {}", dtype_it->dump()));
  }
  const auto dtype = safetensors_dtype(dtype_it->get<std::string>());
  if (!dtype) {
    refuse_tensor(path, name,
                  fmt::format("unknown dtype '{}' (known: {})", dtype_it->get<std::string>(),
                              known_dtypes()));
  }
  t.dtype = *dtype;
  t.shape = read_shape(path, name, entry);

  int64_t numel = 1;
  for (const int64_t dim : t.shape) {
    if (__builtin_mul_overflow(numel, dim, &numel)) {
      refuse_tensor(path, name,
                    fmt::format("shape {} overflows: its element count does not fit in 64 bits",
                                shape_text(t.shape)));
    }
  }
  int64_t bytes = 0;
  if (__builtin_mul_overflow(numel, abi_dtype_size(t.dtype), &bytes)) {
    refuse_tensor(path, name,
                  fmt::format("shape {} overflows: its byte count does not fit in 64 bits",
                              shape_text(t.shape)));
  }

  const auto [begin, end] = read_offsets(path, name, entry);
  if (end < begin) {
    refuse_tensor(path, name,
                  fmt::format("data_offsets [{}, {}]: end is before begin", begin, end));
  }
  if (end > data_size) {
    refuse_tensor(path, name,
                  fmt::format("data_offsets [{}, {}] reach beyond the data buffer ({} bytes)",
                              begin, end, data_size));
  }
  if (end - begin != static_cast<uint64_t>(bytes)) {
    refuse_tensor(
        path, name,
        fmt::format("data_offsets [{}, {}] hold {} bytes, but shape {} of {} needs "
                    "{} x {} = {} bytes",
                    begin, end, end - begin, shape_text(t.shape), safetensors_dtype_name(t.dtype),
                    numel, abi_dtype_size(t.dtype), bytes));
  }
  t.begin = begin;
  t.end = end;
  return t;
}

void check_no_overlap(const std::filesystem::path& path, std::vector<SafetensorsTensor> tensors) {
  // Empty tensors occupy no bytes, so they overlap nothing.
  std::erase_if(tensors, [](const SafetensorsTensor& t) { return t.begin == t.end; });
  std::sort(tensors.begin(), tensors.end(), [](const auto& a, const auto& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  for (size_t i = 1; i < tensors.size(); ++i) {
    const SafetensorsTensor& a = tensors[i - 1];
    const SafetensorsTensor& b = tensors[i];
    if (b.begin < a.end) {
      refuse(path, fmt::format("tensors '{}' (bytes [{}, {})) and '{}' (bytes [{}, {})) overlap",
                               a.name, a.begin, a.end, b.name, b.begin, b.end));
    }
  }
}

std::string errno_text() {
  return std::strerror(errno);
}

}  // namespace

std::optional<int32_t> safetensors_dtype(std::string_view name) {
  for (const int32_t d : kDtypes) {
    if (kvq_dtype_name(d) == name) return d;
  }
  return std::nullopt;
}

std::string_view safetensors_dtype_name(int32_t dtype) {
  for (const int32_t d : kDtypes) {
    if (d == dtype) return kvq_dtype_name(d);
  }
  throw Error(fmt::format("dtype {} has no safetensors name", abi_dtype_name(dtype)));
}

int64_t SafetensorsTensor::num_elements() const {
  int64_t n = 1;
  for (const int64_t dim : shape) n *= dim;  // checked against overflow when read
  return n;
}

kvq_tensor SafetensorsTensor::view() const {
  if (shape.size() > KVQ_MAX_DIMS) {
    throw Error(fmt::format("tensor '{}' has {} dimensions; a kvq tensor holds at most {}", name,
                            shape.size(), KVQ_MAX_DIMS));
  }
  return client::describe(data, dtype, shape);  // host memory: param_load reads it there
}

// ---- reading ----------------------------------------------------------------

struct SafetensorsFile::Mapping {
  const std::byte* data = nullptr;
  size_t size = 0;

  Mapping() = default;
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  ~Mapping() {
    if (data != nullptr) munmap(const_cast<std::byte*>(data), size);
  }
};

SafetensorsFile SafetensorsFile::open(const std::filesystem::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) refuse(path, fmt::format("cannot open: {}", errno_text()));
  struct stat status {};
  if (fstat(fd, &status) != 0) {
    const std::string reason = errno_text();
    ::close(fd);
    refuse(path, fmt::format("cannot stat: {}", reason));
  }
  if (!S_ISREG(status.st_mode)) {
    ::close(fd);
    refuse(path, "not a regular file");
  }
  auto mapping = std::make_shared<Mapping>();
  mapping->size = static_cast<size_t>(status.st_size);
  if (mapping->size < 8) {
    ::close(fd);
    refuse(path, fmt::format("the file has {} bytes; a safetensors file starts with an 8-byte "
                             "header length",
                             mapping->size));
  }
  void* address = mmap(nullptr, mapping->size, PROT_READ, MAP_PRIVATE, fd, 0);
  const std::string map_error = address == MAP_FAILED ? errno_text() : std::string();
  ::close(fd);  // the mapping keeps the file
  if (address == MAP_FAILED) refuse(path, fmt::format("cannot map: {}", map_error));
  mapping->data = static_cast<const std::byte*>(address);

  uint64_t header_size = 0;
  for (int i = 7; i >= 0; --i) {
    header_size = (header_size << 8) | static_cast<uint64_t>(mapping->data[i]);
  }
  const uint64_t after_length = mapping->size - 8;
  if (header_size > kSafetensorsMaxHeaderBytes) {
    refuse(path, fmt::format("header length {} is larger than the {}-byte limit (a corrupt or "
                             "non-safetensors file)",
                             header_size, kSafetensorsMaxHeaderBytes));
  }
  if (header_size > after_length) {
    refuse(path, fmt::format("header length {} exceeds the file ({} bytes follow the 8-byte "
                             "length)",
                             header_size, after_length));
  }
  const std::string_view header_text(reinterpret_cast<const char*>(mapping->data + 8),
                                     static_cast<size_t>(header_size));
  const json header = parse_header(path, header_text);

  SafetensorsFile file;
  file.path_ = path;
  file.header_size_ = header_size;
  const std::byte* data_buffer = mapping->data + 8 + header_size;
  const uint64_t data_size = after_length - header_size;
  for (const auto& [key, value] : header.items()) {
    if (key == "__metadata__") {
      if (!value.is_object()) {
        refuse(path, fmt::format("\"__metadata__\" must be an object of strings, not {}",
                                 value.type_name()));
      }
      for (const auto& [meta_key, meta_value] : value.items()) {
        if (!meta_value.is_string()) {
          refuse(path, fmt::format("\"__metadata__\" entry '{}' must be a string, not {}", meta_key,
                                   meta_value.dump()));
        }
        file.metadata_[meta_key] = meta_value.get<std::string>();
      }
      continue;
    }
    SafetensorsTensor t = read_entry(path, key, value, data_size);
    t.data = data_buffer + t.begin;
    file.tensors_.push_back(std::move(t));
  }
  check_no_overlap(path, file.tensors_);
  std::sort(file.tensors_.begin(), file.tensors_.end(),
            [](const auto& a, const auto& b) { return a.name < b.name; });
  file.mapping_ = std::move(mapping);
  return file;
}

const SafetensorsTensor* SafetensorsFile::find(std::string_view name) const {
  const auto it = std::lower_bound(tensors_.begin(), tensors_.end(), name,
                                   [](const auto& t, std::string_view n) { return t.name < n; });
  return it != tensors_.end() && it->name == name ? &*it : nullptr;
}

// ---- writing ----------------------------------------------------------------

NamedTensor NamedTensor::f32(std::string name, std::vector<int64_t> shape,
                             std::span<const float> values) {
  NamedTensor t{std::move(name), KVQ_DTYPE_F32, std::move(shape), {}};
  t.bytes.resize(values.size_bytes());
  if (!values.empty()) std::memcpy(t.bytes.data(), values.data(), values.size_bytes());
  return t;
}

std::string safetensors_bytes(const std::vector<NamedTensor>& tensors,
                              const std::map<std::string, std::string>& metadata) {
  // As the reference implementation lays data out: larger element types
  // first, then by name, so every tensor starts aligned for its type (the
  // data buffer itself starts 8-byte aligned).
  std::vector<const NamedTensor*> ordered;
  for (const auto& t : tensors) ordered.push_back(&t);
  std::sort(ordered.begin(), ordered.end(), [](const NamedTensor* a, const NamedTensor* b) {
    const int64_t sa = abi_dtype_size(a->dtype), sb = abi_dtype_size(b->dtype);
    return sa != sb ? sa > sb : a->name < b->name;
  });
  std::set<std::string_view> names;
  for (const NamedTensor* t : ordered) {
    if (!names.insert(t->name).second) {
      throw Error(fmt::format("safetensors writer: tensor '{}' given twice", t->name));
    }
  }

  json header = json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (size_t i = 0; i < ordered.size(); ++i) {
    const NamedTensor& t = *ordered[i];
    if (t.name.empty() || t.name == "__metadata__") {
      throw Error(fmt::format("safetensors writer: invalid tensor name '{}'", t.name));
    }
    int64_t numel = 1;
    for (const int64_t dim : t.shape) {
      if (dim < 0)
        throw Error(fmt::format("safetensors writer: tensor '{}' has a negative dim", t.name));
      numel *= dim;
    }
    const uint64_t expected = static_cast<uint64_t>(numel * abi_dtype_size(t.dtype));
    if (t.bytes.size() != expected) {
      throw Error(fmt::format("safetensors writer: tensor '{}' ({} {}) needs {} bytes, has {}",
                              t.name, safetensors_dtype_name(t.dtype), shape_text(t.shape),
                              expected, t.bytes.size()));
    }
    header[t.name] = {{"dtype", std::string(safetensors_dtype_name(t.dtype))},
                      {"shape", t.shape},
                      {"data_offsets", {offset, offset + expected}}};
    offset += expected;
  }
  std::string header_text = header.dump();
  header_text.append((8 - header_text.size() % 8) % 8, ' ');

  std::string out;
  out.reserve(8 + header_text.size() + offset);
  uint64_t length = header_text.size();
  for (int i = 0; i < 8; ++i) {
    out.push_back(static_cast<char>(length & 0xFF));
    length >>= 8;
  }
  out += header_text;
  for (const NamedTensor* t : ordered) {
    out.append(reinterpret_cast<const char*>(t->bytes.data()), t->bytes.size());
  }
  return out;
}

void write_safetensors(const std::filesystem::path& path, const std::vector<NamedTensor>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  const std::string bytes = safetensors_bytes(tensors, metadata);
  // Written next to the target and renamed over it, so a reader never sees a
  // half-written file and a failed write leaves the old file (or none).
  std::filesystem::path temp = path;
  temp += fmt::format(".tmp{}", ::getpid());
  {
    std::ofstream out(temp, std::ios::binary | std::ios::trunc);
    if (!out) throw Error(fmt::format("safetensors file {}: cannot create it", path.string()));
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    out.close();
    if (!out) {
      std::error_code ignored;
      std::filesystem::remove(temp, ignored);
      throw Error(fmt::format("safetensors file {}: writing failed", path.string()));
    }
  }
  std::error_code ec;
  std::filesystem::rename(temp, path, ec);
  if (ec) {
    std::error_code ignored;
    std::filesystem::remove(temp, ignored);
    throw Error(
        fmt::format("safetensors file {}: cannot replace it: {}", path.string(), ec.message()));
  }
}

}  // namespace kvq::host
