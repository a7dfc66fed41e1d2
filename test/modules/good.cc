// A well-formed module: registers "test.good", a filter that stamps every
// response with x-test-module: good (HeaderMap::Add resolves against the
// binary that loads the module).
#include <memory>

#include "google/protobuf/empty.pb.h"
#include "portway/filter.h"
#include "portway/filter_factory.h"
#include "portway/module.h"

namespace {

class GoodFilter : public portway::http::Filter {
 public:
  portway::http::FilterHeadersStatus EncodeHeaders(portway::http::HeaderMap& headers,
                                                   bool) override {
    headers.Add("x-test-module", "good");
    return portway::http::FilterHeadersStatus::kContinue;
  }
};

class GoodFactory : public portway::http::FilterFactory {
 public:
  std::string_view Name() const override { return "test.good"; }
  std::unique_ptr<google::protobuf::Message> NewConfig() const override {
    return std::make_unique<google::protobuf::Empty>();
  }
  absl::StatusOr<portway::http::FilterFactoryCallback> Create(
      const google::protobuf::Message&) const override {
    return portway::http::FilterFactoryCallback([] { return std::make_unique<GoodFilter>(); });
  }
};

void RegisterGood(portway::http::FilterRegistry& registry) {
  (void)registry.Register(std::make_unique<GoodFactory>());
}

}  // namespace

PORTWAY_MODULE(RegisterGood)
