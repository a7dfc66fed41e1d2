#include "core/tls/context.h"

#include <arpa/inet.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <cstring>
#include <map>

#include "core/common/strings.h"
#include "core/tls/connection.h"
#include "core/tls/openssl_util.h"

namespace portway::tls {
namespace {

struct BioDeleter {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct X509Deleter {
  void operator()(X509* x) const { X509_free(x); }
};
struct KeyDeleter {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
using X509Ptr = std::unique_ptr<X509, X509Deleter>;
using KeyPtr = std::unique_ptr<EVP_PKEY, KeyDeleter>;

// Every certificate in `pem`, in order; empty if none parses.
std::vector<X509Ptr> ParseChain(const std::string& pem) {
  std::vector<X509Ptr> chain;
  std::unique_ptr<BIO, BioDeleter> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  while (X509* cert = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) {
    chain.emplace_back(cert);
  }
  ERR_clear_error();  // the end of the input reads as an error
  return chain;
}

KeyPtr ParseKey(const std::string& pem) {
  std::unique_ptr<BIO, BioDeleter> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  KeyPtr key(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
  ERR_clear_error();
  return key;
}

int ToOpenSsl(Version v) { return v == Version::kTls13 ? TLS1_3_VERSION : TLS1_2_VERSION; }

SystemTime ToSystemTime(const ASN1_TIME* when) {
  struct tm tm {};
  if (ASN1_TIME_to_tm(when, &tm) != 1) return SystemTime{};
  return std::chrono::system_clock::from_time_t(timegm(&tm));
}

std::string SerialOf(X509* cert) {
  BIGNUM* bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), nullptr);
  if (bn == nullptr) return "";
  char* hex = BN_bn2hex(bn);
  std::string text = hex != nullptr ? hex : "";
  OPENSSL_free(hex);
  BN_free(bn);
  return text;
}

std::vector<std::string> DnsNamesOf(X509* cert) {
  std::vector<std::string> names;
  auto* sans =
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  if (sans == nullptr) return names;
  for (int i = 0; i < sk_GENERAL_NAME_num(sans); ++i) {
    const GENERAL_NAME* name = sk_GENERAL_NAME_value(sans, i);
    if (name->type != GEN_DNS) continue;
    const ASN1_STRING* s = name->d.dNSName;
    names.push_back(ToLower(std::string_view(
        reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)), ASN1_STRING_length(s))));
  }
  GENERAL_NAMES_free(sans);
  return names;
}

// ALPN protocol names in wire format (length-prefixed).
std::string AlpnWire(const std::vector<std::string>& protocols) {
  std::string wire;
  for (const auto& p : protocols) {
    wire.push_back(static_cast<char>(p.size()));
    wire += p;
  }
  return wire;
}

// Shared settings: versions, ciphers, curves, no renegotiation, no
// compression; buffers released while a connection is idle (OpenSSL would
// otherwise keep ~34 KB per connection).
SSL_CTX* NewContext(const SSL_METHOD* method, Version min, Version max, const std::string& ciphers,
                    const std::string& ciphersuites, const std::vector<std::string>& curves,
                    const ErrorSink& error) {
  SSL_CTX* ctx = SSL_CTX_new(method);
  if (ctx == nullptr) {
    error("", TakeOpenSslError("cannot create a TLS context"));
    return nullptr;
  }
  SSL_CTX_set_min_proto_version(ctx, ToOpenSsl(min));
  SSL_CTX_set_max_proto_version(ctx, ToOpenSsl(max));
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
                               SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_IGNORE_UNEXPECTED_EOF);
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
  bool ok = true;
  if (!ciphers.empty() && SSL_CTX_set_cipher_list(ctx, ciphers.c_str()) != 1) {
    ERR_clear_error();
    error(".ciphers", Cat("no cipher in '", ciphers, "' is known to OpenSSL"));
    ok = false;
  }
  if (!ciphersuites.empty() && SSL_CTX_set_ciphersuites(ctx, ciphersuites.c_str()) != 1) {
    ERR_clear_error();
    error(".ciphersuites", Cat("'", ciphersuites, "' is not a list of TLS 1.3 cipher suites"));
    ok = false;
  }
  if (!curves.empty()) {
    std::string list;
    for (const auto& c : curves) list += (list.empty() ? "" : ":") + c;
    if (SSL_CTX_set1_groups_list(ctx, list.c_str()) != 1) {
      ERR_clear_error();
      error(".curves", Cat("'", list, "' names a group OpenSSL does not know"));
      ok = false;
    }
  }
  if (!ok) {
    SSL_CTX_free(ctx);
    return nullptr;
  }
  return ctx;
}

