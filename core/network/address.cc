#include "core/network/address.h"

#include "core/common/strings.h"

#include <arpa/inet.h>

#include <cstring>

namespace portway::network {

absl::Status Address::SplitHostPort(std::string_view text, std::string* host, uint16_t* port) {
  std::string_view h, p;
  if (!text.empty() && text.front() == '[') {
    size_t close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return absl::InvalidArgumentError(Cat("'", text, "' is not [IPv6]:PORT (e.g. [::1]:8080)"));
    }
    h = text.substr(1, close - 1);
    p = text.substr(close + 2);
  } else {
    size_t colon = text.rfind(':');
    if (colon == std::string_view::npos || colon == 0) {
      return absl::InvalidArgumentError(Cat("'", text, "' is not HOST:PORT (e.g. 127.0.0.1:8080)"));
    }
    h = text.substr(0, colon);
    p = text.substr(colon + 1);
    if (h.find(':') != std::string_view::npos) {
      return absl::InvalidArgumentError(
          Cat("'", text, "': write IPv6 addresses in brackets, e.g. [::1]:8080"));
    }
  }
  uint64_t port_value = 0;
  if (!ParseUint64(p, &port_value) || port_value > 65535) {
    return absl::InvalidArgumentError(Cat("'", text, "': invalid port '", p, "'"));
  }
  *host = std::string(h);
  *port = static_cast<uint16_t>(port_value);
  return absl::OkStatus();
}

Address Address::FromIp(std::string_view ip, uint16_t port, bool* ok) {
  Address a;
  std::string ip_str(ip);
  auto* v4 = &a.storage_.v4;
  auto* v6 = &a.storage_.v6;
  if (inet_pton(AF_INET, ip_str.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    *ok = true;
  } else if (inet_pton(AF_INET6, ip_str.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    *ok = true;
  } else {
    *ok = false;
  }
  return a;
}

absl::StatusOr<Address> Address::Parse(std::string_view text) {
  std::string host;
  uint16_t port = 0;
  absl::Status status = SplitHostPort(text, &host, &port);
  if (!status.ok()) return status;
  bool ok = false;
  Address a = FromIp(host, port, &ok);
  if (!ok) {
    return absl::InvalidArgumentError(Cat("'", host, "' is not an IP address"));
  }
  return a;
}

Address Address::FromSockaddr(const sockaddr* sa) {
  Address a;
  if (sa->sa_family == AF_INET) {
    std::memcpy(&a.storage_.v4, sa, sizeof(sockaddr_in));
  } else if (sa->sa_family == AF_INET6) {
    std::memcpy(&a.storage_.v6, sa, sizeof(sockaddr_in6));
  }
  return a;
}

socklen_t Address::sockaddr_len() const {
  return family() == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
}

uint16_t Address::port() const {
  if (family() == AF_INET) return ntohs(storage_.v4.sin_port);
  if (family() == AF_INET6) return ntohs(storage_.v6.sin6_port);
  return 0;
}

std::string Address::Ip() const {
  char buf[INET6_ADDRSTRLEN] = {0};
  if (family() == AF_INET) {
    inet_ntop(AF_INET, &storage_.v4.sin_addr, buf, sizeof(buf));
  } else if (family() == AF_INET6) {
    inet_ntop(AF_INET6, &storage_.v6.sin6_addr, buf, sizeof(buf));
  }
  return buf;
}

std::string Address::ToString() const {
  if (family() == AF_INET6) return Cat("[", Ip(), "]:", port());
  if (family() == AF_INET) return Cat(Ip(), ":", port());
  return "unset";
}

bool Address::operator==(const Address& other) const {
  return family() == other.family() && sockaddr_len() == other.sockaddr_len() &&
         std::memcmp(&storage_, &other.storage_, sockaddr_len()) == 0;
}

}  // namespace portway::network
