#include "core/server/access_log.h"

#include "core/common/strings.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "core/http/local_reply.h"

namespace portway::server {
namespace {

void AppendJsonString(std::string& out, std::string_view s) {
  out.push_back('"');
  for (unsigned char c : s) {
    switch (c) {
      case '"':
        out.append("\\\"");
        break;
      case '\\':
        out.append("\\\\");
        break;
      case '\n':
        out.append("\\n");
        break;
      case '\r':
        out.append("\\r");
        break;
      case '\t':
        out.append("\\t");
        break;
      default:
        if (c < 0x20) {
          char buf[8];
          snprintf(buf, sizeof(buf), "\\u%04x", c);
          out.append(buf);
        } else {
          out.push_back(static_cast<char>(c));
        }
    }
  }
  out.push_back('"');
}

std::string_view OrDash(std::string_view s) { return s.empty() ? std::string_view("-") : s; }

double Millis(http::StreamInfo::Time from, http::StreamInfo::Time to) {
  return std::chrono::duration<double, std::milli>(to - from).count();
}

}  // namespace

std::shared_ptr<AccessLogger> AccessLogger::Open(const std::string& path, Format format,
                                                 std::string* error) {
  if (path == "off") return std::shared_ptr<AccessLogger>(new AccessLogger(-1, false, format));
  if (path.empty() || path == "stdout") {
    return std::shared_ptr<AccessLogger>(new AccessLogger(1, false, format));
  }
  if (path == "stderr") return std::shared_ptr<AccessLogger>(new AccessLogger(2, false, format));
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) {
    *error = Cat("cannot open access log '", path, "': ", strerror(errno));
    return nullptr;
  }
  return std::shared_ptr<AccessLogger>(new AccessLogger(fd, true, format));
}

AccessLogger::~AccessLogger() {
  if (owned_ && fd_ >= 0) close(fd_);
}

void AccessLogger::Log(const http::StreamInfo& info, http::StreamInfo::Time now) const {
  if (fd_ < 0) return;
  const http::ErrorCauseInfo& cause = http::InfoFor(info.cause);
  std::string error = info.cause == http::ErrorCause::kNone ? "" : std::string(cause.name);
  // A filter's own word (the cache's HIT, STALE) shows when no error did.
  std::string_view flag = info.cause == http::ErrorCause::kNone && !info.response_flag.empty()
                              ? std::string_view(info.response_flag)
                              : cause.flag;
  if ((info.cause == http::ErrorCause::kDownstreamProtocolError ||
       info.cause == http::ErrorCause::kFilterLocalReply) &&
      !info.detail.empty()) {
    error = info.detail;
  }
  std::string time = absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::FromChrono(info.start_system),
                                      absl::UTCTimeZone());
  double duration = Millis(info.start, info.end.value_or(now));
  std::string upstream_time = "-";
  if (info.upstream_request_sent && info.upstream_response_headers) {
    upstream_time = absl::StrFormat(
        "%.3f", Millis(*info.upstream_request_sent, *info.upstream_response_headers));
  }
  std::string line;
  line.reserve(256);
  if (format_ == Format::kText) {
    line += Cat("[", time, "] \"", OrDash(info.method), " ", OrDash(info.path), " ", info.protocol,
                "\" ", info.status, " ", flag, " ", info.bytes_received, " ", info.bytes_sent, " ",
                absl::StrFormat("%.3f", duration), " ", upstream_time, " \"",
                OrDash(info.upstream_host), "\" \"", OrDash(info.request_id),
                "\" listener=", info.listener, " route=", OrDash(info.route),
                " cluster=", OrDash(info.cluster), " error=", OrDash(error),
                " attempts=", info.attempts, info.replay_overflow ? " replay_overflow" : "");
    if (!info.tls_version.empty()) {
      line += Cat(" tls=", info.tls_version, " sni=", OrDash(info.tls_sni), " client_cert=\"",
                  OrDash(info.tls_peer_subject), "\"");
    }
    line += "\n";
  } else {
    // `,"name":"value"` (the first field without the comma).
    auto field = [&line](std::string_view name, std::string_view value) {
      line += line.empty() ? "{\"" : ",\"";
      line += name;
      line += "\":";
      AppendJsonString(line, value);
    };
    field("time", time);
    field("method", info.method);
    field("path", info.path);
    field("protocol", info.protocol);
    field("authority", info.authority);
    line += Cat(",\"status\":", info.status, ",\"flag\":\"", flag, "\"");
    field("error", error);
    field("detail", info.detail);
    line += Cat(",\"bytes_received\":", info.bytes_received, ",\"bytes_sent\":", info.bytes_sent,
                ",\"duration_ms\":", absl::StrFormat("%.3f", duration),
                ",\"upstream_time_ms\":", upstream_time == "-" ? "null" : upstream_time);
    field("upstream_host", info.upstream_host);
    field("request_id", info.request_id);
    field("listener", info.listener);
    field("route", info.route);
    field("cluster", info.cluster);
    line += Cat(",\"attempts\":", info.attempts,
                ",\"replay_overflow\":", info.replay_overflow ? "true" : "false");
    field("client", info.downstream_ip);
    if (!info.tls_version.empty()) {
      field("tls_version", info.tls_version);
      field("tls_sni", info.tls_sni);
      field("tls_client_subject", info.tls_peer_subject);
    }
    line.append("}\n");
  }
  // One write per line keeps lines whole when workers log at once.
  ssize_t ignored = write(fd_, line.data(), line.size());
  (void)ignored;
}

}  // namespace portway::server
