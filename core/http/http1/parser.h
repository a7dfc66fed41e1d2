// Portway's strict HTTP/1.1 message parser (RFC 9110, RFC 9112): message heads (request and
// status lines plus header fields) and body framing (Content-Length, chunked, until-close).
//
// The parser is a request-smuggling defense first. Wherever two implementations could frame the
// same bytes differently, it rejects the message instead of guessing, and it is deliberately
// stricter than the RFCs' MAY clauses:
//   - every line must end in CRLF; a bare LF or a CR not followed by LF is an error;
//   - obs-fold, whitespace before the colon, and chunk lines with whitespace (RFC 9112's BWS)
//     are errors;
//   - Content-Length must appear at most once with one 1*DIGIT value (no "5, 5");
//   - "chunked" is the only transfer coding, appearing once, never together with
//     Content-Length, and never in an HTTP/1.0 message.
// It never copies or allocates per byte on the head path: results are string_views into the
// caller's bytes, character classes come from one 256-entry table.
//
// Thread safety: HeadParser and BodyDecoder hold the state of one message on one connection and
// are not thread-safe; use one of each per connection direction. The free functions are.
//
// Example (server side):
//   HeadParser parser(limits);
//   Head head;
//   switch (parser.ParseRequest(buffer, &head)) {  // buffer: all bytes of this message so far
//     case HeadParser::Result::kIncomplete:  // read more, call again with the longer buffer
//     case HeadParser::Result::kError:       // answer ParseErrorStatus(parser.error()), close
//     case HeadParser::Result::kDone:        // head.headers views into buffer
//   }
//   BodyDecoder body(limits);
//   body.Reset(head.body, head.content_length);
//   std::string_view rest = std::string_view(buffer).substr(head.head_size);
//   while (!rest.empty() && !body.done()) {
//     BodyDecoder::Step step = body.Decode(rest);
//     if (body.error() != ParseError::kNone) break;  // answer ParseErrorStatus(body.error())
//     Forward(rest.substr(step.payload_offset, step.payload_len));
//     rest.remove_prefix(step.consumed);
//   }
//   // body.done(): `rest` starts the next pipelined request; parser.Reset() before parsing it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace portway::http1 {

