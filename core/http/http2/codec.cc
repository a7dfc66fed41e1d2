#include "core/http/http2/codec.h"

#include <algorithm>
#include <cstring>
#include <forward_list>

#include "core/common/strings.h"

namespace portway::http::http2 {

// ================================================================ streams

// One HTTP/2 stream on either side: receive buffering under read-disable,
// send buffering for nghttp2's data provider, watermarks, reset state.
class StreamImpl : public Stream, public event::DeferredDeletable {
 public:
  explicit StreamImpl(SessionBase& session)
      : session_(session), buffer_limit_(session.options_.stream_buffer_limit) {}
  ~StreamImpl() override { *alive_ = false; }
  // One per request: recycled per thread rather than through malloc.
  static void* operator new(size_t size) { return AllocateSmallBlock(size); }
  static void operator delete(void* block, size_t size) noexcept { FreeSmallBlock(block, size); }

  // Stream
  void AddCallbacks(StreamCallbacks& callbacks) override {
    callbacks_.push_back(&callbacks);
    if (above_high_) callbacks.OnAboveWriteBufferHighWatermark();
  }
  void RemoveCallbacks(StreamCallbacks& callbacks) override {
    callbacks_.erase(std::remove(callbacks_.begin(), callbacks_.end(), &callbacks),
                     callbacks_.end());
  }
  void ResetStream(StreamResetReason reason) override;
  void ReadDisable(bool disable) override;
  // Kept here: an ended stream may be asked after its codec is gone.
  size_t BufferLimit() const override { return buffer_limit_; }

  virtual bool HasDecoder() const = 0;
  virtual void DeliverData(Buffer& data, bool end_stream) = 0;
  virtual void DeliverTrailers(HeaderMapPtr trailers) = 0;
  // The peer's side of the stream was handed up completely.
  virtual void OnRemoteEndDelivered() {}

  // Hands held body, trailers and end of stream to the decoder unless the
  // stream is read-disabled; acknowledges what it handed over.
  void MaybeDeliver();
  bool HasUndelivered() const {
    return !in_.empty() || in_trailers_ != nullptr || (remote_end_ && !remote_end_delivered_);
  }
  // Tells every callback, once; the stream is dead to its owner after.
  void RunResetCallbacks(StreamResetReason reason, std::string_view detail) {
    auto callbacks = std::move(callbacks_);
    callbacks_.clear();
    closed_ = true;
    for (StreamCallbacks* c : callbacks) c->OnResetStream(reason, detail);
  }
  // The send side: what EncodeData/EncodeTrailers queued.
  void QueueData(Buffer& data, bool end_stream);
  void QueueTrailers(const HeaderMap& trailers);
  ssize_t ReadOut(uint8_t* buf, size_t length, uint32_t* flags);
  void ResumeData();
  void CheckHighWatermark();
  nghttp2_data_provider Provider() {
    nghttp2_data_provider provider;
    provider.source.ptr = this;
    provider.read_callback = &StreamImpl::ReadCallback;
    return provider;
  }
  static ssize_t ReadCallback(nghttp2_session*, int32_t, uint8_t* buf, size_t length,
                              uint32_t* flags, nghttp2_data_source* source, void*) {
    return static_cast<StreamImpl*>(source->ptr)->ReadOut(buf, length, flags);
  }
  // True while the owner may still encode.
  bool Writable() const { return !closed_ && !local_reset_ && !retired_ && !session_.dead_; }

  SessionBase& session_;
  const size_t buffer_limit_;
  std::shared_ptr<bool> alive_ = std::allocate_shared<bool>(BlockAllocator<bool>(), true);
  std::vector<StreamCallbacks*, BlockAllocator<StreamCallbacks*>> callbacks_;
  int32_t id_ = -1;
  SessionBase::StreamList::iterator self_;

  // Receive side.
  HeaderMapPtr headers_;  // the header block being received
  size_t header_bytes_ = 0;
  bool header_overflow_ = false;
  Buffer in_;  // body received and not yet handed to the decoder
  HeaderMapPtr in_trailers_;
  bool remote_end_ = false;  // END_STREAM received
  bool remote_end_delivered_ = false;
  int read_disabled_ = 0;
  bool resume_posted_ = false;

  // Send side.
  Buffer out_;
  HeaderMapPtr out_trailers_;
  bool local_end_ = false;       // the owner ended its side
  bool local_end_sent_ = false;  // END_STREAM went out
  bool data_deferred_ = false;   // the provider said DEFERRED: resume on more data
  bool above_high_ = false;

  // End of life.
  bool closed_ = false;        // reset (either side) or finished: no more callbacks
  bool local_reset_ = false;   // the owner reset it, or the codec closed it quietly
  bool remote_reset_ = false;  // RST_STREAM received
  uint32_t remote_reset_code_ = 0;
  bool nghttp2_closed_ = false;  // nghttp2 forgot it
  bool close_after_delivery_ = false;
  bool retired_ = false;
  bool done_ = false;  // client: OnStreamDone queued
  bool response_headers_seen_ = false;
};

namespace {

constexpr uint32_t kNoError = NGHTTP2_NO_ERROR;

// Fields that describe one hop's connection, never sent in HTTP/2
// (RFC 9113 8.2.2).
bool IsConnectionSpecific(std::string_view name) {
  return name == "connection" || name == "keep-alive" || name == "proxy-connection" ||
         name == "transfer-encoding" || name == "upgrade";
}

// Builds nghttp2 name/value pairs over strings that outlive the submit
// call (nghttp2 copies them); names are lowercased on the way if needed.
class NvList {
 public:
  NvList() { nva_.reserve(16); }
  void Add(std::string_view name, std::string_view value) {
    if (HasAsciiUpper(name)) {
      storage_.push_front(ToLower(name));
      name = storage_.front();
    }
    nghttp2_nv nv;
    nv.name = reinterpret_cast<uint8_t*>(const_cast<char*>(name.data()));
    nv.namelen = name.size();
    nv.value = reinterpret_cast<uint8_t*>(const_cast<char*>(value.data()));
    nv.valuelen = value.size();
    // A value that never repeats (one per request) would only churn the
    // peer's HPACK dynamic table and cost a table search here.
    nv.flags = name == "x-request-id" ? NGHTTP2_NV_FLAG_NO_INDEX : NGHTTP2_NV_FLAG_NONE;
    nva_.push_back(nv);
  }
  // Adds the fields of `headers` fit for HTTP/2: no pseudo-headers, no
  // connection-specific fields nor those the Connection field names.
  void AddFields(const HeaderMap& headers, bool request) {
    nva_.reserve(nva_.size() + headers.size());
    std::vector<std::string> named_by_connection;
    if (const std::string_view* connection = headers.Get("connection")) {
      for (std::string_view token : SplitView(*connection, ',')) {
        token = TrimOws(token);
        if (!token.empty()) named_by_connection.push_back(ToLower(token));
      }
    }
    for (const HeaderMap::Entry& e : headers) {
      if (e.name.empty() || e.name[0] == ':' || IsConnectionSpecific(e.name)) continue;
      if (std::find(named_by_connection.begin(), named_by_connection.end(), e.name) !=
          named_by_connection.end()) {
        continue;
      }
      if (request && e.name == "host") continue;  // became :authority
      // "te: trailers" is the one TE a request may carry; none on a response.
      if (e.name == "te" && (!request || !EqualsIgnoreCase(TrimOws(e.value), "trailers"))) continue;
      Add(e.name, e.value);
    }
  }
  const nghttp2_nv* data() const { return nva_.data(); }
  size_t size() const { return nva_.size(); }

