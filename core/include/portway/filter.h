// The HTTP filter SDK: one interface for built-in and custom filters.
//
// Every request runs through the listener's filter chain, in order, and
// then the router; the response comes back through the same filters in
// reverse order. A filter overrides only the phases it needs; every method
// has a default that lets the stream continue.
//
//   request:  DecodeHeaders -> DecodeData* -> DecodeTrailers?   (f1, f2, ..., router)
//   upstream: per attempt, OnUpstreamAttempt when a host is picked, then
//             OnUpstreamResult before anything of it is committed
//   response: EncodeHeaders -> EncodeData* -> EncodeTrailers?   (router, ..., f2, f1)
//   always:   OnStreamComplete, then OnDestroy
//
// Thread safety: a Filter belongs to one stream on one worker thread; all
// its methods and callbacks run there. A filter may keep state freely. It
// must not block: to wait, return a Stop status and resume later from a
// timer (FilterCallbacks::CreateTimer) or another callback.
//
// Lifecycle: created per stream by its factory (see filter_factory.h),
// SetCallbacks() first, then the phases, then OnStreamComplete() and
// OnDestroy(); after OnDestroy() nothing calls the filter and it must not
// use its callbacks or timers any more (destroy them there).
//
// Example: add a header to every response.
//
//   class StampFilter : public portway::http::Filter {
//    public:
//     FilterHeadersStatus EncodeHeaders(HeaderMap& headers, bool) override {
//       headers.Add("x-stamp", "1");
//       return FilterHeadersStatus::kContinue;
//     }
//   };
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <new>
#include <string>
#include <string_view>

#include "portway/buffer.h"
#include "portway/gateway.h"
#include "portway/headers.h"
#include "portway/stream_info.h"
#include "portway/time_source.h"

