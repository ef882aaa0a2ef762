// Bad safetensors files: every row is a file the reader must refuse with an
// Error naming the file (and the tensor) and saying what is wrong, without a
// crash, a hang or a huge allocation; no SafetensorsFile is produced and the
// file is left as it was.
#include <fcntl.h>
#include <unistd.h>

#include <fstream>
#include <functional>

#include "bad_input.hpp"
#include "kvq_files/errors.hpp"
#include "kvq_files/safetensors.hpp"
#include "test_support.hpp"

namespace kvq::bad_input {
namespace {

using host::testing::ScratchDir;
namespace fs = std::filesystem;

// An 8-byte little-endian length, the header text, then `data_bytes` zeros.
std::string file_with(const std::string& header, uint64_t data_bytes,
                      std::optional<uint64_t> length = std::nullopt) {
  std::string out;
  uint64_t n = length.value_or(header.size());
  for (int i = 0; i < 8; ++i, n >>= 8) out.push_back(static_cast<char>(n & 0xFF));
  return out + header + std::string(static_cast<size_t>(data_bytes), '\0');
}

struct SafetensorsRow {
  std::string name;
  std::function<fs::path(const fs::path& dir)> make;
  std::vector<std::string> message;
};
void PrintTo(const SafetensorsRow& row, std::ostream* os) {
  *os << row.name;
}

std::function<fs::path(const fs::path&)> bytes(std::string content) {
  return [content](const fs::path& dir) {
    const fs::path f = dir / "model.safetensors";
    std::ofstream(f, std::ios::binary) << content;
    return f;
  };
}

// A sparse file: the length prefix, then `size` bytes that take no disk.
fs::path sparse_file(const fs::path& dir, uint64_t header_length, uint64_t size) {
  const fs::path f = dir / "model.safetensors";
  std::ofstream(f, std::ios::binary) << file_with("", 0, header_length);
  fs::resize_file(f, size);
  return f;
}

std::string deep_nesting(size_t depth) {
  return R"({"t": )" + std::string(depth, '[') + std::string(depth, ']') + "}";
}

const std::vector<SafetensorsRow>& rows() {
  static const std::vector<SafetensorsRow> kRows = {
      {"EmptyFile", bytes(""), {"the file has 0 bytes; a safetensors file starts with an 8-byte"}},
      {"ShorterThanTheLength", bytes(std::string("\x08\x00\x00", 3)), {"the file has 3 bytes"}},
      {"HeaderLengthBeyondTheFile",
       bytes(file_with("{}", 0, 4096)),
       {"header length 4096 exceeds the file (2 bytes follow the 8-byte length)"}},
      {"HeaderLengthAllOnes",
       bytes(file_with("{}", 0, ~uint64_t{0})),
       {"header length 18446744073709551615 is larger than the 100000000-byte limit"}},
      {"HeaderOver100MB",
       [](const fs::path& dir) { return sparse_file(dir, 150'000'000, 150'000'008); },
       {"header length 150000000 is larger than the 100000000-byte limit",
        "a corrupt or non-safetensors file"}},
      {"HeaderNotJson", bytes(file_with("this is not json", 0)), {"the header is not valid JSON"}},
      {"HeaderEmpty", bytes(file_with("", 0)), {"the header is not valid JSON"}},
      {"HeaderIsAnArray",
       bytes(file_with("[1, 2, 3]", 0)),
       {"the header is not a JSON object (it is array)"}},
      {"HeaderDeeplyNested",
       bytes(file_with(deep_nesting(200000), 0)),
       {"tensor 't': the header entry must be an object"}},
      {"EntryNotAnObject",
       bytes(file_with(R"({"w": 5})", 0)),
       {"tensor 'w': the header entry must be an object with dtype, shape and data_offsets"}},
      {"UnknownDtype",
       bytes(file_with(R"({"w": {"dtype": "F4", "shape": [2], "data_offsets": [0, 1]}})", 1)),
       {"tensor 'w': unknown dtype 'F4' (known: F32, F16, BF16"}},
      {"DtypeNotAString",
       bytes(file_with(R"({"w": {"dtype": 7, "shape": [2], "data_offsets": [0, 8]}})", 8)),
       {"tensor 'w': \"dtype\" must be a string, not 7"}},
      {"MissingShape",
       bytes(file_with(R"({"w": {"dtype": "F32", "data_offsets": [0, 8]}})", 8)),
       {"tensor 'w': missing \"shape\""}},
      {"NegativeShape",
       bytes(file_with(R"({"w": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}})", 8)),
       {"tensor 'w': shape entry 0 is -2; shape entries must be non-negative integers"}},
      {"FractionalShape",
       bytes(file_with(R"({"w": {"dtype": "F32", "shape": [2.5], "data_offsets": [0, 8]}})", 8)),
       {"tensor 'w': shape entry 0 is 2.5"}},
      {"ShapeOverflowsInt64",
       bytes(file_with(
           R"({"w": {"dtype": "F32", "shape": [4294967296, 4294967296], "data_offsets": [0, 8]}})",
           8)),
       {"tensor 'w': shape [4294967296, 4294967296] overflows"}},
      {"SizeNotDtypeTimesShape",
       bytes(file_with(R"({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}})", 8)),
       {"tensor 'w': data_offsets [0, 8] hold 8 bytes, but shape [3] of F32 needs 3 x 4 = 12"}},
      {"OffsetsBeyondTheData",
       bytes(file_with(R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}})", 8)),
       {"tensor 'w': data_offsets [8, 16] reach beyond the data buffer (8 bytes)"}},
      {"OffsetsEndBeforeBegin",
       bytes(file_with(R"({"w": {"dtype": "F32", "shape": [0], "data_offsets": [8, 0]}})", 8)),
       {"tensor 'w': data_offsets [8, 0]: end is before begin"}},
      {"OffsetsNegative",
       bytes(file_with(R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [-8, 0]}})", 8)),
       {"tensor 'w': \"data_offsets\" must be [begin, end] with non-negative integers"}},
      {"OffsetsWrongArity",
       bytes(file_with(R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0]}})", 8)),
       {"\"data_offsets\" must be [begin, end]"}},
      {"OverlappingTensors",
       bytes(file_with(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},)"
                       R"( "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})",
                       16)),
       {"tensors 'a' (bytes [0, 8)) and 'b' (bytes [4, 12)) overlap"}},
      {"DuplicateTensorNames",
       bytes(file_with(R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},)"
                       R"( "w": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}})",
                       16)),
       {"duplicate key 'w' in the header"}},
      {"DuplicateKeyInsideAnEntry",
       bytes(file_with(R"({"w": {"dtype": "F32", "dtype": "F16", "shape": [2], "data_offsets": )"
                       R"([0, 8]}})",
                       8)),
       {"duplicate key 'dtype' in the header entry 'w'"}},
      {"MetadataNotStrings",
       bytes(file_with(R"({"__metadata__": {"format": 1}})", 0)),
       {"\"__metadata__\" entry 'format' must be a string, not 1"}},
      {"NotARegularFile",
       [](const fs::path& dir) {
         fs::create_directory(dir / "model.safetensors");
         return dir / "model.safetensors";
       },
       {"not a regular file"}},
      {"MissingFile",
       [](const fs::path& dir) { return dir / "absent.safetensors"; },
       {"absent.safetensors: cannot open: No such file or directory"}},
  };
  return kRows;
}