 private:
  // Both are made per message: the block cache's memory, and no storage
  // at all for names that need no lowercasing (nearly all: header maps
  // hold lowercase names).
  std::vector<nghttp2_nv, BlockAllocator<nghttp2_nv>> nva_;
  std::forward_list<std::string> storage_;  // stable addresses
};

}  // namespace

void StreamImpl::QueueData(Buffer& data, bool end_stream) {
  out_.Move(data);
  if (end_stream) local_end_ = true;
  CheckHighWatermark();
  ResumeData();
}

void StreamImpl::QueueTrailers(const HeaderMap& trailers) {
  auto copy = std::make_unique<HeaderMap>();
  for (const HeaderMap::Entry& e : trailers) {
    if (e.name.empty() || e.name[0] == ':' || IsConnectionSpecific(e.name)) continue;
    copy->AddLower(e.name, e.value);
  }
  out_trailers_ = std::move(copy);
  local_end_ = true;
  ResumeData();
}

void StreamImpl::ResumeData() {
  if (data_deferred_ && id_ > 0 && !nghttp2_closed_) {
    data_deferred_ = false;
    nghttp2_session_resume_data(session_.session_, id_);
  }
}

void StreamImpl::CheckHighWatermark() {
  if (above_high_ || out_.length() <= BufferLimit()) return;
  above_high_ = true;
  auto callbacks = callbacks_;
  for (StreamCallbacks* c : callbacks) c->OnAboveWriteBufferHighWatermark();
}

ssize_t StreamImpl::ReadOut(uint8_t* buf, size_t length, uint32_t* flags) {
  size_t n = std::min(length, out_.length());
  size_t copied = 0;
  while (copied < n) {
    std::string_view front = out_.FrontSlice();
    size_t take = std::min(front.size(), n - copied);
    memcpy(buf + copied, front.data(), take);
    out_.Drain(take);
    copied += take;
  }
  if (out_.empty()) {
    if (local_end_) {
      *flags |= NGHTTP2_DATA_FLAG_EOF;
      if (out_trailers_ != nullptr) {
        // Trailers end the stream instead of this DATA frame.
        *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
        NvList nva;
        for (const HeaderMap::Entry& e : *out_trailers_) nva.Add(e.name, e.value);
        nghttp2_submit_trailer(session_.session_, id_, nva.data(), nva.size());
        out_trailers_.reset();
      }
    } else if (n == 0) {
      data_deferred_ = true;
      return NGHTTP2_ERR_DEFERRED;
    }
  }
  return static_cast<ssize_t>(n);
}

void StreamImpl::MaybeDeliver() {
  if (read_disabled_ > 0 || closed_ || !HasDecoder()) return;
  size_t n = in_.length();
  bool end = remote_end_ && !remote_end_delivered_;
  if (n == 0 && !end) return;
  // The stream window opens only for what the decoder took.
  if (n > 0 && !nghttp2_closed_ && !session_.dead_) {
    nghttp2_session_consume_stream(session_.session_, id_, n);
  }
  if (end) remote_end_delivered_ = true;
  Buffer data;
  data.Move(in_);
  std::shared_ptr<bool> alive = alive_;
  if (in_trailers_ != nullptr) {
    HeaderMapPtr trailers = std::move(in_trailers_);
    if (n > 0) DeliverData(data, false);
    if (!*alive || closed_) return;
    DeliverTrailers(std::move(trailers));
  } else {
    DeliverData(data, end);
  }
  if (!*alive || !end) return;
  OnRemoteEndDelivered();
  if (close_after_delivery_ && !retired_) {
    close_after_delivery_ = false;
    session_.OnStreamClosed(*this, kNoError);
  }
}

void StreamImpl::ReadDisable(bool disable) {
  if (disable) {
    ++read_disabled_;
    return;
  }
  if (read_disabled_ == 0 || --read_disabled_ > 0) return;
  if (!HasUndelivered() || resume_posted_ || closed_) return;
  // Delivered from the loop, not from inside the caller (often a watermark
  // callback deep in another stream's stack).
  resume_posted_ = true;
  // A retired stream outlives its codec until its deferred delete: both
  // must still be there.
  std::weak_ptr<bool> alive = alive_;
  std::weak_ptr<bool> session_alive = session_.alive_;
  session_.dispatcher_.Post([this, alive, session_alive] {
    std::shared_ptr<bool> locked = alive.lock();
    std::shared_ptr<bool> session_locked = session_alive.lock();
    if (locked == nullptr || !*locked || session_locked == nullptr || !*session_locked) return;
    resume_posted_ = false;
    SessionBase& session = session_;
    MaybeDeliver();
    if (*session_locked) session.Flush();
  });
}

namespace {

uint32_t ResetCode(StreamResetReason reason, bool server) {
  switch (reason) {
    case StreamResetReason::kProtocolError:
      return NGHTTP2_PROTOCOL_ERROR;
    case StreamResetReason::kRefusedStream:
    case StreamResetReason::kGoAway:
      return NGHTTP2_REFUSED_STREAM;
    case StreamResetReason::kConnectionTermination:
    case StreamResetReason::kTransportFailure:
      return NGHTTP2_CANCEL;
    case StreamResetReason::kOverflow:
      return NGHTTP2_ENHANCE_YOUR_CALM;
    case StreamResetReason::kLocalReset:
    case StreamResetReason::kRemoteReset:
      // A server giving up on a response says it failed; a client giving
      // up on a request (its own client left, a timeout) cancels it.
      return server ? NGHTTP2_INTERNAL_ERROR : NGHTTP2_CANCEL;
  }
  return NGHTTP2_INTERNAL_ERROR;
}

}  // namespace

void StreamImpl::ResetStream(StreamResetReason reason) {
  if (local_reset_ || retired_) return;
  // The owner asked: its own callbacks are not told (as with HTTP/1).
  local_reset_ = true;
  closed_ = true;
  callbacks_.clear();
  SessionBase& session = session_;
  if (id_ > 0 && !nghttp2_closed_ && !session.dead_) {
    nghttp2_submit_rst_stream(session.session_, NGHTTP2_FLAG_NONE, id_,
                              ResetCode(reason, session.server_));
  } else {
    // Never sent, or nghttp2 already forgot it: it ends here.
    session.OnStreamClosed(*this, NGHTTP2_CANCEL);
  }
  session.Flush();
}

// ================================================================ session

// nghttp2's C callbacks, forwarded to the session.
struct Nghttp2Callbacks {
  static SessionBase& Session(void* user_data) { return *static_cast<SessionBase*>(user_data); }
  static StreamImpl* Find(SessionBase& s, int32_t stream_id) {
    return static_cast<StreamImpl*>(nghttp2_session_get_stream_user_data(s.session_, stream_id));
  }

