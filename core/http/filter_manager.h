// The filter manager: runs a stream's filter chain in both directions and
// hands what passes to the router (request) or the codec (response).
//
// Iteration model (docs/filters.md):
// - Request data flows filter 0 -> n-1 -> router; response data flows
//   n-1 -> 0 -> codec.
// - A headers or trailers Stop pauses its whole direction. Body or
//   trailers arriving meanwhile wait in a queue (bounded by the buffer
//   limit: past it the downstream is paused).
// - kStopIterationAndBuffer makes the filter absorb the body: every later
//   chunk still reaches it (so it sees the end), and nothing passes it until
//   it returns kContinue or calls Continue(); then the kept body goes on.
// - Continue() resumes: the held item goes on from the next filter, then
//   queued items enter at the first filter, so every filter sees its
//   direction's items in order.
// - A body kept with kStopIterationAndBuffer is bounded by the buffer
//   limit: past it the stream ends with 413 (request) or 500 (response).
//
// Thread safety: one stream, one worker.
#pragma once

#include <chrono>
#include <memory>
#include <string_view>
#include <vector>

#include "core/common/small_blocks.h"

#include "portway/filter.h"

namespace portway::event {
class Dispatcher;
}

namespace portway::http {

// Where the chain's two directions end, and what the manager needs from
// its stream.
class FilterManagerCallbacks {
 public:
  virtual ~FilterManagerCallbacks() = default;
  virtual void DecodeHeadersToRouter(HeaderMapPtr headers, bool end_stream) = 0;
  virtual void DecodeDataToRouter(Buffer& data, bool end_stream) = 0;
  virtual void DecodeTrailersToRouter(HeaderMapPtr trailers) = 0;
  virtual void EncodeHeadersToCodec(HeaderMapPtr headers, bool end_stream) = 0;
  virtual void EncodeDataToCodec(Buffer& data, bool end_stream) = 0;
  virtual void EncodeTrailersToCodec(HeaderMapPtr trailers) = 0;
  // A filter answered (decode direction stops for good; the stream sends
  // this response through the encode direction).
  virtual void OnFilterLocalReply(int status, std::string_view body, std::string_view error) = 0;
  // The same with the core's own reply for `cause` (SendErrorReply).
  virtual void OnFilterErrorReply(ErrorCause cause, std::string_view detail) = 0;
  // A filter answers with a response of its own (SendResponse): false when
  // it is too late (the response head went to the client). Otherwise the
  // stream drops its upstream side and any local reply it was sending, and
  // takes the filter's response as its own, not as an error, with
  // `detail` as StreamInfo::detail.
  virtual bool OnFilterResponse(std::string_view detail) = 0;
  // For FilterCallbacks::Worker().
  virtual std::shared_ptr<WorkerPoster> Worker() = 0;
  // For FilterCallbacks::SendSideRequest().
  virtual void SendSideRequest(HeaderMapPtr headers, size_t max_body_bytes,
                               SideResponseCallback done) = 0;
  // A kept or queued body outgrew the buffer limit.
  virtual void OnBufferOverflow(bool request) = 0;
  // Too much waits in a held direction: pause its source (the client for
  // requests, the upstream for responses) until it drains.
  virtual void PauseSource(bool request, bool pause) = 0;
  virtual StreamInfo& Info() = 0;
  virtual event::Dispatcher& Dispatcher() = 0;
  virtual size_t BufferLimit() const = 0;
  // For FilterCallbacks::Gateway(): the worker's view of the gateway.
  virtual const GatewayView& Gateway() = 0;
  // From FilterCallbacks::EnableRequestReplay / SetPerTryTimeout.
  virtual void EnableRequestReplay(size_t max_body_bytes) = 0;
  virtual void SetPerTryTimeout(std::chrono::milliseconds timeout) = 0;
  // From FilterCallbacks::SetUpstreamLimits / SetUpstreamCluster.
  virtual void SetUpstreamLimits(const UpstreamLimits& limits) = 0;
  virtual void SetUpstreamCluster(std::string_view cluster) = 0;
};

class FilterManager {
 public:
  // Filters are added in chain order, then Start() hands each its callbacks.
  FilterManager(FilterManagerCallbacks& callbacks, size_t expected_filters);
  FilterManager(FilterManagerCallbacks& callbacks, std::vector<FilterPtr> filters);
  ~FilterManager();
  FilterManager(const FilterManager&) = delete;
  FilterManager& operator=(const FilterManager&) = delete;
  // One per stream with filters: from the per-thread block cache.
  static void* operator new(size_t size) { return AllocateSmallBlock(size); }
  static void operator delete(void* block, size_t size) noexcept { FreeSmallBlock(block, size); }

  // `name`, the filter's registered name, labels what it decides in the
  // failure history; it must outlive the manager (the listener config).
  void Add(FilterPtr filter, std::string_view name = {});
  void Start();

  void DecodeHeaders(HeaderMapPtr headers, bool end_stream);
  void DecodeData(Buffer& data, bool end_stream);
  void DecodeTrailers(HeaderMapPtr trailers);
  void EncodeHeaders(HeaderMapPtr headers, bool end_stream);
  void EncodeData(Buffer& data, bool end_stream);
  void EncodeTrailers(HeaderMapPtr trailers);

