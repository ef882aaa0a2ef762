// `kvq inspect PLUGIN.so`: what a plugin offers, as a person reads it.
#pragma once

#include <ostream>

#include "kvq_engine/plugin.hpp"

namespace kvq::host {

void print_inspection(const Plugin& plugin, std::ostream& out);

}  // namespace kvq::host