  static int OnBeginFrame(nghttp2_session*, const nghttp2_frame_hd* hd, void* user_data) {
    SessionBase& s = Session(user_data);
    if (s.dead_) return NGHTTP2_ERR_CALLBACK_FAILURE;
    bool empty =
        (hd->type == NGHTTP2_DATA && hd->length == 0 &&
         (hd->flags & NGHTTP2_FLAG_END_STREAM) == 0) ||
        ((hd->type == NGHTTP2_HEADERS || hd->type == NGHTTP2_CONTINUATION) && hd->length == 0);
    if (empty) {
      if (++s.empty_frames_ > s.options_.max_empty_data_frames) {
        s.pending_error_code_ = NGHTTP2_ENHANCE_YOUR_CALM;
        s.pending_error_cause_ = "http2_empty_frame_flood";
        s.pending_error_flood_ = true;
        return NGHTTP2_ERR_CALLBACK_FAILURE;
      }
    } else if (hd->type == NGHTTP2_DATA || hd->type == NGHTTP2_HEADERS) {
      s.empty_frames_ = 0;
    }
    return 0;
  }

  static int OnBeginHeaders(nghttp2_session*, const nghttp2_frame* frame, void* user_data) {
    SessionBase& s = Session(user_data);
    if (s.dead_) return NGHTTP2_ERR_CALLBACK_FAILURE;
    return s.OnBeginHeaders(*frame);
  }

  static int OnHeader(nghttp2_session* session, const nghttp2_frame* frame, const uint8_t* name,
                      size_t namelen, const uint8_t* value, size_t valuelen, uint8_t,
                      void* user_data) {
    SessionBase& s = Session(user_data);
    if (s.dead_) return NGHTTP2_ERR_CALLBACK_FAILURE;
    StreamImpl* stream = Find(s, frame->hd.stream_id);
    if (stream == nullptr || stream->headers_ == nullptr) return 0;
    // RFC 9113 6.5.2's accounting: name + value + 32 per field.
    stream->header_bytes_ += namelen + valuelen + 32;
    if (stream->header_bytes_ > s.options_.max_header_list_bytes) {
      stream->header_overflow_ = true;
      stream->headers_.reset();
      s.Inc(s.stats_.header_overflow);
      // HTTP/2 has no 431; the stream is refused with ENHANCE_YOUR_CALM.
      nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, frame->hd.stream_id,
                                NGHTTP2_ENHANCE_YOUR_CALM);
      return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    stream->headers_->AddLower(std::string_view(reinterpret_cast<const char*>(name), namelen),
                               std::string_view(reinterpret_cast<const char*>(value), valuelen));
    return 0;
  }

  // A field nghttp2 found invalid (bad characters, say). It would drop it
  // silently; a gateway must not forward a malformed message, so the
  // stream is reset instead (RFC 9113 8.1.1).
  static int OnInvalidHeader(nghttp2_session* session, const nghttp2_frame* frame, const uint8_t*,
                             size_t, const uint8_t*, size_t, uint8_t, void* user_data) {
    SessionBase& s = Session(user_data);
    if (s.dead_) return NGHTTP2_ERR_CALLBACK_FAILURE;
    StreamImpl* stream = Find(s, frame->hd.stream_id);
    if (stream != nullptr) stream->headers_.reset();
    nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, frame->hd.stream_id,
                              NGHTTP2_PROTOCOL_ERROR);
    return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  }

  static int OnDataChunk(nghttp2_session* session, uint8_t, int32_t stream_id, const uint8_t* data,
                         size_t len, void* user_data) {
    SessionBase& s = Session(user_data);
    if (s.dead_) return NGHTTP2_ERR_CALLBACK_FAILURE;
    // The connection window reopens at once: one stalled stream must not
    // stall the others. Its own window waits for its decoder.
    nghttp2_session_consume_connection(session, len);
    StreamImpl* stream = Find(s, stream_id);
    // A stream whose owner is done (HasDecoder() false once detached) gets
    // nothing more; its window stays open so the peer is not stuck.
    if (stream == nullptr || stream->closed_ || !stream->HasDecoder()) {
      nghttp2_session_consume_stream(session, stream_id, len);
      return 0;
    }
    stream->in_.Add(std::string_view(reinterpret_cast<const char*>(data), len));
    return 0;
  }