// Why a message was rejected. The comment gives the status ParseErrorStatus() returns and the
// name ParseErrorName() returns (sent in the x-portway-error response header).
//
// The statuses are those a server answers a downstream client with when the client's request
// is at fault. When parsing an upstream's response fails, the gateway answers 502 whatever the
// error is (the client did nothing wrong); only kBadStatusLine and kInvalidResponse already map
// to 502 because they can only come from a response.
enum class ParseError : uint8_t {
  kNone,                  // 0     "none"
  kBadRequestLine,        // 400 "bad_request_line": not `token SP target SP HTTP/d.d`, or more
                          //     than kMaxLeadingEmptyLines empty lines before it.
  kUriTooLong,            // 414 "uri_too_long": request line > Limits::max_request_line_bytes
                          //     (CRLF excluded); detected before its CRLF arrives.
  kHeadersTooLarge,       // 431 "headers_too_large": head > Limits::max_header_bytes; detected
                          //     before the terminating empty line arrives.
  kTooManyHeaders,        // 431 "too_many_headers": more than Limits::max_headers field lines.
  kBadVersion,            // 505 "unsupported_http_version": HTTP/d.d other than 1.0 and 1.1.
  kInvalidLineEnding,     // 400 "invalid_line_ending": bare LF, or CR not followed by LF, in
                          //     the head or trailers (RFC 9112 §2.2 MAY accept bare LF; we don't).
  kInvalidHeaderName,     // 400 "invalid_header_name": empty, non-tchar, no colon, or
                          //     whitespace between name and colon.
  kInvalidHeaderValue,    // 400 "invalid_header_value": NUL, DEL or a CTL other than HTAB.
  kObsFold,               // 400 "obsolete_line_folding": a field line starting with SP/HTAB
                          //     (including whitespace right after the start line).
  kMissingHost,           // 400 "missing_host": HTTP/1.1 request without Host.
  kDuplicateHost,         // 400 "duplicate_host": more than one Host field line.
  kInvalidHost,           // 400 "invalid_host": Host, or the authority of an absolute-form
                          //     target, that is not `reg-name / IPv4 / [IPv6]` with an optional
                          //     `:port` of 1-5 digits up to 65535; userinfo ("user@") is refused.
  kInvalidTarget,         // 400 "invalid_target": a request-target in none of the four forms
                          //     (origin, absolute with an http/https scheme, authority for
                          //     CONNECT, asterisk for OPTIONS).
  kInvalidContentLength,  // 400 "invalid_content_length": not 1*DIGIT, > 2^63, or more than one
                          //     Content-Length field line (even with equal values).
  kContentLengthWithTransferEncoding,  // 400 "content_length_and_transfer_encoding"
  kUnsupportedTransferEncoding,        // 501 "unsupported_transfer_encoding": anything but one
                                       //     Transfer-Encoding field line saying "chunked".
  kTransferEncodingInHttp10,           // 400 "transfer_encoding_in_http10": RFC 9112 §6.1 says the
                                       //     framing of such a message is faulty.
  kBadChunk,                           // 400 "invalid_chunk": bad chunk-size (non-hex, > 16 digits,
              //     whitespace), bad chunk-ext, chunk line > kMaxChunkLineBytes,
              //     or data not followed by exactly CRLF.
  kTrailersTooLarge,  // 431 "trailers_too_large": trailer section > max_header_bytes or more
                      //     than max_headers fields.
  kTruncatedBody,     // 400 "truncated_body": the peer closed before the body ended.
  kBadStatusLine,     // 502 "malformed_status_line": not `HTTP/d.d SP 3DIGIT [SP reason]`, or
                      //     status outside 100..599.
  kInvalidResponse,   // 502 "invalid_response": 1xx/204 response with Transfer-Encoding or a
                      //     non-zero Content-Length (either would desynchronize the connection).
};

// The snake_case name listed above; "none" for kNone.
const char* ParseErrorName(ParseError e);
// The status listed above; 0 for kNone.
int ParseErrorStatus(ParseError e);

struct Limits {
  uint32_t max_header_bytes = 61440;  // request/status line + header lines, CRLFs included
  uint32_t max_headers = 100;
  uint32_t max_request_line_bytes = 8192;  // CRLF excluded
};

// RFC 9112 §2.2: a server SHOULD ignore at least one empty line before a request line.
inline constexpr int kMaxLeadingEmptyLines = 4;
// Bounds a chunk-size line (size, extensions, CRLF): extensions are otherwise unbounded.
inline constexpr uint32_t kMaxChunkLineBytes = 4096;
// 16 hex digits fill a uint64_t exactly, so the size cannot overflow.
inline constexpr int kMaxChunkSizeDigits = 16;

enum class BodyKind : uint8_t {
  kNone,           // no body bytes (also "Content-Length: 0"): the next message starts right
                   // after the head
  kContentLength,  // exactly Head::content_length bytes, always > 0
  kChunked,        // chunked transfer coding, ends with the last chunk and trailers
  kUntilClose,     // response only: the body ends when the upstream closes
};

// Views into the caller's bytes. The value has leading/trailing SP/HTAB trimmed; the name keeps
// its case.
struct HeaderField {
  std::string_view name;
  std::string_view value;
};

struct Head {
  // Request only. `target` is kept as sent (origin-, absolute-, authority- or asterisk-form).
  // An absolute-form target's authority is validated like Host; which of the two wins is the
  // caller's choice (RFC 9112 §3.2.2: the target's).
  std::string_view method;
  std::string_view target;
  // Response only.
  int status = 0;
  std::string_view reason;
  // Both.
  int version_minor = 1;             // HTTP/1.<minor>, 0 or 1
  std::vector<HeaderField> headers;  // all field lines in order, Host/Content-Length included
  BodyKind body = BodyKind::kNone;
  uint64_t content_length = 0;  // the Content-Length value; frames the body when kContentLength
  // HTTP/1.1: true unless a Connection "close" token. HTTP/1.0: true only with a "keep-alive"
  // token and no "close". False for kUntilClose responses.
  bool keep_alive = true;
  bool expect_continue = false;  // HTTP/1.1 request with "Expect: 100-continue"
  bool has_upgrade = false;      // Connection "upgrade" token and an Upgrade field (HTTP/1.1)
  std::string_view host;         // request: the Host value ("" if absent or empty)
  size_t head_size = 0;          // bytes of the head, leading empty lines and final CRLF included
};

