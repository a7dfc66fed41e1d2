// Logging for filters, into the gateway's own log (same format, level and
// destination as the core's lines).
//
// Thread safety: safe from any thread. Lines on the request path cost; log
// events (a state change), not requests.
//
//   portway::Log(portway::LogLevel::kWarn, "breaker for backend opened");
#pragma once

#include <string_view>

namespace portway {

enum class LogLevel { kDebug, kInfo, kWarn, kError };

void Log(LogLevel level, std::string_view message);

}  // namespace portway
