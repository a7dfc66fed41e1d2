// The core's side of the SDK's process-wide hooks (portway/admin.h).
#pragma once

#include <string>
#include <string_view>

namespace portway::server {

// {"source": <json>, ...} from every filter's status provider for
// `cluster`, or "" when none has anything to say.
std::string RenderFilterClusterStatus(std::string_view cluster);

}  // namespace portway::server