  static int OnFrameRecv(nghttp2_session*, const nghttp2_frame* frame, void* user_data) {
    SessionBase& s = Session(user_data);
    if (s.dead_) return NGHTTP2_ERR_CALLBACK_FAILURE;
    switch (frame->hd.type) {
      case NGHTTP2_HEADERS: {
        StreamImpl* stream = Find(s, frame->hd.stream_id);
        if (stream == nullptr || stream->headers_ == nullptr) return 0;
        return s.OnHeadersComplete(*stream, *frame);
      }
      case NGHTTP2_DATA: {
        StreamImpl* stream = Find(s, frame->hd.stream_id);
        if (stream == nullptr) return 0;
        if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) stream->remote_end_ = true;
        stream->MaybeDeliver();
        return 0;
      }
      case NGHTTP2_RST_STREAM: {
        s.Inc(s.stats_.rx_reset);
        if (s.server_ && !s.TakeResetToken()) {
          s.pending_error_code_ = NGHTTP2_ENHANCE_YOUR_CALM;
          s.pending_error_cause_ = "http2_rapid_reset";
          s.pending_error_flood_ = true;
          return NGHTTP2_ERR_CALLBACK_FAILURE;
        }
        StreamImpl* stream = Find(s, frame->hd.stream_id);
        if (stream != nullptr) {
          stream->remote_reset_ = true;
          stream->remote_reset_code_ = frame->rst_stream.error_code;
        }
        return 0;
      }
      case NGHTTP2_GOAWAY:
        s.goaway_received_ = true;
        s.Inc(s.stats_.goaway_received);
        s.OnGoAwayReceived(frame->goaway.last_stream_id);
        return 0;
      case NGHTTP2_SETTINGS:
        if ((frame->hd.flags & NGHTTP2_FLAG_ACK) == 0) s.OnRemoteSettings();
        return 0;
      default:
        return 0;
    }
  }

  static int OnStreamClose(nghttp2_session*, int32_t stream_id, uint32_t error_code,
                           void* user_data) {
    SessionBase& s = Session(user_data);
    if (s.dead_) return 0;
    StreamImpl* stream = Find(s, stream_id);
    if (stream == nullptr || stream->retired_) return 0;
    stream->nghttp2_closed_ = true;
    // A stream that ended cleanly while read-disabled still owes its
    // decoder the held body: it closes once that is delivered.
    if (error_code == kNoError && !stream->local_reset_ && !stream->remote_reset_ &&
        stream->HasDecoder() && stream->HasUndelivered()) {
      stream->close_after_delivery_ = true;
      return 0;
    }
    s.OnStreamClosed(*stream, error_code);
    return 0;
  }

  static int OnFrameSend(nghttp2_session* session, const nghttp2_frame* frame, void* user_data) {
    SessionBase& s = Session(user_data);
    switch (frame->hd.type) {
      case NGHTTP2_HEADERS:
      case NGHTTP2_DATA:
        if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) {
          StreamImpl* stream = Find(s, frame->hd.stream_id);
          if (stream == nullptr) break;
          stream->local_end_sent_ = true;
          // A response complete before its request: the client may stop
          // sending the body (RFC 9113 8.1).
          if (s.server_ && !stream->remote_end_ && !stream->local_reset_) {
            stream->local_reset_ = true;
            nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, frame->hd.stream_id,
                                      NGHTTP2_NO_ERROR);
          }
        }
        break;
      case NGHTTP2_RST_STREAM:
        s.Inc(s.stats_.tx_reset);
        if (frame->rst_stream.error_code == NGHTTP2_PROTOCOL_ERROR) {
          s.Inc(s.stats_.protocol_errors);
        }
        break;
      case NGHTTP2_GOAWAY:
        s.Inc(s.stats_.goaway_sent);
        // Only nghttp2 itself sends a GOAWAY with an error through the
        // session (ours are written directly): a connection error it found.
        if (frame->goaway.error_code != kNoError && s.library_goaway_code_ == 0) {
          s.library_goaway_code_ = frame->goaway.error_code;
        }
        break;
      default:
        break;
    }
    return 0;
  }
};

SessionBase::SessionBase(event::Dispatcher& dispatcher, event::Connection& connection,
                         const Options& options, Http2Stats* stats, bool server)
    : dispatcher_(dispatcher),
      connection_(connection),
      options_(options),
      stats_(stats != nullptr ? *stats : Http2Stats()),
      server_(server),
      reset_tokens_(options.stream_reset_burst),
      reset_tokens_at_(dispatcher.Now()) {
  nghttp2_session_callbacks* callbacks;
  nghttp2_session_callbacks_new(&callbacks);
  nghttp2_session_callbacks_set_on_begin_frame_callback(callbacks, &Nghttp2Callbacks::OnBeginFrame);
  nghttp2_session_callbacks_set_on_begin_headers_callback(callbacks,
                                                          &Nghttp2Callbacks::OnBeginHeaders);
  nghttp2_session_callbacks_set_on_header_callback(callbacks, &Nghttp2Callbacks::OnHeader);
  nghttp2_session_callbacks_set_on_invalid_header_callback(callbacks,
                                                           &Nghttp2Callbacks::OnInvalidHeader);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks,
                                                            &Nghttp2Callbacks::OnDataChunk);
  nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, &Nghttp2Callbacks::OnFrameRecv);
  nghttp2_session_callbacks_set_on_stream_close_callback(callbacks,
                                                         &Nghttp2Callbacks::OnStreamClose);
  nghttp2_session_callbacks_set_on_frame_send_callback(callbacks, &Nghttp2Callbacks::OnFrameSend);

  // Every session option in one place, for both sides. HTTP messaging
  // checks (RFC 9113 8.2/8.3) stay on.
  nghttp2_option* option;
  nghttp2_option_new(&option);
  nghttp2_option_set_no_auto_window_update(option, 1);
  nghttp2_option_set_max_outbound_ack(option, options.max_outbound_control_frames);
  nghttp2_option_set_max_settings(option, options.max_settings_entries);
  nghttp2_option_set_max_continuations(option, options.max_continuations);
  // Our own bucket (TakeResetToken, on the dispatcher's clock) runs first
  // and answers ENHANCE_YOUR_CALM; nghttp2's (INTERNAL_ERROR, on the real
  // clock) is only a backstop: twice our budget, never below its defaults.
  nghttp2_option_set_stream_reset_rate_limit(
      option, std::max<uint64_t>(uint64_t{options.stream_reset_burst} * 2, 1000),
      std::max<uint64_t>(uint64_t{options.stream_reset_rate_per_second} * 2, 33));
  if (server) {
    nghttp2_session_server_new2(&session_, callbacks, this, option);
  } else {
    nghttp2_session_client_new2(&session_, callbacks, this, option);
  }
  nghttp2_option_del(option);
  nghttp2_session_callbacks_del(callbacks);

  std::vector<nghttp2_settings_entry> settings;
  if (server) {
    settings.push_back({NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, options.max_concurrent_streams});
  } else {
    settings.push_back({NGHTTP2_SETTINGS_ENABLE_PUSH, 0});
  }
  settings.push_back({NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, options.initial_stream_window_bytes});
  settings.push_back({NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, options.max_header_list_bytes});
  nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, settings.data(), settings.size());
  if (options.initial_connection_window_bytes > NGHTTP2_INITIAL_CONNECTION_WINDOW_SIZE) {
    nghttp2_session_set_local_window_size(
        session_, NGHTTP2_FLAG_NONE, 0,
        static_cast<int32_t>(options.initial_connection_window_bytes));
  }
}

