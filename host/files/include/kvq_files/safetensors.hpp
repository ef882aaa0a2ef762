// The safetensors file format (huggingface/safetensors), read through a
// memory mapping and written from named tensors.
//
// A file is: an 8-byte little-endian header length N; N bytes of a JSON
// object {name: {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin,
// end]}, ..., optional "__metadata__": {string: string}}; then the data
// buffer. Offsets are bytes relative to the start of the data buffer.
//
// The reader checks everything and refuses a file with an Error that names
// the file (and the tensor): a file shorter than 8 bytes, a header length
// beyond the file or above 100 MB, a header that is not a JSON object, a
// duplicate key, an unknown dtype, a malformed or overflowing shape, end <
// begin, offsets beyond the data buffer, a size that is not numel x dtype
// size, and overlapping tensors. Gaps between tensors are allowed, and keys
// of a tensor entry other than dtype, shape and data_offsets are ignored (as
// the reference implementation does).
#pragma once

#include <kvq_abi.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace kvq::host {

// The largest header the reader accepts (the reference implementation's limit).
inline constexpr uint64_t kSafetensorsMaxHeaderBytes = 100'000'000;

// "F32", "BF16", "F8_E4M3", ... -> KVQ_DTYPE_*; nullopt for a dtype the host
// does not take (BOOL, I16, U16, U32, U64, F8_E8M0, ...).
std::optional<int32_t> safetensors_dtype(std::string_view name);
// KVQ_DTYPE_* -> its safetensors name; throws Error for a dtype without one.
std::string_view safetensors_dtype_name(int32_t dtype);

// One tensor of a mapped file. `data` points into the mapping, which lives as
// long as any SafetensorsFile copy that owns it.
struct SafetensorsTensor {
  std::string name;
  int32_t dtype = 0;  // KVQ_DTYPE_*
  std::vector<int64_t> shape;
  uint64_t begin = 0;  // byte offsets in the data buffer
  uint64_t end = 0;
  const std::byte* data = nullptr;

  int64_t num_elements() const;
  uint64_t size_bytes() const { return end - begin; }
  // A borrowed CPU tensor, row-major contiguous, over the mapped bytes. The
  // mapping is read-only: a callee must not write through it (the ABI's
  // param_load only reads `loaded`).
  kvq_tensor view() const;
};

class SafetensorsFile {
 public:
  // Maps and validates the file. Throws Error naming the file (and the tensor).
  static SafetensorsFile open(const std::filesystem::path& path);

  const std::filesystem::path& path() const { return path_; }
  // Sorted by name.
  const std::vector<SafetensorsTensor>& tensors() const { return tensors_; }
  const SafetensorsTensor* find(std::string_view name) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  uint64_t header_size() const { return header_size_; }

 private:
  struct Mapping;
  std::filesystem::path path_;
  std::shared_ptr<const Mapping> mapping_;
  std::vector<SafetensorsTensor> tensors_;
  std::map<std::string, std::string> metadata_;
  uint64_t header_size_ = 0;
};

// A tensor to write: bytes are the row-major contiguous elements.
struct NamedTensor {
  std::string name;
  int32_t dtype = 0;  // KVQ_DTYPE_*
  std::vector<int64_t> shape;
  std::vector<std::byte> bytes;

  // A float32 tensor of the given shape holding `values`.
  static NamedTensor f32(std::string name, std::vector<int64_t> shape,
                         std::span<const float> values);
};

// The bytes of a safetensors file holding `tensors` and `metadata`. As the
// reference implementation does, the header is padded with spaces to a
// multiple of 8 bytes (the data buffer starts 8-byte aligned) and the data
// is laid out without gaps, larger element types first, then by name, so
// every tensor is aligned for its type. Throws Error for a duplicate or
// empty name, an unknown dtype, or a byte count that does not match the shape.
std::string safetensors_bytes(const std::vector<NamedTensor>& tensors,
                              const std::map<std::string, std::string>& metadata = {});
// Writes safetensors_bytes() to `path` through a temporary file renamed over
// it, so no half-written file is ever visible. Throws Error naming the file.
void write_safetensors(const std::filesystem::path& path, const std::vector<NamedTensor>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace kvq::host
