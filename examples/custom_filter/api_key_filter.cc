// example.api_key: lets a request through only with a known API key.
//
// A request without the configured header gets 401 with x-portway-error:
// api_key_missing; one whose key is not in `keys` gets 401 with
// api_key_invalid. An accepted request goes on to the upstream, and its
// response gets `<response_header>: accepted`.
//
// Written against the installed Portway SDK only (portway/*.h): this file,
// its proto and CMakeLists.txt are the whole module.
//
// Thread safety: the factory runs on the gateway's main thread; each filter
// belongs to one stream; the Settings they share are immutable.
#include <memory>
#include <set>
#include <string>

#include "example/api_key.pb.h"
#include "portway/filter.h"
#include "portway/filter_factory.h"
#include "portway/module.h"

namespace example {
namespace {

struct Settings {
  std::string header;  // lowercase, as HeaderMap stores names
  std::set<std::string, std::less<>> keys;
  std::string response_header;
};

std::string Lower(std::string s) {
  for (char& c : s) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return s;
}

class ApiKeyFilter : public portway::http::Filter {
 public:
  explicit ApiKeyFilter(std::shared_ptr<const Settings> settings)
      : settings_(std::move(settings)) {}

  void SetCallbacks(portway::http::FilterCallbacks& callbacks) override { callbacks_ = &callbacks; }

  portway::http::FilterHeadersStatus DecodeHeaders(portway::http::HeaderMap& headers,
                                                   bool) override {
    const std::string_view* key = headers.Get(settings_->header);
    if (key == nullptr) {
      callbacks_->SendLocalReply(401, "missing API key\n", "api_key_missing");
      return portway::http::FilterHeadersStatus::kStopIteration;
    }
    if (settings_->keys.count(*key) == 0) {
      callbacks_->SendLocalReply(401, "invalid API key\n", "api_key_invalid");
      return portway::http::FilterHeadersStatus::kStopIteration;
    }
    // The key is for the gateway, not for the upstream.
    headers.Remove(settings_->header);
    accepted_ = true;
    return portway::http::FilterHeadersStatus::kContinue;
  }

  portway::http::FilterHeadersStatus EncodeHeaders(portway::http::HeaderMap& headers,
                                                   bool) override {
    if (accepted_ && !settings_->response_header.empty()) {
      headers.Add(settings_->response_header, "accepted");
    }
    return portway::http::FilterHeadersStatus::kContinue;
  }

 private:
  std::shared_ptr<const Settings> settings_;
  portway::http::FilterCallbacks* callbacks_ = nullptr;
  bool accepted_ = false;  // local replies pass EncodeHeaders too
};

class ApiKeyFactory : public portway::http::FilterFactory {
 public:
  std::string_view Name() const override { return "example.api_key"; }

  std::unique_ptr<google::protobuf::Message> NewConfig() const override {
    return std::make_unique<ApiKeyConfig>();
  }

  // Errors name the field relative to the filter's config; the gateway
  // reports them under the filter's path (listeners[0].filters[0].config.keys).
  absl::StatusOr<portway::http::FilterFactoryCallback> Create(
      const google::protobuf::Message& message) const override {
    const auto& config = static_cast<const ApiKeyConfig&>(message);
    auto settings = std::make_shared<Settings>();
    settings->header = Lower(config.header());
    if (settings->header.empty()) return absl::InvalidArgumentError("header: is required");
    if (config.keys().empty()) return absl::InvalidArgumentError("keys: needs at least one key");
    for (const std::string& key : config.keys()) {
      if (key.empty()) return absl::InvalidArgumentError("keys: a key cannot be empty");
      settings->keys.insert(key);
    }
    settings->response_header = Lower(config.response_header());
    std::shared_ptr<const Settings> shared = std::move(settings);
    return portway::http::FilterFactoryCallback(
        [shared] { return std::make_unique<ApiKeyFilter>(shared); });
  }
};

void RegisterApiKey(portway::http::FilterRegistry& registry) {
  (void)registry.Register(std::make_unique<ApiKeyFactory>());
}

}  // namespace
}  // namespace example

PORTWAY_MODULE(example::RegisterApiKey)