  // Asks the filters, in order, about the host picked for an attempt; the
  // first kOtherHost turns it down.
  UpstreamAttemptStatus OnUpstreamAttempt(UpstreamAttempt& attempt);
  // Asks every filter, in order, about an upstream attempt; kRetry if any
  // filter wants one.
  UpstreamResultStatus OnUpstreamResult(UpstreamResult& result);

  // The decode direction is over (a local reply was sent): drop what waits.
  void StopDecoding();
  // OnStreamComplete and OnDestroy for every filter, once.
  void Complete(const StreamInfo& info);
  size_t size() const { return static_cast<size_t>(count_); }

 private:
  // One filter in the chain, with the callbacks it sees.
  class FilterState final : public FilterCallbacks {
   public:
    FilterState(FilterManager& manager, int index, FilterPtr filter, uint32_t phases,
                std::string_view name)
        : manager_(manager), index_(index), filter(std::move(filter)), phases(phases), name(name) {}
    void Continue() override;
    void SendLocalReply(int status, std::string_view body, std::string_view error) override;
    void SendErrorReply(ErrorCause cause, std::string_view detail) override;
    StreamInfo& Info() override;
    Buffer& KeptBody() override;
    std::unique_ptr<FilterTimer> CreateTimer(std::function<void()> callback) override;
    const TimeSource& Clock() override;
    RandomGenerator& Random() override;
    const GatewayView& Gateway() override;
    std::shared_ptr<WorkerPoster> Worker() override;
    void SendSideRequest(HeaderMapPtr headers, size_t max_body_bytes,
                         SideResponseCallback done) override;
    bool SendResponse(FilterResponse response) override;
    void EnableRequestReplay(size_t max_body_bytes) override;
    void SetPerTryTimeout(std::chrono::milliseconds timeout) override;
    void SetUpstreamLimits(const UpstreamLimits& limits) override;
    void SetUpstreamCluster(std::string_view cluster) override;

    FilterManager& manager_;
    int index_;
    FilterPtr filter;
    uint32_t phases;  // Filter::Phases(): the calls it wants
    std::string_view name;
    bool failed = false;  // threw once; never called again
    // Per direction (0 request, 1 response): absorbing a body, what it
    // kept, and whether the end of the body was among it.
    bool absorbing[2] = {false, false};
    Buffer kept[2];
    bool kept_end[2] = {false, false};
  };
  struct Item {
    enum Kind { kHeaders, kData, kTrailers } kind;
    HeaderMapPtr headers;  // headers or trailers
    Buffer data;
    bool end_stream = false;
  };
  struct Direction {
    explicit Direction(bool is_decode) : decode(is_decode) {}
    bool decode;
    // The filter holding the direction after a headers or trailers stop,
    // or -1. (A filter keeping the body does not hold the direction: the
    // rest of the body keeps flowing to it.)
    int stopped_at = -1;
    Item held;  // what that filter holds
    std::vector<Item> queue;
    size_t queued_bytes = 0;
    bool paused_source = false;
    bool ended = false;  // no more items will be accepted
    // Bumped when a filter replaces the response: a pass through the chain
    // that started before it stops at once.
    uint32_t generation = 0;
  };

  void ReleaseStates();
  bool Bypass(const Direction& d, uint32_t want) const;
  void Accept(Direction& d, Item item);
  // Runs `item` through filters starting at `index` (in the direction's
  // order); returns false if a filter stopped the direction.
  bool Run(Direction& d, int index, Item& item);
  void ToSink(Direction& d, Item& item);
  // `filter` holds `item` and with it the direction; returns false.
  bool Hold(Direction& d, int filter, Item& item);
  void Resume(Direction& d, int filter);
  void LocalReply(int filter, int status, std::string_view body, std::string_view error);
  void ErrorReply(int filter, ErrorCause cause, std::string_view detail);
  bool Respond(int filter, FilterResponse response);
  // Forgets what the response direction held or queued (a filter replaced
  // the response).
  void ResetEncode();
  // Records what filter `index` decided in StreamInfo::decisions.
  void Decided(int index, std::string decision);
  template <typename Call>
  bool Guard(FilterState& state, const char* phase, Call&& call);
  void OnFilterException(FilterState& state, const char* phase, const char* what);
  int Next(const Direction& d, int index) const { return d.decode ? index + 1 : index - 1; }
  int First(const Direction& d) const { return d.decode ? 0 : encode_entry_; }
  bool InRange(int index) const { return index >= 0 && index < count_; }

  FilterManagerCallbacks& callbacks_;
  // The chain's states, in place: inline for up to kInline filters, else
  // one array on the heap. Never moved (their addresses are the filters'
  // callbacks).
  static constexpr size_t kInline = 4;
  struct States {
    FilterState* begin() const { return data; }
    FilterState* end() const { return data + size; }
    FilterState& operator[](int i) const { return data[i]; }
    FilterState* data = nullptr;
    size_t size = 0;
  };
  States filters_;
  size_t capacity_ = 0;
  alignas(FilterState) unsigned char inline_[kInline * sizeof(FilterState)];
  int count_ = 0;
  // Where the response enters the chain: the last filter, or the one
  // before a filter that answered with SendResponse.
  int encode_entry_ = -1;
  // A filter answered with SendResponse: the stream's own response
  // (upstream or local reply) no longer enters the chain.
  bool filter_response_ = false;
  uint32_t chain_phases_ = 0;  // every filter's Phases(), or-ed
  Direction decode_{/*is_decode=*/true};
  Direction encode_{/*is_decode=*/false};
  bool completed_ = false;
};

}  // namespace portway::http