// The parser's own: a field line's parts, as offsets from its first byte. The name is
// [0, name_len), the OWS-trimmed value [value_begin, value_end).
struct FieldLine {
  size_t name_len = 0;
  size_t value_begin = 0;
  size_t value_end = 0;
};

// Parses a complete message head from contiguous bytes that start at the message's first byte.
//
// Call it again, with the same bytes plus whatever arrived since, while it returns kIncomplete:
// it remembers how far it scanned and validates each line once, so the total work is linear in
// the head size. The buffer may move between calls (offsets, not pointers, are kept); the views
// in `out` point into the `data` of the call that returned kDone. Lines are validated as soon as
// they are complete and limits are enforced before the head ends, so bad or oversized heads fail
// early. `out` is meaningful only after kDone (a kError may leave it partly written); its
// `headers` vector keeps its capacity, so reusing one Head per connection avoids allocations.
//
// A parser parses either requests or responses between Reset()s, not both.
class HeadParser {
 public:
  explicit HeadParser(const Limits& limits);

  enum class Result {
    kIncomplete,  // need more bytes; call again with a longer `data`
    kDone,        // `out` is filled; the body (if any) starts at data[out->head_size]
    kError,       // error() says why; the connection must not be reused
  };

  Result ParseRequest(std::string_view data, Head* out);
  // `request_method` is the method of the request this answers: responses to HEAD, 2xx responses
  // to CONNECT, and 1xx/204/304 responses have no body; otherwise Content-Length, chunked, or
  // read-until-close (which also clears keep_alive). A 1xx other than 101 is interim: Reset() and
  // parse the final response from the bytes after head_size.
  Result ParseResponse(std::string_view data, std::string_view request_method, Head* out);

  ParseError error() const { return error_; }
  // Before the next message on the connection. Keeps allocated capacity.
  void Reset();
  // Reusing a parser for another connection (a pool): its limits.
  void SetLimits(const Limits& limits) { limits_ = limits; }

 private:
  enum class Phase : uint8_t { kStartLine, kFields, kDone, kError };
  // Offsets rather than views, so the caller may grow (and move) its buffer between calls.
  struct Span {
    uint32_t offset = 0;
    uint32_t length = 0;
  };
  struct FieldSpan {
    Span name;
    Span value;
  };
  // The head fits in max_header_bytes (a uint32_t), so its offsets do too.
  [[gnu::always_inline]] void AddField(size_t line_start, const FieldLine& field) {
    const auto at = static_cast<uint32_t>(line_start);
    fields_.push_back(FieldSpan{Span{at, static_cast<uint32_t>(field.name_len)},
                                Span{at + static_cast<uint32_t>(field.value_begin),
                                     static_cast<uint32_t>(field.value_end - field.value_begin)}});
  }

  Result Parse(std::string_view data, bool is_request, std::string_view request_method, Head* out);
  ParseError CheckMethod(const char* base, size_t len);
  ParseError ParseRequestLine(std::string_view line, uint32_t line_offset);
  ParseError ParseStatusLine(std::string_view line, uint32_t line_offset);
  Result Finish(std::string_view data, bool is_request, std::string_view request_method, Head* out);
  Result EndHead(size_t next, std::string_view data, bool is_request,
                 std::string_view request_method, Head* out);
  Result Fail(ParseError error);

