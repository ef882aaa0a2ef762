// Golden vectors: any plugin that claims a case's mode must reproduce the
// independent numpy reference (write path byte-exact, attention within the
// case's tolerances).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <map>
#include <vector>

#include "batch.hpp"
#include "cases.hpp"
#include "kvq_ref/reference.hpp"
#include "vectors.hpp"
#include "verdict.hpp"

namespace kvq::conform {
namespace {

namespace fs = std::filesystem;

int32_t state_from_name(const std::string& name) {
  static const std::map<std::string, int32_t> states = {
      {"PrefillNoCache", KVQ_ATTN_PREFILL_NO_CACHE},
      {"PrefillCacheHit", KVQ_ATTN_PREFILL_CACHE_HIT},
      {"DecodeOnly", KVQ_ATTN_DECODE_ONLY},
      {"ChunkedPrefill", KVQ_ATTN_CHUNKED_PREFILL},
      {"SpecDecoding", KVQ_ATTN_SPEC_DECODING},
  };
  const auto it = states.find(name);
  if (it == states.end()) throw CaseFailure("unknown attention_state \"" + name + "\" in the case");
  return it->second;
}

// A layer set up as the case's procedure says, with a cache holding every
// row of the case written through cache_write.
struct Prepared {
  Instance instance;
  Layer layer;
  kvq_cache_geometry geometry{};
  HostTensor cache;
  bool per_token_head = false;
};

Prepared prepare(const kvq_plugin_api* api, const kvq_plugin_info& info, const VectorCase& vc) {
  const nlohmann::json& j = vc.json();
  const std::string mode = j.at("kv_cache_dtype").get<std::string>();
  const bool c8 = mode == "C8";
  const kvq_backend_info* backend = nullptr;
  if (c8) {
    const kvq_scheme_info* scheme = find_scheme(info, "C8", "attention");
    if (!scheme || !scheme->supported || info.num_backends < 1)
      throw CaseSkip("mode C8 not claimed");
    backend = info.backends[0];
  } else {
    backend = backend_claiming(info, mode);
    if (!backend) throw CaseSkip("mode " + mode + " not claimed");
  }
  const int64_t hkv = j.at("num_kv_heads").get<int64_t>();
  const int64_t head_size = j.at("head_size").get<int64_t>();
  const int64_t block_size = j.at("block_size").get<int64_t>();
  kvq_layer_config config = layer_config(backend->name, c8 ? "auto" : mode.c_str(), KVQ_DTYPE_BF16,
                                         j.value("num_heads", hkv), hkv, head_size, block_size);
  config.softmax_scale = j.value("softmax_scale", 0.0);
  config.sliding_window = j.value("sliding_window", int64_t{0});
  config.softcap = j.value("softcap", 0.0);
  const bool optional_features = config.sliding_window != 0 || config.softcap != 0.0;

  Prepared p;
  p.instance = negotiate(api);
  p.layer = create_layer(api, p.instance.get(), config, optional_features);
  if (c8) {
    kvq_scheme_args scheme{};
    scheme.struct_size = KVQ_SCHEME_ARGS_SIZE;
    scheme.quant_type = "C8";
    scheme.layer_type = "attention";
    require_ok(Error(api, api->apply_scheme(p.layer.get(), &scheme)), "apply_scheme C8");
    for (const char* name :
         {"k_cache_scale", "k_cache_offset", "v_cache_scale", "v_cache_offset"}) {
      HostTensor value = vc.tensor(name);
      load_param(api, p.layer.get(), name, value.tensor());
    }
  } else {
    const kvq_kv_mode_info* m = find_mode(*backend, mode);
    p.per_token_head = m && m->per_token_head;
  }
  for (const char* name : {"k_scale", "v_scale", "q_scale"}) {
    if (!j.contains(name)) continue;
    HostTensor value = HostTensor::from_doubles(KVQ_DTYPE_F32, {1}, {j.at(name).get<double>()});
    load_param(api, p.layer.get(), name, value.tensor());
  }
  require_ok(Error(api, api->process_weights(p.layer.get())), "process_weights");
  p.geometry = cache_geometry(api, p.layer.get());
  if (std::string problems = check_geometry(p.geometry, hkv, head_size, block_size);
      !problems.empty())
    throw CaseFailure(problems);
  p.cache = allocate_cache(api, p.layer.get(), p.geometry, j.at("num_blocks").get<int64_t>());
  HostTensor key = vc.tensor("key"), value = vc.tensor("value"), slots = vc.tensor("slot_mapping");
  require_ok(write_cache(api, p.layer.get(), key, value, slots, p.cache), "cache_write");
  if (!p.cache.guards_intact()) throw CaseFailure("cache_write overwrote the cache's guard bytes");
  return p;
}

Outcome check_write(const VectorCase& vc, const Prepared& p) {
  const kvq_cache_geometry& g = p.geometry;
  const std::vector<int64_t> slots = vc.ints("slot_mapping");
  const int64_t hkv = g.num_kv_heads, bs = g.block_size;
  const int64_t code_bytes = g.head_size * kvq::ref::dtype_size(g.element_dtype);
  int64_t rows = 0, mismatches = 0;
  std::string first;
  for (int kv = 0; kv < 2; ++kv) {
    const VectorArray& codes = vc.array(kv ? "expect_value_codes" : "expect_key_codes");
    if (g.head_size * kvq::ref::dtype_size(codes.dtype) != code_bytes)
      return fail("the cache stores element dtype " + std::to_string(g.element_dtype) +
                  ", the case expects codes of dtype " + std::to_string(codes.dtype));
    const char* scales_name = kv ? "expect_value_scales" : "expect_key_scales";
    const VectorArray* scales = p.per_token_head ? &vc.array(scales_name) : nullptr;
    for (size_t t = 0; t < slots.size(); ++t) {
      if (slots[t] < 0) continue;
      const int64_t block = slots[t] / bs, slot = slots[t] % bs;
      for (int64_t h = 0; h < hkv; ++h) {
        const int64_t row = (((block * 2 + kv) * bs + slot) * hkv + h) * g.row_bytes;
        const unsigned char* got = p.cache.bytes() + row;
        const size_t index = t * static_cast<size_t>(hkv) + static_cast<size_t>(h);
        const unsigned char* want = codes.bytes.data() + index * static_cast<size_t>(code_bytes);
        ++rows;
        const std::string where = std::string(kv ? "V" : "K") + " token " + std::to_string(t) +
                                  " head " + std::to_string(h);
        if (std::memcmp(got, want, static_cast<size_t>(code_bytes)) != 0) {
          ++mismatches;
          if (first.empty()) {
            int64_t d = 0;
            while (got[d] == want[d]) ++d;
            first = where + " byte " + std::to_string(d) + ": " + hex_byte(got[d]) + " want " +
                    hex_byte(want[d]);
          }
        }
        if (scales && std::memcmp(got + code_bytes, scales->bytes.data() + index * 4, 4) != 0) {
          ++mismatches;
          if (first.empty()) {
            float g_scale, w_scale;
            std::memcpy(&g_scale, got + code_bytes, 4);
            std::memcpy(&w_scale, scales->bytes.data() + index * 4, 4);
            first = where + " scale " + short_number(g_scale) + " want " + short_number(w_scale);
          }
        }
      }
    }
  }
  if (mismatches > 0)
    return fail(std::to_string(mismatches) + " of " + std::to_string(rows) +
                " rows differ; first: " + first);
  return pass(std::to_string(rows) + " rows exact" +
              (p.per_token_head ? " (codes and scales)" : ""));
}

Outcome check_attention(const kvq_plugin_api* api, const VectorCase& vc, Prepared& p) {
  const nlohmann::json& j = vc.json();
  const int64_t hkv = p.geometry.num_kv_heads, d = p.geometry.head_size;
  const int64_t hq = j.value("num_heads", hkv);
  ForwardBatch batch;
  const bool fp8_query = j.value("query_dtype", "bf16") == "fp8_e4m3";
  batch.query = vc.tensor(fp8_query ? "query_fp8" : "query");
  batch.query_start_loc = vc.tensor("query_start_loc");
  batch.seq_lens = vc.tensor("seq_lens");
  batch.block_table = vc.tensor("block_table");
  if (vc.has("alibi_slopes")) batch.alibi_slopes = vc.tensor("alibi_slopes");
  if (vc.has("sinks")) batch.sinks = vc.tensor("sinks");

  // The step's new tokens: the last query_len rows of each sequence.
  const std::vector<int64_t> qsl = vc.ints("query_start_loc"), seq_lens = vc.ints("seq_lens");
  const int64_t t_count = qsl.back();
  const VectorArray& key = vc.array("key");
  const VectorArray& value = vc.array("value");
  const auto row = static_cast<size_t>(hkv * d * kvq::ref::dtype_size(key.dtype));
  batch.key = HostTensor(key.dtype, {t_count, hkv, d});
  batch.value = HostTensor(value.dtype, {t_count, hkv, d});
  int64_t first_row = 0;
  for (size_t s = 0; s < seq_lens.size(); ++s) {
    const int64_t qlen = qsl[s + 1] - qsl[s];
    const auto src = static_cast<size_t>(first_row + seq_lens[s] - qlen) * row;
    const auto dst = static_cast<size_t>(qsl[s]) * row;
    const auto n = static_cast<size_t>(qlen) * row;
    if (src + n > key.bytes.size()) throw CaseFailure("the case's key rows do not cover seq_lens");
    std::memcpy(batch.key.bytes() + dst, key.bytes.data() + src, n);
    std::memcpy(batch.value.bytes() + dst, value.bytes.data() + src, n);
    first_row += seq_lens[s];
  }
  batch.output = HostTensor(KVQ_DTYPE_BF16, {t_count, hq, d});
  batch.output.fill(std::numeric_limits<double>::quiet_NaN());

  std::vector<int32_t> qsl32(qsl.begin(), qsl.end()), lens32(seq_lens.begin(), seq_lens.end());
  const int32_t state = j.contains("attention_state")
                            ? state_from_name(j.at("attention_state").get<std::string>())
                            : derive_attention_state(qsl32, lens32);
  kvq_forward_args args = batch.args(p.cache, state);
  const Error supported(api, api->supports(p.layer.get(), &args));
  if (supported.code() == KVQ_ERR_UNSUPPORTED)
    throw CaseSkip("supports(): " + supported.describe());
  require_ok(supported, "supports() refuses the case's batch");
  require_ok(Error(api, api->forward(p.layer.get(), &args)), "forward");
  if (const std::string damaged = batch.damaged_guards(p.cache); !damaged.empty())
    return fail("guard bytes overwritten: " + damaged);

  const std::vector<double> actual = batch.output.to_doubles();
  const nlohmann::json& read = j.at("tolerance_read_path");
  const Verdict verdict =
      judge_output(actual, vc.doubles(read.at("vs").get<std::string>()), batch.output.shape(),
                   {read.at("atol").get<double>(), read.at("rtol").get<double>(), -1.0});
  const nlohmann::json& e2e = j.at("end_to_end");
  const std::vector<double> original = vc.doubles(e2e.at("vs").get<std::string>());
  const double nmse = kvq::ref::compare(actual, original, 0.0, 0.0).nmse;
  // The vectors' limits include the cost of rounding the output to the model
  // dtype (shared/vectors/README.md), so the suite adds nothing of its own.
  const double limit = e2e.at("max_nmse").get<double>();
  const std::string detail = "read path: " + verdict.detail + "; end-to-end nmse " +
                             short_number(nmse) + " (limit " + short_number(limit) + ")";
  if (!verdict.ok) return fail(detail);
  if (!(nmse <= limit)) return fail(detail + ": above the limit");
  return pass(detail);
}

Outcome run_case(const kvq_plugin_api* api, const kvq_plugin_info& info, const fs::path& dir) {
  const VectorCase vc = VectorCase::load(dir);
  const std::string kind = vc.json().at("kind").get<std::string>();
  if (kind != "write" && kind != "attention") return fail("unknown case kind \"" + kind + "\"");
  Prepared p = prepare(api, info, vc);
  return kind == "write" ? check_write(vc, p) : check_attention(api, vc, p);
}

}  // namespace

void run_vector_cases(CaseLog& log, const Plugin& plugin, const kvq_plugin_info& info,
                      const std::string& vectors_dir) {
  std::error_code ec;
  if (!fs::is_directory(vectors_dir, ec)) {
    // Never a skip: a run without the vectors would pass a plugin that was
    // never compared with the independent reference.
    log.report("vectors", fail("golden-vector folder " + vectors_dir +
                               " not found (pass --vectors DIR or set KVQ_VECTORS_DIR)"));
    return;
  }
  std::vector<fs::path> cases;
  for (const auto& entry : fs::directory_iterator(vectors_dir, ec))
    if (entry.is_directory() && fs::exists(entry.path() / "case.json"))
      cases.push_back(entry.path());
  std::sort(cases.begin(), cases.end());
  for (const fs::path& dir : cases)
    log.run("vectors." + dir.filename().string(), [&] { return run_case(plugin.api, info, dir); });
}

}  // namespace kvq::conform
