#include "core/http/http1/codec.h"

#include <cassert>
#include <charconv>
#include <cstring>
#include <functional>

#include "core/common/strings.h"

namespace portway::http::http1 {
namespace {

using portway::http1::BodyKind;
using portway::http1::Head;
using portway::http1::ParseError;

std::string_view ReasonPhrase(int status) {
  switch (status) {
    case 100:
      return "Continue";
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 202:
      return "Accepted";
    case 204:
      return "No Content";
    case 206:
      return "Partial Content";
    case 301:
      return "Moved Permanently";
    case 302:
      return "Found";
    case 303:
      return "See Other";
    case 304:
      return "Not Modified";
    case 307:
      return "Temporary Redirect";
    case 308:
      return "Permanent Redirect";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 413:
      return "Content Too Large";
    case 414:
      return "URI Too Long";
    case 429:
      return "Too Many Requests";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    case 505:
      return "HTTP Version Not Supported";
    default:
      return "Unknown";
  }
}

// Framing headers are the codec's business; they are never copied between
// legs as they are.
bool IsFramingHeader(std::string_view name) {
  return name == "transfer-encoding" || name == "connection";
}

// Serialises a message head straight into the free space of a buffer: the
// caller reserves an upper bound of the head's size once, and every part is
// copied once, with no intermediate string.
class HeadWriter {
 public:
  HeadWriter(Buffer& out, size_t max_size) : out_(out), max_size_(max_size) {
    size_t available = 0;
    begin_ = cursor_ = out.Reserve(max_size, &available);
  }
  void Put(std::string_view s) {
    CopyShort(cursor_, s.data(), s.size());  // copies nothing when empty
    cursor_ += s.size();
  }
  void Put(char c) { *cursor_++ = c; }
  void Field(const HeaderMap::Entry& e) {
    Put(e.name);
    Put(':');
    Put(' ');
    Put(e.value);
    Put('\r');
    Put('\n');
  }
  void Commit() {
    const size_t written = static_cast<size_t>(cursor_ - begin_);
    assert(written <= max_size_);
    (void)max_size_;
    out_.Commit(written);
  }

  // What the fields of `headers` can take at most, terminators included.
  // Summed from the fields themselves, not from HeaderMap::byteSize(): the
  // writer relies on the bound, so it must not rest on bookkeeping.
  static size_t FieldsBound(const HeaderMap& headers) {
    size_t bound = 0;
    for (const HeaderMap::Entry& e : headers) bound += e.name.size() + e.value.size() + 4;
    return bound;
  }

 private:
  Buffer& out_;
  const size_t max_size_;
  char* begin_ = nullptr;
  char* cursor_ = nullptr;
};

// What an encoder needs to know of a head before writing it, found in one
// pass: the pseudo-headers (the first of each), whether Content-Length is
// there, and HeadWriter::FieldsBound().
class HeadFacts {
 public:
  explicit HeadFacts(const HeaderMap& headers) {
    for (const HeaderMap::Entry& e : headers) {
      fields_bound += e.name.size() + e.value.size() + 4;
      if (!e.name.empty() && e.name[0] == ':') {
        int slot = -1;
        switch (e.name.size()) {
          case 5:
            if (e.name == headers::kPath) slot = kPathSlot;
            break;
          case 7:
            if (e.name == headers::kMethod) {
              slot = kMethodSlot;
            } else if (e.name == headers::kStatus) {
              slot = kStatusSlot;
            }
            break;
          case 10:
            if (e.name == headers::kAuthority) slot = kAuthoritySlot;
            break;
          default:
            break;
        }
        if (slot >= 0 && !seen_[slot]) {
          seen_[slot] = true;
          pseudo_[slot] = e.value;
        }
      } else if (e.name.size() == 14 && e.name == "content-length") {
        has_length = true;
      }
    }
  }
  // The status as a number, as HeaderMap::Status() reads it: 0 unless
  // digits up to 999.
  int Status() const {
    const std::string_view status = pseudo_[kStatusSlot];
    if (status.empty()) return 0;
    int n = 0;
    for (char c : status) {
      if (c < '0' || c > '9') return 0;
      n = n * 10 + (c - '0');
      if (n > 999) return 0;
    }
    return n;
  }

  std::string_view method() const { return pseudo_[kMethodSlot]; }
  std::string_view path() const { return pseudo_[kPathSlot]; }
  std::string_view authority() const { return pseudo_[kAuthoritySlot]; }

