// The SIMT emulator's runtime (see simt_emu.hpp): fibers, rendezvous,
// mma / ldmatrix per the PTX ISA fragment layouts, cp.async groups.
#include "simt_emu.hpp"

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <random>
#include <vector>

#if !defined(__x86_64__)
#error "the SIMT emulator's fiber switch is written for x86-64"
#endif

// Saves callee-saved registers and the stack pointer to *save_sp, loads
// load_sp and returns on that stack (System V x86-64).
extern "C" void kvq_emu_switch(void** save_sp, void* load_sp);
asm(R"(
  .text
  .globl kvq_emu_switch
  .type kvq_emu_switch,@function
kvq_emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size kvq_emu_switch,.-kvq_emu_switch
  .section .note.GNU-stack,"",@progbits
  .text
)");

namespace kvq_emu {
namespace {

constexpr size_t kStackBytes = 256 * 1024;

enum class Wait { kNone, kWarp, kBlock };

struct Copy {
  uint32_t dst;
  const void* src;
};

struct Fiber {
  void* sp = nullptr;
  std::unique_ptr<char[]> stack;
  bool done = false;
  Wait wait = Wait::kNone;
  ThreadIds ids;
  int lane = 0, warp = 0;
  uint64_t ncoll = 0;
  std::vector<std::vector<Copy>> groups;
  std::vector<Copy> open;
};

struct WarpSync {
  int arrived[2] = {0, 0};
  int op[2] = {0, 0};
  unsigned char data[2][32 * kSlot];
  bool decoded[2] = {false, false};  // mma operands decoded (once per collective)
  double a[2][16][16], b[2][16][8];
};

struct Gathered {
  const unsigned char* data;
  WarpSync* warp;
  int buf;
};

struct Globals {
  Options opts;
  std::vector<Fiber> fibers;
  std::vector<WarpSync> warps;
  int block_arrived = 0;
  Fiber* current = nullptr;
  void* sched_sp = nullptr;
  const std::function<void()>* body = nullptr;
  std::vector<unsigned char> smem;
  std::vector<std::pair<const unsigned char*, size_t>> regions;
  std::mt19937 rng{12345};
};
Globals& g() {
  static Globals s;
  return s;
}

void yield() {
  Fiber* f = g().current;
  kvq_emu_switch(&f->sp, g().sched_sp);
}

void fiber_entry() {
  Fiber* f = g().current;
  (*g().body)();
  f->done = true;
  kvq_emu_switch(&f->sp, g().sched_sp);
  std::abort();  // never resumed
}

void apply(const Copy& c) {
  std::memcpy(g().smem.data() + c.dst, c.src, 16);
}

int live_threads() {
  int n = 0;
  for (const Fiber& f : g().fibers) n += !f.done;
  return n;
}

// Releases a barrier whose waiters are every live thread (threads that
// exited do not count, as on the GPU).
void maybe_release_block() {
  Globals& s = g();
  if (s.block_arrived > 0 && s.block_arrived == live_threads()) {
    s.block_arrived = 0;
    for (Fiber& f : s.fibers)
      if (f.wait == Wait::kBlock) f.wait = Wait::kNone;
  }
}

void run_block(Dim3 block_idx, Dim3 grid, Dim3 block) {
  Globals& s = g();
  const size_t n = static_cast<size_t>(block.x) * block.y * block.z;
  if (s.fibers.size() < n) s.fibers.resize(n);
  s.warps.assign((n + 31) / 32, WarpSync{});
  s.block_arrived = 0;
  for (size_t i = 0; i < n; ++i) {
    Fiber& f = s.fibers[i];
    if (!f.stack) f.stack = std::make_unique<char[]>(kStackBytes);
    f.done = false;
    f.wait = Wait::kNone;
    f.ncoll = 0;
    f.groups.clear();
    f.open.clear();
    f.lane = static_cast<int>(i % 32);
    f.warp = static_cast<int>(i / 32);
    f.ids.thread_idx = Dim3{static_cast<unsigned>(i % block.x),
                            static_cast<unsigned>(i / block.x % block.y),
                            static_cast<unsigned>(i / (block.x * block.y))};
    f.ids.block_idx = block_idx;
    f.ids.block_dim = block;
    f.ids.grid_dim = grid;
    auto top = reinterpret_cast<uintptr_t>(f.stack.get() + kStackBytes) & ~uintptr_t{15};
    auto* sp = reinterpret_cast<void**>(top);
    *--sp = nullptr;                                    // keeps rsp % 16 == 8 at entry
    *--sp = reinterpret_cast<void*>(&fiber_entry);      // "return" address
    for (int r = 0; r < 6; ++r) *--sp = nullptr;        // rbp rbx r12-r15
    f.sp = sp;
  }
  for (auto& b : s.smem) b = static_cast<unsigned char>(s.rng());
  size_t remaining = n;
  while (remaining > 0) {
    bool progressed = false;
    for (size_t i = 0; i < n; ++i) {
      Fiber& f = s.fibers[i];
      if (f.done || f.wait != Wait::kNone) continue;
      s.current = &f;
      kvq_emu_switch(&s.sched_sp, f.sp);
      progressed = true;
      if (f.done) {
        --remaining;
        maybe_release_block();
      }
    }
    if (!progressed)
      fail("deadlock: threads wait at a collective or barrier that other threads never reach");
  }
  s.current = nullptr;
}

float half_value(uint32_t reg, int half, bool bf16) {
  const auto bits = static_cast<uint16_t>(half ? reg >> 16 : reg);
  if (bf16) return __uint_as_float(static_cast<uint32_t>(bits) << 16);
  // f16
  const uint32_t sign = (bits & 0x8000u) << 16, exp = (bits >> 10) & 0x1F, mant = bits & 0x3FF;
  if (exp == 0) {
    const float f = static_cast<float>(mant) * 5.9604644775390625e-08f;
    return sign ? -f : f;
  }
  if (exp == 31) return __uint_as_float(sign | 0x7F800000u | (mant << 13));
  return __uint_as_float(sign | ((exp + 112) << 23) | (mant << 13));
}

}  // namespace

Options& options() {
  return g().opts;
}

void fail(const std::string& what) {
  const Fiber* f = g().current;
  if (f != nullptr)
    std::fprintf(stderr, "SIMT emulator: %s (block %u,%u,%u thread %u)\n", what.c_str(),
                 f->ids.block_idx.x, f->ids.block_idx.y, f->ids.block_idx.z, f->ids.thread_idx.x);
  else
    std::fprintf(stderr, "SIMT emulator: %s\n", what.c_str());
  std::abort();
}

void launch(Dim3 grid, Dim3 block, size_t smem_bytes, const std::function<void()>& body) {
  Globals& s = g();
  s.body = &body;
  s.smem.assign(smem_bytes, 0);
  for (unsigned z = 0; z < grid.z; ++z)
    for (unsigned y = 0; y < grid.y; ++y)
      for (unsigned x = 0; x < grid.x; ++x) run_block(Dim3{x, y, z}, grid, block);
  s.body = nullptr;
}

void register_global(const void* p, size_t bytes) {
  g().regions.emplace_back(static_cast<const unsigned char*>(p), bytes);
}
void clear_globals() {
  g().regions.clear();
}

const ThreadIds& ids() {
  return g().current->ids;
}
int lane() {
  return g().current->lane;
}
unsigned char* dynamic_smem() {
  return g().smem.data();
}
uint32_t smem_offset(const void* p) {
  const auto* b = static_cast<const unsigned char*>(p);
  if (b < g().smem.data() || b > g().smem.data() + g().smem.size())
    fail("shared address of a pointer outside the dynamic shared memory");
  return static_cast<uint32_t>(b - g().smem.data());
}

void check_smem(uint32_t addr, size_t bytes, size_t align) {
  if (addr % align != 0) fail("misaligned shared access at " + std::to_string(addr));
  if (addr + bytes > g().smem.size())
    fail("shared access past the end: " + std::to_string(addr) + " + " + std::to_string(bytes) +
         " > " + std::to_string(g().smem.size()));
}

void cp_async16(uint32_t dst, const void* src) {
  check_smem(dst, 16, 16);
  const auto* p = static_cast<const unsigned char*>(src);
  if (reinterpret_cast<uintptr_t>(p) % 16 != 0) fail("cp.async source not 16-byte aligned");
  bool inside = false;
  for (const auto& r : g().regions) inside |= p >= r.first && p + 16 <= r.first + r.second;
  if (!inside) fail("cp.async reads outside the registered global memory");
  if (g().opts.eager_copies)
    apply(Copy{dst, src});
  else
    g().current->open.push_back(Copy{dst, src});
}
void cp_async_commit() {
  Fiber* f = g().current;
  f->groups.push_back(std::move(f->open));
  f->open.clear();
}
void cp_async_wait(int n) {
  Fiber* f = g().current;
  while (static_cast<int>(f->groups.size()) > n) {
    for (const Copy& c : f->groups.front()) apply(c);
    f->groups.erase(f->groups.begin());
  }
}

Gathered gather(int op, const void* in, size_t bytes);

const unsigned char* warp_gather(int op, const void* in, size_t bytes) {
  return gather(op, in, bytes).data;
}

Gathered gather(int op, const void* in, size_t bytes) {
  Globals& s = g();
  Fiber* f = s.current;
  WarpSync& w = s.warps[static_cast<size_t>(f->warp)];
  const int b = static_cast<int>(f->ncoll++ & 1);
  if (w.arrived[b] == 0)
    w.op[b] = op;
  else if (w.op[b] != op)
    fail("lanes of a warp are at different collectives (divergence)");
  std::memcpy(w.data[b] + f->lane * kSlot, in, bytes);
  if (++w.arrived[b] < 32) {
    f->wait = Wait::kWarp;
    yield();
  } else {
    w.arrived[b] = 0;
    w.decoded[b] = false;
    for (Fiber& o : s.fibers)
      if (o.warp == f->warp && o.wait == Wait::kWarp) o.wait = Wait::kNone;
  }
  return Gathered{w.data[b], &w, b};
}

void syncthreads() {
  Globals& s = g();
  ++s.block_arrived;
  s.current->wait = Wait::kBlock;
  maybe_release_block();
  if (s.current->wait == Wait::kBlock) yield();
}

void mma16816(bool bf16, float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
  struct In {
    uint32_t a[4], b[2];
  } in{{a[0], a[1], a[2], a[3]}, {b0, b1}};
  const Gathered gd = gather(bf16 ? 3 : 2, &in, sizeof(in));
  WarpSync& w = *gd.warp;
  const int bi = gd.buf;
  if (!w.decoded[bi]) {
    // PTX ISA, mma.m16n8k16 (.f16 / .bf16): A row-major 16x16, B col 16x8, C 16x8.
    auto get = [&](int l) {
      In x;
      std::memcpy(&x, gd.data + l * kSlot, sizeof(x));
      return x;
    };
    for (int m = 0; m < 16; ++m)
      for (int k = 0; k < 16; ++k) {
        const int l = 4 * (m % 8) + (k % 8) / 2, reg = (m >= 8 ? 1 : 0) + (k >= 8 ? 2 : 0);
        w.a[bi][m][k] = half_value(get(l).a[reg], k % 2, bf16);
      }
    for (int k = 0; k < 16; ++k)
      for (int n = 0; n < 8; ++n) {
        const int l = 4 * n + (k % 8) / 2;
        w.b[bi][k][n] = half_value(get(l).b[k >= 8 ? 1 : 0], k % 2, bf16);
      }
    w.decoded[bi] = true;
  }
  const int me = lane(), gq = me / 4, t = me % 4;
  for (int i = 0; i < 4; ++i) {
    const int m = gq + (i >= 2 ? 8 : 0), n = 2 * t + (i % 2);
    double acc = c[i];
    for (int k = 0; k < 16; ++k) acc += w.a[bi][m][k] * w.b[bi][k][n];
    c[i] = static_cast<float>(acc);
  }
}

void ldmatrix_x4(uint32_t r[4], uint32_t addr, bool trans) {
  const unsigned char* all = warp_gather(trans ? 5 : 4, &addr, 4);
  auto row_addr = [&](int l) {
    uint32_t x;
    std::memcpy(&x, all + l * kSlot, 4);
    check_smem(x, 16, 16);
    return x;
  };
  const int me = lane(), gq = me / 4, t = me % 4;
  for (int i = 0; i < 4; ++i) {
    if (!trans) {  // M_i[row g][cols 2t, 2t+1]
      r[i] = lds<uint32_t>(row_addr(8 * i + gq) + 4 * t);
    } else {  // M_i[rows 2t, 2t+1][col g]
      const uint32_t lo = lds<uint16_t>(row_addr(8 * i + 2 * t) + 2 * gq);
      const uint32_t hi = lds<uint16_t>(row_addr(8 * i + 2 * t + 1) + 2 * gq);
      r[i] = lo | (hi << 16);
    }
  }
}

}  // namespace kvq_emu

unsigned __ballot_sync(unsigned, int pred) {
  const int v = pred != 0;
  const unsigned char* all = ::kvq_emu::warp_gather(6, &v, 4);
  unsigned bits = 0;
  for (int l = 0; l < 32; ++l) {
    int x;
    std::memcpy(&x, all + l * ::kvq_emu::kSlot, 4);
    bits |= static_cast<unsigned>(x != 0) << l;
  }
  return bits;
}
int __reduce_min_sync(unsigned, int v) {
  const unsigned char* all = ::kvq_emu::warp_gather(7, &v, 4);
  int m = v;
  for (int l = 0; l < 32; ++l) {
    int x;
    std::memcpy(&x, all + l * ::kvq_emu::kSlot, 4);
    m = std::min(m, x);
  }
  return m;
}
int __reduce_max_sync(unsigned, int v) {
  const unsigned char* all = ::kvq_emu::warp_gather(8, &v, 4);
  int m = v;
  for (int l = 0; l < 32; ++l) {
    int x;
    std::memcpy(&x, all + l * ::kvq_emu::kSlot, 4);
    m = std::max(m, x);
  }
  return m;
}
