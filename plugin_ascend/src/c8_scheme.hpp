// The C8 KV-cache scheme of vllm-ascend (spec/ascend.md §1-§6): static
// per-channel int8 with offsets. Applying it declares the four scale/offset
// parameters, switches the cache to int8 and upgrades the layer's
// implementation to the C8 one (vllm-ascend's `impl.__class__` swap).
#pragma once

#include "kvq_sdk/plugin.hpp"

namespace kvq::ascend {

sdk::SchemeDefinition c8_scheme();

// The C8 scale loader (_c8_kv_scale_weight_loader): squeeze size-1 dims; on
// a shape change re-create the parameter with the loaded shape (keeping its
// dtype); no tensor-parallel split.
void c8_scale_loader(sdk::Param& param, const sdk::TensorView& loaded,
                     const sdk::LayerConfig& layer, int32_t tp_rank, int32_t tp_size);

}  // namespace kvq::ascend
