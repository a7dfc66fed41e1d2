// The 502 family: every cause of a locally generated response, with its
// status, its x-portway-error value, its access-log flag and its counter.
// docs/errors.md explains each one and what to do about it.
#pragma once

#include <cstdint>
#include <string_view>

#include "portway/stream_info.h"

namespace portway::http {

struct ErrorCauseInfo {
  std::string_view name;  // x-portway-error value, stats label
  std::string_view flag;  // access-log flag
  int status;             // HTTP status of the local reply
};

const ErrorCauseInfo& InfoFor(ErrorCause cause);

}  // namespace portway::http
