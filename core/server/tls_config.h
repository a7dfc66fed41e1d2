// From the config's tls blocks and secrets to TLS contexts: files read,
// secrets resolved, every problem reported with its field path. Part of
// ConfigBuilder; in its own unit because it is the one place that turns
// key material into contexts (and the one place that hides it again, for
// /config_dump).
//
// Thread safety: main thread (config building).
#pragma once

#include <map>
#include <memory>
#include <string>

#include "core/config/yaml_proto.h"
#include "core/http/codec.h"
#include "core/tls/context.h"
#include "portway/config/v1/bootstrap.pb.h"

namespace portway::server {

// The bootstrap's secrets by name, each checked (chain parses, key
// matches, not expired); a bad one is reported at secrets[i] and left out.
using SecretMap = std::map<std::string, tls::CertificateSource>;
SecretMap BuildSecrets(const config::v1::Bootstrap& bootstrap, config::ConfigErrors* errors);

// listeners[i].tls. `path` is "listeners[i].tls"; ALPN offers h2 when
// `http2` and http/1.1 when `http1`. Null after adding errors.
tls::ServerContextPtr BuildListenerTls(const config::v1::ListenerTls& proto,
                                       const std::string& path, const SecretMap& secrets,
                                       bool http1, bool http2, const std::string& listener_name,
                                       std::shared_ptr<tls::TicketKeys> ticket_keys,
                                       config::ConfigErrors* errors);

// clusters[i].tls, for a cluster speaking `protocol` (or ALPN's choice
// when `auto_protocol`). Null after adding errors. `identity` gets a digest
// of everything the context was made from (settings and PEM contents): two
// builds with the same identity make equivalent contexts, so a reload that
// changes nothing keeps the cluster's pooled connections.
tls::ClientContextPtr BuildClusterTls(const config::v1::ClusterTls& proto, const std::string& path,
                                      const SecretMap& secrets, http::Protocol protocol,
                                      bool auto_protocol, config::ConfigErrors* errors,
                                      std::string* identity);

// Makes the relative file names of every tls block and secret relative to
// `dir` (the config file's directory), so a config and its certificates
// move together, whatever the working directory.
void ResolveTlsPaths(const std::string& dir, config::v1::Bootstrap* bootstrap);

// The TLS session id context of a listener: a digest of its name and its
// client-certificate policy (CAs and whether one is required). A session
// resumes only where this is the same.
std::string SessionContext(const std::string& listener_name, const std::string& client_ca_pem,
                           bool require_client_certificate);

// The rotation period a listener's ticket keys use (default 1 h).
std::chrono::seconds TicketRotation(const config::v1::ListenerTls& proto);

// `bootstrap` as JSON with every secret's private key replaced by
// "[redacted]": what /config_dump shows.
std::string RedactedConfigJson(const config::v1::Bootstrap& bootstrap);

}  // namespace portway::server
