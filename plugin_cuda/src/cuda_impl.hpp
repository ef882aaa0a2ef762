// The Triton backend's layer implementation on an NVIDIA GPU: every KV mode
// of spec/triton_sim.md, computed by the kernels in kernels/ over device
// memory (spec/cuda.md). Scales and their rules are the CPU plugin's
// (KvScales); only where the arithmetic runs differs.
#pragma once

#include "cuda_device.hpp"
#include "kernels/kernels.hpp"
#include "kv_modes.hpp"
#include "kv_scales.hpp"

#include "kvq_sdk/plugin.hpp"

#include <memory>

namespace kvq::cuda {

class VerdictPool;

class CudaImpl final : public sdk::LayerImpl {
 public:
  CudaImpl(triton::KvMode mode, const sdk::ModeDefinition& definition, int32_t model_dtype);
  ~CudaImpl() override;
  const char* name() const override { return "triton_unified_attention_cuda"; }
  kvq_cache_geometry geometry(const sdk::Layer& layer) const override;
  void attach(sdk::Layer& layer) override;
  void cache_init(const sdk::Layer& layer, const sdk::CacheView& cache) const override;
  void cache_write(sdk::Layer& layer, const sdk::WriteBatch& batch) override;
  sdk::ForwardSpec forward_spec(const sdk::Layer& layer) const override;
  void forward(sdk::Layer& layer, const sdk::ForwardBatch& batch) override;
  void process_weights(sdk::Layer& layer) override;

 private:
  CudaDevice& device(const sdk::Layer& layer) const;
  CacheLayout layout(const sdk::CacheView& cache) const;
  // fp8 per-tensor: resolves the scales and uploads them when they changed.
  void upload_scales(sdk::Layer& layer, kvq_stream* stream);
  // max|x| over the first num_tokens rows (those with a slot >= 0 when
  // slots is given), downloaded: calculate_kv_scales only.
  float absmax(CudaDevice& d, const sdk::TensorView& x, const sdk::TensorView* slots,
               int64_t num_tokens, kvq_stream* stream);

  triton::KvMode mode_;
  Codec codec_;
  int32_t element_dtype_;
  triton::KvScales scales_;  // fp8 per-tensor only
  // Device copies of the scales (k, v and q arrays, back to back).
  DeviceArray scale_array_;
  std::vector<float> uploaded_;
  // Per-call scratch: host metadata uploaded for the kernels, split partials.
  DeviceArray metadata_, workspace_, absmax_;
  std::shared_ptr<VerdictPool> verdicts_;
};

// The factory for triton::definition: CudaImpl for every mode.
std::unique_ptr<sdk::LayerImpl> make_cuda_impl(const sdk::LayerConfig& config,
                                               const sdk::ModeDefinition& mode);

}  // namespace kvq::cuda
