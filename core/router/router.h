// The router: the last stage of every stream. It carries out the route's
// action: a direct response, a redirect, or forwarding to a cluster, where
// it picks a host, takes a connection from the pool, streams the request
// body up and the response back with back-pressure both ways, and turns
// every upstream failure into the right local reply (the 502 family).
//
// Thread safety: one per stream, on the stream's worker.
#pragma once

#include <memory>
#include <string_view>
#include <vector>

#include "core/event/dispatcher.h"
#include "core/http/codec.h"
#include "core/http/local_reply.h"
#include "core/router/route_table.h"
#include "core/upstream/cluster_manager.h"
#include "portway/filter.h"
#include "portway/stream_info.h"

namespace portway::router {

// What the router needs from the stream that owns it.
class RouterCallbacks {
 public:
  virtual ~RouterCallbacks() = default;
  virtual event::Dispatcher& Dispatcher() = 0;
  virtual upstream::ClusterManager& ClusterManager() = 0;
  virtual http::StreamInfo& Info() = 0;
  // A response made here (status and taxonomy header from `cause`).
  virtual void SendLocalReply(http::ErrorCause cause, std::string_view detail) = 0;
  // A direct response or redirect configured on the route.
  virtual void SendDirectResponse(int status, std::string_view body, std::string_view content_type,
                                  std::string_view location) = 0;
  virtual void EncodeHeaders(http::HeaderMapPtr headers, bool end_stream) = 0;
  virtual void EncodeData(Buffer& data, bool end_stream) = 0;
  virtual void EncodeTrailers(http::HeaderMapPtr trailers) = 0;
  // The upstream failed after the response began: cut the downstream off
  // so the client sees a truncation, never a clean end.
  virtual void ResetDownstream(http::ErrorCause cause, std::string_view detail) = 0;
  virtual void ReadDisableDownstream(bool disable) = 0;
  virtual size_t BufferLimit() const = 0;
  // The request is gRPC (content-type application/grpc*).
  virtual bool GrpcRequest() const { return false; }
  // Set by filters (EnableRequestReplay, SetPerTryTimeout); 0: off.
  virtual size_t ReplayLimit() const = 0;
  virtual std::chrono::milliseconds PerTryTimeout() const = 0;
  // Set by filters (SetUpstreamLimits); all 0 when none did.
  virtual const http::UpstreamLimits& Limits() const = 0;
  // Asks the filters about the host picked for an attempt.
  virtual http::UpstreamAttemptStatus OnUpstreamAttempt(http::UpstreamAttempt& attempt) = 0;
  // Asks the filters about an attempt's result; kRetry means try again.
  virtual http::UpstreamResultStatus OnUpstreamResult(http::UpstreamResult& result) = 0;
};

class Router : public http::ResponseDecoder,
               public http::StreamCallbacks,
               public upstream::PoolCallbacks {
 public:
  explicit Router(RouterCallbacks& callbacks) : callbacks_(callbacks) {}
  ~Router() override;

  // Request side, called by the stream.
  void OnRequestHeaders(http::HeaderMapPtr headers, const Route& route, bool end_stream);
  void OnRequestData(Buffer& data, bool end_stream);
  void OnRequestTrailers(http::HeaderMapPtr trailers);
  // The client stopped / resumed draining the response.
  void OnDownstreamAboveWriteBufferHighWatermark();
  void OnDownstreamBelowWriteBufferLowWatermark();
  // The stream is going away (downstream reset or local reply): release the
  // upstream side.
  void Abort();

  // http::ResponseDecoder (upstream response)
  void DecodeHeaders(http::HeaderMapPtr headers, bool end_stream) override;
  void DecodeData(Buffer& data, bool end_stream) override;
  void DecodeTrailers(http::HeaderMapPtr trailers) override;

  // http::StreamCallbacks (upstream stream)
  void OnResetStream(http::StreamResetReason reason, std::string_view detail) override;
  void OnAboveWriteBufferHighWatermark() override;
  void OnBelowWriteBufferLowWatermark() override;

  // upstream::PoolCallbacks
  void OnPoolReady(http::RequestEncoder& encoder, const upstream::PoolStreamInfo& info) override;
  void OnPoolFailure(upstream::PoolFailure reason, std::string_view detail) override;

  // The stats of the cluster the latest attempt went to (null before one,
  // or when the cluster keeps none).
  stats::ClusterStats* Stats() const { return cluster_ ? cluster_->config->stats : nullptr; }

 private:
  void StartTimeout();
  // `what`: the deadline's source when it is not the route's timeout.
  void ArmTimeout(std::chrono::milliseconds timeout, const char* what);
  void OnTimeout();
  void Finish();
  // The current attempt no longer counts in its host's active requests.
  void ReleaseHostCount();
  void ReleaseRetryCount();
  void ReleaseUpstream();
  void RewriteRequest(http::HeaderMap& headers);
  void SendUpstream();
  // Attempts: each picks a host (avoiding those tried and those the
  // filters turn down), takes a connection and sends the request;
  // EndAttempt() gives up the current one.
  // `cluster`: the worker's cluster when the caller just looked it up (the
  // first attempt); null to look it up.
  void StartAttempt(upstream::ClusterManager::WorkerCluster* cluster = nullptr);
  // The host for the next attempt, or null after replying.
  upstream::HostSharedPtr PickHost(upstream::ClusterManager::WorkerCluster& cluster);
  void EndAttempt();
  // The outcome of the current attempt, for the failure history.
  void RecordAttemptResult(http::ErrorCause cause);
  // A filter asked for a retry the router will not make: the failure
  // history says so.
  void NoteRetryRefused(std::string_view why);
  // Reports a failed or answered attempt to the filters; true when the
  // attempt needs nothing more from the caller: they asked for (and the
  // router started) a retry, or one answered with a response of its own.
  bool MaybeRetry(http::UpstreamResult::Kind kind, http::ErrorCause cause, int status,
                  const http::HeaderMap* headers, bool refused_stream = false);
  // Tells outlier detection how the current attempt went (once per
  // attempt; nothing when its cluster has no outlier_detection).
  void ReportOutlier(http::UpstreamResult::Kind kind, int status, bool refused_stream);
  void OnPerTryTimeout();

  RouterCallbacks& callbacks_;
  const Route* route_ = nullptr;
  http::HeaderMapPtr request_headers_;
  http::HeaderMapPtr request_trailers_;
  Buffer pending_body_;
  upstream::ClusterSnapshotPtr cluster_;
  upstream::LbContext lb_context_;
  // The current attempt.
  upstream::HostSharedPtr host_;
  upstream::Cancellable* pool_handle_ = nullptr;
  http::RequestEncoder* encoder_ = nullptr;
  event::TimerPtr per_try_timer_;
  bool attempt_counted_ = false;  // host_'s active-request count includes us
  bool attempt_reused_ = false;   // the attempt's connection carried a stream before
  bool attempt_sent_ = false;     // some of the request went to the connection
  bool attempt_told_ = false;     // outlier detection has this attempt's outcome
  // The cluster whose active retries count this attempt (a retry), or null.
  stats::ClusterStats* retry_counted_ = nullptr;
  // Across attempts.
  uint32_t attempt_ = 0;
  std::vector<upstream::HostSharedPtr> tried_;
  size_t replay_limit_ = 0;  // 0: no retries possible
  bool replay_ok_ = false;   // the whole request so far is in replay_
  Buffer replay_;
  http::HeaderMapPtr replay_trailers_;
  event::TimerPtr retry_timer_;
  event::TimerPtr timeout_;
  std::chrono::milliseconds timeout_ms_{0};
  const char* timeout_what_ = nullptr;
  // Counted in the cluster's active requests (one per request, not attempt).
  stats::ClusterStats* request_counted_ = nullptr;
  bool request_complete_ = false;
  bool response_started_ = false;
  bool done_ = false;
  // The client is paused because the body waiting for a connection is
  // full, or because the upstream is not taking it fast enough.
  bool paused_for_pending_ = false;
  bool paused_for_upstream_ = false;
  bool upstream_paused_ = false;
};

}  // namespace portway::router
