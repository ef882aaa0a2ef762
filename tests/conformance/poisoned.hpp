// Structs in poisoned memory, for the contract cases: an out-struct whose
// tail past struct_size the callee must not write, and an in-struct whose
// unknown tail (a newer caller's fields) the callee must ignore.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace kvq::conform {

inline constexpr unsigned char kOutPoison = 0xCD;
inline constexpr unsigned char kHostPoison = 0xAB;
inline constexpr size_t kTail = 64;

// Storage for a struct of `size` bytes followed by a poisoned tail; 8-byte
// aligned like the real structs.
class PoisonedStruct {
 public:
  explicit PoisonedStruct(size_t size, unsigned char poison)
      : size_(size), poison_(poison), words_((size + kTail + 7) / 8) {
    std::memset(words_.data(), poison, words_.size() * 8);
    const uint64_t struct_size = size;
    std::memcpy(words_.data(), &struct_size, sizeof struct_size);
  }
  template <typename T>
  T* as() {
    return reinterpret_cast<T*>(words_.data());
  }
  // "" when the callee wrote nothing past struct_size.
  std::string tail_damage() const {
    const auto* bytes = reinterpret_cast<const unsigned char*>(words_.data());
    for (size_t i = size_; i < size_ + kTail; ++i)
      if (bytes[i] != poison_)
        return "byte " + std::to_string(i - size_) + " past struct_size (" + std::to_string(size_) +
               ") was written";
    return {};
  }

 private:
  size_t size_;
  unsigned char poison_;
  std::vector<uint64_t> words_;
};

}  // namespace kvq::conform
