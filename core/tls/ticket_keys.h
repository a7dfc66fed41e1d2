// The keys TLS session tickets are sealed with, rotated on a schedule.
//
// A ticket lets a client resume a session without a full handshake; the
// server keeps no per-session state, only these keys. A key that never
// changes turns one leaked key into the decryption of every recorded
// session (no forward secrecy for resumed sessions), so new tickets are
// sealed with a fresh key every `rotation`, and a ticket sealed with the
// previous key is still accepted (and renewed) for one more period. Keys
// live in memory only; the set outlives reloads so they do not cut every
// client's resumption.
//
// Thread safety: every method may be called from any worker (handshakes run
// on workers); a mutex guards the keys. Taken once per ticket issued or
// presented, which is small next to a handshake.
//
//   auto keys = std::make_shared<TicketKeys>(std::chrono::hours(1), clock, fill_random);
//   TicketKeys::Key k = keys->Current();        // seal a new ticket
//   auto old = keys->Find(name, &renew);         // open a presented one
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>

#include "portway/time_source.h"

namespace portway::tls {

class TicketKeys {
 public:
  struct Key {
    std::array<uint8_t, 16> name{};
    std::array<uint8_t, 32> cipher_key{};  // AES-256-CBC
    std::array<uint8_t, 32> mac_key{};     // HMAC-SHA256
  };
  using Clock = std::function<MonotonicTime()>;
  // Fills a buffer with cryptographically strong random bytes.
  using RandomFill = std::function<void(uint8_t* data, size_t size)>;

  // The real clock (steady_clock) and RAND_bytes.
  explicit TicketKeys(std::chrono::seconds rotation);
  TicketKeys(std::chrono::seconds rotation, Clock clock, RandomFill random);

  // The key to seal a new ticket with; rotates first when it is due.
  Key Current();
  // The key a presented ticket names, if it is the current or the previous
  // one; `*renew` is set when the client should get a ticket under the
  // current key.
  std::optional<Key> Find(const uint8_t* name, bool* renew);

  std::chrono::seconds rotation() const { return rotation_; }
  uint64_t rotations() const;

 private:
  void RotateIfDueLocked();
  Key NewKey();

  const std::chrono::seconds rotation_;
  Clock clock_;
  RandomFill random_;
  mutable std::mutex mu_;
  Key current_;
  std::optional<Key> previous_;
  MonotonicTime current_since_;
  uint64_t rotations_ = 0;
};

}  // namespace portway::tls
