// TLS contexts: what a listener terminates TLS with and what a cluster
// originates it with, built once per config from PEM text and shared,
// read-only, by every worker (OpenSSL's SSL_CTX is safe to share once
// configured). A connection gets its own SSL object from one of these and
// keeps the context alive for as long as it lives, so a reload or a
// rotated certificate affects new handshakes only.
//
// Thread safety: Create* on the main thread; the contexts are immutable
// afterwards and used from any worker.
//
//   tls::ServerOptions options;
//   options.certificates.push_back({"certificates[0]", chain_pem, key_pem});
//   auto context = tls::ServerContext::Create(options, report_error);
//   event::ConnectionPtr tls = context->Wrap(dispatcher, std::move(tcp));
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/event/dispatcher.h"
#include "core/tls/connection.h"
#include "core/tls/ticket_keys.h"

namespace portway::tls {

enum class Version { kTls12, kTls13 };

// Reports a problem with the field it concerns (relative to the tls block,
// e.g. "certificates[1].key_file").
using ErrorSink = std::function<void(const std::string& field, const std::string& message)>;

// A certificate chain (leaf first) and its private key, as PEM text.
struct CertificateSource {
  std::string field;  // where it came from, for errors ("certificates[0]")
  std::string chain_pem;
  std::string key_pem;
  // Fields the chain and the key came from (e.g. ".cert_file"), appended to
  // `field` in errors.
  std::string chain_field = ".cert_file";
  std::string key_field = ".key_file";
};

struct ServerOptions {
  std::vector<CertificateSource> certificates;
  Version min_version = Version::kTls12;
  Version max_version = Version::kTls13;
  std::string ciphers;       // TLS 1.2 and below; OpenSSL's default when empty
  std::string ciphersuites;  // TLS 1.3; OpenSSL's default when empty
  std::vector<std::string> curves;
  std::string client_ca_pem;  // ask for client certificates, verified against these
  bool require_client_certificate = false;
  bool session_tickets = true;
  // Offered with ALPN, in the server's order of preference ("h2",
  // "http/1.1").
  std::vector<std::string> alpn;
  // Sessions resume only on the listener (and client-certificate policy)
  // that made them.
  std::string session_id_context;
  // The keys session tickets are sealed with (shared across reloads); null
  // uses OpenSSL's own per-context key.
  std::shared_ptr<TicketKeys> ticket_keys;
};

// What one certificate covers, for SNI.
struct CertificateNames {
  std::vector<std::string> dns;  // lower case; wildcards as "*.example.com"
  std::string subject;
  std::string serial;  // hex
  SystemTime not_after;
};

class ServerContext : public std::enable_shared_from_this<ServerContext> {
 public:
  // Null after reporting every problem found (each with its field).
  static std::shared_ptr<const ServerContext> Create(const ServerOptions& options,
                                                     const ErrorSink& error);
  ~ServerContext();

  // Puts TLS (server side) over an accepted TCP connection.
  // `observer` (may be null) learns how the handshake ended.
  event::ConnectionPtr Wrap(event::Dispatcher& dispatcher, event::ConnectionPtr tcp,
                            std::shared_ptr<HandshakeObserver> observer) const;

  // Index into the certificates for `server_name` (SNI): an exact DNS name
  // first, then a wildcard covering one label, then the first certificate.
  size_t Select(std::string_view server_name) const;
  const std::vector<CertificateNames>& Certificates() const { return names_; }

  struct Impl;  // OpenSSL state; opaque

 private:
  ServerContext() = default;
  std::unique_ptr<Impl> impl_;
  std::vector<CertificateNames> names_;
};
using ServerContextPtr = std::shared_ptr<const ServerContext>;

struct ClientOptions {
  std::string ca_pem;  // trusted roots; empty: the system trust store
  std::string ca_field = ".ca_file";
  // Sent as SNI and checked against the certificate; when empty, the
  // host's own name (or, for an IP address, its IP SANs).
  std::string server_name;
  std::string cert_pem;  // optional client certificate
  std::string key_pem;
  Version min_version = Version::kTls12;
  Version max_version = Version::kTls13;
  std::vector<std::string> alpn;
};

class ClientContext : public std::enable_shared_from_this<ClientContext> {
 public:
  static std::shared_ptr<const ClientContext> Create(const ClientOptions& options,
                                                     const ErrorSink& error);
  ~ClientContext();

  // Puts TLS (client side) over a TCP connection being connected; it says
  // kConnected once the handshake is done and the peer verified.
  // `host_name` is used for SNI and verification when the options name no
  // server_name (empty for an IP address: no SNI, the IP is verified).
  event::ConnectionPtr Wrap(event::Dispatcher& dispatcher, event::ConnectionPtr tcp,
                            const std::string& host_name) const;
  bool OffersAlpn() const;

  struct Impl;  // OpenSSL state; opaque

 private:
  ClientContext() = default;
  std::unique_ptr<Impl> impl_;
};
using ClientContextPtr = std::shared_ptr<const ClientContext>;

// Checks PEM text the way a listener would use it: the chain parses, the
// key parses and matches the leaf, the leaf has not expired. Reports with
// `source`'s fields; fills `names` on success.
bool CheckCertificate(const CertificateSource& source, SystemTime now, const ErrorSink& error,
                      CertificateNames* names = nullptr);

}  // namespace portway::tls
