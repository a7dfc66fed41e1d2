// The shared tier of the HTTP cache: one Redis server that every gateway of
// a fleet reads and fills, behind the in-process store. Values are opaque
// bytes here (the cache puts EncodeStoredResponse's output in them).
//
// The tier is built so that Redis can only ever cost a lookup its deadline:
//  - it owns one background I/O thread running its own libuv loop, which
//    speaks to Redis over a single pipelined hiredis connection;
//  - while that connection is down, Get answers kUnavailable at once and Set
//    drops its value; the thread reconnects with exponential back-off;
//  - every command has a deadline (command_timeout, counted from the call);
//    when it passes, the callback gets kTimeout and a later reply is dropped;
//  - the commands waiting to be sent are bounded (max_queued): past that,
//    kOverflow at once.
//
// Thread safety: Get, Set, Connected and Stats may be called from any
// thread, concurrently. Get's callback is called exactly once:
//  - on the tier's I/O thread for every answer that involved that thread
//    (kHit, kMiss, kTooLarge, kTimeout, kError, and kUnavailable/kShutdown
//    for a command lost with its connection or the tier). The caller hops
//    back to its own thread (e.g. posts to its dispatcher) before touching
//    its stream, and must not block there: it would hold up every other
//    command;
//  - inline, on the caller's thread before Get returns, when the call is
//    refused outright: kUnavailable (disconnected), kOverflow (queue full),
//    kShutdown (the tier is being destroyed).
// A callback may call Get and Set again; it must not destroy the tier.
// Destroying the tier answers every outstanding Get with kShutdown (on the
// I/O thread, before the destructor returns) and joins the thread.
//
//   absl::StatusOr<RedisTierPtr> tier = RedisTier::Create({.address = "unix:/run/redis.sock"});
//   if (!tier.ok()) return tier.status();
//   (*tier)->Get(key, [dispatcher](RedisGetResult result) {
//     dispatcher->Post([result = std::move(result)] { /* use result */ });
//   });
//   (*tier)->Set(key, EncodeStoredResponse(response), std::chrono::seconds(60));
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"

namespace portway::cache {

struct RedisTierOptions {
  // "host:port" ("[v6addr]:port" for an IPv6 literal; a name is resolved on
  // the I/O thread, blocking only it) or "unix:/path/to/socket".
  std::string address;
  // Put before every key, so that one Redis can hold other data too.
  std::string prefix = "portway:cache:";
  std::chrono::milliseconds command_timeout{50};
  // Connecting, including AUTH and SELECT, must finish within this.
  std::chrono::milliseconds connect_timeout{200};
  // Commands accepted but not yet sent (they wait while max_in_flight are
  // on the wire); beyond it calls are refused with kOverflow.
  size_t max_queued = 1024;
  // Commands sent and not yet answered (or timed out and not yet answered).
  size_t max_in_flight = 256;
  // Larger values are neither sent by Set nor returned by Get.
  size_t max_value_bytes = 8 << 20;
  // The wait before a reconnect doubles after each failed attempt, from min
  // to max, and is back to min once connected.
  std::chrono::milliseconds reconnect_backoff_min{100};
  std::chrono::milliseconds reconnect_backoff_max{5000};
  // When set, AUTH is sent after connecting.
  std::string password;
  // When not 0, SELECT is sent after connecting.
  int db = 0;
};

struct RedisGetResult {
  enum Status {
    kHit,          // `value` holds the stored bytes.
    kMiss,         // No such key: fetch from upstream (and Set it).
    kTooLarge,     // Stored value over max_value_bytes: treat as a miss.
    kUnavailable,  // Not connected: treat as a miss; the tier reconnects by itself.
    kOverflow,     // Too many commands waiting: treat as a miss, Redis is behind.
    kTimeout,      // No answer within command_timeout: treat as a miss.
    kError,        // Redis answered with an error (e.g. WRONGTYPE): treat as a miss.
    kShutdown,     // The tier is being destroyed: stop using it.
  };
  Status status = kMiss;
  std::string value;
};

// Counters since Create. `gets` and `sets` count calls; the others count
// outcomes, of Gets and Sets alike (a Set's reply is not reported otherwise).
struct RedisTierStats {
  uint64_t gets = 0;
  uint64_t hits = 0;
  uint64_t misses = 0;
  uint64_t sets = 0;
  uint64_t errors = 0;  // error replies, failed AUTH/SELECT, commands hiredis refused
  uint64_t timeouts = 0;
  uint64_t overflows = 0;
  uint64_t too_large = 0;    // values refused by Set or Get for their size
  uint64_t unavailable = 0;  // commands refused or lost while not connected
  uint64_t reconnects = 0;   // connection attempts after the first
  bool connected = false;
};

class RedisTier {
 public:
  using GetCallback = absl::AnyInvocable<void(RedisGetResult)>;

  // InvalidArgument for a malformed address or option. Connecting starts in
  // the background: Connected() is false until it (and AUTH/SELECT) succeed.
  static absl::StatusOr<std::unique_ptr<RedisTier>> Create(RedisTierOptions options);

  // Answers every outstanding Get with kShutdown, closes the connection and
  // joins the I/O thread. Must not be called from a Get callback.
  ~RedisTier();

  RedisTier(const RedisTier&) = delete;
  RedisTier& operator=(const RedisTier&) = delete;

  // GET prefix+key. `done` is called exactly once (see the banner for which
  // thread).
  void Get(std::string key, GetCallback done);

  // SET prefix+key value EX ttl, fire and forget. Dropped (and counted) when
  // disconnected, over the queue bound or over max_value_bytes; a ttl under
  // one second stores nothing (the response is already stale).
  void Set(std::string key, std::string value, std::chrono::seconds ttl);

  // Whether the connection is up and ready (AUTH/SELECT done).
  // Deletes `key` (a purge); like Set, dropped while disconnected or
  // when the queue is full, and nothing tells when it is done.
  void Del(std::string key);
  bool Connected() const;

  RedisTierStats Stats() const;

 private:
  class Engine;
  explicit RedisTier(std::unique_ptr<Engine> engine);

  std::unique_ptr<Engine> engine_;
};

using RedisTierPtr = std::unique_ptr<RedisTier>;

}  // namespace portway::cache