  Limits limits_;
  Phase phase_ = Phase::kStartLine;
  ParseError error_ = ParseError::kNone;
  int leading_empty_lines_ = 0;
  // How far the first line of a request was checked for a viable method while its LF had not
  // arrived: bytes that cannot start a request (a TLS ClientHello) fail at once, not at the
  // request-headers timeout.
  size_t method_checked_ = 0;
  size_t line_start_ = 0;  // first byte of the line not yet complete
  size_t scan_pos_ = 0;    // first byte not yet searched for LF
  size_t head_size_ = 0;
  Span method_;
  Span target_;
  Span reason_;
  int status_ = 0;
  int version_minor_ = 1;
  std::vector<FieldSpan> fields_;
};

// Incremental body framing decoder for Content-Length, chunked (with chunk extensions and
// trailers) and until-close bodies. Zero copy: it reports where the payload bytes are inside
// `in`; only trailer fields are copied (they may span reads).
class BodyDecoder {
 public:
  // The trailer section is bounded by limits.max_header_bytes and limits.max_headers.
  explicit BodyDecoder(const Limits& limits);

  // Starts a body. kNone (and kContentLength with 0, which Head never reports) is done at once.
  void Reset(BodyKind kind, uint64_t content_length);
  // Reusing a decoder for another connection (a pool): its limits.
  void SetLimits(const Limits& limits) { limits_ = limits; }

  struct Step {
    size_t consumed = 0;        // bytes of `in` consumed by this step (framing + payload)
    size_t payload_offset = 0;  // payload bytes are in.substr(payload_offset, payload_len)
    size_t payload_len = 0;
    bool done = false;  // the message body (and trailers) is complete
  };
  // Consumes as much as it can in one step, returning at most one contiguous payload span.
  // Callers loop until `in` is empty or done. Unless done or failed, a non-empty `in` always
  // has consumed > 0. On a framing error returns with error() set (consumed is then
  // meaningless); bytes after a done body are left unconsumed (they are the next message).
  Step Decode(std::string_view in);

  // The peer closed the connection. Returns true if that cleanly ends the body (kUntilClose, or
  // already done); false means the body was truncated and sets error() to kTruncatedBody.
  bool OnEof();

  ParseError error() const { return error_; }
  bool done() const { return state_ == State::kDone; }
  // Trailer fields of a chunked body, available once done() (owned strings, names
  // case-preserved, values OWS-trimmed). Not filtered: a forwarder must drop fields that may
  // not appear in trailers (RFC 9110 §6.5.1), e.g. Content-Length or Transfer-Encoding.
  const std::vector<std::pair<std::string, std::string>>& trailers() const { return trailers_; }
  uint64_t payload_bytes() const { return payload_bytes_; }  // total payload seen so far

 private:
  // The chunk-size line states come first and stay contiguous: InChunkLine() relies on it.
  enum class State : uint8_t {
    kChunkSizeStart,  // expecting the first hex digit of a chunk-size
    kChunkSize,
    kExtNameStart,  // after ';'
    kExtName,
    kExtValueStart,  // after '='
    kExtToken,
    kExtQuoted,
    kExtQuotedPair,  // after a backslash inside a quoted-string
    kExtAfterQuoted,
    kChunkSizeLf,  // after the CR ending a chunk-size line
    kChunkData,
    kChunkDataCr,
    kChunkDataLf,
    kTrailer,  // reading trailer field lines up to the empty line
    kContentLength,
    kUntilClose,
    kDone,
    kError,
  };

  Step DecodeChunked(std::string_view in);
  // Consumes at most one trailer line starting at in[pos]; returns the new position.
  size_t DecodeTrailerLine(std::string_view in, size_t pos);
  void Fail(ParseError error);

  Limits limits_;
  State state_ = State::kDone;
  ParseError error_ = ParseError::kNone;
  uint64_t remaining_ = 0;  // bytes left of the Content-Length body or of the current chunk
  uint64_t chunk_size_ = 0;
  int chunk_size_digits_ = 0;
  uint32_t chunk_line_bytes_ = 0;
  uint64_t payload_bytes_ = 0;
  size_t trailer_bytes_ = 0;
  std::string partial_line_;  // a trailer line split across Decode() calls
  std::vector<std::pair<std::string, std::string>> trailers_;
};

}  // namespace portway::http1
