// Scheme-registry entries for the Triton KV modes: applying ("<mode>",
// "attention") to a layer created unquantized upgrades it to that mode, the
// same way the host applies the Ascend schemes.
#pragma once

#include "kvq_sdk/plugin.hpp"

namespace kvq::triton {

void register_schemes(sdk::SchemeRegistry& registry);

}  // namespace kvq::triton