SessionBase::~SessionBase() {
  *alive_ = false;
  dead_ = true;
  nghttp2_session_del(session_);
  for (auto& stream : streams_) stream->callbacks_.clear();
}

bool SessionBase::TakeResetToken() {
  MonotonicTime now = dispatcher_.Now();
  double elapsed = std::chrono::duration<double>(now - reset_tokens_at_).count();
  reset_tokens_at_ = now;
  reset_tokens_ = std::min<double>(options_.stream_reset_burst,
                                   reset_tokens_ + elapsed * options_.stream_reset_rate_per_second);
  if (reset_tokens_ < 1) return false;
  reset_tokens_ -= 1;
  return true;
}

bool SessionBase::SessionDone() const {
  return nghttp2_session_want_read(session_) == 0 && nghttp2_session_want_write(session_) == 0;
}

void SessionBase::Receive(Buffer& data) {
  if (dead_) {
    data.Clear();
    return;
  }
  ++in_nghttp2_;
  ssize_t rv = 0;
  while (!data.empty()) {
    std::string_view front = data.FrontSlice();
    rv = nghttp2_session_mem_recv(session_, reinterpret_cast<const uint8_t*>(front.data()),
                                  front.size());
    if (rv < 0 || dead_) break;
    data.Drain(static_cast<size_t>(rv));
  }
  --in_nghttp2_;
  if (rv >= 0 || dead_) {
    if (dead_) data.Clear();
    return;
  }
  data.Clear();
  if (pending_error_code_ != 0) {
    FailConnection(pending_error_code_, pending_error_cause_, pending_error_flood_);
  } else if (rv == NGHTTP2_ERR_FLOODED) {
    FailConnection(NGHTTP2_ENHANCE_YOUR_CALM, "http2_flood", true);
  } else if (rv == NGHTTP2_ERR_TOO_MANY_CONTINUATIONS) {
    FailConnection(NGHTTP2_ENHANCE_YOUR_CALM, "http2_continuation_flood", true);
  } else if (rv == NGHTTP2_ERR_BAD_CLIENT_MAGIC) {
    FailConnection(NGHTTP2_PROTOCOL_ERROR, "http2_bad_preface", false);
  } else {
    FailConnection(NGHTTP2_PROTOCOL_ERROR, "http2_protocol_error", false);
  }
}

void SessionBase::FailConnection(uint32_t code, std::string cause, bool flood) {
  if (dead_) return;
  dead_ = true;
  int32_t last = nghttp2_session_get_last_proc_stream_id(session_);
  // A GOAWAY frame: 9 bytes of header (length 8, type 7, no flags, stream
  // 0), the last stream id, the error code.
  uint8_t frame[17] = {0, 0, 8, NGHTTP2_GOAWAY, 0, 0, 0, 0, 0};
  auto put32 = [&](int offset, uint32_t v) {
    frame[offset] = static_cast<uint8_t>(v >> 24);
    frame[offset + 1] = static_cast<uint8_t>(v >> 16);
    frame[offset + 2] = static_cast<uint8_t>(v >> 8);
    frame[offset + 3] = static_cast<uint8_t>(v);
  };
  put32(9, static_cast<uint32_t>(last) & 0x7fffffff);
  put32(13, code);
  Buffer out;
  out.Add(std::string_view(reinterpret_cast<const char*>(frame), sizeof(frame)));
  connection_.Write(out);
  Inc(stats_.goaway_sent);
  if (flood) Inc(stats_.flood);
  OnConnectionError(cause);
}

void SessionBase::SetWriteBlocked(bool blocked) {
  write_blocked_ = blocked;
  if (!blocked) Flush();
}

void SessionBase::RetireStream(StreamImpl& stream) {
  if (stream.retired_) return;
  stream.retired_ = true;
  stream.closed_ = true;
  stream.callbacks_.clear();
  if (stream.id_ > 0 && !stream.nghttp2_closed_ && !dead_) {
    nghttp2_session_set_stream_user_data(session_, stream.id_, nullptr);
  }
  std::unique_ptr<StreamImpl> owned = std::move(*stream.self_);
  streams_.erase(stream.self_);
  dispatcher_.DeferredDelete(std::move(owned));
}

void SessionBase::FlushSoon() {
  // Inside a dispatch or a flush, the flush at its end takes this too.
  if (!options_.coalesce_writes || in_nghttp2_ > 0 || flushing_ || dead_) {
    Flush();
    return;
  }
  if (!flush_timer_) flush_timer_ = dispatcher_.CreateTimer([this] { Flush(); });
  if (!flush_timer_->Enabled()) flush_timer_->Enable(std::chrono::milliseconds(0));
}

void SessionBase::Flush() {
  if (in_nghttp2_ > 0 || flushing_) {
    flush_again_ = true;
    return;
  }
  flushing_ = true;
  do {
    flush_again_ = false;
    // A session ending on nghttp2's own error sends its GOAWAY even to a
    // peer that does not read.
    if (!dead_ && (!write_blocked_ || nghttp2_session_want_read(session_) == 0)) {
      Buffer out;
      ssize_t rv = 0;
      ++in_nghttp2_;
      for (;;) {
        const uint8_t* bytes = nullptr;
        rv = nghttp2_session_mem_send(session_, &bytes);
        if (rv <= 0) break;
        out.Add(std::string_view(reinterpret_cast<const char*>(bytes), static_cast<size_t>(rv)));
        if (out.length() >= 65536) {
          connection_.Write(out);
          // The connection went over its watermark: leave the rest in
          // nghttp2 until it drains.
          if (write_blocked_ && nghttp2_session_want_read(session_) != 0) break;
        }
      }
      --in_nghttp2_;
      if (!out.empty()) connection_.Write(out);
      if (rv < 0) {
        FailConnection(NGHTTP2_INTERNAL_ERROR, "http2_internal_error", false);
      } else if (library_goaway_code_ != 0 && !dead_) {
        dead_ = true;
        bool flood = library_goaway_code_ == NGHTTP2_ENHANCE_YOUR_CALM;
        if (flood) Inc(stats_.flood);
        OnConnectionError(flood ? "http2_flood" : "http2_protocol_error");
      }
    }
    // Streams whose queued bytes drained lower their watermark.
    std::vector<StreamImpl*> drained;
    for (auto& stream : streams_) {
      if (stream->above_high_ && stream->out_.length() < stream->BufferLimit() / 2) {
        drained.push_back(stream.get());
      }
    }
    for (StreamImpl* stream : drained) {
      if (!stream->above_high_) continue;
      stream->above_high_ = false;
      auto callbacks = stream->callbacks_;
      for (StreamCallbacks* c : callbacks) c->OnBelowWriteBufferLowWatermark();
    }
  } while (flush_again_);
  flushing_ = false;
  RunOwnerEvents();
}