bool UseCertificate(SSL_CTX* ctx, const CertificateSource& source, const ErrorSink& error) {
  std::vector<X509Ptr> chain = ParseChain(source.chain_pem);
  KeyPtr key = ParseKey(source.key_pem);
  if (chain.empty() || !key) return false;  // CheckCertificate reported it
  if (SSL_CTX_use_certificate(ctx, chain[0].get()) != 1) {
    error(source.field + source.chain_field, TakeOpenSslError("the certificate cannot be used"));
    return false;
  }
  for (size_t i = 1; i < chain.size(); ++i) {
    if (SSL_CTX_add1_chain_cert(ctx, chain[i].get()) != 1) {
      error(source.field + source.chain_field,
            TakeOpenSslError("an intermediate certificate cannot be used"));
      return false;
    }
  }
  if (SSL_CTX_use_PrivateKey(ctx, key.get()) != 1 || SSL_CTX_check_private_key(ctx) != 1) {
    error(source.field + source.key_field, TakeOpenSslError("the key does not match"));
    return false;
  }
  return true;
}

bool AddTrustedCertificates(SSL_CTX* ctx, const std::string& pem, bool client_ca,
                            const std::string& field, const ErrorSink& error) {
  std::vector<X509Ptr> cas = ParseChain(pem);
  if (cas.empty()) {
    error(field, "holds no PEM certificate");
    return false;
  }
  X509_STORE* store = SSL_CTX_get_cert_store(ctx);
  for (auto& ca : cas) {
    X509_STORE_add_cert(store, ca.get());
    // The names a server sends in its CertificateRequest, so clients know
    // which of their certificates to pick.
    if (client_ca) SSL_CTX_add_client_CA(ctx, ca.get());
  }
  ERR_clear_error();
  return true;
}

int TicketKeysIndex() {
  static int index = SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

// Seals (enc = 1) or opens (enc = 0) a session ticket with the listener's
// rotating keys. Returns 1 (ok), 2 (ok, issue a new ticket: it was sealed
// with the previous key), 0 (unknown key: full handshake), -1 (error).
int TicketKeyCallback(SSL* ssl, unsigned char key_name[16], unsigned char* iv,
                      EVP_CIPHER_CTX* cipher, EVP_MAC_CTX* mac, int enc) {
  auto* keys =
      static_cast<TicketKeys*>(SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), TicketKeysIndex()));
  if (keys == nullptr) return -1;
  TicketKeys::Key key;
  int result = 1;
  if (enc == 1) {
    key = keys->Current();
    std::memcpy(key_name, key.name.data(), key.name.size());
    if (RAND_bytes(iv, EVP_CIPHER_get_iv_length(EVP_aes_256_cbc())) != 1) return -1;
  } else {
    bool renew = false;
    std::optional<TicketKeys::Key> found = keys->Find(key_name, &renew);
    if (!found) return 0;
    key = *found;
    result = renew ? 2 : 1;
  }
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, key.mac_key.data(), key.mac_key.size()),
      OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, const_cast<char*>("SHA256"), 0),
      OSSL_PARAM_construct_end()};
  if (EVP_MAC_CTX_set_params(mac, params) != 1) return -1;
  int ok = enc == 1
               ? EVP_EncryptInit_ex(cipher, EVP_aes_256_cbc(), nullptr, key.cipher_key.data(), iv)
               : EVP_DecryptInit_ex(cipher, EVP_aes_256_cbc(), nullptr, key.cipher_key.data(), iv);
  return ok == 1 ? result : -1;
}

