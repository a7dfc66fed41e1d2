#include "core/tls/connection.h"

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include <cerrno>
#include <cstring>

#include "core/tls/openssl_util.h"

namespace portway::tls {
namespace {

// Plaintext smaller than this is gathered with its neighbours into one
// record instead of going out as a record of its own (a response head and
// a small body: one record, not two).
constexpr size_t kCoalesceBelow = 4096;
constexpr size_t kMaxRecord = 16384;

int BioRead(BIO* bio, char* out, int size) {
  auto* connection = static_cast<TlsConnection*>(BIO_get_data(bio));
  BIO_clear_retry_flags(bio);
  Buffer& in = connection->in();
  if (in.empty()) {
    // 0 is end of input: OpenSSL then sees the peer's EOF. Until then,
    // "try again" (the loop brings more).
    if (connection->TcpEof()) return 0;
    BIO_set_retry_read(bio);
    return -1;
  }
  size_t copied = 0;
  while (copied < static_cast<size_t>(size) && !in.empty()) {
    std::string_view slice = in.FrontSlice();
    size_t n = std::min(slice.size(), static_cast<size_t>(size) - copied);
    std::memcpy(out + copied, slice.data(), n);
    in.Drain(n);
    copied += n;
  }
  return static_cast<int>(copied);
}

int BioWrite(BIO* bio, const char* data, int size) {
  auto* connection = static_cast<TlsConnection*>(BIO_get_data(bio));
  BIO_clear_retry_flags(bio);
  connection->out().Add(std::string_view(data, static_cast<size_t>(size)));
  return size;
}

long BioCtrl(BIO*, int command, long, void*) {  // NOLINT(runtime/int): OpenSSL's signature
  return command == BIO_CTRL_FLUSH ? 1 : 0;
}

BIO_METHOD* BufferBioMethod() {
  static BIO_METHOD* method = [] {
    BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "portway-buffer");
    BIO_meth_set_read(m, BioRead);
    BIO_meth_set_write(m, BioWrite);
    BIO_meth_set_ctrl(m, BioCtrl);
    BIO_meth_set_create(m, [](BIO* bio) {
      BIO_set_init(bio, 1);
      return 1;
    });
    return m;
  }();
  return method;
}

}  // namespace

TlsConnection::TlsConnection(event::Dispatcher& dispatcher, event::ConnectionPtr tcp, SSL* ssl,
                             std::shared_ptr<const void> context,
                             std::shared_ptr<HandshakeObserver> observer)
    : dispatcher_(dispatcher),
      tcp_(std::move(tcp)),
      ssl_(ssl),
      context_(std::move(context)),
      observer_(std::move(observer)),
      client_(SSL_is_server(ssl) == 0) {
  BIO* bio = BIO_new(BufferBioMethod());
  BIO_set_data(bio, this);
  SSL_set_bio(ssl_, bio, bio);
  SSL_set_app_data(ssl_, this);
  tcp_->SetCallbacks(this);
}

TlsConnection::~TlsConnection() { SSL_free(ssl_); }

TlsConnection* TlsConnection::FromSsl(SSL* ssl) {
  return static_cast<TlsConnection*>(SSL_get_app_data(ssl));
}

void TlsConnection::SetServerName(std::string_view name) {
  // It goes to logs and to filters: a host name's characters only (a
  // client can put anything but NUL in it).
  if (name.size() > 253) return;
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '-' || c == '_';
    if (!ok) return;
  }
  info_.sni.assign(name);
}

int TlsConnection::LastError() const { return failed_ ? EPROTO : tcp_->LastError(); }

void TlsConnection::ReleaseIdleStorage() {
  // OpenSSL gives back its own record buffers when idle
  // (SSL_MODE_RELEASE_BUFFERS); these are the ones around it.
  for (Buffer* b : {&in_, &out_, &plain_, &pending_plain_}) {
    if (b->empty()) *b = Buffer();
  }
  tcp_->ReleaseIdleStorage();
}

void TlsConnection::OnData(Buffer& data, bool end_stream) {
  if (!data.empty()) received_any_ = true;
  in_.Move(data);
  if (end_stream) tcp_eof_ = true;
  Advance();
}

void TlsConnection::OnEvent(event::ConnectionEvent event) {
  switch (event) {
    case event::ConnectionEvent::kConnected:
      // A client: say hello.
      Advance();
      return;
    case event::ConnectionEvent::kConnectFailed:
      if (closed_) return;
      break;
    case event::ConnectionEvent::kRemoteClose:
    case event::ConnectionEvent::kLocalClose:
      // After Close() the owner hears only how the close ended.
      if (client_ && !handshake_done_ && !failed_ && !closed_) {
        // The peer went away in the middle of the handshake.
        failed_ = true;
        info_.failure = event::TlsInfo::Failure::kHandshake;
        info_.failure_detail = std::string("the connection closed during the TLS handshake") +
                               (tcp_->LastError() != 0 ? ": " : "") +
                               (tcp_->LastError() != 0 ? strerror(tcp_->LastError()) : "");
        if (callbacks_ != nullptr) callbacks_->OnEvent(event::ConnectionEvent::kConnectFailed);
        return;
      }
      break;
  }
  if (callbacks_ != nullptr) callbacks_->OnEvent(event);
}

