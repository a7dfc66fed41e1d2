// Small OpenSSL helpers shared by the TLS contexts and connections.
//
// Thread safety: OpenSSL's error queue is per thread; these touch only the
// calling thread's.
#pragma once

#include <openssl/x509.h>

#include <string>
#include <string_view>

namespace portway::tls {

// The reason of the newest error OpenSSL queued ("wrong version number"),
// or `fallback` when none; the queue is empty afterwards.
std::string TakeOpenSslError(const char* fallback);

// A certificate name as RFC 2253 text ("CN=client one,O=Example").
std::string NameToString(const X509_NAME* name);

// The SHA-256 of `data`: 32 raw bytes.
std::string Sha256(std::string_view data);

}  // namespace portway::tls