bool IsIpLiteral(const std::string& name) {
  unsigned char buf[sizeof(in6_addr)];
  return inet_pton(AF_INET, name.c_str(), buf) == 1 || inet_pton(AF_INET6, name.c_str(), buf) == 1;
}

}  // namespace

bool CheckCertificate(const CertificateSource& source, SystemTime now, const ErrorSink& error,
                      CertificateNames* names) {
  bool ok = true;
  std::vector<X509Ptr> chain = ParseChain(source.chain_pem);
  if (chain.empty()) {
    error(source.field + source.chain_field, "holds no PEM certificate");
    ok = false;
  }
  KeyPtr key = ParseKey(source.key_pem);
  if (!key) {
    error(source.field + source.key_field,
          "holds no PEM private key (encrypted keys are not read)");
    ok = false;
  }
  if (!ok) return false;
  X509* leaf = chain[0].get();
  if (X509_check_private_key(leaf, key.get()) != 1) {
    ERR_clear_error();
    error(source.field + source.key_field, "does not match the certificate");
    ok = false;
  }
  SystemTime not_after = ToSystemTime(X509_get0_notAfter(leaf));
  if (not_after <= now) {
    char when[32];
    time_t t = std::chrono::system_clock::to_time_t(not_after);
    struct tm tm {};
    gmtime_r(&t, &tm);
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
    error(source.field + source.chain_field, Cat("the certificate expired at ", when));
    ok = false;
  }
  if (ok && names != nullptr) {
    names->dns = DnsNamesOf(leaf);
    names->subject = NameToString(X509_get_subject_name(leaf));
    names->serial = SerialOf(leaf);
    names->not_after = not_after;
  }
  return ok;
}

// ------------------------------------------------------------- server side

struct ServerContext::Impl {
  ~Impl() {
    for (SSL_CTX* ctx : contexts) SSL_CTX_free(ctx);
  }
  std::vector<SSL_CTX*> contexts;  // one per certificate, same settings
  std::map<std::string, size_t, std::less<>> exact;
  std::map<std::string, size_t, std::less<>> wildcard;  // "example.com" for "*.example.com"
  std::string alpn;                                     // wire format, our preference first
  std::shared_ptr<TicketKeys> ticket_keys;
  const ServerContext* owner = nullptr;
};

namespace {

int ImplIndex() {
  static int index = SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

int SelectAlpn(SSL* ssl, const unsigned char** out, unsigned char* out_size,
               const unsigned char* offered, unsigned int offered_size, void*) {
  auto* impl =
      static_cast<ServerContext::Impl*>(SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), ImplIndex()));
  if (impl == nullptr || impl->alpn.empty()) return SSL_TLSEXT_ERR_NOACK;
  unsigned char* selected = nullptr;
  if (SSL_select_next_proto(&selected, out_size,
                            reinterpret_cast<const unsigned char*>(impl->alpn.data()),
                            static_cast<unsigned int>(impl->alpn.size()), offered,
                            offered_size) != OPENSSL_NPN_NEGOTIATED) {
    // RFC 7301 3.2: the client offered protocols and none is served here.
    return SSL_TLSEXT_ERR_ALERT_FATAL;
  }
  *out = selected;
  return SSL_TLSEXT_ERR_OK;
}

int SelectCertificate(SSL* ssl, int*, void*) {
  auto* impl =
      static_cast<ServerContext::Impl*>(SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), ImplIndex()));
  const char* name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  if (impl == nullptr || name == nullptr) return SSL_TLSEXT_ERR_OK;
  if (TlsConnection* connection = TlsConnection::FromSsl(ssl)) connection->SetServerName(name);
  if (impl->contexts.size() == 1) return SSL_TLSEXT_ERR_OK;
  size_t index = impl->owner->Select(name);
  if (index != 0) SSL_set_SSL_CTX(ssl, impl->contexts[index]);
  return SSL_TLSEXT_ERR_OK;
}

}  // namespace

