#include "core/server/health_config.h"

#include <charconv>

#include "core/common/strings.h"
#include "core/server/tls_config.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "google/protobuf/struct.pb.h"

namespace portway::server {
namespace {

void AddError(config::ConfigErrors* errors, std::string path, std::string message) {
  errors->push_back({std::move(path), std::move(message)});
}

std::chrono::milliseconds Millis(const google::protobuf::Duration& d) {
  return std::chrono::milliseconds(d.seconds() * 1000 + d.nanos() / 1000000);
}

// A duration field: `fallback` when unset; at least `min`.
std::chrono::milliseconds Duration(bool has, const google::protobuf::Duration& d,
                                   std::chrono::milliseconds fallback,
                                   std::chrono::milliseconds min, const std::string& path,
                                   config::ConfigErrors* errors) {
  if (!has) return fallback;
  if (d.seconds() < 0 || d.nanos() < 0) {
    AddError(errors, path, "must not be negative");
    return fallback;
  }
  std::chrono::milliseconds value = Millis(d);
  if (value < min) {
    AddError(errors, path, Cat("must be at least ", min.count(), "ms"));
    return fallback;
  }
  return value;
}

bool ParseStatus(std::string_view text, int* out) {
  int value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || value < 100 || value > 599) {
    return false;
  }
  *out = value;
  return true;
}

void BuildHttp(const config::v1::HttpHealthCheck& http, const std::string& path,
               upstream::HealthCheckSpec* spec, const std::string& cluster,
               config::ConfigErrors* errors) {
  spec->kind = upstream::HealthCheckSpec::Kind::kHttp;
  spec->path = http.path().empty() ? "/" : http.path();
  if (spec->path.front() != '/') AddError(errors, path + ".path", "must start with '/'");
  for (char c : spec->path) {
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) {
      AddError(errors, path + ".path", "must not contain spaces or control characters");
      break;
    }
  }
  spec->host = http.host().empty() ? cluster : http.host();
  for (char c : spec->host) {
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) {
      AddError(errors, path + ".host", "must not contain spaces or control characters");
      break;
    }
  }
  if (http.expected_statuses_size() > 0) spec->expected_statuses.clear();
  for (int i = 0; i < http.expected_statuses_size(); ++i) {
    std::string_view text = http.expected_statuses(i);
    size_t dash = text.find('-');
    int low = 0;
    int high = 0;
    bool ok = dash == std::string_view::npos
                  ? ParseStatus(text, &low) && ParseStatus(text, &high)
                  : ParseStatus(text.substr(0, dash), &low) &&
                        ParseStatus(text.substr(dash + 1), &high) && low <= high;
    if (!ok) {
      AddError(errors, Cat(path, ".expected_statuses[", i, "]"),
               Cat("'", text, "' is not a status (100-599) or a range like 200-399"));
      continue;
    }
    spec->expected_statuses.emplace_back(low, high);
  }
}

}  // namespace

