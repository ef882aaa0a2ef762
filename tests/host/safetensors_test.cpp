// The safetensors reader and writer: every malformed input the reader must
// refuse (bytes crafted here, one test each, checking that the message names
// the file and the problem), gaps, metadata, and the writer/reader round trip.
#include "kvq_files/safetensors.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>

#include "kvq_files/errors.hpp"
#include "test_support.hpp"

namespace kvq::host {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using testing::ScratchDir;

// 8-byte little-endian length, the header text, then the data bytes.
std::string file_bytes(uint64_t header_length, const std::string& header,
                       const std::string& data = "") {
  std::string out;
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((header_length >> (8 * i)) & 0xFF));
  return out + header + data;
}
std::string file_bytes(const std::string& header, const std::string& data = "") {
  return file_bytes(header.size(), header, data);
}

class SafetensorsTest : public ::testing::Test {
 protected:
  std::filesystem::path write(const std::string& bytes) {
    return dir_.write("t.safetensors", bytes);
  }

  // The reader's refusal of `bytes`; fails the test when it opens.
  std::string refusal(const std::string& bytes) {
    const auto path = write(bytes);
    try {
      SafetensorsFile::open(path);
    } catch (const Error& e) {
      const std::string message = e.what();
      EXPECT_THAT(message, HasSubstr(path.string())) << "the message must name the file";
      return message;
    }
    ADD_FAILURE() << "the reader accepted a malformed file";
    return "";
  }

  ScratchDir dir_;
};

TEST_F(SafetensorsTest, RefusesAFileShorterThanTheLength) {
  EXPECT_THAT(refusal(std::string("\x01\x00\x00", 3)),
              AllOf(HasSubstr("has 3 bytes"), HasSubstr("8-byte header length")));
  EXPECT_THAT(refusal(""), HasSubstr("has 0 bytes"));
}

TEST_F(SafetensorsTest, RefusesAHeaderLengthBeyondTheFile) {
  EXPECT_THAT(refusal(file_bytes(100, "{}")),
              AllOf(HasSubstr("header length 100 exceeds the file"), HasSubstr("2 bytes follow")));
}

TEST_F(SafetensorsTest, RefusesAnAbsurdHeaderLength) {
  EXPECT_THAT(refusal(file_bytes(200'000'000, "{}")),
              AllOf(HasSubstr("header length 200000000"), HasSubstr("100000000-byte limit")));
  EXPECT_THAT(refusal(file_bytes(~uint64_t{0}, "{}")), HasSubstr("100000000-byte limit"));
}

TEST_F(SafetensorsTest, RefusesAHeaderThatIsNotJson) {
  EXPECT_THAT(refusal(file_bytes("{\"a\": {\"dtype\": ")),
              HasSubstr("the header is not valid JSON"));
  EXPECT_THAT(refusal(file_bytes(std::string(8, '\0'))), HasSubstr("not valid JSON"));
}

TEST_F(SafetensorsTest, RefusesAHeaderThatIsNotAnObject) {
  EXPECT_THAT(refusal(file_bytes("[1, 2]  ")),
              HasSubstr("the header is not a JSON object (it is array)"));
}

TEST_F(SafetensorsTest, RefusesAnUnknownDtype) {
  EXPECT_THAT(
      refusal(file_bytes(R"({"w": {"dtype": "Q4", "shape": [2], "data_offsets": [0, 1]}})", "xx")),
      AllOf(HasSubstr("tensor 'w'"), HasSubstr("unknown dtype 'Q4'"), HasSubstr("F8_E4M3")));
  EXPECT_THAT(
      refusal(file_bytes(R"({"w": {"dtype": "BOOL", "shape": [1], "data_offsets": [0, 1]}})", "x")),
      HasSubstr("unknown dtype 'BOOL'"));
}

TEST_F(SafetensorsTest, RefusesANegativeShapeEntry) {
  EXPECT_THAT(
      refusal(file_bytes(R"({"w": {"dtype": "F32", "shape": [2, -3], "data_offsets": [0, 0]}})")),
      AllOf(HasSubstr("tensor 'w'"), HasSubstr("shape entry 1 is -3"),
            HasSubstr("non-negative integers")));
  EXPECT_THAT(
      refusal(file_bytes(R"({"w": {"dtype": "F32", "shape": [1.5], "data_offsets": [0, 0]}})")),
      HasSubstr("shape entry 0 is 1.5"));
}

