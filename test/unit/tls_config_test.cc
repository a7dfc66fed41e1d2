// From config to TLS contexts: error paths, session contexts.
#include "core/server/tls_config.h"

#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>

#include "gtest/gtest.h"

namespace portway::server {
namespace {

std::string WriteTemp(const std::string& name, const std::string& text) {
  std::string path = ::testing::TempDir() + "/" + std::to_string(getpid()) + "-" + name;
  std::ofstream(path) << text;
  return path;
}

TEST(TlsConfigTest, CertificateErrorsCarryTheirFullPathOnce) {
  config::v1::ListenerTls proto;
  auto* c = proto.add_certificates();
  c->set_cert_file(WriteTemp("garbage.pem", "not a certificate"));
  c->set_key_file(WriteTemp("garbage.key", "not a key"));
  proto.add_certificates()->set_secret("missing");
  config::ConfigErrors errors;
  auto context =
      BuildListenerTls(proto, "listeners[0].tls", {}, true, true, "edge", nullptr, &errors);
  EXPECT_EQ(context, nullptr);
  std::vector<std::string> paths;
  for (const auto& e : errors) paths.push_back(e.path);
  EXPECT_NE(std::find(paths.begin(), paths.end(), "listeners[0].tls.certificates[0].cert_file"),
            paths.end());
  EXPECT_NE(std::find(paths.begin(), paths.end(), "listeners[0].tls.certificates[0].key_file"),
            paths.end());
  EXPECT_NE(std::find(paths.begin(), paths.end(), "listeners[0].tls.certificates[1].secret"),
            paths.end());
  for (const auto& p : paths) EXPECT_EQ(p.find("tlslisteners"), std::string::npos) << p;
}

TEST(TlsConfigTest, TheSessionContextChangesWithTheClientCertificatePolicy) {
  std::string base = SessionContext("edge", "", false);
  EXPECT_EQ(base.size(), 32u);
  EXPECT_EQ(SessionContext("edge", "", false), base);
  EXPECT_NE(SessionContext("edge2", "", false), base);
  EXPECT_NE(SessionContext("edge", "CA-1", false), base);
  EXPECT_NE(SessionContext("edge", "CA-1", true), SessionContext("edge", "CA-1", false));
  EXPECT_NE(SessionContext("edge", "CA-2", true), SessionContext("edge", "CA-1", true));
  // Long names no longer push the policy out of the 32 bytes TLS keeps.
  std::string long_name(40, 'x');
  EXPECT_NE(SessionContext(long_name, "CA", true), SessionContext(long_name, "", false));
}

TEST(TlsConfigTest, RedactedConfigHidesPrivateKeysOnly) {
  config::v1::Bootstrap bootstrap;
  auto* secret = bootstrap.add_secrets();
  secret->set_name("s");
  secret->set_certificate_chain("-----BEGIN CERTIFICATE-----public");
  secret->set_private_key("-----BEGIN PRIVATE KEY-----very secret");
  std::string json = RedactedConfigJson(bootstrap);
  EXPECT_EQ(json.find("very secret"), std::string::npos) << json;
  EXPECT_NE(json.find("[redacted]"), std::string::npos) << json;
  EXPECT_NE(json.find("public"), std::string::npos) << json;
}

}  // namespace
}  // namespace portway::server