  bool has_length = false;
  size_t fields_bound = 0;

 private:
  enum { kMethodSlot, kPathSlot, kAuthoritySlot, kStatusSlot, kSlots };
  std::string_view pseudo_[kSlots];
  bool seen_[kSlots] = {};
};

// Room for a start line's fixed parts and the framing fields a codec adds
// (transfer-encoding, connection, content-length: 0) and the final CRLF.
constexpr size_t kHeadOverhead = 160;

void WriteFields(HeadWriter& out, const HeaderMap& headers, bool skip_content_length) {
  for (const HeaderMap::Entry& e : headers) {
    if (e.name.empty() || e.name[0] == ':' || IsFramingHeader(e.name)) continue;
    if (skip_content_length && e.name == "content-length") continue;
    out.Field(e);
  }
}

// Trailers may not carry framing, routing or connection fields (RFC 9110
// 6.5.1); a peer that sends them there gets them dropped, never forwarded.
void WriteTrailerFields(HeadWriter& out, const HeaderMap& trailers) {
  for (const HeaderMap::Entry& e : trailers) {
    if (e.name.empty() || e.name[0] == ':' || IsFramingHeader(e.name) ||
        e.name == "content-length" || e.name == "host" || e.name == "te" || e.name == "trailer" ||
        e.name == "keep-alive" || e.name == "upgrade") {
      continue;
    }
    out.Field(e);
  }
}

// Builds the SDK header map from a parsed head: the head's bytes are copied
// into the map at once and its fields are views into that copy (names
// lowercased in place), not copies made one by one. Host becomes
// :authority; Transfer-Encoding is dropped (the body arrives de-chunked).
class HeadCopy {
 public:
  // `wire` holds the head, which the parser's views point into; `extra` is
  // room for fields added later (proxy headers) in the same block.
  HeadCopy(HeaderMap& map, std::string_view wire, size_t head_size, size_t extra)
      : map_(map), wire_(wire.data()), wire_end_(wire.data() + head_size) {
    map.ReserveBytes(head_size + extra);
    copy_ = map.Copy(wire.substr(0, head_size));
  }

  // The copy of a view into the wire bytes; any other view (a string
  // literal) as it is.
  std::string_view operator()(std::string_view v) const {
    const std::less<const char*> before;
    if (before(v.data(), wire_) || !before(v.data(), wire_end_)) return v;
    return {copy_ + (v.data() - wire_), v.size()};
  }

  void AddFields(const Head& head, bool skip_host) {
    for (const auto& field : head.headers) {
      char* name_bytes = copy_ + (field.name.data() - wire_);
      LowerAsciiInPlace(name_bytes, field.name.size());
      const std::string_view name(name_bytes, field.name.size());
      if (name.size() == 17 && name == "transfer-encoding") continue;
      if (skip_host && name.size() == 4 && name == "host") continue;
      map_.AddCopied(name, {copy_ + (field.value.data() - wire_), field.value.size()});
    }
  }