namespace portway::http {

// What the core does after a headers phase.
enum class FilterHeadersStatus {
  // Pass the headers to the next filter now.
  kContinue,
  // Hold them (and anything that follows) until the filter calls
  // Continue() — or ends the stream with SendLocalReply().
  kStopIteration,
};

// What the core does after a body phase.
enum class FilterDataStatus {
  // Pass this data on now.
  kContinue,
  // Keep this data (appended to what earlier calls kept) and pass nothing
  // on until Continue(); the kept body is bounded by the listener's buffer
  // limit: past it the stream ends with 413 (request) or 500 (response).
  kStopIterationAndBuffer,
};

// What the core does after a trailers phase.
enum class FilterTrailersStatus {
  kContinue,
  kStopIteration,  // hold until Continue()
};

// What happened to one upstream attempt, reported to every filter's
// OnUpstreamResult before anything of it reaches the client.
struct UpstreamResult {
  enum class Kind {
    kConnectFailure,   // refused, unreachable, or the connect timed out
    kReset,            // the connection failed before a response head
    kPerTryTimeout,    // no response head within the per-try timeout
    kResponseHeaders,  // a response head arrived (see status, headers)
  };
  Kind kind;
  // For failures: the local reply the client gets if nobody retries.
  ErrorCause cause = ErrorCause::kNone;
  int status = 0;                      // kResponseHeaders: the upstream's status
  const HeaderMap* headers = nullptr;  // kResponseHeaders: the response head
  uint32_t attempt = 1;                // 1 for the first try
  std::string_view host;               // "IP:PORT" of the host this attempt used
  // kReset: the upstream said it did not process the request (HTTP/2
  // REFUSED_STREAM, or a GOAWAY that left the stream out), so sending it
  // again is safe even for a non-idempotent method.
  bool refused_stream = false;
  // The attempt ran on a connection that had carried a stream before (a
  // reset on it may be the upstream closing an idle connection).
  bool connection_reused = false;
  // Some of the request had been handed to the connection.
  bool request_sent = false;
  // Out: with kRetry, how long to wait before the next attempt.
  std::chrono::milliseconds retry_delay{0};
};

// One upstream attempt about to start: the balancer picked `host`.
struct UpstreamAttempt {
  std::string_view cluster;
  std::string_view host;  // "IP:PORT"
  uint32_t attempt = 1;   // 1 for the first try
  // Out, with kOtherHost: the reply the client gets (503 family) when every
  // host of the cluster was turned down for this attempt.
  ErrorCause cause_if_none_left = ErrorCause::kNoHealthyUpstream;
};

enum class UpstreamAttemptStatus {
  // Use this host.
  kContinue,
  // Not this host: the balancer picks another one not yet turned down for
  // this attempt (filters are asked again). When none is left the stream
  // ends with `cause_if_none_left`.
  kOtherHost,
};

// Cluster-wide limits a filter can put on a request (see
// FilterCallbacks::SetUpstreamLimits); counted over every worker and host.
// 0 means no limit here (the cluster's own pool settings still apply).
struct UpstreamLimits {
  // Connections open to the cluster: at the limit a request waits for one
  // to free instead of opening another (a worker's pool for a host with no
  // connection may still open one, so nothing waits forever).
  uint32_t max_connections = 0;
  // Requests waiting for a connection: at the limit, 503 upstream_overflow.
  uint32_t max_pending_requests = 0;
  // Requests in flight to the cluster: at the limit, 503 upstream_overflow.
  uint32_t max_requests = 0;
  // Retries in flight to the cluster: at the limit a retry is not made and
  // the attempt's own result goes to the client.
  uint32_t max_retries = 0;
};

enum class UpstreamResultStatus {
  // Accept it: response headers go on to the client; a failure becomes its
  // local reply (the 502 family).
  kContinue,
  // Discard this attempt (its connection is closed, never reused) and send
  // the request again, to another host when the cluster has one, after
  // retry_delay. Needs EnableRequestReplay(); otherwise it is kContinue.
  kRetry,
};

// A response a filter answers with (FilterCallbacks::SendResponse): a
// stored copy, say. `headers` carries :status; `trailers` may be null.
struct FilterResponse {
  HeaderMapPtr headers;
  Buffer body;
  HeaderMapPtr trailers;
  // For StreamInfo::detail (the access log, the failure history): why
  // this answer, e.g. the failure a stale copy stands in for.
  std::string detail;
};

// Runs callbacks on one worker from any thread: how a filter that hands work
// to a library with its own I/O thread (a Redis client, say) gets the answer
// back onto its stream's worker (FilterCallbacks::Worker()).
class WorkerPoster {
 public:
  virtual ~WorkerPoster() = default;
  // Queues `callback` to run on the worker's thread, soon. Safe from any
  // thread. Returns false, and drops the callback, once the worker has
  // stopped. The callback outlives the stream that posted it: check that
  // what it touches still exists (hold a weak_ptr, not the filter).
  virtual bool Post(std::function<void()> callback) = 0;
};

// The answer to a side request (FilterCallbacks::SendSideRequest).
struct SideResponse {
  // The upstream's response head; null when the request failed before one
  // arrived (see cause).
  HeaderMapPtr headers;
  std::string body;
  HeaderMapPtr trailers;  // may be null
  // Why it failed (the cause a client would have seen), or kNone. A body
  // over the limit fails with kPayloadTooLarge.
  ErrorCause cause = ErrorCause::kNone;
};
using SideResponseCallback = std::function<void(SideResponse)>;

// A timer owned by a filter (see FilterCallbacks::CreateTimer).
class FilterTimer {
 public:
  virtual ~FilterTimer() = default;
  // Fires once after `timeout`; re-enabling moves the deadline.
  virtual void Enable(std::chrono::milliseconds timeout) = 0;
  virtual void Disable() = 0;
};

class FilterCallbacks {
 public:
  virtual ~FilterCallbacks() = default;
  // Resumes the direction this filter stopped (request or response) from
  // the next filter on, with whatever headers, kept body and trailers the
  // filter now holds.
  virtual void Continue() = 0;
  // Answers the request from here: nothing more goes upstream, later
  // filters' decode phases are skipped, and the response passes back
  // through the encode phases. `error` becomes the x-portway-error header
  // and the stream's detail (empty: no header). Only before the response
  // has started; afterwards it ends the stream as a truncation.
  virtual void SendLocalReply(int status, std::string_view body, std::string_view error) = 0;
  // Answers with the core's own reply for `cause` (docs/errors.md): its
  // status, x-portway-error, access-log flag and counter; `detail` is added
  // to the body and the access log. E.g. kCircuitOpen, kUpstreamOverflow.
  virtual void SendErrorReply(ErrorCause cause, std::string_view detail) = 0;
  // Answers with a response of the filter's own that is not an error (a
  // cached copy, a stale one): it is not counted, logged or flagged as a
  // local reply, and StreamInfo::cause stays kNone. Say what it was in
  // StreamInfo::response_flag. Possible until the response head has gone
  // to the client:
  // - in a request phase, or later while the request waits upstream:
  //   nothing (more) goes upstream, like a local reply;
  // - in OnUpstreamResult: the attempt is dropped, no retry is made, and
  //   later filters are not asked about it;
  // - in EncodeHeaders, or while the filter holds the response: it
  //   replaces the response the filter was given (the upstream's, whose
  //   stream is dropped, or a local reply, which then no longer counts).
  // The response passes through the encode phases of the filters before
  // this one in the chain; this filter and those after it do not see it.
  // Returns false, doing nothing, when it is too late.
  virtual bool SendResponse(FilterResponse response) = 0;
  virtual StreamInfo& Info() = 0;
  // The body this filter kept with kStopIterationAndBuffer in the current
  // direction; may be modified before Continue().
  virtual Buffer& KeptBody() = 0;
  // A timer on this stream's worker; destroy it in OnDestroy() at the
  // latest.
  virtual std::unique_ptr<FilterTimer> CreateTimer(std::function<void()> callback) = 0;
  // The worker's clock (the same one its timers run on) and its random
  // source (seeded once per worker). Use these, never std::chrono clocks
  // or an engine of your own: tests simulate both (portway/time_source.h).
  virtual const TimeSource& Clock() = 0;
  virtual RandomGenerator& Random() = 0;
  // What the stream's worker knows of the gateway: whether it is draining,
  // and how many hosts of a cluster are usable (portway/gateway.h).
  virtual const GatewayView& Gateway() = 0;
  // This stream's worker, to post to from another thread (WorkerPoster).
  virtual std::shared_ptr<WorkerPoster> Worker() = 0;
  // Sends `headers` (a request without a body: a GET, say) upstream on
  // this stream's route and cluster, detached from the stream: it goes on
  // after the stream ends (a background revalidation). No filter sees it.
  // `done` runs once, on this worker, with the response and up to
  // `max_body_bytes` of its body; it may run after this filter is gone
  // (capture what it needs, not the filter). When the stream has no
  // cluster route, `done` gets cause kNoRoute.
  virtual void SendSideRequest(HeaderMapPtr headers, size_t max_body_bytes,
                               SideResponseCallback done) = 0;
  // Keeps the request (head and up to `max_body_bytes` of body) so it can
  // be sent again after kRetry. A body over the limit makes the request
  // unretriable; StreamInfo::replay_overflow records it. Call in
  // DecodeHeaders.
  virtual void EnableRequestReplay(size_t max_body_bytes) = 0;
  // Bounds each attempt (from sending the request to the response head);
  // over it the attempt ends with UpstreamResult::kPerTryTimeout. 0: none.
  virtual void SetPerTryTimeout(std::chrono::milliseconds timeout) = 0;
  // Limits for this request's cluster (see UpstreamLimits). Call in
  // DecodeHeaders; the last call wins.
  virtual void SetUpstreamLimits(const UpstreamLimits& limits) = 0;
  // Sends the request to `cluster` instead of the route's (a fallback).
  // Call in DecodeHeaders; later calls (once the request went on to the
  // router) are ignored. StreamInfo::cluster shows the change. A cluster
  // that does not exist gets 503 cluster_not_found.
  virtual void SetUpstreamCluster(std::string_view cluster) = 0;
};

// The phases of Filter, as bits for Filter::Phases().
struct Phase {
  static constexpr uint32_t kDecodeHeaders = 1u << 0;
  static constexpr uint32_t kDecodeData = 1u << 1;
  static constexpr uint32_t kDecodeTrailers = 1u << 2;
  static constexpr uint32_t kEncodeHeaders = 1u << 3;
  static constexpr uint32_t kEncodeData = 1u << 4;
  static constexpr uint32_t kEncodeTrailers = 1u << 5;
  static constexpr uint32_t kUpstreamAttempt = 1u << 6;
  static constexpr uint32_t kUpstreamResult = 1u << 7;
  static constexpr uint32_t kStreamComplete = 1u << 8;
  static constexpr uint32_t kDestroy = 1u << 9;
  static constexpr uint32_t kAll = (1u << 10) - 1;
};

class Filter {
 public:
  virtual ~Filter() = default;

