// portway.fault: aborts or delays a configured share of requests (see
// README.md). Written against the public SDK only, like any custom filter.
//
// Thread safety: FaultFactory runs on the main thread; each FaultFilter
// belongs to one stream; the shared Settings are immutable.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "portway/filter.h"
#include "portway/filter_factory.h"

namespace portway::filters::fault {

struct Settings {
  int abort_status = 0;  // 0: no configured abort
  double abort_percentage = 100;
  std::string abort_body;
  std::chrono::milliseconds delay{0};  // 0: no configured delay
  double delay_percentage = 100;
  bool header_overrides = false;
};

inline constexpr std::string_view kAbortHeader = "x-portway-fault-abort";
inline constexpr std::string_view kDelayHeader = "x-portway-fault-delay";
inline constexpr std::chrono::milliseconds kMaxDelay = std::chrono::hours(1);

class FaultFilter : public http::Filter {
 public:
  // `settings` outlive the filter: the factory callback that owns them is
  // held by the config the stream runs on.
  explicit FaultFilter(const Settings* settings) : settings_(settings) {}

  uint32_t Phases() const override { return http::Phase::kDecodeHeaders | http::Phase::kDestroy; }
  void SetCallbacks(http::FilterCallbacks& callbacks) override { callbacks_ = &callbacks; }
  http::FilterHeadersStatus DecodeHeaders(http::HeaderMap& headers, bool end_stream) override;
  void OnDestroy() override { timer_.reset(); }

 private:
  void Abort();

  const Settings* const settings_;
  http::FilterCallbacks* callbacks_ = nullptr;
  std::unique_ptr<http::FilterTimer> timer_;
  int pending_abort_ = 0;
};

class FaultFactory : public http::FilterFactory {
 public:
  std::string_view Name() const override { return "portway.fault"; }
  std::unique_ptr<google::protobuf::Message> NewConfig() const override;
  absl::StatusOr<http::FilterFactoryCallback> Create(
      const google::protobuf::Message& config) const override;
};

}  // namespace portway::filters::fault
