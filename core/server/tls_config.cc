#include "core/server/tls_config.h"

#include <set>

#include "core/common/files.h"
#include "core/common/strings.h"
#include "core/tls/openssl_util.h"

namespace portway::server {
namespace {

void AddError(config::ConfigErrors* errors, std::string path, std::string message) {
  errors->push_back(config::ConfigError{std::move(path), std::move(message)});
}

tls::ErrorSink SinkAt(const std::string& path, config::ConfigErrors* errors) {
  return [path, errors](const std::string& field, const std::string& message) {
    AddError(errors, path + field, message);
  };
}

// Reads `file` named by `field`; false after an error.
bool ReadPem(const std::string& file, const std::string& field, std::string* out,
             config::ConfigErrors* errors) {
  if (!ReadFile(file, out)) {
    AddError(errors, field, Cat("cannot read '", file, "'"));
    return false;
  }
  return true;
}

tls::Version VersionOr(config::v1::TlsVersion v, tls::Version fallback) {
  switch (v) {
    case config::v1::TLSV1_2:
      return tls::Version::kTls12;
    case config::v1::TLSV1_3:
      return tls::Version::kTls13;
    default:
      return fallback;
  }
}

// A certificate given as files or as a secret's name, into `source`.
// `base` + `relative` is the path of the message holding
// cert_file/key_file/secret; `source->field` gets `relative` alone (the
// context reports relative to the tls block).
bool ResolveCertificate(const std::string& cert_file, const std::string& key_file,
                        const std::string& secret, const std::string& base,
                        const std::string& relative, const SecretMap& secrets,
                        tls::CertificateSource* source, config::ConfigErrors* errors) {
  source->field = relative;
  const std::string field = base + relative;
  if (!secret.empty()) {
    if (!cert_file.empty() || !key_file.empty()) {
      AddError(errors, field + ".secret", "takes no cert_file or key_file besides");
      return false;
    }
    auto it = secrets.find(secret);
    if (it == secrets.end()) {
      AddError(errors, field + ".secret", Cat("no secret named '", secret, "'"));
      return false;
    }
    source->chain_pem = it->second.chain_pem;
    source->key_pem = it->second.key_pem;
    // Its own problems were reported at secrets[]; here only the name.
    source->chain_field = ".secret";
    source->key_field = ".secret";
    return true;
  }
  bool ok = true;
  if (cert_file.empty()) {
    AddError(errors, field + ".cert_file", "is required (or name a secret)");
    ok = false;
  }
  if (key_file.empty()) {
    AddError(errors, field + ".key_file", "is required (or name a secret)");
    ok = false;
  }
  if (!ok) return false;
  ok = ReadPem(cert_file, field + ".cert_file", &source->chain_pem, errors);
  ok = ReadPem(key_file, field + ".key_file", &source->key_pem, errors) && ok;
  return ok;
}

}  // namespace

SecretMap BuildSecrets(const config::v1::Bootstrap& bootstrap, config::ConfigErrors* errors) {
  SecretMap secrets;
  std::set<std::string> names;
  SystemTime now = std::chrono::system_clock::now();
  for (int i = 0; i < bootstrap.secrets_size(); ++i) {
    const auto& proto = bootstrap.secrets(i);
    std::string path = Cat("secrets[", i, "]");
    if (proto.name().empty()) {
      AddError(errors, path + ".name", "is required");
      continue;
    }
    if (!names.insert(proto.name()).second) {
      AddError(errors, path + ".name", Cat("duplicate secret name '", proto.name(), "'"));
      continue;
    }
    tls::CertificateSource source;
    source.field = path;
    bool ok = true;
    auto take = [&](const std::string& inline_pem, const std::string& file,
                    const std::string& inline_field, const std::string& file_field,
                    std::string* out, std::string* used_field) {
      if (!inline_pem.empty() && !file.empty()) {
        AddError(errors, path + "." + file_field, Cat("takes no ", inline_field, " besides"));
        ok = false;
      } else if (!inline_pem.empty()) {
        *out = inline_pem;
        *used_field = "." + inline_field;
      } else if (!file.empty()) {
        ok = ReadPem(file, path + "." + file_field, out, errors) && ok;
        *used_field = "." + file_field;
      } else {
        AddError(errors, path + "." + inline_field, Cat("is required (or ", file_field, ")"));
        ok = false;
      }
    };
    take(proto.certificate_chain(), proto.cert_file(), "certificate_chain", "cert_file",
         &source.chain_pem, &source.chain_field);
    take(proto.private_key(), proto.key_file(), "private_key", "key_file", &source.key_pem,
         &source.key_field);
    if (!ok) continue;
    if (!tls::CheckCertificate(source, now, SinkAt("", errors))) continue;
    secrets.emplace(proto.name(), std::move(source));
  }
  return secrets;
}

void ResolveTlsPaths(const std::string& dir, config::v1::Bootstrap* bootstrap) {
  if (dir.empty()) return;
  auto fix = [&dir](std::string* file) {
    if (!file->empty() && (*file)[0] != '/') *file = Cat(dir, "/", *file);
  };
  for (auto& listener : *bootstrap->mutable_listeners()) {
    if (!listener.has_tls()) continue;
    auto* tls = listener.mutable_tls();
    for (auto& c : *tls->mutable_certificates()) {
      fix(c.mutable_cert_file());
      fix(c.mutable_key_file());
    }
    fix(tls->mutable_client_ca_file());
  }
  for (auto& cluster : *bootstrap->mutable_clusters()) {
    if (!cluster.has_tls()) continue;
    fix(cluster.mutable_tls()->mutable_ca_file());
    fix(cluster.mutable_tls()->mutable_cert_file());
    fix(cluster.mutable_tls()->mutable_key_file());
  }
  for (auto& secret : *bootstrap->mutable_secrets()) {
    fix(secret.mutable_cert_file());
    fix(secret.mutable_key_file());
  }
}

std::string SessionContext(const std::string& listener_name, const std::string& client_ca_pem,
                           bool require_client_certificate) {
  // 32 bytes: the most TLS takes.
  return tls::Sha256(Cat(listener_name.size(), ":", listener_name, "\n", client_ca_pem, "\n",
                         require_client_certificate ? "required" : "optional"));
}

std::chrono::seconds TicketRotation(const config::v1::ListenerTls& proto) {
  if (!proto.has_session_ticket_rotation()) return std::chrono::hours(1);
  return std::chrono::seconds(proto.session_ticket_rotation().seconds());
}

tls::ServerContextPtr BuildListenerTls(const config::v1::ListenerTls& proto,
                                       const std::string& path, const SecretMap& secrets,
                                       bool http1, bool http2, const std::string& listener_name,
                                       std::shared_ptr<tls::TicketKeys> ticket_keys,
                                       config::ConfigErrors* errors) {
  size_t before = errors->size();
  tls::ServerOptions options;
  for (int i = 0; i < proto.certificates_size(); ++i) {
    const auto& c = proto.certificates(i);
    tls::CertificateSource source;
    if (ResolveCertificate(c.cert_file(), c.key_file(), c.secret(), path,
                           Cat(".certificates[", i, "]"), secrets, &source, errors)) {
      options.certificates.push_back(std::move(source));
    }
  }
  options.min_version = VersionOr(proto.min_version(), tls::Version::kTls12);
  options.max_version = VersionOr(proto.max_version(), tls::Version::kTls13);
  options.ciphers = proto.ciphers();
  options.ciphersuites = proto.ciphersuites();
  options.curves.assign(proto.curves().begin(), proto.curves().end());
  if (!proto.client_ca_file().empty()) {
    ReadPem(proto.client_ca_file(), path + ".client_ca_file", &options.client_ca_pem, errors);
  } else if (proto.require_client_certificate()) {
    AddError(errors, path + ".require_client_certificate",
             "needs client_ca_file (the CAs client certificates are verified against)");
  }
  options.require_client_certificate = proto.require_client_certificate();
  options.session_tickets = !proto.disable_session_tickets();
  if (proto.has_session_ticket_rotation() && TicketRotation(proto) < std::chrono::seconds(60)) {
    AddError(errors, path + ".session_ticket_rotation", "must be at least 60s");
  }
  options.ticket_keys = std::move(ticket_keys);
  if (http2) options.alpn.push_back("h2");
  if (http1) options.alpn.push_back("http/1.1");
  // Sessions resume on the listener that made them, and only under the
  // client-certificate policy (the CAs themselves included) they were made
  // under: a session verified against yesterday's CA, or made when no
  // certificate was asked for, must not skip today's check.
  options.session_id_context =
      SessionContext(listener_name, options.client_ca_pem, options.require_client_certificate);
  if (errors->size() != before) {
    // Still check what can be checked, so one pass reports everything.
    if (!options.certificates.empty()) tls::ServerContext::Create(options, SinkAt(path, errors));
    return nullptr;
  }
  return tls::ServerContext::Create(options, SinkAt(path, errors));
}

tls::ClientContextPtr BuildClusterTls(const config::v1::ClusterTls& proto, const std::string& path,
                                      const SecretMap& secrets, http::Protocol protocol,
                                      bool auto_protocol, config::ConfigErrors* errors,
                                      std::string* identity) {
  size_t before = errors->size();
  tls::ClientOptions options;
  if (!proto.ca_file().empty()) {
    ReadPem(proto.ca_file(), path + ".ca_file", &options.ca_pem, errors);
  }
  options.server_name = proto.server_name();
  if (!proto.cert_file().empty() || !proto.key_file().empty() || !proto.secret().empty()) {
    tls::CertificateSource source;
    if (ResolveCertificate(proto.cert_file(), proto.key_file(), proto.secret(), path, "", secrets,
                           &source, errors)) {
      options.cert_pem = std::move(source.chain_pem);
      options.key_pem = std::move(source.key_pem);
    }
  }
  options.min_version = VersionOr(proto.min_version(), tls::Version::kTls12);
  options.max_version = VersionOr(proto.max_version(), tls::Version::kTls13);
  if (auto_protocol) {
    options.alpn = {"h2", "http/1.1"};
  } else if (protocol == http::Protocol::kHttp2) {
    options.alpn = {"h2"};
  } else {
    options.alpn = {"http/1.1"};
  }
  if (errors->size() != before) return nullptr;
  *identity = tls::Sha256(Cat(proto.SerializeAsString(), "\n", options.ca_pem, "\n",
                              options.cert_pem, "\n", options.key_pem, "\n", options.alpn.size()));
  return tls::ClientContext::Create(options, SinkAt(path, errors));
}

std::string RedactedConfigJson(const config::v1::Bootstrap& bootstrap) {
  if (bootstrap.secrets_size() == 0) return config::ProtoToJson(bootstrap);
  config::v1::Bootstrap copy = bootstrap;
  for (auto& secret : *copy.mutable_secrets()) {
    if (!secret.private_key().empty()) secret.set_private_key("[redacted]");
  }
  return config::ProtoToJson(copy);
}

}  // namespace portway::server
