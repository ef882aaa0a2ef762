#include "triton_test_util.hpp"

#include "kvq_ref/reference.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>

namespace kvq::test::tri {

std::string param_name(const std::string& local) {
  return std::string(kLayerName) + "." + local;
}

CallResult load_scale(Plugin& p, kvq_layer* layer, const std::string& local,
                      const std::vector<float>& values) {
  return load_param(p, layer, param_name(local), std::vector<double>(values.begin(), values.end()));
}

CallResult load_kv_scales(Plugin& p, kvq_layer* layer, float k, float v) {
  for (const auto& [local, value] : {std::pair{"k_scale", k}, std::pair{"v_scale", v}}) {
    const CallResult r = load_scale(p, layer, local, {value});
    if (r.code != 0) return r;
  }
  return process_weights(p, layer);
}

std::vector<float> read_scale(Plugin& p, const kvq_layer* layer, const std::string& local) {
  std::vector<float> out;
  for (double v : read_param(p, layer, param_name(local))) out.push_back(static_cast<float>(v));
  return out;
}

std::vector<float> row_of(const OwnedTensor& t, int64_t token, int64_t head) {
  const kvq_tensor& k = *t.get();
  std::vector<float> out(static_cast<size_t>(k.shape[2]));
  for (int64_t x = 0; x < k.shape[2]; ++x)
    out[static_cast<size_t>(x)] = static_cast<float>(kvq::ref::load(
        k.dtype, k.data, token * k.strides[0] + head * k.strides[1] + x * k.strides[2]));
  return out;
}

void set_row(OwnedTensor& t, int64_t token, int64_t head, const std::vector<double>& values) {
  const kvq_tensor& k = *t.get();
  for (size_t x = 0; x < values.size(); ++x)
    t.set(token * k.strides[0] + head * k.strides[1] + static_cast<int64_t>(x) * k.strides[2],
          values[x]);
}

void write_and_check_rows(Plugin& p, kvq_layer* layer, const OwnedTensor& key,
                          const OwnedTensor& value, const std::vector<int64_t>& slots, Cache& cache,
                          const RowCheck& check, std::set<int64_t>* written) {
  const CallResult r = write_kv(p, layer, key, value, slots, cache);
  ASSERT_EQ(r.code, 0) << r.message;
  for (size_t t = 0; t < slots.size(); ++t) {
    if (slots[t] < 0) continue;
    if (written != nullptr) written->insert(slots[t]);
    for (int64_t h = 0; h < key.get()->shape[1]; ++h)
      for (int kv = 0; kv < 2; ++kv) {
        const auto token = static_cast<int64_t>(t);
        check(token, h, kv, row_of(kv == 0 ? key : value, token, h),
              cache.slot_row(slots[t], kv, h));
        if (::testing::Test::HasFatalFailure()) return;
      }
  }
}

// ---- reference quantizers ----------------------------------------------------

uint32_t bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

float load_f32(const unsigned char* p) {
  float f;
  std::memcpy(&f, p, 4);
  return f;
}

namespace {

float absmax(const std::vector<float>& x) {
  float m = 0.0f;
  for (float v : x) m = std::max(m, std::fabs(v));
  return m;
}

}  // namespace

RefRow ref_int8_row(const std::vector<float>& x) {
  RefRow r;
  r.scale = std::max(absmax(x) * (1.0f / 127.0f), 1e-6f);  // spec §3: multiply
  const float inv = 1.0f / r.scale;
  for (float v : x) {
    const float y = v * inv;
    const double q = std::clamp(round_half_even(y), -128.0, 127.0);
    r.data.push_back(static_cast<uint8_t>(static_cast<int8_t>(q)));
    r.dequant.push_back(q * static_cast<double>(r.scale));
  }
  return r;
}

RefRow ref_fp8_row(const std::vector<float>& x) {
  RefRow r;
  r.scale = std::max(absmax(x) * (1.0f / 448.0f), 1e-6f);
  const float inv = 1.0f / r.scale;
  for (float v : x) {
    const float y = std::clamp(v * inv, -448.0f, 448.0f);
    const uint8_t code = kvq::ref::encode_fp8(KVQ_DTYPE_F8_E4M3FN, y);
    r.data.push_back(code);
    r.dequant.push_back(kvq::ref::decode_fp8(KVQ_DTYPE_F8_E4M3FN, code) *
                        static_cast<double>(r.scale));
  }
  return r;
}

RefRow ref_int4_row(const std::vector<float>& x) {
  RefRow r;
  const float lo = *std::min_element(x.begin(), x.end());
  const float hi = *std::max_element(x.begin(), x.end());
  r.scale = std::max((hi - lo) / 15.0f, 1e-6f);
  const float neg_lo_over_scale = -lo / r.scale;
  r.zero_point = static_cast<float>(std::clamp(round_half_even(neg_lo_over_scale), 0.0, 15.0));
  r.data.assign((x.size() + 1) / 2, 0);
  for (size_t i = 0; i < x.size(); ++i) {
    const float t = x[i] / r.scale;
    const float u = t + r.zero_point;
    const auto q = static_cast<unsigned>(std::clamp(round_half_even(u), 0.0, 15.0));
    r.data[i / 2] = static_cast<uint8_t>(r.data[i / 2] | (i % 2 == 0 ? q : q << 4));
    r.dequant.push_back((static_cast<double>(q) - r.zero_point) * static_cast<double>(r.scale));
  }
  return r;
}

uint8_t ref_fp8_tensor_code(int32_t fp8_dtype, float x, float scale) {
  const float y = x / scale;
  return kvq::ref::encode_fp8(fp8_dtype, y);
}

// ---- attention ---------------------------------------------------------------

std::vector<double> identity_deq(const std::vector<float>& x, int64_t, bool) {
  return {x.begin(), x.end()};
}

Deq fp8_tensor_deq(int32_t fp8_dtype, std::vector<float> k_scale, std::vector<float> v_scale,
                   bool round_bf16) {
  return [=](const std::vector<float>& x, int64_t head, bool is_v) {
    const std::vector<float>& scales = is_v ? v_scale : k_scale;
    const float s = scales.size() == 1 ? scales[0] : scales[static_cast<size_t>(head)];
    std::vector<double> out;
    for (float f : x) {
      const double d = kvq::ref::decode_fp8(fp8_dtype, ref_fp8_tensor_code(fp8_dtype, f, s)) * s;
      out.push_back(round_bf16 ? kvq::ref::round_to(KVQ_DTYPE_BF16, d) : d);
    }
    return out;
  };
}

PagedRun run_paged(Plugin& p, kvq_layer* layer, const Config& c, const PagedInput& in) {
  PagedRun run;
  const int64_t hq = c.num_heads, hkv = c.num_kv_heads, d = c.head_size;
  std::mt19937_64 rng(in.seed);
  const PagedBatch pb = paged_batch(in.seqs, c.block_size, 2, rng);
  Cache cache(p, layer, pb.num_blocks);
  for (size_t si = 0; si < in.seqs.size(); ++si) {
    const Seq& s = in.seqs[si];
    OwnedTensor k = random_tensor(c.model_dtype, {s.seq_len, hkv, d}, in.kv_stddev,
                                  in.seed * 7919 + 2 * static_cast<uint64_t>(si));
    OwnedTensor v = random_tensor(c.model_dtype, {s.seq_len, hkv, d}, in.kv_stddev,
                                  in.seed * 7919 + 2 * static_cast<uint64_t>(si) + 1);
    std::vector<float> kf, vf;
    for (double x : k.to_doubles()) kf.push_back(static_cast<float>(x));
    for (double x : v.to_doubles()) vf.push_back(static_cast<float>(x));
    run.keys.push_back(std::move(kf));
    run.values.push_back(std::move(vf));
    run.status = write_kv(p, layer, k, v, pb.slots[si], cache);
    if (run.status.code != 0) return run;
  }
  OwnedTensor query =
      random_tensor(in.query_dtype, {pb.total_q, hq, d}, in.q_stddev, in.seed * 7919 + 99991);
  run.query = query.to_doubles();

  const OwnedTensor out = filled_tensor(c.model_dtype, {pb.total_q, hq, d}, NAN);
  bool decode_only = true;
  for (const Seq& s : in.seqs) decode_only = decode_only && s.query_len == 1;
  run.status =
      forward(p, layer,
              pb.forward_args(decode_only ? KVQ_ATTN_DECODE_ONLY : KVQ_ATTN_CHUNKED_PREFILL, query,
                              cache.tensor(), out));
  if (run.status.code == 0) run.output = out.to_doubles();
  return run;
}

std::vector<double> reference_attention(const Config& c, const std::vector<Seq>& seqs,
                                        const PagedRun& run, const Deq& deq,
                                        const std::vector<double>& q_scale, bool round_p_e4m3) {
  const int64_t hq = c.num_heads, hkv = c.num_kv_heads, d = c.head_size;
  std::vector<std::vector<double>> keys, values;
  for (size_t s = 0; s < seqs.size(); ++s) {
    std::vector<double> kd, vd;
    for (int64_t j = 0; j < seqs[s].seq_len; ++j)
      for (int64_t h = 0; h < hkv; ++h) {
        const auto first = static_cast<ptrdiff_t>((j * hkv + h) * d);
        const std::vector<float> kr(run.keys[s].begin() + first, run.keys[s].begin() + first + d);
        const std::vector<float> vr(run.values[s].begin() + first,
                                    run.values[s].begin() + first + d);
        for (double x : deq(kr, h, false)) kd.push_back(x);
        for (double x : deq(vr, h, true)) vd.push_back(x);
      }
    keys.push_back(std::move(kd));
    values.push_back(std::move(vd));
  }
  std::vector<double> q = run.query;
  if (!q_scale.empty())
    for (size_t i = 0; i < q.size(); ++i)
      q[i] *= q_scale[static_cast<size_t>(static_cast<int64_t>(i) / d % hq)];
  kvq::ref::AttentionProblem problem = attention_problem(c, seqs);
  problem.round_p_e4m3 = round_p_e4m3;
  return kvq::ref::attention(problem, q, keys, values);
}

double max_abs_diff(const std::vector<double>& a, const std::vector<double>& b) {
  if (a.size() != b.size()) return INFINITY;
  double m = 0.0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::fabs(a[i] - b[i]));
  return m;
}

}  // namespace kvq::test::tri