void SessionBase::RunOwnerEvents() {
  if (running_owner_events_) return;
  running_owner_events_ = true;
  std::shared_ptr<bool> alive = alive_;
  while (!owner_events_.empty()) {
    std::function<void()> event = std::move(owner_events_.front());
    owner_events_.erase(owner_events_.begin());
    event();
    if (!*alive) return;  // the owner destroyed the codec
  }
  running_owner_events_ = false;
}

// ================================================================ server

class ServerStream final : public StreamImpl, public ResponseEncoder {
 public:
  using StreamImpl::StreamImpl;

  bool HasDecoder() const override { return decoder_ != nullptr; }
  void DeliverData(Buffer& data, bool end_stream) override {
    decoder_->DecodeData(data, end_stream);
  }
  void DeliverTrailers(HeaderMapPtr trailers) override {
    decoder_->DecodeTrailers(std::move(trailers));
  }

  // ResponseEncoder
  void DetachDecoder() override {
    decoder_ = nullptr;
    // What was held for the owner is dropped, and its window reopened so
    // the peer can finish sending what nobody reads.
    if (size_t held = in_.length(); held > 0) {
      in_.Clear();
      if (!nghttp2_closed_ && !session_.dead_) {
        nghttp2_session_consume_stream(session_.session_, id_, held);
      }
    }
    in_trailers_.reset();
    session_.FlushSoon();
  }
  void Encode100Continue() override {
    if (!Writable()) return;
    NvList nva;
    nva.Add(headers::kStatus, "100");
    nghttp2_submit_headers(session_.session_, NGHTTP2_FLAG_NONE, id_, nullptr, nva.data(),
                           nva.size(), nullptr);
    session_.FlushSoon();
  }
  void EncodeHeaders(const HeaderMap& headers, bool end_stream) override {
    if (!Writable()) return;
    NvList nva;
    std::string status = std::string(headers.GetOr(headers::kStatus, "500"));
    nva.Add(headers::kStatus, status);
    nva.AddFields(headers, /*request=*/false);
    if (end_stream) local_end_ = true;
    nghttp2_data_provider provider = Provider();
    nghttp2_submit_response(session_.session_, id_, nva.data(), nva.size(),
                            end_stream ? nullptr : &provider);
    session_.FlushSoon();
  }
  void EncodeData(Buffer& data, bool end_stream) override {
    if (!Writable()) {
      data.Clear();
      return;
    }
    QueueData(data, end_stream);
    session_.FlushSoon();
  }
  void EncodeTrailers(const HeaderMap& trailers) override {
    if (!Writable()) return;
    QueueTrailers(trailers);
    session_.FlushSoon();
  }
  Stream& GetStream() override { return *this; }
  // HTTP/2 closes nothing per response: the connection drains through
  // StartDrain() (GOAWAY), which the owner calls when it means to close.
  void CloseAfterResponse() override {}

  RequestDecoder* decoder_ = nullptr;
};

ServerConnectionImpl::ServerConnectionImpl(event::Dispatcher& dispatcher,
                                           event::Connection& connection,
                                           ServerConnectionCallbacks& callbacks,
                                           const Options& options, Http2Stats* stats)
    : SessionBase(dispatcher, connection, options, stats, /*server=*/true), callbacks_(callbacks) {}

ServerConnectionImpl::~ServerConnectionImpl() = default;

void ServerConnectionImpl::Dispatch(Buffer& data) {
  Receive(data);
  Flush();
}

void ServerConnectionImpl::OnEof() { eof_ = true; }

void ServerConnectionImpl::StartDrain() {
  if (dead_) return;
  if (draining_) {
    SendFinalGoAway();
    return;
  }
  draining_ = true;
  nghttp2_submit_shutdown_notice(session_);
  drain_timer_ = dispatcher_.CreateTimer([this] { SendFinalGoAway(); });
  drain_timer_->Enable(options_.drain_goaway_delay);
  Flush();
}

void ServerConnectionImpl::SendFinalGoAway() {
  if (final_goaway_sent_ || dead_) return;
  final_goaway_sent_ = true;
  if (drain_timer_) drain_timer_->Disable();
  nghttp2_submit_goaway(session_, NGHTTP2_FLAG_NONE,
                        nghttp2_session_get_last_proc_stream_id(session_), NGHTTP2_NO_ERROR,
                        nullptr, 0);
  Flush();
}

void ServerConnectionImpl::OnConnectionClosed() {
  dead_ = true;
  // The owner closed: what was queued for it (an OnCodecIdle, an
  // OnProtocolError) is stale and must not reach it.
  owner_events_.clear();
  if (drain_timer_) drain_timer_->Disable();
  std::vector<StreamImpl*> streams;
  for (auto& stream : streams_) streams.push_back(stream.get());
  for (StreamImpl* stream : streams) {
    if (stream->HasDecoder() && !stream->closed_) {
      stream->RunResetCallbacks(StreamResetReason::kConnectionTermination,
                                "connection_termination");
    }
    RetireStream(*stream);
  }
  Flush();
}

void ServerConnectionImpl::OnBelowWriteBufferLowWatermark() { SetWriteBlocked(false); }

int ServerConnectionImpl::OnBeginHeaders(const nghttp2_frame& frame) {
  if (frame.headers.cat == NGHTTP2_HCAT_REQUEST) {
    SessionBase& session = *this;
    auto owned = std::make_unique<ServerStream>(session);
    ServerStream* stream = owned.get();
    stream->id_ = frame.hd.stream_id;
    streams_.push_back(std::move(owned));
    stream->self_ = std::prev(streams_.end());
    nghttp2_session_set_stream_user_data(session_, frame.hd.stream_id, stream);
  }
  StreamImpl* stream = Nghttp2Callbacks::Find(*this, frame.hd.stream_id);
  if (stream != nullptr && !stream->header_overflow_) {
    stream->headers_ = std::make_unique<HeaderMap>();
    stream->headers_->Reserve(16);
    stream->header_bytes_ = 0;
  }
  return 0;
}