TEST_F(SafetensorsTest, RefusesAnOverflowingShape) {
  // 2^32 * 2^32 elements: the element count does not fit in 64 bits.
  EXPECT_THAT(
      refusal(file_bytes(
          R"({"w": {"dtype": "U8", "shape": [4294967296, 4294967296], "data_offsets": [0, 0]}})")),
      AllOf(HasSubstr("tensor 'w'"), HasSubstr("overflows"), HasSubstr("element count")));
  // 2^62 elements fit, 2^62 x 4 bytes do not.
  EXPECT_THAT(
      refusal(file_bytes(
          R"({"w": {"dtype": "F32", "shape": [4611686018427387904], "data_offsets": [0, 0]}})")),
      AllOf(HasSubstr("overflows"), HasSubstr("byte count")));
  // A dimension above 2^63 - 1.
  EXPECT_THAT(
      refusal(file_bytes(
          R"({"w": {"dtype": "U8", "shape": [18446744073709551615], "data_offsets": [0, 0]}})")),
      HasSubstr("shape entry 0 (18446744073709551615) overflows"));
}

TEST_F(SafetensorsTest, RefusesEndBeforeBegin) {
  EXPECT_THAT(
      refusal(
          file_bytes(R"({"w": {"dtype": "U8", "shape": [2], "data_offsets": [4, 2]}})", "abcd")),
      AllOf(HasSubstr("tensor 'w'"), HasSubstr("data_offsets [4, 2]: end is before begin")));
}

TEST_F(SafetensorsTest, RefusesOffsetsBeyondTheDataBuffer) {
  EXPECT_THAT(refusal(file_bytes(R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}})",
                                 "1234")),
              AllOf(HasSubstr("tensor 'w'"), HasSubstr("beyond the data buffer (4 bytes)")));
}

TEST_F(SafetensorsTest, RefusesASizeThatIsNotNumelTimesDtypeSize) {
  EXPECT_THAT(
      refusal(file_bytes(R"({"w": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 12]}})",
                         std::string(24, 'x'))),
      AllOf(HasSubstr("tensor 'w'"), HasSubstr("hold 12 bytes"),
            HasSubstr("shape [2, 3] of F32 needs 6 x 4 = 24 bytes")));
}

TEST_F(SafetensorsTest, RefusesOverlappingTensors) {
  EXPECT_THAT(refusal(file_bytes(R"({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
                                     "b": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}})",
                                 std::string(16, 'x'))),
              AllOf(HasSubstr("tensors 'a' (bytes [0, 16)) and 'b' (bytes [8, 16)) overlap")));
}

TEST_F(SafetensorsTest, RefusesDuplicateTensorNames) {
  // nlohmann::json would keep the second entry silently.
  EXPECT_THAT(refusal(file_bytes(R"({"w": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]},
                                     "w": {"dtype": "U8", "shape": [1], "data_offsets": [1, 2]}})",
                                 "ab")),
              HasSubstr("duplicate key 'w' in the header"));
  EXPECT_THAT(
      refusal(file_bytes(
          R"({"w": {"dtype": "U8", "dtype": "I8", "shape": [1], "data_offsets": [0, 1]}})", "a")),
      HasSubstr("duplicate key 'dtype' in the header entry 'w'"));
}

TEST_F(SafetensorsTest, RefusesMalformedEntries) {
  EXPECT_THAT(refusal(file_bytes(R"({"w": [1, 2]})")),
              AllOf(HasSubstr("tensor 'w'"), HasSubstr("must be an object")));
  EXPECT_THAT(refusal(file_bytes(R"({"w": {"dtype": "U8", "shape": [1]}})")),
              HasSubstr("missing \"data_offsets\""));
  EXPECT_THAT(refusal(file_bytes(R"({"w": {"dtype": "U8", "shape": [1], "data_offsets": [0]}})")),
              HasSubstr("\"data_offsets\" must be [begin, end]"));
  EXPECT_THAT(refusal(file_bytes(R"({"__metadata__": {"format": 1}})")),
              HasSubstr("\"__metadata__\" entry 'format' must be a string"));
}

