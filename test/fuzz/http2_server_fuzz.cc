// libFuzzer target for the HTTP/2 server codec (core/http/http2/codec.h):
// arbitrary client bytes, fed in chunks to a ServerConnectionImpl with small
// limits, while a scripted owner answers, resets, pauses and abandons the
// streams the codec hands up, from inside the codec's callbacks and from
// the loop, the way the connection manager does.
//
// Besides crashes and sanitizer reports (a stream used after the codec
// freed it shows up as a heap-use-after-free), it checks the contract the
// connection manager relies on, trapping when one breaks:
//   - after DetachDecoder(), after the owner's own ResetStream() and after
//     OnResetStream(), the codec never calls that decoder again; no
//     StreamCallbacks call after RemoveCallbacks();
//   - each decoder sees headers once, first; nothing after end of stream;
//     a body that ends normally matches its content-length;
//   - what reaches NewStream passed the header checks: pseudo-headers in
//     the codec's order, a method, a path, no CONNECT, lowercase field
//     names, no connection-specific field, no CR/LF/NUL in a value, and a
//     header list within the advertised limit (plus what the codec adds);
//   - the codec never writes after OnConnectionClosed(), and every owner
//     still holding a stream is told of its end by then;
//   - what it writes is a sequence of whole HTTP/2 frames a server may
//     send (no PUSH_PROMISE, stream ids where they belong);
//   - OnProtocolError comes without an encoder (HTTP/2 errors are
//     connection errors), and streams_total counts exactly the NewStream
//     calls.
//
// Input: byte 0 picks the options, the read size and whether the harness
// sends the client preface itself; the next kScriptBytes bytes are the
// owner's script (read cyclically, one byte per decision); the rest is what
// the client sends. The seed corpus (corpus/http2, made by
// make_http2_corpus.py) holds real client streams in this layout.
//
// Environment: HTTP2_FUZZ_VERBOSE=1 prints what an input did (streams,
// frames written, errors); HTTP2_FUZZ_TRACE=1 prints the owner-side
// events.
//
//   clang++-14 -std=c++20 -g -O1 -fsized-deallocation \
//       -fsanitize=fuzzer,address,undefined -I. -Icore/include \
//       core/http/http2/codec.cc core/common/buffer.cc \
//       core/common/headers.cc core/common/small_blocks.cc \
//       test/fuzz/http2_server_fuzz.cc -lnghttp2 -o http2_server_fuzz
#include <nghttp2/nghttp2.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "core/event/dispatcher.h"
#include "core/http/codec.h"
#include "core/http/http2/codec.h"

namespace portway::http::http2 {
namespace {

#define FUZZ_CHECK(cond)                                                            \
  do {                                                                              \
    if (!(cond)) {                                                                  \
      std::fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                 \
    }                                                                               \
  } while (0)

constexpr size_t kScriptBytes = 16;

// HTTP2_FUZZ_TRACE=1 prints the owner-side events of one input.
bool Tracing() {
  static const bool on = std::getenv("HTTP2_FUZZ_TRACE") != nullptr;
  return on;
}
#define FUZZ_TRACE(...)                               \
  do {                                                \
    if (Tracing()) std::fprintf(stderr, __VA_ARGS__); \
  } while (0)
constexpr std::string_view kPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
constexpr uint32_t kMaxHeaderListBytes = 4096;
// What the codec may add to a header list on top of what the client sent:
// :authority (when only Host came, 6 bytes longer) and :scheme "http".
constexpr uint32_t kAddedHeaderBytes = 32 + 10 + 32 + 7 + 4;

// The owner's decisions, read one byte at a time, round and round.
class Script {
 public:
  explicit Script(std::string_view bytes) : bytes_(bytes) {}
  uint8_t Next() {
    if (bytes_.empty()) return 0;
    return static_cast<uint8_t>(bytes_[pos_++ % bytes_.size()]);
  }

 private:
  std::string_view bytes_;
  size_t pos_ = 0;
};

class FuzzCounter final : public Counter {
 public:
  void Inc(uint64_t n) override { value_ += n; }
  uint64_t Value() const override { return value_; }

 private:
  uint64_t value_ = 0;
};

class FuzzRandom final : public RandomGenerator {
 public:
  uint64_t Next() override {
    return state_ = state_ * 6364136223846793005ULL + 1442695040888963407ULL;
  }

