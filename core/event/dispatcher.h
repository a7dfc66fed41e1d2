// The event loop seen by the rest of Portway: timers, cross-thread posts,
// TCP connections and listeners, signals and asynchronous DNS. Only
// core/event/ includes uv.h; everything else talks to these interfaces, so
// the loop can be replaced and tests can drive time by hand.
//
// Thread safety: a Dispatcher and everything it creates belong to the one
// thread that calls Run(). The only exception is Post(), which any thread
// may call.
//
//   DispatcherPtr d = Dispatcher::Create("worker_0");
//   TimerPtr t = d->CreateTimer([] { ... });
//   t->Enable(std::chrono::milliseconds(100));
//   d->Run();   // until Exit()
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/network/address.h"
#include "portway/buffer.h"
#include "portway/time_source.h"

namespace portway::event {

using MonotonicTime = portway::MonotonicTime;
using SystemTime = portway::SystemTime;

class Timer {
 public:
  virtual ~Timer() = default;
  // (Re)arms the timer; a timer fires once.
  virtual void Enable(std::chrono::milliseconds timeout) = 0;
  virtual void Disable() = 0;
  virtual bool Enabled() const = 0;
};
using TimerPtr = std::unique_ptr<Timer>;

// Anything whose destruction must wait until the current callback stack has
// unwound (a connection closing itself from its own read callback).
class DeferredDeletable {
 public:
  virtual ~DeferredDeletable() = default;
};

enum class ConnectionEvent {
  kConnected,      // an outgoing connect completed (TLS: and its handshake; an
                   // accepted TLS connection says it when its handshake did)
  kConnectFailed,  // an outgoing connect failed; see Connection::LastError()
  kRemoteClose,    // the peer closed or reset the connection
  kLocalClose,     // Close() finished
};

enum class CloseType {
  kFlushWrite,  // send what is buffered, half-close, linger, then close
  kNoFlush,     // close now, discard buffered output
  kReset,       // close now with an RST (SO_LINGER 0)
};

class ConnectionCallbacks {
 public:
  virtual ~ConnectionCallbacks() = default;
  // Bytes arrived; the receiver drains what it consumed from `data` and may
  // leave the rest for the next call. `end_stream` is true once the peer
  // has half-closed (EOF); no more data follows.
  virtual void OnData(Buffer& data, bool end_stream) = 0;
  virtual void OnEvent(ConnectionEvent event) = 0;
  // The write buffer passed the high watermark / fell to the low one: the
  // writer should stop / resume producing (back-pressure).
  virtual void OnAboveWriteBufferHighWatermark() {}
  virtual void OnBelowWriteBufferLowWatermark() {}
};

// What a TLS transport negotiated and learned about its peer. A plaintext
// connection has none (Connection::Tls() is null).
struct TlsInfo {
  std::string version;  // "TLSv1.3"
  std::string cipher;
  std::string alpn;  // the application protocol agreed on: "h2", "http/1.1", or ""
  std::string sni;   // server side: the name the client asked for
  // The peer's certificate subject (RFC 2253), when it sent one that
  // verified; "" otherwise.
  std::string peer_subject;
  bool peer_verified = false;
  bool session_reused = false;
  // Why the handshake failed, if it did: kVerify when the peer's
  // certificate did not verify, kHandshake for anything else.
  enum class Failure : uint8_t { kNone, kHandshake, kVerify };
  Failure failure = Failure::kNone;
  std::string failure_detail;
};

class Connection {
 public:
  virtual ~Connection() = default;
  virtual void SetCallbacks(ConnectionCallbacks* callbacks) = 0;
  // Takes every byte of `data` (it is left empty).
  virtual void Write(Buffer& data) = 0;
  virtual void Close(CloseType type) = 0;
  // Stops or resumes reading from the socket. Calls nest: reading resumes
  // when every disable has been undone.
  virtual void ReadDisable(bool disable) = 0;
  virtual bool ReadEnabled() const = 0;
  virtual size_t WriteBufferedBytes() const = 0;
  // High watermark for the write buffer; the low one is half of it.
  virtual void SetWriteBufferLimit(size_t high) = 0;
  virtual bool IsOpen() const = 0;
  // The socket is gone. After Close(kFlushWrite) this turns true only once
  // the buffered bytes were sent and the peer closed too (or a time limit
  // passed); the owner learns it from OnEvent(kLocalClose) and must keep the
  // Connection alive until then.
  virtual bool Closed() const = 0;
  // errno-style code (e.g. ECONNREFUSED) of a failed connect or a reset.
  virtual int LastError() const = 0;
  virtual const network::Address& RemoteAddress() const = 0;
  virtual uint64_t Id() const = 0;
  // Null for plaintext. A TLS connection's info fills in as its handshake
  // completes (or fails).
  virtual const TlsInfo* Tls() const { return nullptr; }
  // Gives back the storage that its empty buffers keep for reuse (their
  // slice lists): an idle keep-alive connection need hold none. Buffers
  // with bytes in them are left as they are.
  virtual void ReleaseIdleStorage() {}
};
using ConnectionPtr = std::unique_ptr<Connection>;

class ListenerCallbacks {
 public:
  virtual ~ListenerCallbacks() = default;
  virtual void OnAccept(ConnectionPtr connection) = 0;
  // accept() failed with `error` (errno: EMFILE when the process is out of
  // file descriptors, ENFILE, ENOBUFS, ENOMEM); the listener stops
  // accepting for `paused` and then tries again.
  virtual void OnAcceptError(int error, std::chrono::milliseconds paused) {}
};

class Listener {
 public:
  virtual ~Listener() = default;
  // Stops accepting (drain); the socket is closed when the Listener is
  // destroyed.
  virtual void Disable() = 0;
};
using ListenerPtr = std::unique_ptr<Listener>;

class SignalHandle {
 public:
  virtual ~SignalHandle() = default;
};
using SignalHandlePtr = std::unique_ptr<SignalHandle>;

// Result of a name lookup: every address (port filled in), or an error.
struct ResolveResult {
  int error = 0;  // 0 on success; else a getaddrinfo error
  std::string error_message;
  std::vector<network::Address> addresses;
};

// A Dispatcher is its thread's clock (TimeSource: Now(), SystemNow()) and
// owns its thread's random source; filters reach both through their
// callbacks.
class Dispatcher : public TimeSource {
 public:
  virtual ~Dispatcher() = default;
  static std::unique_ptr<Dispatcher> Create(std::string name);