void TlsConnection::OnAboveWriteBufferHighWatermark() {
  if (callbacks_ != nullptr) callbacks_->OnAboveWriteBufferHighWatermark();
}

void TlsConnection::OnBelowWriteBufferLowWatermark() {
  if (callbacks_ != nullptr) callbacks_->OnBelowWriteBufferLowWatermark();
}

void TlsConnection::Advance() {
  if (failed_ || closed_ || tcp_->Closed()) return;
  if (!handshake_done_) {
    // SSL_get_error reads the thread's error queue: it must hold nothing
    // from anyone else's failure. Past the handshake the queue is kept
    // empty instead (every failure path here takes what it queued), which
    // saves a thread-local lookup per read and write.
    ERR_clear_error();
    DoHandshake();
    if (!handshake_done_ || failed_ || closed_ || tcp_->Closed()) return;
  }
  ReadPlaintext();
}

void TlsConnection::DoHandshake() {
  int rc = SSL_do_handshake(ssl_);
  if (rc == 1) {
    FlushOut();
    OnHandshakeDone();
    return;
  }
  int error = SSL_get_error(ssl_, rc);
  if (error == SSL_ERROR_WANT_READ || error == SSL_ERROR_WANT_WRITE) {
    FlushOut();
    return;
  }
  long verify = SSL_get_verify_result(ssl_);  // NOLINT(runtime/int)
  std::string detail = TakeOpenSslError(tcp_eof_ ? "the connection closed during the TLS handshake"
                                                 : "TLS handshake failed");
  FlushOut();  // the alert, when OpenSSL made one
  if (verify != X509_V_OK) {
    Fail(event::TlsInfo::Failure::kVerify, X509_verify_cert_error_string(verify));
  } else {
    Fail(event::TlsInfo::Failure::kHandshake, std::move(detail));
  }
}

void TlsConnection::OnHandshakeDone() {
  handshake_done_ = true;
  info_.version = SSL_get_version(ssl_);
  info_.cipher = SSL_get_cipher_name(ssl_);
  const unsigned char* alpn = nullptr;
  unsigned int alpn_size = 0;
  SSL_get0_alpn_selected(ssl_, &alpn, &alpn_size);
  info_.alpn.assign(reinterpret_cast<const char*>(alpn), alpn_size);
  // (The SNI was recorded by the context's servername callback: OpenSSL
  // forgets it on a resumed TLS 1.2 session.)
  info_.session_reused = SSL_session_reused(ssl_) == 1;
  if (X509* peer = SSL_get0_peer_certificate(ssl_)) {
    info_.peer_verified = SSL_get_verify_result(ssl_) == X509_V_OK;
    if (info_.peer_verified) info_.peer_subject = NameToString(X509_get_subject_name(peer));
  }
  if (!client_) {
    if (observer_) observer_->OnHandshakeDone(info_);
    if (callbacks_ != nullptr) callbacks_->OnEvent(event::ConnectionEvent::kConnected);
    return;
  }
  if (callbacks_ != nullptr) callbacks_->OnEvent(event::ConnectionEvent::kConnected);
  // What the owner wrote while the handshake ran (or in its kConnected)
  // goes out now.
  FlushPlaintext();
}

void TlsConnection::Fail(event::TlsInfo::Failure failure, std::string detail) {
  failed_ = true;
  info_.failure = failure;
  info_.failure_detail = std::move(detail);
  pending_plain_.Clear();
  tcp_->Close(event::CloseType::kNoFlush);
  if (client_) {
    if (callbacks_ != nullptr) callbacks_->OnEvent(event::ConnectionEvent::kConnectFailed);
    return;
  }
  // A peer that connects and leaves without a word (a port probe, a TCP
  // health check) did not fail a handshake.
  if (observer_ && received_any_) observer_->OnHandshakeFailed(info_);
  if (callbacks_ != nullptr) callbacks_->OnEvent(event::ConnectionEvent::kRemoteClose);
}

