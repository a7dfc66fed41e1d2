#include "core/tls/ticket_keys.h"

#include <openssl/rand.h>

#include <cstring>
#include <stdexcept>

namespace portway::tls {

TicketKeys::TicketKeys(std::chrono::seconds rotation)
    : TicketKeys(
          rotation, [] { return std::chrono::steady_clock::now(); },
          [](uint8_t* data, size_t size) {
            if (RAND_bytes(data, static_cast<int>(size)) != 1) {
              // Without randomness there is no safe key; nothing sensible
              // can continue.
              throw std::runtime_error("RAND_bytes failed");
            }
          }) {}

TicketKeys::TicketKeys(std::chrono::seconds rotation, Clock clock, RandomFill random)
    : rotation_(rotation), clock_(std::move(clock)), random_(std::move(random)) {
  current_ = NewKey();
  current_since_ = clock_();
}

TicketKeys::Key TicketKeys::NewKey() {
  Key key;
  random_(key.name.data(), key.name.size());
  random_(key.cipher_key.data(), key.cipher_key.size());
  random_(key.mac_key.data(), key.mac_key.size());
  return key;
}

void TicketKeys::RotateIfDueLocked() {
  MonotonicTime now = clock_();
  if (now - current_since_ < rotation_) return;
  // Rotation is lazy (on the first handshake after it is due), so the
  // current key may have sealed tickets until now: keep it for one period.
  previous_ = current_;
  current_ = NewKey();
  current_since_ = now;
  ++rotations_;
}

TicketKeys::Key TicketKeys::Current() {
  std::lock_guard lock(mu_);
  RotateIfDueLocked();
  return current_;
}

std::optional<TicketKeys::Key> TicketKeys::Find(const uint8_t* name, bool* renew) {
  std::lock_guard lock(mu_);
  RotateIfDueLocked();
  *renew = false;
  if (std::memcmp(name, current_.name.data(), current_.name.size()) == 0) return current_;
  if (previous_ && std::memcmp(name, previous_->name.data(), previous_->name.size()) == 0) {
    *renew = true;
    return previous_;
  }
  return std::nullopt;
}

uint64_t TicketKeys::rotations() const {
  std::lock_guard lock(mu_);
  return rotations_;
}

}  // namespace portway::tls