  // The phases this filter overrides (Phase bits), asked once per stream
  // before SetCallbacks(). The core skips calls to the others, as if they
  // returned kContinue; a filter that does not override this is called in
  // every phase. An optimisation only: list every phase you override.
  virtual uint32_t Phases() const { return Phase::kAll; }

  // Filters are made and freed with every stream: they come from a small
  // per-thread cache of blocks instead of malloc (bounded; transparent to
  // filters, which just use new / std::make_unique).
  static void* operator new(size_t size);
  static void operator delete(void* block, size_t size) noexcept;
  // The placement and nothrow forms, which the two above would hide.
  static void* operator new(size_t, void* where) noexcept { return where; }
  static void operator delete(void*, void*) noexcept {}
  static void* operator new(size_t size, const std::nothrow_t&) noexcept {
    try {
      return operator new(size);
    } catch (...) {
      return nullptr;
    }
  }
  static void operator delete(void* block, const std::nothrow_t&) noexcept {
    ::operator delete(block);
  }
  static void* operator new(size_t size, std::align_val_t align) {
    return ::operator new(size, align);
  }
  static void operator delete(void* block, size_t size, std::align_val_t align) noexcept {
    ::operator delete(block, size, align);
  }

  virtual void SetCallbacks(FilterCallbacks& callbacks) { (void)callbacks; }

