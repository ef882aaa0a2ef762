// Checks of the records a plugin hands out (get_info): readable strings, and
// the 1.1 fields (device, layer options, scheme backends) where a record's
// struct_size covers them.
#pragma once

#include <kvq_abi.h>

#include <string>

namespace kvq::conform {

// Why `s` is not a readable record string, or "". Names must be printable
// ASCII; free text may be any UTF-8 without control characters.
std::string bad_string(const char* s, bool free_text);

// The problems of the 1.1 parts of a record read at the 1.1 size from a
// session that negotiated 1.1 ("" when none): the device fields, each
// backend's layer options (when its struct_size covers them) and each
// scheme's backend (likewise). `api` says which device hooks exist.
std::string well_formed_1_1(const kvq_plugin_info& info, const kvq_plugin_api& api);

}  // namespace kvq::conform
