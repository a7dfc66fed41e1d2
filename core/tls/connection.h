// TLS as a transport: an event::Connection that runs OpenSSL over another
// Connection (the TCP one), so codecs, pools and the connection manager see
// the same interface with or without TLS. Plaintext has no layer at all
// (the TCP connection is used as it is); a listener or cluster with `tls`
// wraps each of its connections in one of these (see context.h).
//
// OpenSSL reads and writes through a BIO that works on Portway's Buffers:
// received ciphertext moves from the TCP connection into `in_` without a
// copy and OpenSSL reads records out of it; what OpenSSL writes goes into
// `out_`, which moves to the TCP connection. Plaintext is delivered to the
// owner in `plain_`.
//
// Events: a server connection reports kConnected when its handshake is
// done, then data (a failed handshake closes the connection: kRemoteClose,
// never data). A
// client connection reports kConnected only when the handshake is done and
// the peer verified, and kConnectFailed when it fails, with Tls()->failure
// saying why — so a pool's connect timeout covers the handshake too.
//
// Back-pressure: ReadDisable stops both decrypting and reading the socket;
// the write buffer (and its watermarks) is the TCP connection's, in
// ciphertext. Writes are sealed once per loop turn (one record and one
// socket write for a response head and its body).
//
// Thread safety: one worker thread, like every Connection.
#pragma once

#include <openssl/ssl.h>

#include <functional>
#include <memory>

#include "core/event/dispatcher.h"

namespace portway::tls {

// Told how each server-side handshake ended (stats, logs).
class HandshakeObserver {
 public:
  virtual ~HandshakeObserver() = default;
  virtual void OnHandshakeDone(const event::TlsInfo& info) = 0;
  virtual void OnHandshakeFailed(const event::TlsInfo& info) = 0;
};

class TlsConnection final : public event::Connection, public event::ConnectionCallbacks {
 public:
  // Takes ownership of `ssl`, set up as a server (accept state) or a
  // client (connect state, SNI and verification set) by the caller.
  // `context` is kept alive as long as the connection (OpenSSL's callbacks
  // reach into it).
  TlsConnection(event::Dispatcher& dispatcher, event::ConnectionPtr tcp, SSL* ssl,
                std::shared_ptr<const void> context,
                std::shared_ptr<HandshakeObserver> observer = nullptr);
  ~TlsConnection() override;

  // event::Connection
  void SetCallbacks(event::ConnectionCallbacks* callbacks) override { callbacks_ = callbacks; }
  void Write(Buffer& data) override;
  void Close(event::CloseType type) override;
  void ReadDisable(bool disable) override;
  bool ReadEnabled() const override { return read_disable_count_ == 0; }
  size_t WriteBufferedBytes() const override {
    return tcp_->WriteBufferedBytes() + pending_plain_.length();
  }
  void SetWriteBufferLimit(size_t high) override { tcp_->SetWriteBufferLimit(high); }
  bool IsOpen() const override { return tcp_->IsOpen() && !failed_; }
  bool Closed() const override { return tcp_->Closed(); }
  int LastError() const override;
  const network::Address& RemoteAddress() const override { return tcp_->RemoteAddress(); }
  uint64_t Id() const override { return tcp_->Id(); }
  const event::TlsInfo* Tls() const override { return &info_; }
  void ReleaseIdleStorage() override;

  // event::ConnectionCallbacks, from the TCP connection.
  void OnData(Buffer& data, bool end_stream) override;
  void OnEvent(event::ConnectionEvent event) override;
  void OnAboveWriteBufferHighWatermark() override;
  void OnBelowWriteBufferLowWatermark() override;

  // For the BIO.
  Buffer& in() { return in_; }
  Buffer& out() { return out_; }
  bool TcpEof() const { return tcp_eof_; }
  // The connection an SSL belongs to (OpenSSL callbacks).
  static TlsConnection* FromSsl(SSL* ssl);
  // Server side: the name the client asked for (SNI), kept if it is a
  // plausible host name.
  void SetServerName(std::string_view name);

 private:
  // Runs the handshake and decryption as far as the input allows, then
  // sends what OpenSSL produced.
  void Advance();
  void DoHandshake();
  void OnHandshakeDone();
  void Fail(event::TlsInfo::Failure failure, std::string detail);
  void ReadPlaintext();
  void Encrypt(Buffer& data);
  // Seals what was written since the last flush and hands it to TCP.
  void FlushPlaintext();
  void FlushOut();
  void ScheduleResume();

  event::Dispatcher& dispatcher_;
  event::ConnectionPtr tcp_;
  SSL* ssl_;
  std::shared_ptr<const void> context_;
  std::shared_ptr<HandshakeObserver> observer_;
  const bool client_;
  event::ConnectionCallbacks* callbacks_ = nullptr;
  event::TlsInfo info_;
  Buffer in_;     // ciphertext received, not yet read by OpenSSL
  Buffer out_;    // ciphertext OpenSSL wrote, not yet handed to TCP
  Buffer plain_;  // plaintext for the owner
  // Written and not sealed yet: before the handshake finished, or in this
  // loop turn (flush_timer_).
  Buffer pending_plain_;
  event::TimerPtr resume_timer_;
  event::TimerPtr flush_timer_;
  int read_disable_count_ = 0;
  bool handshake_done_ = false;
  bool failed_ = false;
  bool tcp_eof_ = false;        // the peer half-closed TCP
  bool received_any_ = false;   // a connection that sends nothing is no failed handshake
  bool peer_closed_ = false;    // close_notify (or TCP EOF) reached the owner's side
  bool eof_delivered_ = false;  // the owner got end_stream
  bool shutdown_sent_ = false;
  bool closed_ = false;         // Close() was called: only the close's own end is reported
  bool received_data_ = false;  // application data arrived (client: the handshake held)
};

}  // namespace portway::tls