 private:
  uint64_t state_ = 1;
};

class FuzzDispatcher;

class FuzzTimer final : public event::Timer {
 public:
  FuzzTimer(FuzzDispatcher& dispatcher, std::function<void()> callback)
      : dispatcher_(dispatcher), callback_(std::move(callback)) {}
  ~FuzzTimer() override;
  void Enable(std::chrono::milliseconds timeout) override;
  void Disable() override { enabled_ = false; }
  bool Enabled() const override { return enabled_; }

  FuzzDispatcher& dispatcher_;
  std::function<void()> callback_;
  MonotonicTime deadline_;
  bool enabled_ = false;
};

// Simulated time; posted callbacks and deferred deletes run only when the
// harness says so (between reads, as a loop iteration would).
class FuzzDispatcher final : public event::Dispatcher {
 public:
  ~FuzzDispatcher() override { ClearDeferredDeleteList(); }

  void RunPending() {
    for (int round = 0; round < 1000 && (!posted_.empty() || !deferred_.empty()); ++round) {
      std::vector<std::function<void()>> posted = std::move(posted_);
      posted_.clear();
      for (auto& callback : posted) callback();
      ClearDeferredDeleteList();
    }
  }
  void Advance(std::chrono::milliseconds duration) {
    now_ += duration;
    for (;;) {
      FuzzTimer* due = nullptr;
      for (FuzzTimer* t : timers_) {
        if (t->enabled_ && t->deadline_ <= now_ &&
            (due == nullptr || t->deadline_ < due->deadline_)) {
          due = t;
        }
      }
      if (due == nullptr) break;
      due->enabled_ = false;
      due->callback_();
      RunPending();
    }
    RunPending();
  }

  // Dispatcher
  const std::string& Name() const override { return name_; }
  void Run() override { RunPending(); }
  void Exit() override {}
  void Post(std::function<void()> callback) override { posted_.push_back(std::move(callback)); }
  event::TimerPtr CreateTimer(std::function<void()> callback) override {
    auto timer = std::make_unique<FuzzTimer>(*this, std::move(callback));
    timers_.insert(timer.get());
    return timer;
  }
  void DeferredDelete(std::unique_ptr<event::DeferredDeletable> object) override {
    deferred_.push_back(std::move(object));
  }
  void ClearDeferredDeleteList() override {
    while (!deferred_.empty()) {
      std::vector<std::unique_ptr<event::DeferredDeletable>> doomed = std::move(deferred_);
      deferred_.clear();
    }
  }
  MonotonicTime Now() const override { return now_; }
  SystemTime SystemNow() const override { return SystemTime(); }
  RandomGenerator& Random() override { return random_; }
  event::ConnectionPtr Connect(const network::Address&) override { std::abort(); }
  event::ListenerPtr AdoptListener(int, event::ListenerCallbacks&) override { std::abort(); }
  event::SignalHandlePtr ListenForSignal(int, std::function<void()>) override { std::abort(); }
  void Resolve(const std::string&, uint16_t, std::function<void(event::ResolveResult)>) override {
    std::abort();
  }

  std::set<FuzzTimer*> timers_;

 private:
  std::string name_ = "fuzz";
  MonotonicTime now_;
  FuzzRandom random_;
  std::vector<std::function<void()>> posted_;
  std::vector<std::unique_ptr<event::DeferredDeletable>> deferred_;
};

FuzzTimer::~FuzzTimer() { dispatcher_.timers_.erase(this); }

void FuzzTimer::Enable(std::chrono::milliseconds timeout) {
  enabled_ = true;
  deadline_ = dispatcher_.Now() + timeout;
}

// Takes what the codec writes and checks it frame by frame.
class FuzzConnection final : public event::Connection {
 public:
  void SetCallbacks(event::ConnectionCallbacks*) override {}
  void Write(Buffer& data) override {
    FUZZ_CHECK(!closed_);  // nothing may be written once OnConnectionClosed() ran
    written_ += data.length();
    pending_.append(data.ToString());
    data.Clear();
    ParseFrames();
  }
  void Close(event::CloseType) override { closed_ = true; }
  void ReadDisable(bool) override {}
  bool ReadEnabled() const override { return true; }
  size_t WriteBufferedBytes() const override { return 0; }
  void SetWriteBufferLimit(size_t) override {}
  bool IsOpen() const override { return !closed_; }
  bool Closed() const override { return closed_; }
  int LastError() const override { return 0; }
  const network::Address& RemoteAddress() const override { return address_; }
  uint64_t Id() const override { return 1; }

