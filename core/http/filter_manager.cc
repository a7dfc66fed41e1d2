#include "core/http/filter_manager.h"

#include <algorithm>

#include "core/common/strings.h"
#include "core/event/dispatcher.h"
#include "core/http/local_reply.h"
#include "spdlog/spdlog.h"

namespace portway::http {
namespace {

class FilterTimerImpl : public FilterTimer {
 public:
  explicit FilterTimerImpl(event::TimerPtr timer) : timer_(std::move(timer)) {}
  void Enable(std::chrono::milliseconds timeout) override { timer_->Enable(timeout); }
  void Disable() override { timer_->Disable(); }

 private:
  event::TimerPtr timer_;
};

}  // namespace

// ---- FilterState: one filter in the chain, with the callbacks it sees.

void FilterManager::FilterState::Continue() {
  if (manager_.completed_) return;
  manager_.Resume(manager_.decode_, index_);
  if (manager_.completed_) return;
  manager_.Resume(manager_.encode_, index_);
}
void FilterManager::FilterState::SendLocalReply(int status, std::string_view body,
                                                std::string_view error) {
  manager_.LocalReply(index_, status, body, error);
}
void FilterManager::FilterState::SendErrorReply(ErrorCause cause, std::string_view detail) {
  manager_.ErrorReply(index_, cause, detail);
}
StreamInfo& FilterManager::FilterState::Info() { return manager_.callbacks_.Info(); }
Buffer& FilterManager::FilterState::KeptBody() {
  // The direction this filter currently keeps a body in; the request
  // direction if neither.
  return absorbing[1] && !absorbing[0] ? kept[1] : kept[0];
}
std::unique_ptr<FilterTimer> FilterManager::FilterState::CreateTimer(
    std::function<void()> callback) {
  return std::make_unique<FilterTimerImpl>(
      manager_.callbacks_.Dispatcher().CreateTimer(std::move(callback)));
}
const TimeSource& FilterManager::FilterState::Clock() { return manager_.callbacks_.Dispatcher(); }
RandomGenerator& FilterManager::FilterState::Random() {
  return manager_.callbacks_.Dispatcher().Random();
}
const GatewayView& FilterManager::FilterState::Gateway() { return manager_.callbacks_.Gateway(); }
std::shared_ptr<WorkerPoster> FilterManager::FilterState::Worker() {
  return manager_.callbacks_.Worker();
}
void FilterManager::FilterState::SendSideRequest(HeaderMapPtr headers, size_t max_body_bytes,
                                                 SideResponseCallback done) {
  manager_.callbacks_.SendSideRequest(std::move(headers), max_body_bytes, std::move(done));
}
bool FilterManager::FilterState::SendResponse(FilterResponse response) {
  return manager_.Respond(index_, std::move(response));
}
void FilterManager::FilterState::EnableRequestReplay(size_t max_body_bytes) {
  manager_.callbacks_.EnableRequestReplay(max_body_bytes);
}
void FilterManager::FilterState::SetPerTryTimeout(std::chrono::milliseconds timeout) {
  manager_.callbacks_.SetPerTryTimeout(timeout);
}
void FilterManager::FilterState::SetUpstreamLimits(const UpstreamLimits& limits) {
  manager_.callbacks_.SetUpstreamLimits(limits);
}
void FilterManager::FilterState::SetUpstreamCluster(std::string_view cluster) {
  manager_.callbacks_.SetUpstreamCluster(cluster);
}

namespace {

std::string ResultName(const UpstreamResult& result) {
  if (result.kind == UpstreamResult::Kind::kResponseHeaders) return Cat("response ", result.status);
  return std::string(InfoFor(result.cause).name);
}

}  // namespace

// Runs one call into a filter. A filter that throws must not take the
// process down (an exception would otherwise unwind through libuv's C
// callbacks): the stream answers 500 filter_exception, or is cut off if the
// response started, and the filter is not called again.
template <typename Call>
bool FilterManager::Guard(FilterState& state, const char* phase, Call&& call) {
  try {
    call();
    return true;
  } catch (const std::exception& e) {
    OnFilterException(state, phase, e.what());
  } catch (...) {
    OnFilterException(state, phase, "unknown exception");
  }
  return false;
}

void FilterManager::OnFilterException(FilterState& state, const char* phase, const char* what) {
  state.failed = true;
  spdlog::error("filter {} threw in {}: {}", state.index_, phase, what);
  if (completed_) return;
  Decided(state.index_, Cat("threw in ", phase, ": ", what));
  StopDecoding();
  callbacks_.OnFilterLocalReply(500, "filter_exception\n", "filter_exception");
}

FilterManager::FilterManager(FilterManagerCallbacks& callbacks, size_t expected_filters)
    : callbacks_(callbacks) {
  capacity_ = std::max(expected_filters, kInline);
  filters_.data = capacity_ == kInline
                      ? reinterpret_cast<FilterState*>(inline_)
                      : static_cast<FilterState*>(::operator new(capacity_ * sizeof(FilterState)));
}

FilterManager::FilterManager(FilterManagerCallbacks& callbacks, std::vector<FilterPtr> filters)
    : FilterManager(callbacks, filters.size()) {
  for (auto& f : filters) Add(std::move(f));
  Start();
}

void FilterManager::Add(FilterPtr filter, std::string_view name) {
  uint32_t phases = Phase::kAll;
  try {
    phases = filter->Phases();
  } catch (...) {
    // A filter that cannot say is called in every phase.
  }
  if (filters_.size == capacity_) {
    // More than announced: move to a larger array (before Start(), so no
    // filter holds its state's address yet).
    size_t capacity = capacity_ * 2;
    auto* bigger = static_cast<FilterState*>(::operator new(capacity * sizeof(FilterState)));
    for (size_t i = 0; i < filters_.size; ++i) {
      new (&bigger[i]) FilterState(std::move(filters_.data[i]));
      filters_.data[i].~FilterState();
    }
    ReleaseStates();
    filters_.data = bigger;
    capacity_ = capacity;
  }
  new (&filters_.data[filters_.size]) FilterState(*this, count_, std::move(filter), phases, name);
  ++filters_.size;
  chain_phases_ |= phases;
  ++count_;
  encode_entry_ = count_ - 1;
}

void FilterManager::Decided(int index, std::string decision) {
  std::string_view name;
  for (const FilterState& f : filters_) {
    if (f.index_ == index) name = f.name;
  }
  callbacks_.Info().decisions.push_back({callbacks_.Dispatcher().Now(),
                                         name.empty() ? Cat("filter ", index) : std::string(name),
                                         std::move(decision)});
}

void FilterManager::Start() {
  for (auto& f : filters_) {
    FilterState& state = f;
    Guard(state, "SetCallbacks", [&] { state.filter->SetCallbacks(state); });
  }
}

FilterManager::~FilterManager() {
  for (size_t i = filters_.size; i > 0; --i) filters_.data[i - 1].~FilterState();
  ReleaseStates();
}

void FilterManager::ReleaseStates() {
  if (filters_.data != reinterpret_cast<FilterState*>(inline_)) ::operator delete(filters_.data);
}

void FilterManager::DecodeHeaders(HeaderMapPtr headers, bool end_stream) {
  Item item{Item::kHeaders, std::move(headers), {}, end_stream};
  Accept(decode_, std::move(item));
}

// True when nothing in the chain wants `want` and nothing waits in the
// direction: the item can go straight to the sink.
bool FilterManager::Bypass(const Direction& d, uint32_t want) const {
  return (chain_phases_ & want) == 0 && d.stopped_at < 0 && d.queue.empty() && !d.ended &&
         !completed_;
}

void FilterManager::DecodeData(Buffer& data, bool end_stream) {
  if (Bypass(decode_, Phase::kDecodeData)) {
    callbacks_.DecodeDataToRouter(data, end_stream);
    return;
  }
  Item item{Item::kData, nullptr, {}, end_stream};
  item.data.Move(data);
  Accept(decode_, std::move(item));
}

void FilterManager::DecodeTrailers(HeaderMapPtr trailers) {
  Accept(decode_, Item{Item::kTrailers, std::move(trailers), {}, true});
}

void FilterManager::EncodeHeaders(HeaderMapPtr headers, bool end_stream) {
  if (filter_response_) return;
  if (Bypass(encode_, Phase::kEncodeHeaders)) {
    callbacks_.EncodeHeadersToCodec(std::move(headers), end_stream);
    return;
  }
  Accept(encode_, Item{Item::kHeaders, std::move(headers), {}, end_stream});
}

void FilterManager::EncodeData(Buffer& data, bool end_stream) {
  if (filter_response_) {
    data.Clear();
    return;
  }
  if (Bypass(encode_, Phase::kEncodeData)) {
    callbacks_.EncodeDataToCodec(data, end_stream);
    return;
  }
  Item item{Item::kData, nullptr, {}, end_stream};
  item.data.Move(data);
  Accept(encode_, std::move(item));
}

void FilterManager::EncodeTrailers(HeaderMapPtr trailers) {
  if (filter_response_) return;
  Accept(encode_, Item{Item::kTrailers, std::move(trailers), {}, true});
}

void FilterManager::Accept(Direction& d, Item item) {
  if (d.ended || completed_) return;
  if (d.stopped_at >= 0) {
    // The direction is held: wait, in order, bounded.
    d.queued_bytes += item.data.length();
    d.queue.push_back(std::move(item));
    if (d.queued_bytes > callbacks_.BufferLimit() && !d.paused_source) {
      d.paused_source = true;
      callbacks_.PauseSource(d.decode, true);
    }
    return;
  }
  Run(d, First(d), item);
}

bool FilterManager::Run(Direction& d, int index, Item& item) {
  static constexpr uint32_t kWants[2][3] = {
      {Phase::kDecodeHeaders, Phase::kDecodeData, Phase::kDecodeTrailers},
      {Phase::kEncodeHeaders, Phase::kEncodeData, Phase::kEncodeTrailers}};
  const int dir = d.decode ? 0 : 1;
  const uint32_t want = kWants[dir][item.kind];
  const uint32_t generation = d.generation;
  for (int i = index; InRange(i); i = Next(d, i)) {
    FilterState& state = filters_[i];
    Filter& f = *state.filter;
    if (state.failed) continue;
    // Phases a filter does not implement are skipped (a filter absorbing a
    // body still gets to hand it on before trailers).
    if ((state.phases & want) == 0 && !(item.kind == Item::kTrailers && state.absorbing[dir])) {
      continue;
    }
    switch (item.kind) {
      case Item::kHeaders: {
        FilterHeadersStatus status = FilterHeadersStatus::kContinue;
        // A throw, a local reply or the end of the stream stops here.
        if (!Guard(state, "headers",
                   [&] {
                     status = d.decode ? f.DecodeHeaders(*item.headers, item.end_stream)
                                       : f.EncodeHeaders(*item.headers, item.end_stream);
                   }) ||
            completed_ || d.ended || d.generation != generation) {
          return false;
        }
        if (status == FilterHeadersStatus::kStopIteration) return Hold(d, i, item);
        break;
      }
      case Item::kData: {
        FilterDataStatus status = FilterDataStatus::kContinue;
        // A throw, a local reply or the end of the stream stops here.
        if (!Guard(state, "data",
                   [&] {
                     status = d.decode ? f.DecodeData(item.data, item.end_stream)
                                       : f.EncodeData(item.data, item.end_stream);
                   }) ||
            completed_ || d.ended || d.generation != generation) {
          return false;
        }
        if (status == FilterDataStatus::kStopIterationAndBuffer) {
          state.absorbing[dir] = true;
          state.kept[dir].Move(item.data);
          state.kept_end[dir] = state.kept_end[dir] || item.end_stream;
          if (state.kept[dir].length() > callbacks_.BufferLimit()) {
            callbacks_.OnBufferOverflow(d.decode);
          }
          return false;
        }
        if (state.absorbing[dir]) {
          // Done absorbing: what it kept goes on, ahead of this chunk.
          state.absorbing[dir] = false;
          state.kept[dir].Move(item.data);
          item.data.Move(state.kept[dir]);
          state.kept_end[dir] = false;
        }
        break;
      }
      case Item::kTrailers: {
        if (state.absorbing[dir]) {
          // Trailers end the body: the kept body goes on first.
          state.absorbing[dir] = false;
          Item body{Item::kData, nullptr, {}, false};
          body.data.Move(state.kept[dir]);
          if (!Run(d, Next(d, i), body) || completed_ || d.ended || d.generation != generation) {
            if (d.generation != generation) return false;
            // Only the next filters can stop here; keep the trailers queued
            // behind whatever now holds the direction.
            d.queue.push_back(std::move(item));
            return false;
          }
        }
        if ((state.phases & want) == 0) break;
        FilterTrailersStatus status = FilterTrailersStatus::kContinue;
        // A throw, a local reply or the end of the stream stops here.
        if (!Guard(state, "trailers",
                   [&] {
                     status = d.decode ? f.DecodeTrailers(*item.headers)
                                       : f.EncodeTrailers(*item.headers);
                   }) ||
            completed_ || d.ended || d.generation != generation) {
          return false;
        }
        if (status == FilterTrailersStatus::kStopIteration) return Hold(d, i, item);
        break;
      }
    }
  }
  ToSink(d, item);
  return !(completed_ || d.ended);
}

bool FilterManager::Hold(Direction& d, int filter, Item& item) {
  d.stopped_at = filter;
  d.held = std::move(item);
  return false;
}

void FilterManager::ToSink(Direction& d, Item& item) {
  switch (item.kind) {
    case Item::kHeaders:
      if (d.decode) {
        callbacks_.DecodeHeadersToRouter(std::move(item.headers), item.end_stream);
      } else {
        callbacks_.EncodeHeadersToCodec(std::move(item.headers), item.end_stream);
      }
      break;
    case Item::kData:
      if (d.decode) {
        callbacks_.DecodeDataToRouter(item.data, item.end_stream);
      } else {
        callbacks_.EncodeDataToCodec(item.data, item.end_stream);
      }
      break;
    case Item::kTrailers:
      if (d.decode) {
        callbacks_.DecodeTrailersToRouter(std::move(item.headers));
      } else {
        callbacks_.EncodeTrailersToCodec(std::move(item.headers));
      }
      break;
  }
}

void FilterManager::Resume(Direction& d, int filter) {
  if (d.ended || completed_) return;
  const int dir = d.decode ? 0 : 1;
  FilterState& state = filters_[filter];
  if (d.stopped_at == filter) {
    d.stopped_at = -1;
    Item held = std::move(d.held);
    if (!Run(d, Next(d, filter), held)) return;
  } else if (state.absorbing[dir]) {
    // The filter ends its absorbing early (e.g. after an async check).
    state.absorbing[dir] = false;
    Item body{Item::kData, nullptr, {}, state.kept_end[dir]};
    body.data.Move(state.kept[dir]);
    state.kept_end[dir] = false;
    if (!Run(d, Next(d, filter), body)) return;
  } else {
    return;  // nothing held by this filter in this direction
  }
  // What waited re-enters at the first filter, in order, until something
  // stops the direction again.
  while (!d.queue.empty() && d.stopped_at < 0 && !d.ended && !completed_) {
    Item next = std::move(d.queue.front());
    d.queue.erase(d.queue.begin());
    d.queued_bytes -= std::min(d.queued_bytes, next.data.length());
    Run(d, First(d), next);
  }
  if (d.paused_source && d.queued_bytes <= callbacks_.BufferLimit() / 2) {
    d.paused_source = false;
    callbacks_.PauseSource(d.decode, false);
  }
}

UpstreamAttemptStatus FilterManager::OnUpstreamAttempt(UpstreamAttempt& attempt) {
  for (FilterState& f : filters_) {
    if (completed_) break;
    if (f.failed || (f.phases & Phase::kUpstreamAttempt) == 0) continue;
    UpstreamAttemptStatus answer = UpstreamAttemptStatus::kContinue;
    if (!Guard(f, "upstream attempt", [&] { answer = f.filter->OnUpstreamAttempt(attempt); })) {
      break;
    }
    if (answer == UpstreamAttemptStatus::kOtherHost) {
      Decided(f.index_, Cat("turned down host ", attempt.host, " for attempt ", attempt.attempt));
      return answer;
    }
  }
  return UpstreamAttemptStatus::kContinue;
}

UpstreamResultStatus FilterManager::OnUpstreamResult(UpstreamResult& result) {
  UpstreamResultStatus verdict = UpstreamResultStatus::kContinue;
  std::chrono::milliseconds delay{0};
  for (FilterState& f : filters_) {
    if (completed_) break;
    // Every filter sees every result (a breaker counts failures a retry
    // filter retries); the first retry's delay wins.
    if (f.failed || (f.phases & Phase::kUpstreamResult) == 0) continue;
    UpstreamResultStatus answer = UpstreamResultStatus::kContinue;
    if (!Guard(f, "upstream result", [&] { answer = f.filter->OnUpstreamResult(result); })) {
      return UpstreamResultStatus::kContinue;
    }
    // It answered with a response of its own: the attempt is over.
    if (filter_response_) return UpstreamResultStatus::kContinue;
    if (answer == UpstreamResultStatus::kRetry) {
      Decided(f.index_, Cat("retry after attempt ", result.attempt, " (", ResultName(result),
                            ") in ", result.retry_delay.count(), "ms"));
      if (verdict != UpstreamResultStatus::kRetry) {
        verdict = UpstreamResultStatus::kRetry;
        delay = result.retry_delay;
      }
    }
  }
  result.retry_delay = delay;
  return verdict;
}

void FilterManager::StopDecoding() {
  decode_.ended = true;
  decode_.queue.clear();
  decode_.held = Item{};
  decode_.stopped_at = -1;
  for (FilterState& f : filters_) {
    f.absorbing[0] = false;
    f.kept[0].Clear();
  }
  if (decode_.paused_source) {
    decode_.paused_source = false;
    callbacks_.PauseSource(true, false);
  }
}

void FilterManager::LocalReply(int filter, int status, std::string_view body,
                               std::string_view error) {
  if (completed_) return;
  Decided(filter, Cat("answered ", status, " ", error));
  StopDecoding();
  callbacks_.OnFilterLocalReply(status, body, error);
}

void FilterManager::ErrorReply(int filter, ErrorCause cause, std::string_view detail) {
  if (completed_) return;
  Decided(filter, Cat("answered ", InfoFor(cause).status, " ", InfoFor(cause).name,
                      detail.empty() ? "" : ": ", detail));
  StopDecoding();
  callbacks_.OnFilterErrorReply(cause, detail);
}

bool FilterManager::Respond(int filter, FilterResponse response) {
  if (completed_ || response.headers == nullptr) return false;
  if (!callbacks_.OnFilterResponse(response.detail)) return false;
  Decided(filter,
          Cat("answered ", response.headers->Status(),
              callbacks_.Info().response_flag.empty() ? "" : " ", callbacks_.Info().response_flag));
  StopDecoding();
  ResetEncode();
  filter_response_ = true;
  encode_entry_ = filter - 1;
  const bool has_body = !response.body.empty();
  const bool has_trailers = response.trailers != nullptr;
  Item head{Item::kHeaders, std::move(response.headers), {}, !has_body && !has_trailers};
  Accept(encode_, std::move(head));
  if (has_body) {
    Item body{Item::kData, nullptr, {}, !has_trailers};
    body.data.Move(response.body);
    Accept(encode_, std::move(body));
  }
  if (has_trailers) Accept(encode_, Item{Item::kTrailers, std::move(response.trailers), {}, true});
  return true;
}

void FilterManager::ResetEncode() {
  ++encode_.generation;
  encode_.stopped_at = -1;
  encode_.held = Item{};
  encode_.queue.clear();
  encode_.queued_bytes = 0;
  for (FilterState& f : filters_) {
    f.absorbing[1] = false;
    f.kept[1].Clear();
    f.kept_end[1] = false;
  }
  if (encode_.paused_source) {
    encode_.paused_source = false;
    callbacks_.PauseSource(false, false);
  }
}

void FilterManager::Complete(const StreamInfo& info) {
  if (completed_) return;
  completed_ = true;
  decode_.ended = true;
  encode_.ended = true;
  // Every filter is told, even one that failed; exceptions here only log.
  for (auto& f : filters_) {
    FilterState& state = f;
    if ((state.phases & Phase::kStreamComplete) == 0) continue;
    Guard(state, "stream complete", [&] { state.filter->OnStreamComplete(info); });
  }
  for (auto& f : filters_) {
    FilterState& state = f;
    if ((state.phases & Phase::kDestroy) == 0) continue;
    Guard(state, "destroy", [&] { state.filter->OnDestroy(); });
  }
}

}  // namespace portway::http
