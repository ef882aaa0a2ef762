// The attention core's run phase (attention_core.hpp): every task's partial
// results, by the block-streaming decode kernel (decode tasks over a paged
// cache the kernels have a codec for) or the tile kernels.
#include "attention_core.hpp"
#include "attention_kernels.hpp"
#include "kvq_sdk/dtype.hpp"
#include "kvq_sdk/plugin.hpp"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

namespace kvq::sdk {

namespace kernels {
bool quantize_query_i16(const float* q, int64_t rows, int64_t d, int16_t* out, float* scale) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* x = q + r * d;
    float mx = 0.0f;
    for (int64_t c = 0; c < d; ++c) {
      if (!std::isfinite(x[c])) return false;
      mx = std::max(mx, std::fabs(x[c]));
    }
    // Below this the scale (and the products with it) would be subnormal.
    if (mx != 0.0f && mx < 1e-30f) return false;
    const float s = mx / 32767.0f;
    scale[r] = s;
    int16_t* hi = out + 2 * r * d;
    int16_t* lo = hi + d;
    for (int64_t c = 0; c < d; ++c) {
      if (s == 0.0f) {
        hi[c] = lo[c] = 0;
        continue;
      }
      // hi carries ~15 bits, lo the residual's next 15: about 2^-31 of the
      // row max, finer than the fp32 dot product's own rounding.
      const double t = static_cast<double>(x[c]) / s;
      const double h = std::clamp(std::nearbyint(t), -32767.0, 32767.0);
      const double l = std::clamp(std::nearbyint((t - h) * 32768.0), -16384.0, 16384.0);
      hi[c] = static_cast<int16_t>(h);
      lo[c] = static_cast<int16_t>(l);
    }
  }
  return true;
}
bool channels_symmetric(const ChannelVectors& c, int64_t d, int64_t dv) {
  const auto ok = [](const float* off, const float* sc, int64_t n) {
    for (int64_t i = 0; i < n; ++i) {
      const float a = std::fabs(sc[i]);
      if (off[i] != 0.0f || !std::isfinite(a) || (a != 0.0f && a < 0x1p-50f)) return false;
    }
    return true;
  };
  return c.k_offset != nullptr && ok(c.k_offset, c.k_scale, d) && ok(c.v_offset, c.v_scale, dv);
}
}  // namespace kernels