TEST_F(SafetensorsTest, AcceptsGapsEmptyTensorsAndMetadata) {
  const auto path = write(file_bytes(
      R"({"__metadata__": {"format": "pt"},
          "b": {"dtype": "U8", "shape": [2], "data_offsets": [6, 8]},
          "a": {"dtype": "I8", "shape": [2], "data_offsets": [0, 2]},
          "e": {"dtype": "F32", "shape": [0, 3], "data_offsets": [1, 1]}})",
      "\x01\x02gaps\x05\x06"));
  const SafetensorsFile file = SafetensorsFile::open(path);
  ASSERT_EQ(file.tensors().size(), 3u);
  EXPECT_EQ(file.metadata().at("format"), "pt");
  EXPECT_EQ(file.tensors()[0].name, "a");  // sorted by name
  const SafetensorsTensor* b = file.find("b");
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(static_cast<int>(b->data[0]), 5);
  EXPECT_EQ(b->dtype, KVQ_DTYPE_U8);
  EXPECT_EQ(file.find("e")->num_elements(), 0);
  EXPECT_EQ(file.find("missing"), nullptr);
}

TEST_F(SafetensorsTest, WriterAndReaderRoundTrip) {
  const std::vector<float> values = {1.5f, -2.0f, 3.25f, 0.0f, 1e-3f, 7.0f};
  std::vector<NamedTensor> tensors;
  tensors.push_back(NamedTensor::f32("layer.scale", {2, 3}, values));
  const float scalar = 0.125f;
  tensors.push_back(NamedTensor::f32("layer.k_scale", {}, std::span(&scalar, 1)));
  NamedTensor bytes{
      "layer.int8", KVQ_DTYPE_I8, {3}, {std::byte{0x80}, std::byte{0}, std::byte{0x7F}}};
  tensors.push_back(bytes);
  NamedTensor wide{"layer.i64", KVQ_DTYPE_I64, {1}, std::vector<std::byte>(8, std::byte{0})};
  wide.bytes[0] = std::byte{42};
  tensors.push_back(wide);
  tensors.push_back(NamedTensor{"empty", KVQ_DTYPE_BF16, {0}, {}});
  const auto path = dir_.path() / "round.safetensors";
  write_safetensors(path, tensors, {{"format", "pt"}});

  const SafetensorsFile file = SafetensorsFile::open(path);
  EXPECT_EQ((8 + file.header_size()) % 8, 0u) << "the header is padded to 8 bytes";
  EXPECT_EQ(file.metadata().at("format"), "pt");
  ASSERT_EQ(file.tensors().size(), 5u);
  const SafetensorsTensor* scale = file.find("layer.scale");
  ASSERT_NE(scale, nullptr);
  EXPECT_EQ(scale->dtype, KVQ_DTYPE_F32);
  EXPECT_EQ(scale->shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(reinterpret_cast<uintptr_t>(scale->data) % 4, 0u);
  std::vector<float> read(6);
  std::memcpy(read.data(), scale->data, 24);
  EXPECT_EQ(read, values);
  const kvq_tensor view = scale->view();
  EXPECT_EQ(view.ndim, 2);
  EXPECT_EQ(view.strides[0], 3);
  EXPECT_EQ(view.strides[1], 1);
  EXPECT_EQ(view.device_type, KVQ_DEVICE_CPU);
  EXPECT_EQ(view.data, scale->data);

  const SafetensorsTensor* k = file.find("layer.k_scale");
  ASSERT_NE(k, nullptr);
  EXPECT_TRUE(k->shape.empty());
  EXPECT_EQ(k->num_elements(), 1);
  float k_value = 0.0f;
  std::memcpy(&k_value, k->data, 4);
  EXPECT_EQ(k_value, scalar);
  EXPECT_EQ(static_cast<int8_t>(file.find("layer.int8")->data[0]), -128);
  EXPECT_EQ(static_cast<int>(file.find("layer.i64")->data[0]), 42);
  EXPECT_EQ(file.find("empty")->size_bytes(), 0u);

  // The bytes are exactly the writer's, and a second write is identical.
  EXPECT_EQ(testing::read_text(path), safetensors_bytes(tensors, {{"format", "pt"}}));
}

TEST_F(SafetensorsTest, WriterRefusesInconsistentTensors) {
  EXPECT_THROW(safetensors_bytes({NamedTensor{"w", KVQ_DTYPE_F32, {2}, std::vector<std::byte>(4)}}),
               Error);
  EXPECT_THROW(safetensors_bytes({NamedTensor{"w", KVQ_DTYPE_U8, {1}, std::vector<std::byte>(1)},
                                  NamedTensor{"w", KVQ_DTYPE_U8, {1}, std::vector<std::byte>(1)}}),
               Error);
}

}  // namespace
}  // namespace kvq::host
