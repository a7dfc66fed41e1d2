// libFuzzer target for the HTTP/1.1 parser: feeds arbitrary bytes as a stream of pipelined
// requests and, separately, as a stream of responses, decoding bodies too.
//
// Besides crashes and sanitizer reports it checks the properties the connection manager relies
// on, trapping when one breaks:
//   - feeding the same bytes in small reads (from a buffer that moves on every read) gives the
//     same result, error and head as feeding them at once;
//   - BodyDecoder makes progress, its payload spans lie inside what it consumed, and decoding
//     in small reads yields the same payload, trailers and end as decoding at once;
//   - all views lie inside the input.
//
// The first input byte picks the read size, the limits and the request method for responses.
//
//   clang++-14 -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -I. \
//       core/http/http1/parser.cc test/fuzz/http1_parser_fuzz.cc -o http1_parser_fuzz
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "core/http/http1/parser.h"

namespace portway::http1 {
namespace {

#define FUZZ_CHECK(cond)                                                            \
  do {                                                                              \
    if (!(cond)) {                                                                  \
      std::fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                 \
    }                                                                               \
  } while (0)

constexpr int kMaxMessages = 8;

bool Within(std::string_view inner, std::string_view outer) {
  return inner.empty() || (inner.data() >= outer.data() &&
                           inner.data() + inner.size() <= outer.data() + outer.size());
}

bool SameHead(const Head& a, const Head& b) {
  if (a.method != b.method || a.target != b.target || a.status != b.status ||
      a.reason != b.reason || a.version_minor != b.version_minor || a.body != b.body ||
      a.content_length != b.content_length || a.keep_alive != b.keep_alive ||
      a.expect_continue != b.expect_continue || a.has_upgrade != b.has_upgrade ||
      a.host != b.host || a.head_size != b.head_size || a.headers.size() != b.headers.size()) {
    return false;
  }
  for (size_t i = 0; i < a.headers.size(); ++i) {
    if (a.headers[i].name != b.headers[i].name || a.headers[i].value != b.headers[i].value) {
      return false;
    }
  }
  return true;
}

HeadParser::Result ParseHead(HeadParser& parser, bool is_request, std::string_view data,
                             std::string_view method, Head* head) {
  return is_request ? parser.ParseRequest(data, head) : parser.ParseResponse(data, method, head);
}

struct BodyResult {
  std::string payload;
  size_t consumed = 0;
  bool done = false;
  ParseError error = ParseError::kNone;
};

// Decodes a body offering at most `piece` new bytes per read.
BodyResult DecodeBody(const Head& head, std::string_view in, size_t piece, BodyDecoder* decoder) {
  decoder->Reset(head.body, head.content_length);
  BodyResult r;
  size_t available = 0;
  while (!decoder->done() && decoder->error() == ParseError::kNone) {
    if (r.consumed == available) {
      if (available == in.size()) break;
      available = piece >= in.size() - available ? in.size() : available + piece;
    }
    const std::string_view window = in.substr(r.consumed, available - r.consumed);
    const BodyDecoder::Step step = decoder->Decode(window);
    if (decoder->error() != ParseError::kNone) break;
    FUZZ_CHECK(step.consumed > 0 || step.done);
    FUZZ_CHECK(step.consumed <= window.size());
    FUZZ_CHECK(step.payload_len <= step.consumed);
    FUZZ_CHECK(step.payload_offset + step.payload_len <= step.consumed);
    FUZZ_CHECK(step.done == decoder->done());
    r.payload.append(window.substr(step.payload_offset, step.payload_len));
    r.consumed += step.consumed;
  }
  FUZZ_CHECK(decoder->payload_bytes() == r.payload.size() || decoder->error() != ParseError::kNone);
  r.done = decoder->done();
  r.error = decoder->error();
  return r;
}

void FuzzStream(std::string_view input, bool is_request, std::string_view method,
                const Limits& limits, size_t piece) {
  HeadParser one_shot(limits);
  HeadParser incremental(limits);
  BodyDecoder body_one_shot(limits);
  BodyDecoder body_incremental(limits);
  std::string_view rest = input;
  for (int message = 0; message < kMaxMessages && !rest.empty(); ++message) {
    one_shot.Reset();
    incremental.Reset();
    Head head;
    const HeadParser::Result result = ParseHead(one_shot, is_request, rest, method, &head);
    FUZZ_CHECK((result == HeadParser::Result::kError) == (one_shot.error() != ParseError::kNone));
    FUZZ_CHECK(ParseErrorName(one_shot.error()) != nullptr);
    FUZZ_CHECK(ParseErrorStatus(one_shot.error()) >= 0);

    // The same bytes in reads of `piece` bytes, from a fresh allocation each time.
    Head incremental_head;
    HeadParser::Result incremental_result = HeadParser::Result::kIncomplete;
    for (size_t len = std::min(piece, rest.size());; len = std::min(len + piece, rest.size())) {
      const std::string copy(rest.substr(0, len));
      incremental_result = ParseHead(incremental, is_request, copy, method, &incremental_head);
      if (incremental_result != HeadParser::Result::kIncomplete || len == rest.size()) break;
    }
    FUZZ_CHECK(incremental_result == result);
    FUZZ_CHECK(incremental.error() == one_shot.error());
    if (result != HeadParser::Result::kDone) return;
    // Re-point the views at `rest` (copy is gone) and compare.
    FUZZ_CHECK(ParseHead(incremental, is_request, rest, method, &incremental_head) == result);
    FUZZ_CHECK(SameHead(head, incremental_head));

    FUZZ_CHECK(head.head_size > 0 && head.head_size <= rest.size());
    FUZZ_CHECK(head.head_size <= limits.max_header_bytes);
    FUZZ_CHECK(head.headers.size() <= limits.max_headers);
    FUZZ_CHECK(head.version_minor == 0 || head.version_minor == 1);
    FUZZ_CHECK(head.body != BodyKind::kContentLength || head.content_length > 0);
    const std::string_view head_bytes = rest.substr(0, head.head_size);
    FUZZ_CHECK(Within(head.method, head_bytes) && Within(head.target, head_bytes));
    FUZZ_CHECK(Within(head.reason, head_bytes) && Within(head.host, head_bytes));
    for (const HeaderField& field : head.headers) {
      FUZZ_CHECK(!field.name.empty() && Within(field.name, head_bytes));
      FUZZ_CHECK(Within(field.value, head_bytes));
    }
    if (is_request) {
      FUZZ_CHECK(!head.method.empty() && !head.target.empty());
      FUZZ_CHECK(head.body != BodyKind::kUntilClose);
    } else {
      FUZZ_CHECK(head.status >= 100 && head.status <= 599);
      FUZZ_CHECK(head.body != BodyKind::kUntilClose || !head.keep_alive);
    }
    rest.remove_prefix(head.head_size);

    const BodyResult whole = DecodeBody(head, rest, rest.size() + 1, &body_one_shot);
    const BodyResult pieces = DecodeBody(head, rest, piece, &body_incremental);
    FUZZ_CHECK(whole.error == pieces.error);
    FUZZ_CHECK(whole.done == pieces.done);
    if (whole.error != ParseError::kNone) return;
    FUZZ_CHECK(whole.payload == pieces.payload);
    FUZZ_CHECK(whole.consumed == pieces.consumed);
    FUZZ_CHECK(body_one_shot.trailers() == body_incremental.trailers());
    if (head.body == BodyKind::kContentLength && whole.done) {
      FUZZ_CHECK(whole.payload.size() == head.content_length);
    }
    if (!whole.done) {
      // Ran out of input: the peer "closes".
      const bool clean = body_one_shot.OnEof();
      FUZZ_CHECK(clean == (head.body == BodyKind::kUntilClose));
      FUZZ_CHECK(clean || body_one_shot.error() == ParseError::kTruncatedBody);
      return;
    }
    FUZZ_CHECK(body_one_shot.OnEof());
    rest.remove_prefix(whole.consumed);
  }
}

}  // namespace
}  // namespace portway::http1

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using portway::http1::Limits;
  if (size == 0) return 0;
  const uint8_t control = data[0];
  const std::string_view input(reinterpret_cast<const char*>(data + 1), size - 1);
  Limits limits;
  if (control & 1) {
    // Small limits, so that inputs of fuzzer size reach the limit paths.
    limits.max_header_bytes = 200;
    limits.max_headers = 4;
    limits.max_request_line_bytes = 40;
  }
  static constexpr std::string_view kMethods[] = {"GET", "HEAD", "CONNECT", "POST"};
  const std::string_view method = kMethods[(control >> 1) & 3];
  const size_t piece = 1 + (control >> 3);  // 1..32 bytes per read
  portway::http1::FuzzStream(input, /*is_request=*/true, {}, limits, piece);
  portway::http1::FuzzStream(input, /*is_request=*/false, method, limits, piece);
  return 0;
}