  virtual FilterHeadersStatus DecodeHeaders(HeaderMap& headers, bool end_stream) {
    (void)headers;
    (void)end_stream;
    return FilterHeadersStatus::kContinue;
  }
  virtual FilterDataStatus DecodeData(Buffer& data, bool end_stream) {
    (void)data;
    (void)end_stream;
    return FilterDataStatus::kContinue;
  }
  virtual FilterTrailersStatus DecodeTrailers(HeaderMap& trailers) {
    (void)trailers;
    return FilterTrailersStatus::kContinue;
  }

  virtual FilterHeadersStatus EncodeHeaders(HeaderMap& headers, bool end_stream) {
    (void)headers;
    (void)end_stream;
    return FilterHeadersStatus::kContinue;
  }
  virtual FilterDataStatus EncodeData(Buffer& data, bool end_stream) {
    (void)data;
    (void)end_stream;
    return FilterDataStatus::kContinue;
  }
  virtual FilterTrailersStatus EncodeTrailers(HeaderMap& trailers) {
    (void)trailers;
    return FilterTrailersStatus::kContinue;
  }

  // The balancer picked a host for an attempt; the connection is not made
  // yet. Filters are asked in order; the first kOtherHost turns the host
  // down, and the filters are asked again, with the same attempt number,
  // about the next host picked. A filter may also end the stream here
  // (SendErrorReply).
  virtual UpstreamAttemptStatus OnUpstreamAttempt(UpstreamAttempt& attempt) {
    (void)attempt;
    return UpstreamAttemptStatus::kContinue;
  }

  // An upstream attempt ended or its response head arrived, before anything
  // of it was sent to the client. Filters are asked in order, all with the
  // same `result` (a filter sees what earlier ones wrote into it); any
  // kRetry retries, after the retry_delay of the first filter asking.
  virtual UpstreamResultStatus OnUpstreamResult(UpstreamResult& result) {
    (void)result;
    return UpstreamResultStatus::kContinue;
  }

  // The stream is over (response sent, reset, or the client left).
  virtual void OnStreamComplete(const StreamInfo& info) { (void)info; }
  // Last call; release timers and anything tied to the stream.
  virtual void OnDestroy() {}
};

using FilterPtr = std::unique_ptr<Filter>;

}  // namespace portway::http
