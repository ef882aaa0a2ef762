#include "cuda_impl.hpp"

#include "triton_impl.hpp"

#include "kvq_sdk/dtype.hpp"
#include "kvq_sdk/error.hpp"
#include "kvq_sdk/unquantized.hpp"

#include <cmath>
#include <cstring>
#include <deque>
#include <mutex>
#include <utility>
#include <vector>

namespace kvq::cuda {

// Verdict slots (device memory and a pinned host mirror): one per call whose
// device-side check is still owed, so calls in flight never share one.
class VerdictPool {
 public:
  static constexpr uint64_t kSlotBytes = 64;  // >= sizeof(WriteVerdict), sizeof(AttentionVerdict)
  struct Slot {
    void* device = nullptr;
    void* host = nullptr;
  };
  Slot take() {
    std::lock_guard lock(mutex_);
    if (free_.empty()) {
      auto& owned = owned_.emplace_back();
      free_.push_back({owned.device.reserve(kSlotBytes), owned.host.reserve(kSlotBytes)});
    }
    const Slot s = free_.back();
    free_.pop_back();
    return s;
  }
  void give_back(Slot s) {
    std::lock_guard lock(mutex_);
    free_.push_back(s);
  }

 private:
  struct Owned {
    DeviceArray device;
    PinnedArray host;
  };
  std::mutex mutex_;
  std::deque<Owned> owned_;
  std::vector<Slot> free_;
};

namespace {

static_assert(sizeof(WriteVerdict) <= VerdictPool::kSlotBytes);
static_assert(sizeof(AttentionVerdict) <= VerdictPool::kSlotBytes);

Codec codec_of(triton::KvMode mode, int32_t element_dtype) {
  switch (mode) {
    case triton::KvMode::kInt8PerTokenHead: return Codec::kInt8Pth;
    case triton::KvMode::kFp8PerTokenHead: return Codec::kFp8Pth;
    case triton::KvMode::kInt4PerTokenHead: return Codec::kInt4Pth;
    case triton::KvMode::kFp8PerTensor:
      return element_dtype == KVQ_DTYPE_F8_E5M2 ? Codec::kE5M2 : Codec::kE4M3;
    case triton::KvMode::kNone: break;
  }
  switch (element_dtype) {
    case KVQ_DTYPE_F32: return Codec::kF32;
    case KVQ_DTYPE_F16: return Codec::kF16;
    case KVQ_DTYPE_BF16: return Codec::kBF16;
    default: sdk::fail(KVQ_ERR_INTERNAL, "no CUDA codec for cache dtype {}", element_dtype);
  }
}

// The kernels index rows by element strides with a contiguous last dimension.
void require_rows(const sdk::TensorView& t) {
  if (t.ndim() > 0 && t.dim(t.ndim() - 1) > 1 && t.stride(t.ndim() - 1) != 1)
    sdk::fail(KVQ_ERR_UNSUPPORTED, "{}: the last dimension must be contiguous on the GPU",
              t.what());
}

// Bytes rounded up so the next array in a scratch buffer is 16-byte aligned.
uint64_t padded(uint64_t bytes) {
  return (bytes + 15) / 16 * 16;
}

void check_launch(int status, const char* what) {
  check_cuda(static_cast<cudaError_t>(status), what);
}

}  // namespace

CudaImpl::CudaImpl(triton::KvMode mode, const sdk::ModeDefinition& definition, int32_t model_dtype)
    : mode_(mode),
      codec_(codec_of(mode, sdk::cache_dtype_of(definition, model_dtype))),
      element_dtype_(sdk::cache_dtype_of(definition, model_dtype)),
      verdicts_(std::make_shared<VerdictPool>()) {}

CudaImpl::~CudaImpl() = default;

CudaDevice& CudaImpl::device(const sdk::Layer& layer) const {
  auto* d = static_cast<CudaDevice*>(layer.instance().device());
  if (d == nullptr) sdk::fail(KVQ_ERR_INTERNAL, "the CUDA layer has no device");
  d->activate();
  return *d;
}

kvq_cache_geometry CudaImpl::geometry(const sdk::Layer& layer) const {
  if (mode_ == triton::KvMode::kNone)
    return sdk::block_kv_slot_head_geometry(layer.config(), element_dtype_, false);
  return triton::quantized_geometry(layer.config(), mode_, element_dtype_);
}

CacheLayout CudaImpl::layout(const sdk::CacheView& cache) const {
  const kvq_cache_geometry& g = cache.geometry();
  return {cache.num_blocks(), g.block_size, g.num_kv_heads,   g.head_size,
          g.head_size_v,      g.row_bytes,  g.bytes_per_block};
}

void CudaImpl::attach(sdk::Layer& layer) {
  if (mode_ == triton::KvMode::kFp8PerTensor) triton::KvScales::declare(layer);
}

void CudaImpl::process_weights(sdk::Layer& layer) {
  if (mode_ == triton::KvMode::kFp8PerTensor)
    scales_.resolve(layer, element_dtype_ == KVQ_DTYPE_F8_E5M2);
}

void CudaImpl::cache_init(const sdk::Layer& layer, const sdk::CacheView& cache) const {
  CudaDevice& d = device(layer);
  check_launch(launch_cache_init(codec_, layout(cache), cache.base(), nullptr), "cache_init");
  d.wait(nullptr);
}

void CudaImpl::upload_scales(sdk::Layer& layer, kvq_stream* stream) {
  scales_.resolve(layer, element_dtype_ == KVQ_DTYPE_F8_E5M2);
  std::vector<float> all = scales_.k();
  all.insert(all.end(), scales_.v().begin(), scales_.v().end());
  all.insert(all.end(), scales_.q().begin(), scales_.q().end());
  if (all == uploaded_) return;
  void* dst = scale_array_.reserve(all.size() * sizeof(float));
  check_cuda(cudaMemcpyAsync(dst, all.data(), all.size() * sizeof(float), cudaMemcpyHostToDevice,
                             CudaDevice::native(stream)),
             "uploading fp8 scales");
  // The source is pageable: the copy has left it when cudaMemcpyAsync returns.
  uploaded_ = std::move(all);
}

float CudaImpl::absmax(CudaDevice& d, const sdk::TensorView& x, const sdk::TensorView* slots,
                       int64_t num_tokens, kvq_stream* stream) {
  auto* out = static_cast<float*>(absmax_.reserve(sizeof(float)));
  AbsmaxArgs a{};
  a.dtype = x.dtype();
  a.x = x.data();
  a.num_tokens = num_tokens;
  a.num_heads = x.dim(1);
  a.head_size = x.dim(2);
  a.stride_token = x.stride(0);
  a.stride_head = x.stride(1);
  a.slot_mapping = slots != nullptr ? static_cast<const int64_t*>(slots->data()) : nullptr;
  a.out = out;
  check_launch(launch_absmax(a, CudaDevice::native(stream)), "calculate_kv_scales (absmax)");
  float m = 0.0f;
  check_cuda(cudaMemcpyAsync(&m, out, sizeof m, cudaMemcpyDeviceToHost, CudaDevice::native(stream)),
             "calculate_kv_scales (download)");
  d.wait(stream);
  return m;
}

void CudaImpl::cache_write(sdk::Layer& layer, const sdk::WriteBatch& b) {
  CudaDevice& d = device(layer);
  const sdk::LayerConfig& c = layer.config();
  require_rows(b.key);
  require_rows(b.value);
  if (b.slot_mapping.stride(0) != 1 && b.num_tokens > 1)
    sdk::fail(KVQ_ERR_UNSUPPORTED, "slot_mapping must be contiguous on the GPU");
  if (b.num_tokens == 0) return;

  // calculate_kv_scales: the first write sets k/v from this batch (spec §5).
  // That write runs synchronously and, if refused (a bad slot, NaN/Inf), the
  // scales go back to uncalibrated, as on the CPU where refusal comes first.
  bool calibrating = false;
  triton::KvScales saved_scales;
  std::vector<sdk::Param> saved_params;
  if (mode_ == triton::KvMode::kFp8PerTensor) {
    if (triton::calculate_kv_scales(c) && !scales_.kv_calibrated()) {
      calibrating = true;
      saved_scales = scales_;
      saved_params = {layer.param("k_scale"), layer.param("v_scale")};
      const float k_max = absmax(d, b.key, &b.slot_mapping, b.num_tokens, b.stream);
      const float v_max = absmax(d, b.value, &b.slot_mapping, b.num_tokens, b.stream);
      scales_.calibrate_kv(layer, k_max, v_max);
    }
    upload_scales(layer, b.stream);
  }

  WriteArgs a{};
  a.codec = codec_;
  a.layout = layout(b.cache);
  a.in_dtype = c.model_dtype;
  a.key = b.key.data();
  a.key_stride_token = b.key.stride(0);
  a.key_stride_head = b.key.stride(1);
  a.value = b.value.data();
  a.value_stride_token = b.value.stride(0);
  a.value_stride_head = b.value.stride(1);
  a.slot_mapping = static_cast<const int64_t*>(b.slot_mapping.data());
  a.num_tokens = b.num_tokens;
  a.cache = b.cache.base();
  if (mode_ == triton::KvMode::kFp8PerTensor) {
    const auto* scales = static_cast<const float*>(scale_array_.get());
    a.k_scales = scales;
    a.v_scales = scales + scales_.k().size();
    a.num_scales = static_cast<int32_t>(scales_.k().size());
  }
  const VerdictPool::Slot slot = verdicts_->take();
  a.verdict = static_cast<WriteVerdict*>(slot.device);
  const cudaStream_t s = CudaDevice::native(b.stream);
  check_launch(launch_cache_write(a, s), "cache_write");
  check_cuda(
      cudaMemcpyAsync(slot.host, slot.device, sizeof(WriteVerdict), cudaMemcpyDeviceToHost, s),
      "cache_write (verdict)");

  const int64_t blocks = b.cache.num_blocks(), block_size = a.layout.block_size;
  auto check = [pool = verdicts_, slot, blocks, block_size] {
    WriteVerdict v;
    std::memcpy(&v, slot.host, sizeof v);
    pool->give_back(slot);
    if (v.code == 1)
      sdk::fail(
          KVQ_ERR_OUT_OF_RANGE,
          "slot_mapping[{}] = {} is outside the cache ({} blocks x {} slots); nothing written",
          v.token, v.slot, blocks, block_size);
    if (v.code == 2)
      sdk::fail(KVQ_ERR_NON_FINITE, "{} of token {} head {} is {}; nothing written",
                v.is_value ? "value" : "key", v.token, v.head, v.bad_value);
    if (v.code != 0) sdk::fail(KVQ_ERR_INTERNAL, "cache_write verdict code {}", v.code);
  };
  if (!calibrating) {
    d.defer(b.stream, std::move(check));
    return;
  }
  try {
    d.wait(b.stream);
    check();
  } catch (...) {
    scales_ = saved_scales;
    layer.param("k_scale") = saved_params[0];
    layer.param("v_scale") = saved_params[1];
    uploaded_.clear();
    throw;
  }
}

sdk::ForwardSpec CudaImpl::forward_spec(const sdk::Layer& layer) const {
  sdk::ForwardSpec spec = sdk::LayerImpl::forward_spec(layer);
  if (mode_ == triton::KvMode::kFp8PerTensor) spec.query_dtypes.push_back(KVQ_DTYPE_F8_E4M3FN);
  return spec;
}

void CudaImpl::forward(sdk::Layer& layer, const sdk::ForwardBatch& b) {
  CudaDevice& d = device(layer);
  const sdk::LayerConfig& c = layer.config();
  require_rows(b.query);
  require_rows(b.output);
  require_rows(b.block_table_view);
  const int64_t num_seqs = static_cast<int64_t>(b.seqs.size());
  const cudaStream_t s = CudaDevice::native(b.stream);
  const bool fp8_query = b.query.dtype() == KVQ_DTYPE_F8_E4M3FN;

  if (mode_ == triton::KvMode::kFp8PerTensor) {
    if (!fp8_query && triton::calculate_kv_scales(c) && !scales_.q_calibrated())
      scales_.calibrate_q(layer, absmax(d, b.query, nullptr, b.num_tokens, b.stream));
    upload_scales(layer, b.stream);
  }

  // Host metadata the kernels need on the device, packed into one scratch
  // upload: query_start_loc, seq_lens, alibi slopes, sinks.
  std::vector<unsigned char> packed;
  const auto append = [&packed](const void* src, uint64_t bytes) {
    const uint64_t at = packed.size();
    packed.resize(at + padded(bytes));
    std::memcpy(packed.data() + at, src, bytes);
    return at;
  };
  std::vector<int32_t> qsl(static_cast<size_t>(num_seqs) + 1), lens(static_cast<size_t>(num_seqs));
  for (int64_t i = 0; i < num_seqs; ++i) {
    qsl[static_cast<size_t>(i)] = static_cast<int32_t>(b.seqs[static_cast<size_t>(i)].query_start);
    lens[static_cast<size_t>(i)] = static_cast<int32_t>(b.seqs[static_cast<size_t>(i)].seq_len);
  }
  qsl[static_cast<size_t>(num_seqs)] = static_cast<int32_t>(b.num_tokens);
  const bool upload_batch = !b.query_start_loc_view.on_device() || !b.seq_lens_view.on_device() ||
                            b.query_start_loc_view.stride(0) != 1 || b.seq_lens_view.stride(0) != 1;
  const uint64_t qsl_at = upload_batch ? append(qsl.data(), qsl.size() * 4) : 0;
  const uint64_t lens_at = upload_batch ? append(lens.data(), lens.size() * 4) : 0;
  const auto host_f32 = [&](const sdk::TensorView& t) -> int64_t {
    if (!t.present() || t.on_device()) return -1;
    std::vector<float> v(static_cast<size_t>(t.dim(0)));
    for (int64_t i = 0; i < t.dim(0); ++i) std::memcpy(&v[static_cast<size_t>(i)], t.at({i}), 4);
    return static_cast<int64_t>(append(v.data(), v.size() * 4));
  };
  const int64_t alibi_at = host_f32(b.alibi_slopes), sinks_at = host_f32(b.sinks);
  auto* meta = static_cast<unsigned char*>(metadata_.reserve(packed.size()));
  if (!packed.empty())
    check_cuda(cudaMemcpyAsync(meta, packed.data(), packed.size(), cudaMemcpyHostToDevice, s),
               "forward (batch metadata)");

  AttentionArgs a{};
  a.codec = codec_;
  a.layout = layout(b.cache);
  a.q_dtype = b.query.dtype();
  a.out_dtype = c.model_dtype;
  a.num_heads = c.num_heads;
  // Key splits sized for the whole model's KV heads: a tensor-parallel rank
  // gives its heads the bytes one device holding them all would (issue 16).
  a.plan_kv_heads = c.num_kv_heads * std::max<int64_t>(1, c.tp_size);
  a.query = b.query.data();
  a.q_stride_token = b.query.stride(0);
  a.q_stride_head = b.query.stride(1);
  a.output = b.output.data();
  a.o_stride_token = b.output.stride(0);
  a.o_stride_head = b.output.stride(1);
  a.cache = b.cache.base();
  a.block_table = static_cast<const int32_t*>(b.block_table_view.data());
  a.block_table_stride = b.block_table_view.stride(0);
  a.query_start_loc = upload_batch ? reinterpret_cast<const int32_t*>(meta + qsl_at)
                                   : static_cast<const int32_t*>(b.query_start_loc_view.data());
  a.seq_lens = upload_batch ? reinterpret_cast<const int32_t*>(meta + lens_at)
                            : static_cast<const int32_t*>(b.seq_lens_view.data());
  a.num_seqs = num_seqs;
  a.num_tokens = b.num_tokens;
  a.max_query_len = b.max_query_len;
  a.max_seq_len = b.max_seq_len;
  a.softmax_scale = c.softmax_scale != 0.0
                        ? static_cast<float>(c.softmax_scale)
                        : static_cast<float>(1.0 / std::sqrt(static_cast<double>(c.head_size)));
  a.sliding_window = c.sliding_window;
  a.softcap = static_cast<float>(c.softcap);
  a.alibi_slopes = alibi_at >= 0              ? reinterpret_cast<const float*>(meta + alibi_at)
                   : b.alibi_slopes.present() ? static_cast<const float*>(b.alibi_slopes.data())
                                              : nullptr;
  a.sinks = sinks_at >= 0       ? reinterpret_cast<const float*>(meta + sinks_at)
            : b.sinks.present() ? static_cast<const float*>(b.sinks.data())
                                : nullptr;
  if (mode_ == triton::KvMode::kFp8PerTensor) {
    const auto* scales = static_cast<const float*>(scale_array_.get());
    a.k_scales = scales;
    a.v_scales = scales + scales_.k().size();
    a.num_kv_scales = static_cast<int32_t>(scales_.k().size());
    a.q_scales = scales + scales_.k().size() + scales_.v().size();
    a.num_q_scales = static_cast<int32_t>(scales_.q().size());
  }
  a.workspace_bytes = attention_workspace_bytes(a, d.num_sms());
  a.workspace =
      a.workspace_bytes > 0
          ? static_cast<float*>(workspace_.reserve(static_cast<uint64_t>(a.workspace_bytes)))
          : nullptr;
  const VerdictPool::Slot slot = verdicts_->take();
  a.verdict = static_cast<AttentionVerdict*>(slot.device);
  check_launch(launch_attention(a, d.num_sms(), s), "forward");
  check_cuda(
      cudaMemcpyAsync(slot.host, slot.device, sizeof(AttentionVerdict), cudaMemcpyDeviceToHost, s),
      "forward (verdict)");
  const int64_t blocks = b.cache.num_blocks();
  d.defer(b.stream, [pool = verdicts_, slot, blocks] {
    AttentionVerdict v;
    std::memcpy(&v, slot.host, sizeof v);
    pool->give_back(slot);
    if (v.code == 3)
      sdk::fail(
          KVQ_ERR_OUT_OF_RANGE,
          "block_table[{}][{}] = {} is outside the cache's {} blocks (the output is not valid)",
          v.seq, v.index, v.value, blocks);
    if (v.code != 0) sdk::fail(KVQ_ERR_INTERNAL, "forward verdict code {}", v.code);
  });
}

std::unique_ptr<sdk::LayerImpl> make_cuda_impl(const sdk::LayerConfig& config,
                                               const sdk::ModeDefinition& mode) {
  return std::make_unique<CudaImpl>(triton::kind_of(mode), mode, config.model_dtype);
}

}  // namespace kvq::cuda