  // Bytes of a frame not yet complete.
  size_t partial() const { return pending_.size(); }
  bool closed_ = false;
  uint64_t written_ = 0;
  uint64_t frames_ = 0;

 private:
  void ParseFrames() {
    size_t at = 0;
    while (pending_.size() - at >= 9) {
      const auto* p = reinterpret_cast<const uint8_t*>(pending_.data() + at);
      const size_t length = (size_t{p[0]} << 16) | (size_t{p[1]} << 8) | p[2];
      const uint8_t type = p[3];
      const uint32_t stream_id =
          ((uint32_t{p[5]} << 24) | (uint32_t{p[6]} << 16) | (uint32_t{p[7]} << 8) | p[8]) &
          0x7fffffff;
      if (pending_.size() - at < 9 + length) break;
      switch (type) {
        case NGHTTP2_DATA:
        case NGHTTP2_HEADERS:
        case NGHTTP2_RST_STREAM:
        case NGHTTP2_CONTINUATION:
          // Only on streams the client opened.
          FUZZ_CHECK(stream_id != 0 && (stream_id & 1) == 1);
          break;
        case NGHTTP2_SETTINGS:
        case NGHTTP2_PING:
        case NGHTTP2_GOAWAY:
          FUZZ_CHECK(stream_id == 0);
          break;
        case NGHTTP2_WINDOW_UPDATE:
          FUZZ_CHECK(length == 4);
          break;
        default:
          // No PUSH_PROMISE, PRIORITY or extension frame from this server.
          FUZZ_CHECK(false && "unexpected frame type");
      }
      at += 9 + length;
      ++frames_;
    }
    pending_.erase(0, at);
  }

  std::string pending_;
  network::Address address_;
};

bool IsConnectionSpecific(std::string_view name) {
  return name == "connection" || name == "keep-alive" || name == "proxy-connection" ||
         name == "transfer-encoding" || name == "upgrade";
}

// A regular field as nghttp2 lets it through (RFC 9113 8.2.1).
void CheckField(const HeaderMap::Entry& e) {
  FUZZ_CHECK(!e.name.empty());
  FUZZ_CHECK(e.name[0] != ':');
  for (char c : e.name) {
    const auto u = static_cast<unsigned char>(c);
    FUZZ_CHECK(!(u >= 'A' && u <= 'Z'));
    FUZZ_CHECK(u > 0x20 && u < 0x7f);
  }
  FUZZ_CHECK(!IsConnectionSpecific(e.name));
  for (char c : e.value) FUZZ_CHECK(c != '\0' && c != '\r' && c != '\n');
}

bool LowerEquals(std::string_view value, std::string_view lower) {
  if (value.size() != lower.size()) return false;
  for (size_t i = 0; i < value.size(); ++i) {
    char c = value[i];
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (c != lower[i]) return false;
  }
  return true;
}

class Harness;

// One request as its owner sees it: the decoder the codec feeds and the
// callbacks it tells, with the owner's state. Owned by the harness until
// the end of the input, so that a late call is caught by a check rather
// than by chance.
class FakeStream final : public RequestDecoder, public StreamCallbacks {
 public:
  FakeStream(Harness& harness, ResponseEncoder& encoder) : harness_(harness), encoder_(&encoder) {}

  // RequestDecoder
  void DecodeHeaders(HeaderMapPtr headers, bool end_stream) override;
  void DecodeData(Buffer& data, bool end_stream) override;
  void DecodeTrailers(HeaderMapPtr trailers) override;

  // StreamCallbacks
  void OnResetStream(StreamResetReason, std::string_view) override {
    FUZZ_CHECK(callbacks_added_);  // none after RemoveCallbacks()
    FUZZ_CHECK(!codec_reset_);     // once
    codec_reset_ = true;
    callbacks_added_ = false;
    encoder_ = nullptr;  // the stream may be freed once this stack unwinds
  }
  void OnAboveWriteBufferHighWatermark() override;
  void OnBelowWriteBufferLowWatermark() override;