 private:
  HeaderMap& map_;
  const char* wire_;
  const char* wire_end_;
  char* copy_ = nullptr;
};

// Heads are written into one reused buffer per thread and moved from it into
// the connection's queue, whose slice vector it trades with: no allocation
// per message once a connection has written once. (A connection's Write()
// takes the bytes before anything can call back, so nested use finds it
// empty.)
Buffer& ScratchBuffer() {
  thread_local Buffer scratch;
  scratch.Clear();
  return scratch;
}

void EncodeChunk(Buffer& out, Buffer& data) {
  char size_line[24];
  int n = snprintf(size_line, sizeof(size_line), "%zx\r\n", data.length());
  out.Add(std::string_view(size_line, static_cast<size_t>(n)));
  out.Move(data);
  out.Add("\r\n");
}

// Writes body bytes, framed as chunks when the message is chunked; the end
// of a chunked body is the last chunk.
void WriteBody(event::Connection& connection, Buffer& data, bool end_stream, bool chunked) {
  if (!chunked) {
    connection.Write(data);
    return;
  }
  Buffer out;
  if (!data.empty()) EncodeChunk(out, data);
  if (end_stream) out.Add("0\r\n\r\n");
  connection.Write(out);
}

// Ends a chunked body with the last chunk and the trailer section.
void WriteTrailers(event::Connection& connection, const HeaderMap& trailers) {
  Buffer& buffer = ScratchBuffer();
  HeadWriter out(buffer, 8 + HeadWriter::FieldsBound(trailers));
  out.Put("0\r\n");
  WriteTrailerFields(out, trailers);
  out.Put("\r\n");
  out.Commit();
  connection.Write(buffer);
}

// Moves `len` payload bytes at `offset` in the front of `data` into `out`
// and drops the `consumed` framing+payload bytes, without copying whole
// slices.
void TakePayload(Buffer& data, const BodyDecoder::Step& step, Buffer& out) {
  data.Drain(step.payload_offset);
  out.Move(data, step.payload_len);
  data.Drain(step.consumed - step.payload_offset - step.payload_len);
}

}  // namespace

// ================================================================ server

ServerConnectionImpl::ServerConnectionImpl(event::Connection& connection,
                                           ServerConnectionCallbacks& callbacks,
                                           const ServerOptions& options)
    : connection_(connection), callbacks_(callbacks), options_(options) {}

void ServerConnectionImpl::Dispatch(Buffer& data) {
  while (!data.empty()) {
    if (state_ == State::kHead) {
      // A client that keeps sending requests without reading the responses
      // waits until it has read them: what we buffer for it stays bounded.
      if (above_high_) {
        if (!paused_for_output_) {
          paused_for_output_ = true;
          connection_.ReadDisable(true);
        }
        return;
      }
      // A request answered at once (direct response, local reply) leaves
      // the state at kHead with pipelined bytes to go: keep parsing.
      if (!DispatchHead(data)) return;  // need more bytes
    } else if (state_ == State::kBody) {
      DispatchBody(data);
      if (state_ == State::kBody) return;
    } else {
      // kAwaitResponse: bytes of a pipelined request wait in the
      // connection's buffer. Reading pauses only now, when such bytes
      // exist, so the common request/response exchange costs no
      // epoll_ctl; resuming re-delivers them (OnResponseComplete).
      if (state_ == State::kAwaitResponse && !read_paused_) {
        read_paused_ = true;
        connection_.ReadDisable(true);
      }
      return;
    }
  }
}

namespace {
// At most this many idle parser sets stay with a worker thread (~200 bytes
// each plus their field vectors).
constexpr size_t kMaxPooledParsers = 64;
}  // namespace

// One pool per worker thread: a connection's parsers never cross threads.
std::vector<std::unique_ptr<ServerConnectionImpl::Parsers>>& ServerConnectionImpl::ParsersPool() {
  thread_local std::vector<std::unique_ptr<Parsers>> pool;
  return pool;
}

ServerConnectionImpl::ParsersPtr ServerConnectionImpl::AcquireParsers(const Limits& limits) {
  auto& pool = ParsersPool();
  if (pool.empty()) return ParsersPtr(new Parsers(limits));
  Parsers* parsers = pool.back().release();
  pool.pop_back();
  parsers->head.Reset();
  parsers->head.SetLimits(limits);
  parsers->body.SetLimits(limits);
  return ParsersPtr(parsers);
}

void ServerConnectionImpl::ReleaseParsers::operator()(Parsers* parsers) const {
  auto& pool = ParsersPool();
  if (pool.size() >= kMaxPooledParsers) {
    delete parsers;
    return;
  }
  pool.emplace_back(parsers);
}

bool ServerConnectionImpl::DispatchHead(Buffer& data) {
  head_started_ = true;
  // The parser needs the head contiguous; anything past the header limit
  // is an error anyway, so never linearize more than that.
  size_t window = std::min<size_t>(data.length(), options_.limits.max_header_bytes + 8);
  std::string_view view = data.Linearize(window);
  if (!parsers_) parsers_ = AcquireParsers(options_.limits);
  // One Head per thread: parsing completes before any callback runs, and
  // its field vector keeps its capacity from request to request.
  thread_local Head head;
  HeadParser::Result result = parsers_->head.ParseRequest(view, &head);
  if (result == HeadParser::Result::kIncomplete) return false;
  if (result == HeadParser::Result::kError) {
    ProtocolError(parsers_->head.error());
    return true;
  }

  auto headers = std::make_unique<HeaderMap>();
  // Pseudo-headers, the fields, and room for the proxy headers.
  headers->Reserve(head.headers.size() + 10);
  std::string_view target = head.target;
  std::string_view authority = head.host;
  std::string rooted;  // an absolute-form target's path, when it needs a "/"
  // absolute-form (a client that thinks we are a forward proxy): the
  // authority in the target wins over Host (RFC 9112 3.2.2).
  for (std::string_view scheme : {std::string_view("http://"), std::string_view("https://")}) {
    if (target.size() > scheme.size() && StartsWithIgnoreCase(target, scheme)) {
      std::string_view rest = target.substr(scheme.size());
      size_t slash = rest.find_first_of("/?");
      authority = rest.substr(0, slash);
      target = slash == std::string_view::npos ? std::string_view("/") : rest.substr(slash);
      // "http://h?q": an empty path is "/" (RFC 9112 3.2.2).
      if (!target.empty() && target[0] == '?') {
        rooted = Cat("/", target);
        target = rooted;
      }
      break;
    }
  }
  // Room for the proxy headers next to the copy.
  HeadCopy copy(*headers, view, head.head_size, 192);
  headers->AddCopied(headers::kMethod, copy(head.method));
  if (rooted.empty()) {
    headers->AddCopied(headers::kPath, copy(target));  // a view of the head, or "/"
  } else {
    headers->AddLower(headers::kPath, rooted);
  }
  headers->AddCopied(headers::kAuthority, copy(authority));
  headers->AddCopied(headers::kScheme, "http");
  copy.AddFields(head, /*skip_host=*/true);

  if (head.method == "CONNECT") {
    data.Drain(head.head_size);
    ProtocolError(501, "connect_not_supported");
    return true;
  }
  http10_ = head.version_minor == 0;
  keep_alive_ = head.keep_alive;
  request_is_head_ = head.method == "HEAD";
  request_complete_ = false;
  response_started_ = false;
  body_received_ = 0;
  if (options_.max_request_body_bytes > 0 && head.body == BodyKind::kContentLength &&
      head.content_length > options_.max_request_body_bytes) {
    data.Drain(head.head_size);
    ProtocolError(413, "payload_too_large");
    return true;
  }
  data.Drain(head.head_size);
  parsers_->body.Reset(head.body, head.content_length);
  bool end_stream = head.body == BodyKind::kNone;
  state_ = end_stream ? State::kAwaitResponse : State::kBody;
  if (end_stream) request_complete_ = true;
  decoder_ = &callbacks_.NewStream(*this);
  decoder_->DecodeHeaders(std::move(headers), end_stream);
  return true;
}

void ServerConnectionImpl::DispatchBody(Buffer& data) {
  while (!data.empty() && state_ == State::kBody) {
    std::string_view front = data.FrontSlice();
    BodyDecoder& decoder = parsers_->body;
    BodyDecoder::Step step = decoder.Decode(front);
    if (decoder.error() != ParseError::kNone) {
      ProtocolError(decoder.error());
      return;
    }
    Buffer payload;
    TakePayload(data, step, payload);
    body_received_ += payload.length();
    if (options_.max_request_body_bytes > 0 && body_received_ > options_.max_request_body_bytes) {
      ProtocolError(413, "payload_too_large");
      return;
    }
    if (step.done) {
      state_ = State::kAwaitResponse;
      request_complete_ = true;
      if (!decoder.trailers().empty()) {
        // Copied out first: the callbacks may end the exchange and free
        // the parser state.
        auto map = std::make_unique<HeaderMap>();
        for (const auto& [name, value] : decoder.trailers()) map->Add(name, value);
        if (!payload.empty()) decoder_->DecodeData(payload, false);
        if (decoder_ == nullptr) return;
        decoder_->DecodeTrailers(std::move(map));
      } else {
        decoder_->DecodeData(payload, true);
      }
      return;
    }
    if (!payload.empty()) decoder_->DecodeData(payload, false);
    if (decoder_ == nullptr) return;  // the stream ended during the callback
  }
}

void ServerConnectionImpl::ProtocolError(ParseError error) {
  ProtocolError(portway::http1::ParseErrorStatus(error), portway::http1::ParseErrorName(error));
}

void ServerConnectionImpl::ProtocolError(int status, std::string cause) {
  keep_alive_ = false;
  State previous = state_;
  state_ = State::kClosed;
  CodecError error{status, std::move(cause)};
  ResponseEncoder* encoder = response_started_ ? nullptr : this;
  if (previous == State::kHead) {
    // No stream exists yet: make one so the error is answered, logged and
    // counted like any other response.
    decoder_ = &callbacks_.NewStream(*this);
  }
  callbacks_.OnProtocolError(error, encoder);
}

void ServerConnectionImpl::OnEof() {
  // A half-close after a complete request still gets its response; in the
  // middle of a request it ends the exchange.
  if (state_ == State::kAwaitResponse) {
    keep_alive_ = false;
    return;
  }
  if (state_ == State::kBody) {
    state_ = State::kClosed;
    ResetStream(StreamResetReason::kConnectionTermination);
    return;
  }
  state_ = State::kClosed;
}

void ServerConnectionImpl::Encode100Continue() {
  // RFC 9110 15.2: no 1xx to an HTTP/1.0 client.
  if (http10_) return;
  Buffer out;
  out.Add("HTTP/1.1 100 Continue\r\n\r\n");
  connection_.Write(out);
}

void ServerConnectionImpl::EncodeHeaders(const HeaderMap& headers, bool end_stream) {
  response_started_ = true;
  const HeadFacts facts(headers);
  int status = facts.Status();
  if (status == 0) status = 500;
  Buffer& buffer = ScratchBuffer();
  HeadWriter out(buffer, kHeadOverhead + facts.fields_bound);
  out.Put(http10_ ? "HTTP/1.0 " : "HTTP/1.1 ");
  out.Put(static_cast<char>('0' + status / 100 % 10));
  out.Put(static_cast<char>('0' + status / 10 % 10));
  out.Put(static_cast<char>('0' + status % 10));
  out.Put(' ');
  out.Put(ReasonPhrase(status));
  out.Put("\r\n");

  response_no_body_ = request_is_head_ || status == 204 || status == 304 || status < 200;
  response_chunked_ = false;
  response_close_delimited_ = false;
  WriteFields(out, headers, /*skip_content_length=*/status == 204 || status == 304);
  if (!response_no_body_ && !facts.has_length) {
    if (end_stream) {
      out.Put("content-length: 0\r\n");
    } else if (!http10_) {
      out.Put("transfer-encoding: chunked\r\n");
      response_chunked_ = true;
    } else {
      // An HTTP/1.0 client learns the end of the body from the close.
      keep_alive_ = false;
      response_close_delimited_ = true;
    }
  }
  // A response that ends before the request body was read leaves the
  // connection out of sync; close it.
  if (end_stream && !request_complete_) keep_alive_ = false;
  if (!keep_alive_) {
    out.Put("connection: close\r\n");
  } else if (http10_) {
    out.Put("connection: keep-alive\r\n");
  }
  out.Put("\r\n");
  out.Commit();
  connection_.Write(buffer);
  if (end_stream) OnResponseComplete();
}

void ServerConnectionImpl::EncodeData(Buffer& data, bool end_stream) {
  if (response_no_body_) {
    data.Clear();
  } else {
    WriteBody(connection_, data, end_stream, response_chunked_);
  }
  if (end_stream) OnResponseComplete();
}

void ServerConnectionImpl::EncodeTrailers(const HeaderMap& trailers) {
  if (response_chunked_) WriteTrailers(connection_, trailers);
  OnResponseComplete();
}

void ServerConnectionImpl::OnResponseComplete() {
  if (!request_complete_) keep_alive_ = false;
  decoder_ = nullptr;
  stream_callbacks_ = nullptr;
  if (!keep_alive_) {
    state_ = State::kClosed;
    return;  // the connection manager closes after flushing
  }
  state_ = State::kHead;
  head_started_ = false;
  // A malformed next request is answered like one on a fresh connection.
  response_started_ = false;
  request_is_head_ = false;
  http10_ = false;
  // Safe here: no parser call is on the stack during stream callbacks.
  parsers_.reset();
  if (read_paused_) {
    read_paused_ = false;
    // Resuming re-delivers bytes of a pipelined request from the loop.
    connection_.ReadDisable(false);
  }
}

void ServerConnectionImpl::ResetStream(StreamResetReason reason) {
  keep_alive_ = false;
  state_ = State::kClosed;
  StreamCallbacks* callbacks = stream_callbacks_;
  stream_callbacks_ = nullptr;
  decoder_ = nullptr;
  if (callbacks != nullptr) callbacks->OnResetStream(reason, "");
}

void ServerConnectionImpl::OnConnectionClosed() {
  if (decoder_ != nullptr || stream_callbacks_ != nullptr) {
    ResetStream(StreamResetReason::kConnectionTermination);
  }
  state_ = State::kClosed;
}

void ServerConnectionImpl::OnAboveWriteBufferHighWatermark() {
  above_high_ = true;
  if (stream_callbacks_ != nullptr) stream_callbacks_->OnAboveWriteBufferHighWatermark();
}

void ServerConnectionImpl::OnBelowWriteBufferLowWatermark() {
  above_high_ = false;
  if (stream_callbacks_ != nullptr) stream_callbacks_->OnBelowWriteBufferLowWatermark();
  if (paused_for_output_) {
    paused_for_output_ = false;
    connection_.ReadDisable(false);  // re-delivers the waiting requests
  }
}

// ================================================================ client

ClientConnectionImpl::ClientConnectionImpl(event::Connection& connection,
                                           ClientConnectionCallbacks& callbacks,
                                           const Limits& limits, size_t buffer_limit)
    : connection_(connection),
      callbacks_(callbacks),
      buffer_limit_(buffer_limit),
      limits_(limits),
      head_parser_(limits),
      body_decoder_(limits) {}

RequestEncoder& ClientConnectionImpl::NewStream(ResponseDecoder& decoder) {
  decoder_ = &decoder;
  state_ = State::kHead;
  request_complete_ = false;
  response_complete_ = false;
  head_parser_.Reset();
  return *this;
}

void ClientConnectionImpl::EncodeHeaders(const HeaderMap& headers, bool end_stream) {
  const HeadFacts facts(headers);
  method_ = facts.method();
  Buffer& buffer = ScratchBuffer();
  HeadWriter out(buffer, kHeadOverhead + facts.fields_bound);  // the pseudo-headers included
  out.Put(method_);
  out.Put(' ');
  out.Put(facts.path());
  out.Put(" HTTP/1.1\r\nhost: ");
  out.Put(facts.authority());
  out.Put("\r\n");
  WriteFields(out, headers, false);
  request_chunked_ = !end_stream && !facts.has_length;
  if (request_chunked_) out.Put("transfer-encoding: chunked\r\n");
  out.Put("\r\n");
  out.Commit();
  connection_.Write(buffer);
  if (end_stream) {
    request_complete_ = true;
    MaybeComplete();
  }
}

void ClientConnectionImpl::EncodeData(Buffer& data, bool end_stream) {
  WriteBody(connection_, data, end_stream, request_chunked_);
  if (end_stream) {
    request_complete_ = true;
    MaybeComplete();
  }
}

void ClientConnectionImpl::EncodeTrailers(const HeaderMap& trailers) {
  if (request_chunked_) WriteTrailers(connection_, trailers);
  request_complete_ = true;
  MaybeComplete();
}

void ClientConnectionImpl::Dispatch(Buffer& data) {
  while (!data.empty()) {
    if (state_ == State::kIdle || state_ == State::kDone) {
      // Bytes nobody asked for: the connection cannot be trusted any more;
      // with no capacity left its owner retires it.
      keep_alive_ = false;
      data.Clear();
      callbacks_.OnCapacityChanged();
      return;
    }
    if (state_ == State::kHead) {
      size_t window = std::min<size_t>(data.length(), limits_.max_header_bytes + 8);
      std::string_view view = data.Linearize(window);
      thread_local Head head;  // see DispatchHead
      HeadParser::Result result = head_parser_.ParseResponse(view, method_, &head);
      if (result == HeadParser::Result::kIncomplete) return;
      if (result == HeadParser::Result::kError) {
        Fail(StreamResetReason::kProtocolError,
             portway::http1::ParseErrorName(head_parser_.error()));
        return;
      }
      if (head.status < 200) {
        data.Drain(head.head_size);
        // 100 Continue and other interim responses: Portway answers the
        // client's Expect itself, so they are dropped. 101 would switch
        // protocols, which was not asked for.
        if (head.status == 101) {
          Fail(StreamResetReason::kProtocolError, "unexpected_101_switching_protocols");
          return;
        }
        head_parser_.Reset();
        continue;
      }
      keep_alive_ = head.keep_alive;
      auto headers = std::make_unique<HeaderMap>();
      headers->Reserve(head.headers.size() + 4);
      {
        // The status line's digits are in the copy: "HTTP/1.x NNN".
        HeadCopy copy(*headers, view, head.head_size, 64);
        headers->AddCopied(headers::kStatus, copy(view.substr(9, 3)));
        copy.AddFields(head, /*skip_host=*/false);
      }
      data.Drain(head.head_size);
      body_decoder_.Reset(head.body, head.content_length);
      bool end_stream = head.body == BodyKind::kNone;
      state_ = end_stream ? State::kDone : State::kBody;
      ResponseDecoder* decoder = decoder_;
      if (end_stream) response_complete_ = true;
      decoder->DecodeHeaders(std::move(headers), end_stream);
      if (end_stream) {
        // Bytes past the end of the response: the upstream broke framing;
        // never hand them to the next request on this connection.
        if (!data.empty()) {
          keep_alive_ = false;
          data.Clear();
        }
        MaybeComplete();
        return;
      }
      continue;
    }
    // kBody
    std::string_view front = data.FrontSlice();
    BodyDecoder::Step step = body_decoder_.Decode(front);
    if (body_decoder_.error() != ParseError::kNone) {
      Fail(StreamResetReason::kProtocolError,
           portway::http1::ParseErrorName(body_decoder_.error()));
      return;
    }
    Buffer payload;
    TakePayload(data, step, payload);
    if (step.done) {
      state_ = State::kDone;
      response_complete_ = true;
      if (!data.empty()) {  // see above: bytes past the end of the response
        keep_alive_ = false;
        data.Clear();
      }
      ResponseDecoder* decoder = decoder_;
      const auto& trailers = body_decoder_.trailers();
      if (!trailers.empty()) {
        if (!payload.empty()) decoder->DecodeData(payload, false);
        if (decoder_ == nullptr) return;
        auto map = std::make_unique<HeaderMap>();
        for (const auto& [name, value] : trailers) map->Add(name, value);
        decoder->DecodeTrailers(std::move(map));
      } else {
        decoder->DecodeData(payload, true);
      }
      MaybeComplete();
      return;
    }
    if (!payload.empty()) {
      decoder_->DecodeData(payload, false);
      if (decoder_ == nullptr) return;
    }
  }
}

void ClientConnectionImpl::OnConnectionClose(bool clean_eof, std::string_view transport_failure) {
  keep_alive_ = false;
  if (decoder_ == nullptr) return;
  if (!transport_failure.empty()) {
    Fail(StreamResetReason::kTransportFailure, transport_failure);
    return;
  }
  if (state_ == State::kBody && clean_eof && body_decoder_.OnEof()) {
    state_ = State::kDone;
    response_complete_ = true;
    request_complete_ = true;  // nothing more can be sent anyway
    Buffer empty;
    decoder_->DecodeData(empty, true);
    MaybeComplete();
    return;
  }
  Fail(StreamResetReason::kConnectionTermination,
       state_ == State::kHead ? "closed_before_response" : "closed_mid_body");
}

void ClientConnectionImpl::Fail(StreamResetReason reason, std::string_view detail) {
  keep_alive_ = false;
  state_ = State::kDone;
  bool had_stream = decoder_ != nullptr;
  decoder_ = nullptr;
  StreamCallbacks* callbacks = stream_callbacks_;
  stream_callbacks_ = nullptr;
  if (callbacks != nullptr) callbacks->OnResetStream(reason, detail);
  // The connection is in an unknown state: never reuse it.
  if (had_stream) callbacks_.OnStreamDone(false);
}

void ClientConnectionImpl::ResetStream(StreamResetReason reason) {
  // A stream given up half-way leaves the connection in an unknown state.
  keep_alive_ = false;
  bool had_stream = decoder_ != nullptr;
  decoder_ = nullptr;
  stream_callbacks_ = nullptr;
  state_ = State::kDone;
  if (had_stream) callbacks_.OnStreamDone(false);
}

void ClientConnectionImpl::MaybeComplete() {
  if (!response_complete_ || decoder_ == nullptr) return;
  // The response is done; a request still being sent means the peer
  // answered early and the connection cannot be reused.
  bool reusable = keep_alive_ && request_complete_;
  decoder_ = nullptr;
  stream_callbacks_ = nullptr;
  state_ = State::kIdle;
  callbacks_.OnStreamDone(reusable);
}

}  // namespace portway::http::http1
