// The machine's own memory bandwidth, measured in-process so a benchmark can
// put kernel throughput next to what the memory system delivers in the same
// run (on a shared machine the idle-machine figures do not apply).
#pragma once

#include <cstddef>
#include <string>

namespace kvq::host {

// The instruction set of the read loop. The attention kernels are compared
// with what their own SIMD level can stream, so the loop is built for that
// level (a baseline-ISA loop reads less per instruction and understates the
// bandwidth a wider kernel can reach).
enum class ReadIsa { kBaseline, kAvx2, kAvx512 };
const char* read_isa_name(ReadIsa isa);
// The loop for a plugin's reported SIMD level ("avx512", "avx2", "portable"),
// narrowed to what this CPU runs.
ReadIsa read_isa_for(const std::string& simd_level);

struct Bandwidth {
  double read = 0.0;   // bytes/s streamed by a pure read (sum) over the buffer
  double triad = 0.0;  // bytes/s of a STREAM triad a = b + s*c (3 arrays, 2 read + 1 write)
};

// Best of `repeats` passes with `threads` threads over `bytes` in total
// (the read buffer; the triad's three arrays together). Pages are touched by
// the thread that later reads them, before timing.
Bandwidth measure_bandwidth(int threads, size_t bytes, int repeats,
                            ReadIsa isa = ReadIsa::kBaseline);

}  // namespace kvq::host