  // The owner is done: as the connection manager does it.
  void Finish(bool undo_read_disable);
  // One scripted owner decision.
  void Act(uint8_t op);
  // The owner may no longer call into or hear from the codec.
  bool Gone() const { return encoder_ == nullptr; }
  // The codec was destroyed under its owner.
  void Forget() {
    encoder_ = nullptr;
    callbacks_added_ = false;
    forgotten_ = true;
  }
  bool MayDecode() const { return !detached_ && !owner_reset_ && !codec_reset_ && !forgotten_; }

  Harness& harness_;
  ResponseEncoder* encoder_;
  bool callbacks_added_ = false;
  bool detached_ = false;
  bool owner_reset_ = false;
  bool codec_reset_ = false;
  bool forgotten_ = false;
  bool headers_seen_ = false;
  bool remote_end_ = false;
  bool response_headers_ = false;
  int read_disabled_ = 0;
  int64_t content_length_ = -1;
  uint64_t body_bytes_ = 0;
};

class Harness final : public ServerConnectionCallbacks {
 public:
  Harness(std::string_view script, const Options& options) : script_(script), options_(options) {
    stats_.streams_total = &streams_total_;
    stats_.flood = &flood_;
    codec_ =
        std::make_unique<ServerConnectionImpl>(dispatcher_, connection_, *this, options_, &stats_);
  }
  ~Harness() {
    for (auto& s : streams_) s->Forget();
    codec_.reset();
    dispatcher_.RunPending();
    dispatcher_.ClearDeferredDeleteList();
  }

  // ServerConnectionCallbacks
  RequestDecoder& NewStream(ResponseEncoder& encoder) override {
    FUZZ_TRACE("NewStream #%zu\n", streams_.size());
    FUZZ_CHECK(codec_ != nullptr && !closed_);
    ++new_streams_;
    streams_.push_back(std::make_unique<FakeStream>(*this, encoder));
    FakeStream& s = *streams_.back();
    // As the connection manager does: the only way to hear of the end.
    encoder.GetStream().AddCallbacks(s);
    s.callbacks_added_ = true;
    return s;
  }
  void OnProtocolError(const CodecError& error, ResponseEncoder* encoder) override {
    FUZZ_TRACE("OnProtocolError %s (closed %d)\n", error.cause.c_str(), closed_);
    FUZZ_CHECK(encoder == nullptr);  // HTTP/2 reports connection errors only
    FUZZ_CHECK(!error.cause.empty());
    FUZZ_CHECK(!protocol_error_);
    protocol_error_ = true;
    switch (script_.Next() % 3) {
      case 0:
        // The contract allows destroying the codec from here.
        Destroy(true);
        break;
      case 1:
        // The connection manager: reset what is live, close.
        for (size_t i = 0; i < streams_.size(); ++i) {
          if (!streams_[i]->Gone()) streams_[i]->Act(10);
          if (codec_ == nullptr) return;
        }
        Close();
        break;
      default:
        // Closes later, from the loop.
        break;
    }
  }
  void OnCodecIdle() override {
    FUZZ_TRACE("OnCodecIdle (closed %d)\n", closed_);
    FUZZ_CHECK(codec_ != nullptr);
    // No owner event after OnConnectionClosed() (found by this target: two
    // streams ending in one read queued two; corpus/http2/
    // idle_after_connection_closed keeps the input).
    FUZZ_CHECK(!closed_);
    // As the connection manager: only once every owner is done (one may
    // be in the middle of its last Encode*, which ran this).
    for (auto& s : streams_) {
      if (!s->Gone()) return;
    }
    if (codec_->WantsClose() && (script_.Next() & 1)) Close();
  }

  void Close() {
    if (codec_ == nullptr || closed_) return;
    if (script_.Next() & 1) codec_->Shutdown();
    if (codec_ == nullptr) return;
    FUZZ_TRACE("OnConnectionClosed\n");
    closed_ = true;
    connection_.closed_ = true;
    codec_->OnConnectionClosed();
    // Every owner still holding a stream was told it ended.
    for (auto& s : streams_) FUZZ_CHECK(s->Gone());
  }
  void Destroy(bool from_protocol_error) {
    if (std::getenv("HTTP2_FUZZ_VERBOSE") != nullptr) {
      // To see what a seed exercises: HTTP2_FUZZ_VERBOSE=1 ./http2_server_fuzz corpus/http2/get
      int finished = 0, reset = 0;
      for (auto& st : streams_) {
        finished += st->detached_ || st->owner_reset_;
        reset += st->codec_reset_;
      }
      std::fprintf(
          stderr,
          "streams %zu (owner finished %d, reset by codec %d), written %llu bytes in "
          "%llu frames, protocol error %d, closed %d, codec destroyed in OnProtocolError %d\n",
          streams_.size(), finished, reset, static_cast<unsigned long long>(connection_.written_),
          static_cast<unsigned long long>(connection_.frames_), protocol_error_, closed_,
          from_protocol_error);
    }
    for (auto& s : streams_) s->Forget();
    codec_.reset();
  }