void BuildClusterHealth(const config::v1::Cluster& proto, const std::string& path,
                        upstream::ClusterConfig* config, config::ConfigErrors* errors) {
  using std::chrono::milliseconds;
  if (proto.has_healthy_panic_threshold()) {
    uint32_t value = proto.healthy_panic_threshold().value();
    if (value > 100) {
      AddError(errors, path + ".healthy_panic_threshold", "must be a percentage (0-100)");
    }
    config->healthy_panic_threshold = std::min<uint32_t>(value, 100);
  }

  for (int i = 0; i < proto.health_checks_size(); ++i) {
    const auto& hc = proto.health_checks(i);
    const std::string hpath = Cat(path, ".health_checks[", i, "]");
    upstream::HealthCheckSpec spec;
    spec.interval = Duration(hc.has_interval(), hc.interval(), milliseconds(5000), milliseconds(10),
                             hpath + ".interval", errors);
    spec.timeout =
        Duration(hc.has_timeout(), hc.timeout(), std::min(milliseconds(1000), spec.interval),
                 milliseconds(1), hpath + ".timeout", errors);
    if (spec.timeout > spec.interval) {
      AddError(errors, hpath + ".timeout", "must not be longer than interval");
    }
    spec.jitter = Duration(hc.has_jitter(), hc.jitter(), milliseconds(0), milliseconds(0),
                           hpath + ".jitter", errors);
    spec.no_traffic_interval =
        Duration(hc.has_no_traffic_interval(), hc.no_traffic_interval(), spec.interval,
                 milliseconds(10), hpath + ".no_traffic_interval", errors);
    spec.unhealthy_interval =
        Duration(hc.has_unhealthy_interval(), hc.unhealthy_interval(), spec.interval,
                 milliseconds(10), hpath + ".unhealthy_interval", errors);
    if (hc.has_unhealthy_threshold()) spec.unhealthy_threshold = hc.unhealthy_threshold().value();
    if (hc.has_healthy_threshold()) spec.healthy_threshold = hc.healthy_threshold().value();
    if (spec.unhealthy_threshold == 0 || spec.unhealthy_threshold > 1000) {
      AddError(errors, hpath + ".unhealthy_threshold", "must be between 1 and 1000");
    }
    if (spec.healthy_threshold == 0 || spec.healthy_threshold > 1000) {
      AddError(errors, hpath + ".healthy_threshold", "must be between 1 and 1000");
    }
    switch (hc.kind_case()) {
      case config::v1::HealthCheck::kHttp:
        BuildHttp(hc.http(), hpath + ".http", &spec, proto.name(), errors);
        break;
      case config::v1::HealthCheck::kTcp:
        spec.kind = upstream::HealthCheckSpec::Kind::kTcp;
        spec.send = hc.tcp().send();
        spec.expect = hc.tcp().expect();
        if (spec.expect.size() > 4096) {
          AddError(errors, hpath + ".tcp.expect", "must be at most 4096 bytes");
        }
        break;
      case config::v1::HealthCheck::kGrpc: {
        spec.kind = upstream::HealthCheckSpec::Kind::kGrpc;
        spec.service = hc.grpc().service();
        spec.authority = hc.grpc().authority().empty() ? proto.name() : hc.grpc().authority();
        const bool h2 =
            proto.protocol() == config::v1::HTTP2 || proto.protocol() == config::v1::AUTO;
        if (!h2) {
          AddError(errors, hpath + ".grpc",
                   "gRPC health checks need HTTP/2: set the cluster's protocol to http2 (or auto "
                   "with tls)");
        }
        break;
      }
      case config::v1::HealthCheck::kCustom: {
        spec.kind = upstream::HealthCheckSpec::Kind::kCustom;
        spec.custom_name = hc.custom().name();
        const HealthCheckerFactory* factory = FindHealthChecker(spec.custom_name);
        if (factory == nullptr) {
          AddError(errors, hpath + ".custom.name",
                   Cat("no health checker named '", spec.custom_name,
                       "' is registered (a module registers one with RegisterHealthChecker)"));
          break;
        }
        std::unique_ptr<google::protobuf::Message> message = factory->NewConfig();
        if (!config::StructToProto(hc.custom().config(), message.get(), errors,
                                   hpath + ".custom.config")) {
          break;
        }
        absl::StatusOr<HealthProbeFactoryFn> made = factory->Create(*message);
        if (!made.ok()) {
          std::string text(made.status().message());
          size_t colon = text.find(": ");
          if (colon != std::string::npos && text.find(' ') > colon) {
            AddError(errors, Cat(hpath, ".custom.config.", text.substr(0, colon)),
                     text.substr(colon + 2));
          } else {
            AddError(errors, hpath + ".custom.config", text);
          }
          break;
        }
        spec.custom = std::make_shared<const HealthProbeFactoryFn>(std::move(*made));
        break;
      }
      default:
        AddError(errors, hpath, "needs one of http, tcp, grpc or custom");
        break;
    }
    // The identity: everything that shapes a probe and its verdicts. The
    // serialized proto says it all (a custom config's factory output
    // cannot be compared, its input can).
    // Deterministic: a custom config is a map, which protobuf otherwise
    // writes in a random order (an unchanged check would look changed).
    std::string serialized;
    {
      google::protobuf::io::StringOutputStream stream(&serialized);
      google::protobuf::io::CodedOutputStream coded(&stream);
      coded.SetSerializationDeterministic(true);
      hc.SerializeToCodedStream(&coded);
    }
    spec.identity =
        Cat(static_cast<int>(proto.protocol()), "|", config->tls_identity, "|", serialized);
    config->health_checks.push_back(std::move(spec));
  }

  if (proto.has_outlier_detection()) {
    const auto& od = proto.outlier_detection();
    const std::string opath = path + ".outlier_detection";
    auto out = std::make_shared<upstream::OutlierConfig>();
    if (od.has_consecutive_5xx()) out->consecutive_5xx = od.consecutive_5xx().value();
    if (od.has_consecutive_gateway_failure()) {
      out->consecutive_gateway_failure = od.consecutive_gateway_failure().value();
    }
    if (od.has_consecutive_local_origin_failure()) {
      out->consecutive_local_origin_failure = od.consecutive_local_origin_failure().value();
    }
    out->failure_percentage_threshold = od.failure_percentage_threshold();
    if (out->failure_percentage_threshold > 100) {
      AddError(errors, opath + ".failure_percentage_threshold", "must be a percentage (0-100)");
    }
    if (od.has_failure_percentage_request_volume()) {
      out->failure_percentage_request_volume = od.failure_percentage_request_volume().value();
    }
    out->success_rate_stdev_factor = od.success_rate_stdev_factor();
    if (!(out->success_rate_stdev_factor >= 0 && out->success_rate_stdev_factor <= 100)) {
      AddError(errors, opath + ".success_rate_stdev_factor", "must be between 0 and 100");
    }
    if (od.has_success_rate_request_volume()) {
      out->success_rate_request_volume = od.success_rate_request_volume().value();
    }
    if (od.has_minimum_hosts()) out->minimum_hosts = od.minimum_hosts().value();
    out->interval = Duration(od.has_interval(), od.interval(), milliseconds(10000),
                             milliseconds(10), opath + ".interval", errors);
    out->base_ejection_time =
        Duration(od.has_base_ejection_time(), od.base_ejection_time(), milliseconds(30000),
                 milliseconds(1), opath + ".base_ejection_time", errors);
    out->max_ejection_time = Duration(od.has_max_ejection_time(), od.max_ejection_time(),
                                      std::max(milliseconds(300000), out->base_ejection_time),
                                      milliseconds(1), opath + ".max_ejection_time", errors);
    if (out->max_ejection_time < out->base_ejection_time) {
      AddError(errors, opath + ".max_ejection_time", "must not be shorter than base_ejection_time");
    }
    if (od.has_max_ejection_percent())
      out->max_ejection_percent = od.max_ejection_percent().value();
    if (out->max_ejection_percent > 100) {
      AddError(errors, opath + ".max_ejection_percent", "must be a percentage (0-100)");
    }
    config->outlier = std::move(out);
  }
}

}  // namespace portway::server