int ServerConnectionImpl::OnHeadersComplete(StreamImpl& base, const nghttp2_frame& frame) {
  auto& stream = static_cast<ServerStream&>(base);
  bool end_stream = (frame.hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
  HeaderMapPtr received = std::move(stream.headers_);
  if (frame.headers.cat != NGHTTP2_HCAT_REQUEST) {
    // Trailers (nghttp2 makes sure they end the stream).
    if (!stream.HasDecoder()) return 0;
    stream.in_trailers_ = std::move(received);
    stream.remote_end_ = true;
    stream.MaybeDeliver();
    return 0;
  }
  // Pseudo-headers first, in the SDK's order; Host becomes :authority
  // when the request has none (RFC 9113 8.3.1); cookies split into
  // several fields are joined again for HTTP/1 upstreams (8.2.3).
  auto map = std::make_unique<HeaderMap>();
  map->Reserve(received->size() + 10);
  std::string_view method = received->Method();
  std::string_view authority = received->Authority();
  if (authority.empty()) authority = received->GetOr("host", "");
  map->AddLower(headers::kMethod, method);
  map->AddLower(headers::kPath, received->Path());
  map->AddLower(headers::kAuthority, authority);
  map->AddLower(headers::kScheme, std::string(received->GetOr(headers::kScheme, "http")));
  std::string cookie;
  for (const HeaderMap::Entry& e : *received) {
    if (e.name.empty() || e.name[0] == ':' || e.name == "host") continue;
    if (e.name == "cookie") {
      if (!cookie.empty()) cookie.append("; ");
      cookie.append(e.value);
      continue;
    }
    map->AddLower(e.name, e.value);
  }
  if (!cookie.empty()) map->AddLowerOwned("cookie", std::move(cookie));

  if (method == "CONNECT") {
    // Tunnels are not proxied (HTTP/1 answers 501 too); answered here,
    // never handed up.
    NvList nva;
    nva.Add(headers::kStatus, "501");
    stream.local_end_ = true;
    nghttp2_submit_response(session_, stream.id_, nva.data(), nva.size(), nullptr);
    return 0;
  }
  stream.remote_end_ = end_stream;
  stream.remote_end_delivered_ = end_stream;
  Inc(stats_.streams_total);
  stream.decoder_ = &callbacks_.NewStream(stream);
  stream.decoder_->DecodeHeaders(std::move(map), end_stream);
  return 0;
}

void ServerConnectionImpl::OnStreamClosed(StreamImpl& stream, uint32_t error_code) {
  if (stream.retired_) return;
  bool complete = stream.local_end_sent_ && stream.remote_end_delivered_;
  if (stream.HasDecoder() && !stream.local_reset_ && !stream.closed_ &&
      (error_code != kNoError || !complete)) {
    if (stream.remote_reset_) {
      stream.RunResetCallbacks(StreamResetReason::kRemoteReset, "remote_reset");
    } else if (stream.header_overflow_) {
      stream.RunResetCallbacks(StreamResetReason::kOverflow, "header_overflow");
    } else if (error_code == NGHTTP2_PROTOCOL_ERROR || error_code == NGHTTP2_FLOW_CONTROL_ERROR) {
      // e.g. a body longer or shorter than its content-length.
      stream.RunResetCallbacks(StreamResetReason::kProtocolError, "http2_protocol_error");
    } else {
      stream.RunResetCallbacks(StreamResetReason::kRemoteReset, "stream_closed");
    }
  }
  RetireStream(stream);
  if (streams_.empty() && !dead_) QueueOwnerEvent([this] { callbacks_.OnCodecIdle(); });
}

void ServerConnectionImpl::OnConnectionError(const std::string& cause) {
  if (error_reported_) return;
  error_reported_ = true;
  QueueOwnerEvent([this, cause] { callbacks_.OnProtocolError(CodecError{400, cause}, nullptr); });
}

// ================================================================ client

class ClientStream final : public StreamImpl, public RequestEncoder {
 public:
  ClientStream(ClientConnectionImpl& connection, ResponseDecoder& decoder)
      : StreamImpl(connection), connection_(connection), decoder_(&decoder) {}

  bool HasDecoder() const override { return decoder_ != nullptr; }
  void DeliverData(Buffer& data, bool end_stream) override {
    decoder_->DecodeData(data, end_stream);
  }
  void DeliverTrailers(HeaderMapPtr trailers) override {
    decoder_->DecodeTrailers(std::move(trailers));
  }
  void OnRemoteEndDelivered() override {
    // The response is complete while the request is not: cancel the rest
    // of the request so the stream (and its slot) ends now.
    if (!local_end_ && !local_reset_ && id_ > 0 && !nghttp2_closed_ && !session_.dead_) {
      local_reset_ = true;
      nghttp2_submit_rst_stream(session_.session_, NGHTTP2_FLAG_NONE, id_, NGHTTP2_CANCEL);
    }
  }

  // RequestEncoder
  void EncodeHeaders(const HeaderMap& headers, bool end_stream) override {
    if (!Writable() || id_ > 0) return;
    NvList nva;
    std::string_view method = headers.Method();
    std::string_view authority = headers.Authority();
    if (authority.empty()) authority = headers.GetOr("host", "");
    nva.Add(headers::kMethod, method);
    if (method != "CONNECT") nva.Add(headers::kScheme, headers.GetOr(headers::kScheme, "http"));
    nva.Add(headers::kAuthority, authority);
    if (method != "CONNECT") nva.Add(headers::kPath, headers.Path());
    nva.AddFields(headers, /*request=*/true);
    if (end_stream) local_end_ = true;
    nghttp2_data_provider provider = Provider();
    int32_t id = nghttp2_submit_request(session_.session_, nullptr, nva.data(), nva.size(),
                                        end_stream ? nullptr : &provider, this);
    if (id < 0) {
      // No stream id left, or the session is going away: nothing was
      // sent, so the stream is refused (safe to retry elsewhere).
      std::weak_ptr<bool> alive = alive_;
      connection_.QueueOwnerEvent([this, alive] {
        std::shared_ptr<bool> locked = alive.lock();
        if (locked == nullptr || !*locked || retired_) return;
        RunResetCallbacks(StreamResetReason::kRefusedStream, "http2_stream_not_started");
        connection_.StreamDone(*this);
      });
      session_.Flush();
      return;
    }
    id_ = id;
    session_.Inc(session_.stats_.streams_total);
    session_.Flush();
  }
  void EncodeData(Buffer& data, bool end_stream) override {
    if (!Writable()) {
      data.Clear();
      return;
    }
    QueueData(data, end_stream);
    session_.Flush();
  }
  void EncodeTrailers(const HeaderMap& trailers) override {
    if (!Writable()) return;
    QueueTrailers(trailers);
    session_.Flush();
  }
  Stream& GetStream() override { return *this; }

  ClientConnectionImpl& connection_;
  ResponseDecoder* decoder_;
};

ClientConnectionImpl::ClientConnectionImpl(event::Dispatcher& dispatcher,
                                           event::Connection& connection,
                                           ClientConnectionCallbacks& callbacks,
                                           const Options& options, Http2Stats* stats)
    : SessionBase(dispatcher, connection, options, stats, /*server=*/false),
      callbacks_(callbacks) {}

ClientConnectionImpl::~ClientConnectionImpl() = default;

void ClientConnectionImpl::OnConnected() { Flush(); }

RequestEncoder& ClientConnectionImpl::NewStream(ResponseDecoder& decoder) {
  auto owned = std::make_unique<ClientStream>(*this, decoder);
  ClientStream* stream = owned.get();
  streams_.push_back(std::move(owned));
  stream->self_ = std::prev(streams_.end());
  ++active_streams_;
  return *stream;
}

void ClientConnectionImpl::Dispatch(Buffer& data) {
  Receive(data);
  Flush();
}

uint32_t ClientConnectionImpl::StreamCapacity() const {
  if (goaway_received_ || goaway_sent_ || dead_) return 0;
  uint32_t peer =
      nghttp2_session_get_remote_settings(session_, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
  return std::min(peer, options_.max_concurrent_streams);
}

void ClientConnectionImpl::GoAway() {
  if (dead_ || goaway_sent_) return;
  goaway_sent_ = true;
  nghttp2_submit_goaway(session_, NGHTTP2_FLAG_NONE,
                        nghttp2_session_get_last_proc_stream_id(session_), NGHTTP2_NO_ERROR,
                        nullptr, 0);
  Flush();
}

void ClientConnectionImpl::OnConnectionClose(bool, std::string_view transport_failure) {
  if (dead_) {
    Flush();
    return;
  }
  dead_ = true;
  if (!transport_failure.empty()) {
    ResetAllStreams(StreamResetReason::kTransportFailure, transport_failure);
  } else {
    ResetAllStreams(StreamResetReason::kConnectionTermination, "connection_termination");
  }
  Flush();
}

void ClientConnectionImpl::OnBelowWriteBufferLowWatermark() { SetWriteBlocked(false); }

int ClientConnectionImpl::OnBeginHeaders(const nghttp2_frame& frame) {
  StreamImpl* stream = Nghttp2Callbacks::Find(*this, frame.hd.stream_id);
  if (stream != nullptr && !stream->header_overflow_) {
    stream->headers_ = std::make_unique<HeaderMap>();
    stream->headers_->Reserve(16);
    stream->header_bytes_ = 0;
  }
  return 0;
}

int ClientConnectionImpl::OnHeadersComplete(StreamImpl& base, const nghttp2_frame& frame) {
  auto& stream = static_cast<ClientStream&>(base);
  bool end_stream = (frame.hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
  HeaderMapPtr map = std::move(stream.headers_);
  if (stream.closed_ || stream.decoder_ == nullptr) return 0;
  if (!stream.response_headers_seen_) {
    // 1xx heads are dropped: Portway answers a client's Expect itself.
    // (nghttp2 rejects 101 on HTTP/2.)
    int status = map->Status();
    if (status >= 100 && status < 200) return 0;
    stream.response_headers_seen_ = true;
    stream.remote_end_ = end_stream;
    stream.remote_end_delivered_ = end_stream;
    std::shared_ptr<bool> alive = stream.alive_;
    stream.decoder_->DecodeHeaders(std::move(map), end_stream);
    if (*alive && end_stream) stream.OnRemoteEndDelivered();
    return 0;
  }
  stream.in_trailers_ = std::move(map);
  stream.remote_end_ = true;
  stream.MaybeDeliver();
  return 0;
}

void ClientConnectionImpl::OnStreamClosed(StreamImpl& stream, uint32_t error_code) {
  if (stream.retired_) return;
  if (!stream.local_reset_ && !stream.closed_ && !stream.remote_end_delivered_) {
    (void)error_code;
    if (goaway_received_ && stream.id_ > goaway_last_stream_id_) {
      stream.RunResetCallbacks(StreamResetReason::kGoAway, "goaway");
    } else if (stream.remote_reset_) {
      if (stream.remote_reset_code_ == NGHTTP2_REFUSED_STREAM) {
        stream.RunResetCallbacks(StreamResetReason::kRefusedStream, "refused_stream");
      } else {
        stream.RunResetCallbacks(StreamResetReason::kRemoteReset, "remote_reset");
      }
    } else if (stream.header_overflow_) {
      stream.RunResetCallbacks(StreamResetReason::kOverflow, "upstream_header_overflow");
    } else {
      // nghttp2 reset it: a malformed response (RFC 9113 8.1.1).
      stream.RunResetCallbacks(StreamResetReason::kProtocolError, "upstream_http2_protocol_error");
    }
  }
  StreamDone(stream);
}

void ClientConnectionImpl::StreamDone(StreamImpl& stream) {
  if (stream.done_) return;
  stream.done_ = true;
  --active_streams_;
  RetireStream(stream);
  // Whether the connection may carry another stream is decided when the
  // owner hears of it: a GOAWAY in the same read counts.
  QueueOwnerEvent([this] { callbacks_.OnStreamDone(Reusable()); });
}

void ClientConnectionImpl::ResetAllStreams(StreamResetReason reason, std::string_view detail) {
  std::vector<StreamImpl*> streams;
  for (auto& stream : streams_) streams.push_back(stream.get());
  for (StreamImpl* stream : streams) {
    if (stream->done_) continue;
    if (!stream->local_reset_ && !stream->closed_) stream->RunResetCallbacks(reason, detail);
    StreamDone(*stream);
  }
}

void ClientConnectionImpl::OnConnectionError(const std::string&) {
  ResetAllStreams(StreamResetReason::kProtocolError, "upstream_http2_protocol_error");
  QueueOwnerEvent([this] { callbacks_.OnCapacityChanged(); });
}

void ClientConnectionImpl::OnGoAwayReceived(int32_t last_stream_id) {
  goaway_last_stream_id_ = last_stream_id;
  QueueOwnerEvent([this] { callbacks_.OnCapacityChanged(); });
}

void ClientConnectionImpl::OnRemoteSettings() {
  QueueOwnerEvent([this] { callbacks_.OnCapacityChanged(); });
}

}  // namespace portway::http::http2
