// Layers the contract cases fill records from: any layer the plugin can
// create without a scheme, and one that declares parameters.
#pragma once

#include <kvq_abi.h>
#include <kvq_client/plugin.hpp>

#include "plugin_session.hpp"

namespace kvq::conform {

// A layer of the first supported mode that needs no scheme (an unquantized
// one preferred), 4 query / 2 KV heads, head 64, block 32.
client::Layer any_layer(const Session& session, const kvq_plugin_info& info);
// The base layer if it declares parameters, else the base layer after the
// first supported scheme that declares some; skips the case when none does.
client::Layer layer_with_params(const Session& session, const kvq_plugin_info& info);

}  // namespace kvq::conform