  // Everything between two reads: the loop, then one connection event.
  void BetweenReads() {
    dispatcher_.RunPending();
    if (codec_ == nullptr || closed_) return;
    const uint8_t op = script_.Next();
    switch (op % 16) {
      case 0:
        write_blocked_ = true;
        codec_->OnAboveWriteBufferHighWatermark();
        break;
      case 1:
        if (write_blocked_) {
          write_blocked_ = false;
          codec_->OnBelowWriteBufferLowWatermark();
        }
        break;
      case 2:
        codec_->StartDrain();
        break;
      case 3:
        dispatcher_.Advance(std::chrono::milliseconds(400));
        break;
      case 4:
      case 5:
      case 6:
        ActOnLiveStreams();
        break;
      case 7:
        codec_->OnEof();
        break;
      case 8:
        if (op == 0xf8) Close();  // rare: closing ends the input
        break;
      default:
        break;
    }
    dispatcher_.RunPending();
  }
  void ActOnLiveStreams() {
    for (size_t i = 0; i < streams_.size() && codec_ != nullptr && !closed_; ++i) {
      if (!streams_[i]->Gone()) streams_[i]->Act(script_.Next());
    }
  }

  void Run(std::string_view client, size_t piece, bool protocol_error_closes) {
    for (size_t at = 0; at < client.size() && codec_ != nullptr && !closed_; at += piece) {
      Buffer data;
      data.Add(client.substr(at, piece));
      FUZZ_TRACE("Dispatch %zu bytes at %zu\n", std::min(piece, client.size() - at), at);
      codec_->Dispatch(data);
      FUZZ_CHECK(codec_ == nullptr || data.empty());  // takes every byte
      if (protocol_error_ && protocol_error_closes) Close();
      BetweenReads();
    }
    if (codec_ == nullptr) return;
    if (protocol_error_) Close();
    if (!closed_) {
      // Let the owners finish and the responses drain, then close or not.
      if (write_blocked_ && (script_.Next() & 1)) {
        write_blocked_ = false;
        codec_->OnBelowWriteBufferLowWatermark();
      }
      dispatcher_.RunPending();
      if (codec_ != nullptr && !closed_) ActOnLiveStreams();
      dispatcher_.Advance(std::chrono::milliseconds(2000));
      if (codec_ != nullptr && !closed_ && (script_.Next() & 1)) Close();
    }
    if (codec_ == nullptr) return;
    FUZZ_CHECK(streams_total_.Value() == new_streams_);
    FUZZ_CHECK(connection_.partial() == 0);  // whole frames only
    Destroy(false);
    dispatcher_.RunPending();
  }