class SafetensorsRowTest : public ::testing::TestWithParam<SafetensorsRow> {};

TEST_P(SafetensorsRowTest, IsRefusedNamingTheFileAndNothingChanges) {
  const SafetensorsRow& row = GetParam();
  ScratchDir dir;
  const fs::path file = row.make(dir.path());
  const DirSnapshot before = snapshot_dir(dir.path());
  std::optional<host::SafetensorsFile> made;
  try {
    made.emplace(host::SafetensorsFile::open(file));
    ADD_FAILURE() << "accepted";
  } catch (const host::Error& e) {
    expect_message(e.what(), row.message);
    EXPECT_THAT(e.what(), ::testing::StartsWith("safetensors file " + file.string() + ": "));
  }
  EXPECT_FALSE(made.has_value());
  EXPECT_EQ(snapshot_dir(dir.path()), before);
}

INSTANTIATE_TEST_SUITE_P(Safetensors, SafetensorsRowTest, ::testing::ValuesIn(rows()), RowName());

// The writer never leaves a half-written file: a failed write (an invalid
// tensor) leaves the previous file byte for byte, and no temporary behind.
TEST(SafetensorsWriterRow, AFailedWriteLeavesThePreviousFileAndNoTemporary) {
  ScratchDir dir;
  const fs::path file = dir.path() / "model.safetensors";
  const std::vector<float> two = {1.0f, 2.0f};
  host::write_safetensors(file, {host::NamedTensor::f32("w", {2}, two)});
  const DirSnapshot before = snapshot_dir(dir.path());
  host::NamedTensor bad = host::NamedTensor::f32("v", {3}, two);  // 2 values for shape [3]
  try {
    host::write_safetensors(file, {host::NamedTensor::f32("w", {2}, two), bad});
    ADD_FAILURE() << "accepted";
  } catch (const host::Error& e) {
    EXPECT_THAT(e.what(), ::testing::HasSubstr("tensor 'v' (F32 [3]) needs 12 bytes, has 8"));
  }
  EXPECT_EQ(snapshot_dir(dir.path()), before);
  EXPECT_EQ(host::SafetensorsFile::open(file).tensors().size(), 1u);
}

}  // namespace
}  // namespace kvq::bad_input
