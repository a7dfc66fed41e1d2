// The access log: one line per request, text or JSON, to stdout, stderr or
// a file.
//
// Thread safety: Log() may be called from every worker at once. Each line
// is formatted on the caller's thread and written with one write(2), so
// lines never interleave.
#pragma once

#include <memory>
#include <string>

#include "portway/stream_info.h"

namespace portway::server {

class AccessLogger {
 public:
  enum class Format { kText, kJson };
  // path: "stdout", "stderr", "off" or a file path (opened for append).
  static std::shared_ptr<AccessLogger> Open(const std::string& path, Format format,
                                            std::string* error);
  ~AccessLogger();
  void Log(const http::StreamInfo& info, http::StreamInfo::Time now) const;
  bool enabled() const { return fd_ >= 0; }

 private:
  AccessLogger(int fd, bool owned, Format format) : fd_(fd), owned_(owned), format_(format) {}
  int fd_;
  bool owned_;
  Format format_;
};

}  // namespace portway::server
