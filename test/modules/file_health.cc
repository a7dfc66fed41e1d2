// A module that registers a custom active health checker, "test.file_health":
// a host is healthy unless the file "<dir>/<port>" exists (dir from its
// config). It registers no filter: a module may bring checkers alone.
#include <sys/stat.h>

#include <memory>
#include <stdexcept>
#include <string>

#include "google/protobuf/struct.pb.h"
#include "portway/health_checker.h"
#include "portway/module.h"

namespace {

class FileProbe : public portway::HealthProbe {
 public:
  explicit FileProbe(std::string path) : path_(std::move(path)) {}
  void Check(std::function<void(portway::HealthCheckResult)> done) override {
    struct stat st;
    if (stat(path_.c_str(), &st) == 0) {
      done({false, path_ + " exists"});
    } else {
      done({true, "no " + path_});
    }
  }

 private:
  std::string path_;
};

class FileHealthFactory : public portway::HealthCheckerFactory {
 public:
  std::string_view Name() const override { return "test.file_health"; }
  std::unique_ptr<google::protobuf::Message> NewConfig() const override {
    return std::make_unique<google::protobuf::Struct>();
  }
  absl::StatusOr<portway::HealthProbeFactoryFn> Create(
      const google::protobuf::Message& message) const override {
    const auto& config = static_cast<const google::protobuf::Struct&>(message);
    auto it = config.fields().find("dir");
    if (it == config.fields().end() || it->second.string_value().empty()) {
      return absl::InvalidArgumentError("dir: is required");
    }
    std::string dir = it->second.string_value();
    return portway::HealthProbeFactoryFn([dir](const portway::HealthCheckTarget& target) {
      return std::make_unique<FileProbe>(dir + "/" + std::to_string(target.port));
    });
  }
};

void RegisterFileHealth(portway::http::FilterRegistry&) {
  absl::Status status = portway::RegisterHealthChecker(std::make_unique<FileHealthFactory>());
  if (!status.ok()) throw std::runtime_error(std::string(status.message()));
}

}  // namespace

PORTWAY_MODULE(RegisterFileHealth)