  virtual const std::string& Name() const = 0;
  virtual void Run() = 0;
  // Makes Run() return once the current iteration ends. Loop thread only;
  // from another thread, Post([d] { d->Exit(); }).
  virtual void Exit() = 0;
  // Runs `callback` on the loop thread. Safe from any thread.
  virtual void Post(std::function<void()> callback) = 0;
  virtual TimerPtr CreateTimer(std::function<void()> callback) = 0;
  // Destroys `object` on the next loop iteration, after the current
  // callback stack has unwound.
  virtual void DeferredDelete(std::unique_ptr<DeferredDeletable> object) = 0;
  // Destroys everything DeferredDelete() queued, now. For teardown, when
  // the loop no longer runs.
  virtual void ClearDeferredDeleteList() = 0;
  // The loop's clock: timers fire by it.
  MonotonicTime Now() const override = 0;
  SystemTime SystemNow() const override = 0;
  // This loop's random source: seeded once per dispatcher (so workers do
  // not jitter in lockstep); deterministic in tests.
  virtual RandomGenerator& Random() = 0;

  // Starts a non-blocking connect; the outcome arrives as kConnected or
  // kConnectFailed through the callbacks set before the loop runs again.
  virtual ConnectionPtr Connect(const network::Address& address) = 0;
  // Serves an already bound and listening socket (SO_REUSEPORT: one per
  // worker). The Listener owns the fd.
  virtual ListenerPtr AdoptListener(int fd, ListenerCallbacks& callbacks) = 0;
  virtual SignalHandlePtr ListenForSignal(int signum, std::function<void()> callback) = 0;
  // Resolves `host` asynchronously (thread pool); `callback` runs on this
  // loop.
  virtual void Resolve(const std::string& host, uint16_t port,
                       std::function<void(ResolveResult)> callback) = 0;
};
using DispatcherPtr = std::unique_ptr<Dispatcher>;

// How a listening socket shares its port (SO_REUSEPORT, one socket per
// worker). A group is opened by a socket that binds without SO_REUSEPORT,
// so a port that any other socket holds (another process's included) is
// refused with EADDRINUSE instead of silently sharing its traffic; the
// option is set after bind so the group's other sockets can join.
enum class PortSharing {
  kExclusive,  // never shared (admin)
  kNewGroup,   // the first socket of a group: fails if anyone holds the port
  kJoinGroup,  // joins a group this process opened
};

// Makes a TCP socket bound to `address` and listening, non-blocking, with
// SO_REUSEADDR. Returns the fd or -errno.
int CreateListenSocket(const network::Address& address, int backlog, std::string* error,
                       PortSharing sharing = PortSharing::kNewGroup);
// The address a socket is bound to (to learn the port after binding :0).
network::Address SocketLocalAddress(int fd);

}  // namespace portway::event
