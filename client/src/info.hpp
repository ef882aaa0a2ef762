// Reading a plugin's records into owned copies, tolerantly (ABI rule 4): a
// field is read only when the record's struct_size covers it.
#pragma once

#include <kvq_abi.h>

#include "kvq_client/info.hpp"
#include "session.hpp"

namespace kvq::client::detail {

// get_info of the session's instance. Throws PluginError when get_info
// fails, Error when its record is malformed (a count with a NULL array).
PluginInfo read_plugin_info(const Session& session);
ParamInfo copy_param(const Session& session, const kvq_param_info& raw, std::string_view where);

}  // namespace kvq::client::detail
