#include "core/server/admin.h"

#include <algorithm>
#include <cstdint>
#include <functional>
#include <optional>
#include <string_view>
#include <vector>

#include "core/common/strings.h"
#include "core/http/codec.h"
#include "core/http/http1/codec.h"
#include "core/server/failure_history.h"
#include "core/server/sdk.h"
#include "core/server/server.h"
#include "core/server/worker.h"

namespace portway::server {

// One admin connection: the same HTTP/1 codec as the data plane.
class AdminServer::Connection : public event::ConnectionCallbacks,
                                public http::ServerConnectionCallbacks,
                                public http::RequestDecoder,
                                public event::DeferredDeletable {
 public:
  Connection(AdminServer& admin, event::ConnectionPtr connection)
      : admin_(admin), connection_(std::move(connection)) {
    http::http1::ServerOptions options;
    codec_ = std::make_unique<http::http1::ServerConnectionImpl>(*connection_, *this, options);
    connection_->SetCallbacks(this);
  }
  void OnData(Buffer& data, bool end_stream) override {
    if (closed_) return;
    codec_->Dispatch(data);
    if (end_stream && !closed_) {
      // A client that half-closed after its request still gets a reply
      // that comes later (/failures).
      if (reply_pending_) {
        close_after_reply_ = true;
      } else {
        Close();
      }
    }
  }
  void OnEvent(event::ConnectionEvent event) override {
    if (event == event::ConnectionEvent::kRemoteClose ||
        event == event::ConnectionEvent::kLocalClose) {
      closed_ = true;
      admin_.Remove(this);
    }
  }
  http::RequestDecoder& NewStream(http::ResponseEncoder& encoder) override {
    encoder_ = &encoder;
    return *this;
  }
  void OnProtocolError(const http::CodecError& error, http::ResponseEncoder* encoder) override {
    if (encoder != nullptr) Respond(error.status, "text/plain", error.cause + "\n");
    Close();
  }
  void DecodeHeaders(http::HeaderMapPtr headers, bool end_stream) override {
    method_ = std::string(headers->Method());
    path_ = std::string(headers->Path());
    if (end_stream) Handle();
  }
  void DecodeData(Buffer& data, bool end_stream) override {
    data.Clear();
    if (end_stream) Handle();
  }
  void DecodeTrailers(http::HeaderMapPtr) override { Handle(); }

 private:
  void Handle() {
    Server& s = admin_.server_;
    const size_t question = path_.find('?');
    std::string path = path_.substr(0, question);
    std::optional<AdminResponse> filter_answer;
    if (!IsCorePath(path)) {
      AdminRequest request{method_, path,
                           question == std::string::npos ? "" : path_.substr(question + 1)};
      filter_answer = HandleFilterAdmin(request);
    }
    if (filter_answer) {
      Respond(filter_answer->status, filter_answer->content_type, filter_answer->body);
    } else if (method_ != "GET" && method_ != "HEAD") {
      Respond(405, "text/plain", "method not allowed\n");
    } else if (path == "/ready") {
      std::string why = s.NotReadyReason();
      Respond(why.empty() ? 200 : 503, "text/plain", why.empty() ? "ready\n" : why + "\n");
    } else if (path == "/stats") {
      Respond(200, "text/plain; version=0.0.4", s.RenderStats());
    } else if (path == "/clusters") {
      Respond(200, "application/json", s.RenderClusters());
    } else if (path == "/listeners") {
      Respond(200, "application/json", s.RenderListeners());
    } else if (path == "/config_dump") {
      Respond(200, "application/json", s.RenderConfigDump());
    } else if (path == "/control_plane") {
      Respond(200, "application/json", s.RenderControlPlane());
    } else if (path == "/failures" || StartsWith(path, "/failures/")) {
      // The workers answer on their own threads; the reply comes later.
      std::weak_ptr<bool> alive = alive_;
      reply_pending_ = true;
      s.CollectFailures(path_, [this, alive](int status, std::string body) {
        if (alive.expired() || closed_) return;
        reply_pending_ = false;
        Respond(status, "application/json", body);
        if (codec_->WantsClose() || close_after_reply_) Close();
      });
      return;
    } else if (path == "/") {
      std::string index =
          "/ready /stats /clusters /listeners /config_dump /control_plane /failures";
      for (const std::string& prefix : FilterAdminPrefixes()) index += " " + prefix;
      Respond(200, "text/plain", index + "\n");
    } else {
      Respond(404, "text/plain", "unknown admin path\n");
    }
    if (codec_->WantsClose()) Close();
  }
  static bool IsCorePath(std::string_view path) {
    for (std::string_view core : {"/", "/ready", "/stats", "/clusters", "/listeners",
                                  "/config_dump", "/control_plane", "/failures"}) {
      if (path == core) return true;
    }
    return StartsWith(path, "/failures/");
  }
  void Respond(int status, std::string_view content_type, const std::string& body) {
    http::HeaderMap headers;
    headers.AddLower(":status", std::to_string(status));
    headers.AddLower("content-type", content_type);
    headers.AddLower("content-length", std::to_string(body.size()));
    encoder_->EncodeHeaders(headers, false);
    Buffer data;
    data.Add(body);
    encoder_->EncodeData(data, true);
  }
  void Close() {
    if (closed_) return;
    closed_ = true;
    connection_->Close(event::CloseType::kFlushWrite);
    if (connection_->Closed()) admin_.Remove(this);
  }

  AdminServer& admin_;
  event::ConnectionPtr connection_;
  std::unique_ptr<http::http1::ServerConnectionImpl> codec_;
  http::ResponseEncoder* encoder_ = nullptr;
  std::string method_;
  std::string path_;
  bool closed_ = false;
  bool reply_pending_ = false;
  bool close_after_reply_ = false;
  // Expires with the connection: a late answer from the workers is dropped.
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

AdminServer::AdminServer(Server& server, event::Dispatcher& dispatcher)
    : server_(server), dispatcher_(dispatcher) {}

AdminServer::~AdminServer() = default;

bool AdminServer::Listen(const network::Address& address, std::string* error) {
  // No SO_REUSEPORT here: a second Portway started by mistake on the same
  // ports fails on the admin address instead of silently sharing traffic.
  int fd = event::CreateListenSocket(address, 128, error, event::PortSharing::kExclusive);
  if (fd < 0) return false;
  bound_ = event::SocketLocalAddress(fd);
  listener_ = dispatcher_.AdoptListener(fd, *this);
  return true;
}

void AdminServer::OnAccept(event::ConnectionPtr connection) {
  auto c = std::make_unique<Connection>(*this, std::move(connection));
  Connection* raw = c.get();
  connections_.emplace(raw, std::move(c));
}

void AdminServer::Remove(Connection* c) {
  auto it = connections_.find(c);
  if (it == connections_.end()) return;
  dispatcher_.DeferredDelete(std::move(it->second));
  connections_.erase(it);
}

// ----------------------------------------------------------- admin pages

std::string Server::RenderStats() const {
  if (snapshot_) config_version_.Set(static_cast<int64_t>(snapshot_->version));
  return store_.RenderPrometheus();
}

namespace {

// %XX in a request id taken from a path (ids a trusted client chose may
// hold characters a URL must escape).
std::string PercentDecode(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    auto hex = [](char c) {
      return c >= '0' && c <= '9'   ? c - '0'
             : c >= 'a' && c <= 'f' ? c - 'a' + 10
             : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                    : -1;
    };
    if (s[i] == '%' && i + 2 < s.size() && hex(s[i + 1]) >= 0 && hex(s[i + 2]) >= 0) {
      out.push_back(static_cast<char>(hex(s[i + 1]) * 16 + hex(s[i + 2])));
      i += 2;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

}  // namespace

void Server::CollectFailures(const std::string& target,
                             std::function<void(int, std::string)> done) {
  size_t q = target.find('?');
  std::string_view path = std::string_view(target).substr(0, q);
  std::string_view query = q == std::string::npos ? "" : std::string_view(target).substr(q + 1);
  constexpr std::string_view kPrefix = "/failures/";
  std::string id = path.size() > kPrefix.size() ? PercentDecode(path.substr(kPrefix.size())) : "";
  uint64_t limit = 100;
  for (std::string_view param : SplitView(query, '&')) {
    if (StartsWith(param, "limit=") && !ParseUint64(param.substr(6), &limit)) {
      done(400, "{\"error\":\"limit must be a whole number\"}\n");
      return;
    }
  }
  struct Gathered {
    std::vector<FailureHistory::Summary> rows;
    std::optional<FailureHistory::Summary> story;  // the newest with that id
    size_t left = 0;
  };
  auto gathered = std::make_shared<Gathered>();
  gathered->left = workers_.size();
  size_t per_worker = snapshot_ ? snapshot_->failure_history_per_worker : 0;
  auto finish = [gathered, id, limit, per_worker, workers = workers_.size(),
                 done = std::move(done)] {
    if (!id.empty()) {
      if (gathered->story) {
        done(200, gathered->story->json + "\n");
      } else {
        done(404, Cat("{\"error\":",
                      JsonString(Cat("no failed request with id '", id,
                                     "' in the history (it keeps the last ", per_worker,
                                     " per worker)")),
                      "}\n"));
      }
      return;
    }
    auto& rows = gathered->rows;
    std::stable_sort(rows.begin(), rows.end(),
                     [](const auto& a, const auto& b) { return a.time > b.time; });
    if (rows.size() > limit) rows.resize(limit);
    std::string out = Cat("{\"workers\":", workers, ",\"max_entries_per_worker\":", per_worker,
                          ",\"failures\":[");
    for (size_t i = 0; i < rows.size(); ++i) {
      if (i > 0) out.push_back(',');
      out += rows[i].json;
    }
    out += "]}\n";
    done(200, std::move(out));
  };
  if (workers_.empty()) {
    finish();
    return;
  }
  auto shared_finish = std::make_shared<decltype(finish)>(std::move(finish));
  for (auto& w : workers_) {
    Worker* worker = w.get();
    worker->Post([this, worker, gathered, id, shared_finish] {
      // On the worker's thread: its history is its own.
      std::vector<FailureHistory::Summary> rows;
      std::optional<FailureHistory::Summary> story;
      if (id.empty()) {
        worker->failures().AppendSummaries(&rows);
      } else {
        story = worker->failures().Story(id);
      }
      dispatcher_->Post(
          [gathered, rows = std::move(rows), story = std::move(story), shared_finish]() mutable {
            for (auto& r : rows) gathered->rows.push_back(std::move(r));
            // With trusted client ids, several workers may know one id.
            if (story && (!gathered->story || story->time > gathered->story->time)) {
              gathered->story = std::move(story);
            }
            if (--gathered->left == 0) (*shared_finish)();
          });
    });
  }
}

namespace {

std::string UnixMsIso(int64_t ms) {
  return Iso8601(std::chrono::system_clock::time_point(std::chrono::milliseconds(ms)));
}

// A host's health flags as /clusters shows them: "flags":[{"flag":...,
// "since":...}], "reason" and "last_change" of its last transition.
void RenderHostHealth(const upstream::Host& host, std::string& out) {
  const upstream::Host::HealthDetail& detail = host.healthDetail();
  out += ",\"flags\":[";
  bool first = true;
  const uint32_t flags = host.healthFlags();
  for (int i = 0; i < upstream::health_flag::kCount; ++i) {
    if ((flags & (1u << i)) == 0) continue;
    if (!first) out.push_back(',');
    first = false;
    out += Cat("{\"flag\":\"", upstream::HealthFlagName(1u << i),
               "\",\"since\":", JsonString(UnixMsIso(detail.since_unix_ms[i])), "}");
  }
  out += "]";
  if (detail.last_change_unix_ms != 0) {
    out += Cat(",\"reason\":", JsonString(detail.last_reason),
               ",\"last_change\":", JsonString(UnixMsIso(detail.last_change_unix_ms)));
  }
}

// Outlier detection's view of a host: whether (and until when) it is
// ejected, how often it was, and its counters.
void RenderHostOutlier(const upstream::Host& host, std::string& out) {
  const upstream::OutlierHostState& o = host.outlier();
  const bool ejected = (host.healthFlags() & upstream::health_flag::kOutlier) != 0;
  out += Cat(",\"outlier\":{\"ejected\":", ejected ? "true" : "false");
  if (ejected) out += Cat(",\"ejected_until\":", JsonString(UnixMsIso(o.ejected_until_unix_ms)));
  out += Cat(",\"times_ejected\":", o.times_ejected,
             ",\"consecutive_5xx\":", o.consecutive_5xx.load(std::memory_order_relaxed),
             ",\"consecutive_gateway_failure\":",
             o.consecutive_gateway_failure.load(std::memory_order_relaxed),
             ",\"consecutive_local_origin_failure\":",
             o.consecutive_local_origin_failure.load(std::memory_order_relaxed),
             ",\"interval_successes\":", o.interval_successes.load(std::memory_order_relaxed),
             ",\"interval_failures\":", o.interval_failures.load(std::memory_order_relaxed), "}");
}

}  // namespace

std::string Server::RenderClusters() const {
  std::string out = "{\"clusters\":[";
  bool first_cluster = true;
  for (const auto& [name, cluster] : snapshot_->clusters) {
    if (!first_cluster) out.push_back(',');
    first_cluster = false;
    out +=
        Cat("{\"name\":", JsonString(name), ",\"type\":\"", cluster->config->dns ? "dns" : "static",
            "\",\"dns_error\":", JsonString(cluster->dns_error), ",\"hosts\":[");
    bool first = true;
    for (const auto& host : cluster->hosts) {
      if (!first) out.push_back(',');
      first = false;
      out += Cat("{\"address\":", JsonString(host->addressString()), ",\"weight\":", host->weight(),
                 ",\"health\":\"", upstream::HealthStateName(host->health()), "\"");
      RenderHostHealth(*host, out);
      std::vector<std::string> checks = health_checks_->Describe(*host);
      if (!checks.empty()) {
        out += ",\"active_checks\":[";
        for (size_t i = 0; i < checks.size(); ++i) {
          out += Cat(i == 0 ? "" : ",", "\"", checks[i], "\"");
        }
        out += "]";
      }
      if (cluster->config->outlier != nullptr) RenderHostOutlier(*host, out);
      out += Cat(",\"active_requests\":", host->activeRequestCount(),
                 ",\"requests_total\":", host->requests_total.load(),
                 ",\"connect_failures\":", host->connect_failures.load(),
                 ",\"active_connections\":", host->active_connections.load(), "}");
    }
    out.append("]");
    if (cluster->health) {
      out += Cat(",\"healthy_panic_threshold\":", cluster->health->panic_threshold,
                 ",\"usable_hosts\":", cluster->health->total - cluster->health->unusable.load(),
                 ",\"panic\":", cluster->health->Panic() ? "true" : "false");
    }
    if (const stats::ClusterStats* stats = cluster->config->stats) {
      out += Cat(",\"load\":{\"requests_active\":", stats->requests_active.Value(),
                 ",\"requests_pending\":", stats->requests_pending.Value(),
                 ",\"retries_active\":", stats->retries_active.Value(),
                 ",\"connections_active\":", stats->connections_active.Value(), "}");
    }
    std::string filters = RenderFilterClusterStatus(name);
    if (!filters.empty()) out += Cat(",\"filters\":", filters);
    out.push_back('}');
  }
  out.append("]}\n");
  return out;
}

std::string Server::RenderListeners() const {
  std::string out = "{\"listeners\":[";
  bool first = true;
  for (const auto& [name, bl] : listeners_) {
    if (!first) out.push_back(',');
    first = false;
    out +=
        Cat("{\"name\":", JsonString(name), ",\"address\":", JsonString(bl.bound.ToString()), "}");
  }
  out.append("]}\n");
  return out;
}

std::string Server::RenderConfigDump() const {
  // The snapshot version first; with a control plane, each dynamic
  // resource with its versions and last error; then the running bootstrap
  // (static and dynamic resources folded together).
  std::string head = Cat("{\"version\":", snapshot_->version);
  if (resources_) head += Cat(",\"dynamic_resources\":", RenderDynamicResources());
  std::string_view json = snapshot_->config_json;
  size_t open = json.find('{');
  if (open == std::string_view::npos) return head + "}\n";
  std::string_view rest = json.substr(open + 1);
  size_t first = rest.find_first_not_of(" \n\t");
  bool empty = first == std::string_view::npos || rest[first] == '}';
  return Cat(head, empty ? "" : ",", rest, "\n");
}

std::string Server::RenderDynamicResources() const {
  std::string out = "[";
  bool first = true;
  for (const auto& e : resources_->Entries()) {
    if (!first) out.push_back(',');
    first = false;
    out += Cat("{\"type\":\"", discovery::TypeName(e.type), "\",\"name\":", JsonString(e.name),
               ",\"serving_version\":", JsonString(e.serving_version),
               ",\"accepted_version\":", JsonString(e.accepted_version),
               ",\"pending\":", JsonString(e.pending),
               ",\"rejected_version\":", JsonString(e.rejected_version), ",\"errors\":[");
    for (size_t i = 0; i < e.errors.size(); ++i) {
      if (i > 0) out.push_back(',');
      out += Cat("{\"path\":", JsonString(e.errors[i].path()),
                 ",\"message\":", JsonString(e.errors[i].message()), "}");
    }
    out += "]}";
  }
  out += "]";
  return out;
}

std::string Server::NotReadyReason() const {
  if (draining_) return "draining";
  if (!ready_) return "starting";
  if (client_ == nullptr || first_push_applied_) return "";
  auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::steady_clock::now() - control_plane_started_);
  if (persisted_loaded_ && waited >= initial_fetch_timeout_) return "";
  discovery::Client::Status st = client_->GetStatus();
  std::string why = "waiting for the control plane's first push: ";
  if (st.pushes > 0) {
    why += last_apply_error_.empty() ? "received, not live on every worker yet"
                                     : Cat("received, could not be applied: ", last_apply_error_);
  } else if (!st.last_error.empty()) {
    why += st.last_error;
  } else {
    why += "connecting";
  }
  if (persisted_loaded_) {
    why +=
        Cat("; the persisted config serves meanwhile, ready in at most ",
            (initial_fetch_timeout_ - waited).count(), "ms (control_plane.initial_fetch_timeout)");
  }
  return why;
}

std::string Server::RenderControlPlane() const {
  if (client_ == nullptr) return "{\"configured\":false}\n";
  discovery::Client::Status st = client_->GetStatus();
  return Cat("{\"configured\":true,\"connected\":", st.connected ? "true" : "false",
             ",\"connects\":", st.connects, ",\"pushes\":", st.pushes,
             ",\"last_nonce\":", JsonString(st.last_nonce),
             ",\"last_version\":", JsonString(st.last_version),
             ",\"last_error\":", JsonString(st.last_error),
             ",\"last_apply_error\":", JsonString(last_apply_error_),
             ",\"resources\":", RenderDynamicResources(), "}\n");
}

}  // namespace portway::server
