// Filter factories: how a filter is named, configured and made.
//
// A factory is registered once under a name (portway.fault). When a
// listener's config names the filter, the core parses the YAML under the
// filter's `config:` key into the factory's typed config message (no @type
// boilerplate), hands it to Create() once, and then calls the returned
// callback once per stream.
//
// Thread safety: Register() and Create() run on the main thread. The
// callback Create() returns is called on every worker at once: it must only
// read what it captured (treat the config as immutable).
//
//   class FaultFactory : public FilterFactory {
//     std::string_view Name() const override { return "portway.fault"; }
//     std::unique_ptr<google::protobuf::Message> NewConfig() const override {
//       return std::make_unique<FaultConfig>();
//     }
//     absl::StatusOr<FilterFactoryCallback> Create(const Message& m) const override {
//       auto config = std::make_shared<FaultConfig>(static_cast<const FaultConfig&>(m));
//       if (config->percentage() > 100) {
//         return absl::InvalidArgumentError("percentage: must be at most 100");
//       }
//       return [config] { return std::make_unique<FaultFilter>(config); };
//     }
//   };
#pragma once

#include <functional>
#include <memory>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "portway/filter.h"

namespace google::protobuf {
class Message;
}

namespace portway::http {

// Makes a fresh filter for one stream; called concurrently on workers.
using FilterFactoryCallback = std::function<FilterPtr()>;

class FilterFactory {
 public:
  virtual ~FilterFactory() = default;
  // The name configs use, e.g. "portway.fault". Built-in filters use the
  // portway. prefix; choose your own for custom filters.
  virtual std::string_view Name() const = 0;
  // An empty instance of the typed config message.
  virtual std::unique_ptr<google::protobuf::Message> NewConfig() const = 0;
  // Checks `config` beyond its shape and returns the per-stream maker. On a
  // bad value, return InvalidArgumentError("FIELD.PATH: what is wrong"),
  // the path relative to the filter's config; the core reports it under the
  // filter's full path (listeners[0].filters[1].config.FIELD.PATH).
  virtual absl::StatusOr<FilterFactoryCallback> Create(
      const google::protobuf::Message& config) const = 0;
};

class FilterRegistry {
 public:
  virtual ~FilterRegistry() = default;
  // Fails (AlreadyExists) if the name is taken.
  virtual absl::Status Register(std::unique_ptr<FilterFactory> factory) = 0;
};

}  // namespace portway::http
