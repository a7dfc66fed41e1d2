// A module that leaves a trace when it is mapped: its static initializer
// creates "<this .so's path>.opened" (in the loader's forked probe too).
// Registers "test.marker", a filter that does nothing. The control-plane
// tests use it to show a module that is not allowed is never opened.
#include <dlfcn.h>
#include <fcntl.h>
#include <unistd.h>

#include <memory>
#include <string>

#include "google/protobuf/empty.pb.h"
#include "portway/filter.h"
#include "portway/filter_factory.h"
#include "portway/module.h"

namespace {

class MarkerFilter : public portway::http::Filter {};

class MarkerFactory : public portway::http::FilterFactory {
 public:
  std::string_view Name() const override { return "test.marker"; }
  std::unique_ptr<google::protobuf::Message> NewConfig() const override {
    return std::make_unique<google::protobuf::Empty>();
  }
  absl::StatusOr<portway::http::FilterFactoryCallback> Create(
      const google::protobuf::Message&) const override {
    return portway::http::FilterFactoryCallback([] { return std::make_unique<MarkerFilter>(); });
  }
};

void RegisterMarker(portway::http::FilterRegistry& registry) {
  (void)registry.Register(std::make_unique<MarkerFactory>());
}

__attribute__((constructor)) void MarkOpened() {
  Dl_info info{};
  if (dladdr(reinterpret_cast<void*>(&MarkOpened), &info) == 0 || info.dli_fname == nullptr) {
    return;
  }
  std::string marker = std::string(info.dli_fname) + ".opened";
  int fd = open(marker.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  if (fd >= 0) close(fd);
}

}  // namespace

PORTWAY_MODULE(RegisterMarker)
