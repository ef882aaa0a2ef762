// Judges an attention output against a float64 expectation, the same way for
// the numeric layer and the golden vectors.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace kvq::conform {

struct Tolerance {
  double atol = 0.0;
  double rtol = 0.0;
  double max_nmse = 0.0;  // < 0: no NMSE limit
};

struct Verdict {
  bool ok = false;
  std::string detail;  // the metrics, and what broke when !ok
};

// Fails on any non-finite element, NMSE above the limit, or any element
// outside atol + rtol * |expected|. `shape` only serves to name the worst
// element.
Verdict judge_output(const std::vector<double>& actual, const std::vector<double>& expected,
                     const std::vector<int64_t>& shape, const Tolerance& tolerance);

// "1.23e-05": short numbers for report lines.
std::string short_number(double value);
// "0x7f": a byte for report lines.
std::string hex_byte(unsigned char b);

}  // namespace kvq::conform