ServerContext::~ServerContext() = default;

std::shared_ptr<const ServerContext> ServerContext::Create(const ServerOptions& options,
                                                           const ErrorSink& error) {
  bool ok = true;
  if (options.certificates.empty()) {
    error(".certificates", "needs at least one certificate");
    ok = false;
  }
  if (options.min_version > options.max_version) {
    error(".min_version", "is above max_version");
    ok = false;
  }
  std::shared_ptr<ServerContext> context(new ServerContext());
  context->impl_ = std::make_unique<Impl>();
  Impl& impl = *context->impl_;
  impl.owner = context.get();
  impl.alpn = AlpnWire(options.alpn);
  impl.ticket_keys = options.ticket_keys;
  SystemTime now = std::chrono::system_clock::now();
  for (const auto& source : options.certificates) {
    CertificateNames names;
    if (!CheckCertificate(source, now, error, &names)) {
      ok = false;
      continue;
    }
    context->names_.push_back(std::move(names));
  }
  if (!ok) {
    // Still check the settings, so one pass reports every problem.
    if (SSL_CTX* probe = NewContext(TLS_server_method(), options.min_version, options.max_version,
                                    options.ciphers, options.ciphersuites, options.curves, error)) {
      SSL_CTX_free(probe);
    }
    return nullptr;
  }
  for (size_t i = 0; i < options.certificates.size(); ++i) {
    // Settings errors are the same for every certificate: report them once.
    ErrorSink once = i == 0 ? error : ErrorSink([](const std::string&, const std::string&) {});
    SSL_CTX* ctx = NewContext(TLS_server_method(), options.min_version, options.max_version,
                              options.ciphers, options.ciphersuites, options.curves, once);
    if (ctx == nullptr) return nullptr;
    impl.contexts.push_back(ctx);
    if (!UseCertificate(ctx, options.certificates[i], error)) return nullptr;
    SSL_CTX_set_ex_data(ctx, ImplIndex(), &impl);
    if (!options.client_ca_pem.empty()) {
      if (!AddTrustedCertificates(ctx, options.client_ca_pem, /*client_ca=*/true, ".client_ca_file",
                                  once)) {
        return nullptr;
      }
      SSL_CTX_set_verify(
          ctx,
          SSL_VERIFY_PEER |
              (options.require_client_certificate ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0),
          nullptr);
    }
    std::string sid = options.session_id_context.substr(0, SSL_MAX_SID_CTX_LENGTH);
    SSL_CTX_set_session_id_context(ctx, reinterpret_cast<const unsigned char*>(sid.data()),
                                   static_cast<unsigned int>(sid.size()));
    // Resumption is by tickets only: no per-session memory on the server.
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    if (!options.session_tickets) {
      SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
      SSL_CTX_set_num_tickets(ctx, 0);
    } else if (options.ticket_keys) {
      SSL_CTX_set_ex_data(ctx, TicketKeysIndex(), options.ticket_keys.get());
      SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, TicketKeyCallback);
    }
    SSL_CTX_set_alpn_select_cb(ctx, SelectAlpn, nullptr);
    // Always: it also records the SNI for the logs.
    SSL_CTX_set_tlsext_servername_callback(ctx, SelectCertificate);
    for (const std::string& dns : context->names_[i].dns) {
      if (dns.rfind("*.", 0) == 0) {
        impl.wildcard.emplace(dns.substr(2), i);  // the first certificate naming it wins
      } else {
        impl.exact.emplace(dns, i);
      }
    }
  }
  if (options.min_version > options.max_version) return nullptr;
  return context;
}

