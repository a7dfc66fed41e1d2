// A module whose registration throws after registering one factory: the
// loader must refuse it, register nothing, and keep running.
#include <memory>
#include <stdexcept>

#include "google/protobuf/empty.pb.h"
#include "portway/filter_factory.h"
#include "portway/module.h"

namespace {

class ThrowsFactory : public portway::http::FilterFactory {
 public:
  std::string_view Name() const override { return "test.throws"; }
  std::unique_ptr<google::protobuf::Message> NewConfig() const override {
    return std::make_unique<google::protobuf::Empty>();
  }
  absl::StatusOr<portway::http::FilterFactoryCallback> Create(
      const google::protobuf::Message&) const override {
    return absl::UnimplementedError("never created");
  }
};

void RegisterThenThrow(portway::http::FilterRegistry& registry) {
  (void)registry.Register(std::make_unique<ThrowsFactory>());
  throw std::runtime_error("test module throws on purpose");
}

}  // namespace

PORTWAY_MODULE(RegisterThenThrow)
