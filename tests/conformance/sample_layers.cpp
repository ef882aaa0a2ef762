#include "sample_layers.hpp"

#include "case_log.hpp"

namespace kvq::conform {

// A layer whose records the out-struct cases can fill: the first supported
// mode that needs no scheme.
client::Layer any_layer(const Session& session, const kvq_plugin_info& info) {
  ModeChoice choice = first_unquantized(info);
  if (!choice.backend) {
    for (int64_t b = 0; b < info.num_backends && !choice.backend; ++b) {
      const kvq_backend_info* backend = info.backends[b];
      for (int64_t m = 0; backend && m < backend->num_kv_modes; ++m) {
        const kvq_kv_mode_info* mode = backend->kv_modes[m];
        if (mode && mode->supported && !mode->needs_scheme) {
          choice = {backend->name, mode->name, KVQ_DTYPE_BF16};
          break;
        }
      }
    }
  }
  if (!choice.backend) throw CaseSkip("no backend lists a supported mode");
  return create_layer(session,
                      layer_config(choice.backend, choice.mode, choice.model_dtype, 4, 2, 64, 32));
}

client::Layer layer_with_params(const Session& session, const kvq_plugin_info& info) {
  client::Layer layer = any_layer(session, info);
  if (layer.info().num_params > 0) return layer;
  for (int64_t s = 0; s < info.num_schemes; ++s) {
    const kvq_scheme_info* scheme = info.schemes[s];
    if (!scheme || !scheme->supported || !scheme->quant_type || !scheme->layer_type) continue;
    client::Layer candidate = any_layer(session, info);
    try {
      candidate.apply_scheme(scheme->quant_type, scheme->layer_type);
    } catch (const client::PluginError&) {
      continue;  // a scheme of another backend, or one that needs options
    }
    if (candidate.info().num_params > 0) return candidate;
  }
  throw CaseSkip("no layer with parameters (no supported scheme declares any)");
}

}  // namespace kvq::conform
