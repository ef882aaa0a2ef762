// Fuzzes the safetensors reader (host/src/safetensors.cpp): any bytes as a
// file. The reader must refuse with kvq::host::Error or return tensors whose
// bytes all lie inside the mapping and equal the file's (read here, so ASan
// checks every one).
#include <cstddef>
#include <cstdint>

#include "fuzz_support.hpp"
#include "kvq_files/errors.hpp"
#include "kvq_files/safetensors.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace kvq;
  const std::filesystem::path file = fuzz::scratch_dir() / "input.safetensors";
  fuzz::write_file(file, std::string_view(reinterpret_cast<const char*>(data), size));
  try {
    const host::SafetensorsFile f = host::SafetensorsFile::open(file);
    for (const host::SafetensorsTensor& t : f.tensors()) {
      if (t.end < t.begin || 8 + f.header_size() + t.end > size)
        fuzz::invariant_failed("tensor bytes outside the file:", t.name.c_str());
      // Every byte is read (ASan checks the mapping) and must be the file's.
      const uint8_t* in_file = data + 8 + f.header_size() + t.begin;
      for (uint64_t i = 0; i < t.size_bytes(); ++i)
        if (static_cast<uint8_t>(t.data[i]) != in_file[i])
          fuzz::invariant_failed("tensor bytes differ from the file:", t.name.c_str());
      if (t.num_elements() < 0) fuzz::invariant_failed("negative element count", t.name.c_str());
      if (t.shape.size() <= KVQ_MAX_DIMS) (void)t.view();
      if (f.find(t.name) != &t) fuzz::invariant_failed("find() misses", t.name.c_str());
    }
  } catch (const host::Error&) {
    // Refused with a message: the expected outcome for bad bytes.
  }
  return 0;
}
