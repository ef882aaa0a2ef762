#include "verdict.hpp"

#include <cstdio>

#include "kvq_ref/reference.hpp"

namespace kvq::conform {

std::string short_number(double value) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3g", value);
  return buf;
}

std::string hex_byte(unsigned char b) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "0x%02x", b);
  return buf;
}

namespace {

std::string index_name(int64_t flat, const std::vector<int64_t>& shape) {
  std::vector<int64_t> idx(shape.size());
  for (size_t i = shape.size(); i-- > 0;) {
    idx[i] = shape[i] > 0 ? flat % shape[i] : 0;
    flat = shape[i] > 0 ? flat / shape[i] : 0;
  }
  std::string out = "[";
  // Two appends, not (const char*) + std::string: GCC 12 -O3 reports a false
  // -Wrestrict on the latter (and -Werror makes it fatal in Release builds).
  for (size_t i = 0; i < idx.size(); ++i) {
    if (i) out += ',';
    out += std::to_string(idx[i]);
  }
  return out + "]";
}

}  // namespace

Verdict judge_output(const std::vector<double>& actual, const std::vector<double>& expected,
                     const std::vector<int64_t>& shape, const Tolerance& tol) {
  const kvq::ref::Comparison c = kvq::ref::compare(actual, expected, tol.atol, tol.rtol);
  Verdict v;
  v.detail = "nmse " + short_number(c.nmse) + ", max |err| " + short_number(c.max_abs_error);
  if (c.non_finite > 0) {
    v.detail += "; " + std::to_string(c.non_finite) + " NaN/Inf elements in the output";
    return v;
  }
  if (tol.max_nmse >= 0 && c.nmse > tol.max_nmse) {
    v.detail += "; nmse above " + short_number(tol.max_nmse);
    return v;
  }
  if (c.violations > 0) {
    const auto w = static_cast<size_t>(c.worst_index);
    v.detail += "; " + std::to_string(c.violations) + " elements outside " +
                short_number(tol.atol) + " + " + short_number(tol.rtol) + "*|ref|, worst at " +
                index_name(c.worst_index, shape) + ": got " + short_number(actual[w]) + ", want " +
                short_number(expected[w]);
    return v;
  }
  v.ok = true;
  return v;
}

}  // namespace kvq::conform
