// An IPv4 or IPv6 socket address, a plain value type.
//
// Thread safety: immutable values; safe to share.
//
//   absl::StatusOr<Address> a = Address::Parse("127.0.0.1:8080");
//   a->ToString();  // "127.0.0.1:8080"
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace portway::network {

class Address {
 public:
  Address() = default;
  // Parses "IPv4:PORT" or "[IPv6]:PORT". The host must be an IP literal.
  static absl::StatusOr<Address> Parse(std::string_view text);
  // Splits "HOST:PORT" / "[HOST]:PORT" without resolving HOST.
  static absl::Status SplitHostPort(std::string_view text, std::string* host, uint16_t* port);
  static Address FromSockaddr(const sockaddr* sa);
  static Address FromIp(std::string_view ip, uint16_t port, bool* ok);

  const sockaddr* sockaddr_ptr() const { return &storage_.any; }
  socklen_t sockaddr_len() const;
  int family() const { return storage_.any.sa_family; }
  uint16_t port() const;
  // The IP alone, without port or brackets.
  std::string Ip() const;
  std::string ToString() const;
  bool operator==(const Address& other) const;

 private:
  // Only the two families Portway speaks: 28 bytes rather than the 128 of a
  // sockaddr_storage (every connection holds two addresses).
  union Storage {
    sockaddr any;
    sockaddr_in v4;
    sockaddr_in6 v6;
  };
  Storage storage_{};
};

}  // namespace portway::network