size_t ServerContext::Select(std::string_view server_name) const {
  std::string name = ToLower(server_name);
  if (!name.empty() && name.back() == '.') name.pop_back();
  if (auto it = impl_->exact.find(name); it != impl_->exact.end()) return it->second;
  // A wildcard covers exactly one label: "*.example.com" matches
  // "a.example.com", not "example.com" or "a.b.example.com".
  if (size_t dot = name.find('.'); dot != std::string::npos && dot > 0) {
    if (auto it = impl_->wildcard.find(std::string_view(name).substr(dot + 1));
        it != impl_->wildcard.end()) {
      return it->second;
    }
  }
  return 0;
}

event::ConnectionPtr ServerContext::Wrap(event::Dispatcher& dispatcher, event::ConnectionPtr tcp,
                                         std::shared_ptr<HandshakeObserver> observer) const {
  SSL* ssl = SSL_new(impl_->contexts[0]);
  SSL_set_accept_state(ssl);
  return std::make_unique<TlsConnection>(dispatcher, std::move(tcp), ssl, shared_from_this(),
                                         std::move(observer));
}

// ------------------------------------------------------------- client side

struct ClientContext::Impl {
  ~Impl() { SSL_CTX_free(ctx); }
  SSL_CTX* ctx = nullptr;
  std::string server_name;
  bool alpn = false;
};

ClientContext::~ClientContext() = default;

std::shared_ptr<const ClientContext> ClientContext::Create(const ClientOptions& options,
                                                           const ErrorSink& error) {
  bool ok = true;
  if (options.min_version > options.max_version) {
    error(".min_version", "is above max_version");
    ok = false;
  }
  bool has_cert = !options.cert_pem.empty() || !options.key_pem.empty();
  if (has_cert) {
    CertificateSource source{"", options.cert_pem, options.key_pem};
    if (!CheckCertificate(source, std::chrono::system_clock::now(), error)) ok = false;
  }
  if (!ok) return nullptr;
  std::shared_ptr<ClientContext> context(new ClientContext());
  context->impl_ = std::make_unique<Impl>();
  Impl& impl = *context->impl_;
  impl.server_name = options.server_name;
  impl.ctx =
      NewContext(TLS_client_method(), options.min_version, options.max_version, "", "", {}, error);
  if (impl.ctx == nullptr) return nullptr;
  SSL_CTX_set_verify(impl.ctx, SSL_VERIFY_PEER, nullptr);
  if (options.ca_pem.empty()) {
    if (SSL_CTX_set_default_verify_paths(impl.ctx) != 1) {
      error(options.ca_field, TakeOpenSslError("the system trust store cannot be read"));
      return nullptr;
    }
  } else if (!AddTrustedCertificates(impl.ctx, options.ca_pem, false, options.ca_field, error)) {
    return nullptr;
  }
  if (has_cert &&
      !UseCertificate(impl.ctx, CertificateSource{"", options.cert_pem, options.key_pem}, error)) {
    return nullptr;
  }
  if (!options.alpn.empty()) {
    std::string wire = AlpnWire(options.alpn);
    SSL_CTX_set_alpn_protos(impl.ctx, reinterpret_cast<const unsigned char*>(wire.data()),
                            static_cast<unsigned int>(wire.size()));
    impl.alpn = true;
  }
  return context;
}

bool ClientContext::OffersAlpn() const { return impl_->alpn; }

event::ConnectionPtr ClientContext::Wrap(event::Dispatcher& dispatcher, event::ConnectionPtr tcp,
                                         const std::string& host_name) const {
  SSL* ssl = SSL_new(impl_->ctx);
  SSL_set_connect_state(ssl);
  const std::string& name = impl_->server_name.empty() ? host_name : impl_->server_name;
  if (!name.empty()) {
    if (IsIpLiteral(name)) {
      // No SNI for an address (RFC 6066 3); the certificate must name the
      // IP in its SANs.
      X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name.c_str());
    } else {
      SSL_set_tlsext_host_name(ssl, name.c_str());
      SSL_set1_host(ssl, name.c_str());
    }
  }
  return std::make_unique<TlsConnection>(dispatcher, std::move(tcp), ssl, shared_from_this());
}

}  // namespace portway::tls