namespace attention {

void run(const LayerConfig& c, const ForwardBatch& b, const KvSource& kv, const AttentionOptions& o,
         const Plan& plan, Partials& partials) {
  const int64_t hq = c.num_heads, hkv = c.num_kv_heads, group = hq / hkv;
  const int64_t d = c.head_size, dv = c.head_size_v;
  const float scale = o.softmax_scale;
  const std::vector<WorkItem>& items = plan.items;
  const std::vector<Task>& tasks = plan.tasks;
  constexpr int64_t kKeyTile = kernels::kKeyTile;
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();

  const bool has_alibi = b.alibi_slopes.present();
  const kernels::KernelSet& kernel = kernels::active_kernels();
  const int64_t row_bytes = b.cache.geometry().row_bytes;

  // Per-thread state of one KV head of a task.
  struct HeadState {
    kernels::ItemRows rows;
    std::vector<float> q, slopes, q16_scale;
    std::vector<int16_t> q16;
    std::vector<int64_t> pos;
    bool direct = false;
    const unsigned char* krows[2][kKeyTile];
    const unsigned char* vrows[2][kKeyTile];
  };

  // Decode tasks over a paged cache stream each cache block once for all KV
  // heads (kernel.decode), when the kernels have a codec for the format. The
  // kernel indexes the cache and the block table's host copy directly, so a
  // cache or table in device memory (ABI 1.1; empty block_table) keeps the
  // source's own accessors.
  PagedRows paged;
  const bool stream_decode = !o.quantize_p_e4m3 && !b.cache.keys_only() &&
                             b.cache.host_accessible() && !b.block_table.empty() &&
                             kv.paged_rows(&paged);
  std::vector<float> k_scales, v_scales;
  if (stream_decode)
    for (int64_t g = 0; g < hkv; ++g) {
      k_scales.push_back(scale_for(*paged.k_scales, g));
      v_scales.push_back(scale_for(*paged.v_scales, g));
    }
  const auto run_decode = [&](const Task& task, std::vector<float>& q_rows,
                              std::vector<int64_t>& row0, std::vector<float>& scratch) {
    const WorkItem& w0 = items[task.first];
    if (!stream_decode || task.heads != hkv || w0.q_end - w0.q_begin != 1) return false;
    const SequenceSlice& q = b.seqs[static_cast<size_t>(w0.seq)];
    const int64_t token = q.query_start + w0.q_begin;
    const int64_t es = dtype_size(b.query.dtype()), st = b.query.stride(2);
    q_rows.resize(static_cast<size_t>(hq * d + hq));  // queries, then slopes
    float* slopes = q_rows.data() + hq * d;
    for (int64_t h = 0; h < hq; ++h) {
      const unsigned char* src = b.query.at({token, h, 0});
      const float qs = scale * scale_for(o.query_scales, h);
      for (int64_t c2 = 0; c2 < d; ++c2)
        q_rows[static_cast<size_t>(h * d + c2)] =
            load_float(b.query.dtype(), src + c2 * st * es) * qs;
      if (has_alibi) std::memcpy(&slopes[h], b.alibi_slopes.at({h}), 4);
    }
    row0.resize(static_cast<size_t>(hkv));
    for (int64_t g = 0; g < hkv; ++g)
      row0[static_cast<size_t>(g)] =
          items[task.first + static_cast<size_t>(g) * task.stride].out_slot;
    const kvq_cache_geometry& geo = b.cache.geometry();
    kernels::DecodeTask t;
    t.heads = hkv;
    t.group = group;
    t.d = d;
    t.dv = dv;
    t.q = q_rows.data();
    t.slopes = has_alibi ? slopes : nullptr;
    t.alibi_origin = q.context_len;
    t.softcap = o.softcap;
    t.k_begin = w0.k_begin;
    t.k_end = w0.k_end;
    t.cache = b.cache.base();
    t.blocks = &b.block_table[static_cast<size_t>(w0.seq * b.max_blocks)];
    t.block_size = geo.block_size;
    t.row_bytes = geo.row_bytes;
    t.format = paged.format;
    t.k_scales = k_scales.data();
    t.v_scales = v_scales.data();
    t.channels = paged.channels;
    t.m = partials.maxes.data();
    t.l = partials.sums.data();
    t.acc = partials.acc.data();
    t.row0 = row0.data();
    return kernel.decode(t, scratch);
  };

#pragma omp parallel num_threads(o.num_threads)
  {
    std::vector<HeadState> heads(static_cast<size_t>(hkv));
    std::vector<float> kbuf, vbuf;
    std::vector<float> scratch(static_cast<size_t>(kernels::scratch_floats(d, dv)));
    std::vector<float> decode_q, decode_scratch;
    std::vector<int64_t> decode_rows;
#pragma omp for schedule(dynamic, 1)
    for (size_t ti = 0; ti < tasks.size(); ++ti) {
      const Task& task = tasks[ti];
      if (run_decode(task, decode_q, decode_rows, decode_scratch)) continue;
      for (int64_t hh = 0; hh < task.heads; ++hh) {
        const WorkItem& w = items[task.first + static_cast<size_t>(hh) * task.stride];
        const SequenceSlice& q = b.seqs[static_cast<size_t>(w.seq)];
        HeadState& hs = heads[static_cast<size_t>(hh)];
        const int64_t rows = (w.q_end - w.q_begin) * group;
        hs.q.resize(static_cast<size_t>(rows * d));
        hs.pos.resize(static_cast<size_t>(rows));
        hs.slopes.resize(has_alibi ? static_cast<size_t>(rows) : 0);
        for (int64_t r = 0; r < rows; ++r) {
          const int64_t token = q.query_start + w.q_begin + r / group;
          const int64_t h = w.kv_head * group + r % group;
          const unsigned char* src = b.query.at({token, h, 0});
          const int64_t es = dtype_size(b.query.dtype()), st = b.query.stride(2);
          const float qs = scale * scale_for(o.query_scales, h);
          for (int64_t c2 = 0; c2 < d; ++c2)
            hs.q[static_cast<size_t>(r * d + c2)] =
                load_float(b.query.dtype(), src + c2 * st * es) * qs;
          hs.pos[static_cast<size_t>(r)] = q.context_len + w.q_begin + r / group;
          if (has_alibi) std::memcpy(&hs.slopes[static_cast<size_t>(r)], b.alibi_slopes.at({h}), 4);
        }
        kernels::ItemRows& ir = hs.rows;
        ir.rows = rows;
        ir.d = d;
        ir.dv = dv;
        ir.q = hs.q.data();
        ir.pos = hs.pos.data();
        ir.slopes = has_alibi ? hs.slopes.data() : nullptr;
        ir.alibi_origin = q.context_len;
        ir.window = o.sliding_window;
        ir.softcap = o.softcap;
        ir.quantize_p = o.quantize_p_e4m3;
        ir.m = &partials.maxes[static_cast<size_t>(w.out_slot)];
        ir.l = &partials.sums[static_cast<size_t>(w.out_slot)];
        ir.acc = &partials.acc[static_cast<size_t>(w.out_slot * dv)];
        std::fill(ir.m, ir.m + rows, kNegInf);
        std::fill(ir.l, ir.l + rows, 0.0f);
        std::fill(ir.acc, ir.acc + rows * dv, 0.0f);
        // Direct sources hand over their rows; others decode float tiles.
        hs.direct = kv.direct(w.kv_head, &ir.format, &ir.k_scale, &ir.v_scale);
        ir.channels =
            hs.direct && ir.format.per_channel ? kv.channels(w.kv_head) : ChannelVectors{};
        ir.channels_symmetric =
            ir.format.per_channel && kernels::channels_symmetric(ir.channels, d, dv);
        // Integer Q·K (int8 per-token-head rows): the query split once per item.
        // Only for decode-sized items: more rows than a register block read a
        // transposed float tile instead (attention_kernel_impl.inc, run).
        ir.q16 = nullptr;
        ir.q16_scale = nullptr;
        if (kernel.int16_query && rows <= kernels::kRowBlock && hs.direct &&
            ir.format.encoding == RowEncoding::kI8 && ir.format.per_token_head &&
            !ir.format.per_channel && ir.format.round_to == 0 && d % 32 == 0 &&
            d <= kernels::kMaxInt16QueryD) {
          hs.q16.resize(static_cast<size_t>(2 * rows * d));
          hs.q16_scale.resize(static_cast<size_t>(rows));
          if (kernels::quantize_query_i16(hs.q.data(), rows, d, hs.q16.data(),
                                          hs.q16_scale.data())) {
            ir.q16 = hs.q16.data();
            ir.q16_scale = hs.q16_scale.data();
          }
        }
        if (hs.direct && w.k_begin < w.k_end)
          kv.rows(w.seq, w.k_begin, std::min(kKeyTile, w.k_end - w.k_begin), w.kv_head, hs.krows[0],
                  hs.vrows[0]);
      }
      // Every head of a task has the same key segment.
      const WorkItem& w0 = items[task.first];
      for (int64_t t0 = w0.k_begin; t0 < w0.k_end; t0 += kKeyTile) {
        const int64_t n = std::min(kKeyTile, w0.k_end - t0);
        const int64_t t1 = t0 + kKeyTile,
                      n1 = std::max<int64_t>(0, std::min(kKeyTile, w0.k_end - t1));
        const size_t cur = static_cast<size_t>((t0 - w0.k_begin) / kKeyTile % 2);
        for (int64_t hh = 0; hh < task.heads; ++hh) {
          const WorkItem& w = items[task.first + static_cast<size_t>(hh) * task.stride];
          HeadState& hs = heads[static_cast<size_t>(hh)];
          kernels::KeyTile tile;
          tile.first = t0;
          tile.n = n;
          if (hs.direct) {
            // This tile's row pointers came with the previous one (double
            // buffered), so the kernel can prefetch the next tile's rows.
            if (n1 > 0) kv.rows(w.seq, t1, n1, w.kv_head, hs.krows[1 - cur], hs.vrows[1 - cur]);
            tile.k = hs.krows[cur];
            tile.v = hs.vrows[cur];
            tile.next_n = n1;
            tile.next_k = hs.krows[1 - cur];
            tile.next_v = hs.vrows[1 - cur];
            tile.k_bytes = tile.v_bytes = row_bytes;
          } else {
            kbuf.resize(static_cast<size_t>(kKeyTile * d));
            vbuf.resize(static_cast<size_t>(kKeyTile * dv));
            kv.load(w.seq, t0, n, w.kv_head, kbuf.data(), vbuf.data());
            for (int64_t i = 0; i < n; ++i) {
              hs.krows[0][i] =
                  reinterpret_cast<const unsigned char*>(&kbuf[static_cast<size_t>(i * d)]);
              hs.vrows[0][i] =
                  reinterpret_cast<const unsigned char*>(&vbuf[static_cast<size_t>(i * dv)]);
            }
            tile.k = hs.krows[0];
            tile.v = hs.vrows[0];
          }
          kernel.tile(hs.rows, tile, scratch.data());
        }
      }
    }
  }
}

}  // namespace attention
}  // namespace kvq::sdk
