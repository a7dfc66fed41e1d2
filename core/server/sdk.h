// The core's side of the SDK's process-wide hooks (portway/admin.h).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "portway/admin.h"

namespace portway::server {

// {"source": <json>, ...} from every filter's status provider for
// `cluster`, or "" when none has anything to say.
std::string RenderFilterClusterStatus(std::string_view cluster);

// The answer of the filter handler registered for `request.path`, or
// nullopt when no filter serves it.
std::optional<AdminResponse> HandleFilterAdmin(const AdminRequest& request);

// The prefixes filters registered, for the admin index.
std::vector<std::string> FilterAdminPrefixes();

}  // namespace portway::server
