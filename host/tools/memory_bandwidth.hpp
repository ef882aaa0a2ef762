// The machine's own memory bandwidth, measured in-process so a benchmark can
// put kernel throughput next to what the memory system delivers in the same
// run (on a shared machine the idle-machine figures do not apply).
#pragma once

#include <cstddef>

namespace kvq::host {

struct Bandwidth {
  double read = 0.0;   // bytes/s streamed by a pure read (sum) over the buffer
  double triad = 0.0;  // bytes/s of a STREAM triad a = b + s*c (3 arrays, 2 read + 1 write)
};

// Best of `repeats` passes with `threads` threads over `bytes` in total
// (the read buffer; the triad's three arrays together). Pages are touched by
// the thread that later reads them, before timing.
Bandwidth measure_bandwidth(int threads, size_t bytes, int repeats);

}  // namespace kvq::host