void TlsConnection::ReadPlaintext() {
  bool broken = false;
  while (read_disable_count_ == 0 && !peer_closed_) {
    size_t available = 0;
    char* space = plain_.Reserve(kMaxRecord, &available);
    int n = SSL_read(ssl_, space, static_cast<int>(available));
    if (n > 0) {
      plain_.Commit(static_cast<size_t>(n));
      continue;
    }
    plain_.Commit(0);
    int error = SSL_get_error(ssl_, n);
    if (error == SSL_ERROR_WANT_READ || error == SSL_ERROR_WANT_WRITE) break;
    // close_notify, or (SSL_OP_IGNORE_UNEXPECTED_EOF) the TCP EOF: the
    // application protocol's own framing tells a cut message.
    if (error == SSL_ERROR_ZERO_RETURN) {
      peer_closed_ = true;
      break;
    }
    // An alert, or a record that does not decrypt: nothing after it can
    // be trusted.
    broken = true;
    std::string reason = TakeOpenSslError("TLS record error");
    if (client_ && !received_data_) {
      // With TLS 1.3 a client's handshake is done before the server has
      // checked the client's certificate; a rejection arrives as the first
      // record. The server processed nothing: a failed handshake.
      info_.failure = event::TlsInfo::Failure::kHandshake;
    }
    info_.failure_detail = std::move(reason);
    break;
  }
  if (!plain_.empty()) received_data_ = true;
  // Reading can write too: TLS 1.3 key updates, alerts.
  FlushOut();
  if (broken) {
    // What decrypted before the failure is still the peer's.
    if (!plain_.empty() && callbacks_ != nullptr && read_disable_count_ == 0) {
      callbacks_->OnData(plain_, false);
    }
    if (closed_) return;
    tcp_->Close(event::CloseType::kNoFlush);
    if (callbacks_ != nullptr) callbacks_->OnEvent(event::ConnectionEvent::kRemoteClose);
    return;
  }
  if (callbacks_ == nullptr || read_disable_count_ > 0) return;
  bool end = peer_closed_ && !eof_delivered_;
  if (plain_.empty() && !end) return;
  if (end) eof_delivered_ = true;
  callbacks_->OnData(plain_, end);
}

void TlsConnection::Write(Buffer& data) {
  if (!IsOpen() || shutdown_sent_) {
    data.Clear();
    return;
  }
  pending_plain_.Move(data);
  if (!handshake_done_) return;  // sent when it is done
  // Sealed once per loop turn: a response head and its body written one
  // after the other become one record and one socket write, not two.
  if (!flush_timer_) flush_timer_ = dispatcher_.CreateTimer([this] { FlushPlaintext(); });
  if (!flush_timer_->Enabled()) flush_timer_->Enable(std::chrono::milliseconds(0));
}

void TlsConnection::FlushPlaintext() {
  if (flush_timer_) flush_timer_->Disable();
  if (pending_plain_.empty() || !IsOpen() || shutdown_sent_) return;
  Encrypt(pending_plain_);
  FlushOut();
}

void TlsConnection::Encrypt(Buffer& data) {
  char gathered[kMaxRecord];
  while (!data.empty()) {
    std::string_view chunk = data.FrontSlice();
    size_t drain = chunk.size();
    if (chunk.size() < kCoalesceBelow && data.SliceCount() > 1) {
      // Small pieces: copy them into one record.
      // Small pieces: copy them into one record, in order, up to the
      // first big slice (which goes as it is next).
      size_t n = 0;
      bool stop = false;
      data.ForEachSlice([&](std::string_view slice) {
        if (stop || n == sizeof(gathered) || (n > 0 && slice.size() >= kCoalesceBelow)) {
          stop = true;
          return;
        }
        size_t k = std::min(slice.size(), sizeof(gathered) - n);
        std::memcpy(gathered + n, slice.data(), k);
        n += k;
      });
      chunk = std::string_view(gathered, n);
      drain = n;
    }
    int written = SSL_write(ssl_, chunk.data(), static_cast<int>(chunk.size()));
    if (written <= 0) {
      // Only a connection OpenSSL already considers failed gets here (the
      // BIO never refuses bytes); drop the rest.
      ERR_clear_error();
      data.Clear();
      return;
    }
    data.Drain(drain);
  }
}

void TlsConnection::FlushOut() {
  if (!out_.empty()) tcp_->Write(out_);
}

void TlsConnection::Close(event::CloseType type) {
  closed_ = true;
  if (type == event::CloseType::kFlushWrite && handshake_done_ && !failed_ && !shutdown_sent_ &&
      tcp_->IsOpen()) {
    FlushPlaintext();
    // close_notify, so the peer can tell our end from a cut connection.
    shutdown_sent_ = true;
    ERR_clear_error();
    SSL_shutdown(ssl_);
    ERR_clear_error();
    FlushOut();
  }
  if (resume_timer_) resume_timer_->Disable();
  if (flush_timer_) flush_timer_->Disable();
  pending_plain_.Clear();
  tcp_->Close(type);
}

void TlsConnection::ReadDisable(bool disable) {
  if (disable) {
    if (++read_disable_count_ == 1) tcp_->ReadDisable(true);
    return;
  }
  if (read_disable_count_ == 0) return;
  if (--read_disable_count_ > 0) return;
  tcp_->ReadDisable(false);
  if (closed_) return;
  // Records already received (or plaintext the owner left) are not
  // announced again by the socket: go on from the loop.
  // (An EOF that arrived while paused has not been read through OpenSSL
  // yet: that is what turns it into the owner's end_stream.)
  if (!in_.empty() || !plain_.empty() || ((peer_closed_ || tcp_eof_) && !eof_delivered_)) {
    ScheduleResume();
  }
}

void TlsConnection::ScheduleResume() {
  if (!resume_timer_) {
    resume_timer_ = dispatcher_.CreateTimer([this] {
      if (read_disable_count_ == 0) Advance();
    });
  }
  resume_timer_->Enable(std::chrono::milliseconds(0));
}

}  // namespace portway::tls