  Script script_;
  const Options options_;
  FuzzDispatcher dispatcher_;
  FuzzConnection connection_;
  FuzzCounter streams_total_;
  FuzzCounter flood_;
  Http2Stats stats_;
  std::unique_ptr<ServerConnectionImpl> codec_;
  std::vector<std::unique_ptr<FakeStream>> streams_;
  uint64_t new_streams_ = 0;
  bool closed_ = false;
  bool protocol_error_ = false;
  bool write_blocked_ = false;
};

void FakeStream::DecodeHeaders(HeaderMapPtr headers, bool end_stream) {
  FUZZ_CHECK(MayDecode());
  FUZZ_CHECK(!headers_seen_);
  FUZZ_CHECK(headers != nullptr);
  headers_seen_ = true;
  remote_end_ = end_stream;
  // The codec puts its pseudo-headers first, in this order.
  const auto& e = headers->entries();
  FUZZ_CHECK(e.size() >= 4);
  FUZZ_CHECK(e[0].name == ":method" && e[1].name == ":path" && e[2].name == ":authority" &&
             e[3].name == ":scheme");
  FUZZ_CHECK(!e[0].value.empty() && e[0].value != "CONNECT");
  FUZZ_CHECK(!e[1].value.empty());
  for (size_t i = 0; i < 4; ++i) {
    for (char c : e[i].value) FUZZ_CHECK(c != '\0' && c != '\r' && c != '\n');
  }
  uint64_t list_bytes = 0;
  for (size_t i = 0; i < e.size(); ++i) {
    list_bytes += e[i].name.size() + e[i].value.size() + 32;
    if (i < 4) continue;
    CheckField(e[i]);
    FUZZ_CHECK(e[i].name != "host");
    if (e[i].name == "te") FUZZ_CHECK(LowerEquals(e[i].value, "trailers"));
    if (e[i].name == "content-length") {
      int64_t n = 0;
      bool digits = !e[i].value.empty() && e[i].value.size() < 16;
      for (char c : e[i].value) {
        if (c < '0' || c > '9') digits = false;
        n = n * 10 + (c - '0');
      }
      if (digits) content_length_ = n;
    }
  }
  FUZZ_CHECK(list_bytes <= kMaxHeaderListBytes + kAddedHeaderBytes);
  if (end_stream && content_length_ > 0) FUZZ_CHECK(false && "content-length without a body");
  Act(harness_.script_.Next());
}

void FakeStream::DecodeData(Buffer& data, bool end_stream) {
  FUZZ_CHECK(MayDecode());
  FUZZ_CHECK(headers_seen_ && !remote_end_);
  FUZZ_CHECK(read_disabled_ == 0);  // held while read-disabled
  FUZZ_CHECK(data.length() > 0 || end_stream);
  body_bytes_ += data.length();
  data.Clear();
  remote_end_ = end_stream;
  if (content_length_ >= 0) {
    FUZZ_CHECK(body_bytes_ <= static_cast<uint64_t>(content_length_));
    if (end_stream) FUZZ_CHECK(body_bytes_ == static_cast<uint64_t>(content_length_));
  }
  Act(harness_.script_.Next());
}

void FakeStream::DecodeTrailers(HeaderMapPtr trailers) {
  FUZZ_CHECK(MayDecode());
  FUZZ_CHECK(headers_seen_ && !remote_end_);
  FUZZ_CHECK(read_disabled_ == 0);
  FUZZ_CHECK(trailers != nullptr);
  remote_end_ = true;
  for (const HeaderMap::Entry& e : *trailers) CheckField(e);
  if (content_length_ >= 0) FUZZ_CHECK(body_bytes_ == static_cast<uint64_t>(content_length_));
  Act(harness_.script_.Next());
}

void FakeStream::OnAboveWriteBufferHighWatermark() {
  FUZZ_CHECK(callbacks_added_ && !Gone());
  // Back-pressure from deep inside another call: pause reading, as the
  // router would.
  if (harness_.script_.Next() & 1) Act(11);
}

void FakeStream::OnBelowWriteBufferLowWatermark() {
  FUZZ_CHECK(callbacks_added_ && !Gone());
  if (harness_.script_.Next() & 1) Act(12);
}

void FakeStream::Finish(bool undo_read_disable) {
  if (Gone()) return;
  Stream& stream = encoder_->GetStream();
  if (callbacks_added_) {
    stream.RemoveCallbacks(*this);
    callbacks_added_ = false;
  }
  if (undo_read_disable) {
    while (read_disabled_ > 0) {
      --read_disabled_;
      stream.ReadDisable(false);
      if (Gone()) return;
    }
  }
  detached_ = true;
  ResponseEncoder* encoder = encoder_;
  encoder_ = nullptr;
  encoder->DetachDecoder();
}

void FakeStream::Act(uint8_t op) {
  if (Gone()) return;
  FUZZ_TRACE("  owner of stream %p: op %d%s\n", static_cast<void*>(this), op % 16,
             (op & 0x80) ? " (flag)" : "");
  const bool flag = (op & 0x80) != 0;
  Buffer body;
  HeaderMap response;
  response.Add(":status", "200");
  response.Add("content-type", "text/plain");
  if (flag) response.Add("Connection", "close, x-hop");  // dropped by the codec
  auto send_headers = [&](bool end_stream) {
    response_headers_ = true;
    encoder_->EncodeHeaders(response, end_stream);
  };
  switch (op % 16) {
    case 4:
      if (!response_headers_) send_headers(false);
      break;
    case 5:
      if (response_headers_) break;
      send_headers(true);
      Finish(flag);
      break;
    case 6:
    case 7: {
      if (!response_headers_) send_headers(false);
      if (Gone()) break;
      // Case 7 goes over the stream's buffer limit (watermarks).
      body.Add(std::string(op % 16 == 6 ? 10 : harness_.options_.stream_buffer_limit * 2 + 1, 'x'));
      encoder_->EncodeData(body, false);
      break;
    }
    case 8:
      if (!response_headers_) send_headers(false);
      if (Gone()) break;
      body.Add("done");
      encoder_->EncodeData(body, true);
      Finish(flag);
      break;
    case 9: {
      if (!response_headers_) send_headers(false);
      if (Gone()) break;
      HeaderMap trailers;
      trailers.Add("grpc-status", "0");
      trailers.Add(":bad", "x");  // dropped by the codec
      encoder_->EncodeTrailers(trailers);
      Finish(flag);
      break;
    }
    case 10: {
      // Give up on the stream. The connection manager detaches first;
      // a flagged owner resets while still attached.
      static constexpr StreamResetReason kReasons[] = {
          StreamResetReason::kLocalReset, StreamResetReason::kConnectionTermination,
          StreamResetReason::kRefusedStream, StreamResetReason::kProtocolError,
          StreamResetReason::kOverflow};
      const StreamResetReason reason = kReasons[(op >> 4) % 5];
      Stream& stream = encoder_->GetStream();
      if (flag) {
        owner_reset_ = true;
        callbacks_added_ = false;
        encoder_ = nullptr;
        stream.ResetStream(reason);
      } else {
        Finish(true);
        // Finish() may have ended the codec's stream; as long as this call
        // stack has not unwound it is still there to be reset (unless the
        // codec itself is gone).
        if (forgotten_) break;
        owner_reset_ = true;
        stream.ResetStream(reason);
      }
      break;
    }
    case 11:
      ++read_disabled_;
      encoder_->GetStream().ReadDisable(true);
      break;
    case 12:
      if (read_disabled_ > 0) {
        --read_disabled_;
        encoder_->GetStream().ReadDisable(false);
      }
      break;
    case 13:
      // Leaves without an answer (the stream waits for the peer).
      Finish(flag);
      break;
    case 14:
      if (!response_headers_) encoder_->Encode100Continue();
      break;
    case 15:
      if (response_headers_) break;
      send_headers(false);
      if (Gone()) break;
      body.Add("hello");
      encoder_->EncodeData(body, false);
      if (Gone()) break;
      encoder_->EncodeTrailers(HeaderMap());
      Finish(flag);
      break;
    default:
      break;  // waits
  }
}

}  // namespace
}  // namespace portway::http::http2

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using portway::http::http2::Harness;
  using portway::http::http2::kPreface;
  using portway::http::http2::kScriptBytes;
  using portway::http::http2::Options;
  if (size < 1 + kScriptBytes) return 0;
  const uint8_t control = data[0];
  const std::string_view script(reinterpret_cast<const char*>(data + 1), kScriptBytes);
  const std::string_view rest(reinterpret_cast<const char*>(data + 1 + kScriptBytes),
                              size - 1 - kScriptBytes);

  Options options;
  options.max_concurrent_streams = 1 + ((control >> 1) & 7);
  options.initial_stream_window_bytes = (control & 0x10) ? 64 : 1024;
  options.initial_connection_window_bytes = (control & 0x10) ? 65535 : 1 << 20;
  options.max_header_list_bytes = portway::http::http2::kMaxHeaderListBytes;
  options.stream_buffer_limit = 256;
  options.stream_reset_burst = 8;
  options.stream_reset_rate_per_second = 2;
  options.max_outbound_control_frames = 16;
  options.max_settings_entries = 8;
  options.max_empty_data_frames = 4;
  options.max_continuations = 3;
  options.drain_goaway_delay = std::chrono::milliseconds(500);

  static constexpr size_t kPieces[] = {1, 9, 100, 1 << 20};
  const size_t piece = kPieces[(control >> 5) & 3];
  std::string client;
  if (control & 1) client.append(kPreface);
  client.append(rest);

  Harness harness(script, options);
  harness.Run(client, piece, /*protocol_error_closes=*/(control & 0x80) != 0);
  return 0;
}
