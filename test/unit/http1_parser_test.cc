// Unit tests for the strict HTTP/1.1 parser. Most rejection tests are request-smuggling vectors:
// each asserts the exact error, because the error decides the status the gateway answers with.
#include "core/http/http1/parser.h"

#include <string>
#include <string_view>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace portway::http1 {
namespace {

using Result = HeadParser::Result;
using ::testing::ElementsAre;
using ::testing::Pair;
using namespace std::string_view_literals;

struct ParsedHead {
  Result result = Result::kIncomplete;
  ParseError error = ParseError::kNone;
  Head head;
};

ParsedHead ParseRequest(std::string_view data, const Limits& limits = Limits()) {
  HeadParser parser(limits);
  ParsedHead parsed;
  parsed.result = parser.ParseRequest(data, &parsed.head);
  parsed.error = parser.error();
  return parsed;
}

ParsedHead ParseResponse(std::string_view data, std::string_view method = "GET",
                         const Limits& limits = Limits()) {
  HeadParser parser(limits);
  ParsedHead parsed;
  parsed.result = parser.ParseResponse(data, method, &parsed.head);
  parsed.error = parser.error();
  return parsed;
}

ParseError RequestError(std::string_view data, const Limits& limits = Limits()) {
  ParsedHead parsed = ParseRequest(data, limits);
  EXPECT_EQ(parsed.result == Result::kError, parsed.error != ParseError::kNone);
  return parsed.error;
}

ParseError ResponseError(std::string_view data, std::string_view method = "GET") {
  ParsedHead parsed = ParseResponse(data, method);
  EXPECT_EQ(parsed.result == Result::kError, parsed.error != ParseError::kNone);
  return parsed.error;
}

// Feeds data one more byte per call, each time from a freshly allocated copy so that the buffer
// moves between calls as it would when a connection's read buffer grows.
ParsedHead ParseRequestByteByByte(std::string_view data, const Limits& limits = Limits()) {
  HeadParser parser(limits);
  ParsedHead parsed;
  for (size_t i = 1; i <= data.size(); ++i) {
    const std::string buffer(data.substr(0, i));
    parsed.result = parser.ParseRequest(buffer, &parsed.head);
    if (parsed.result != Result::kIncomplete) {
      // Point the views at the caller's stable bytes, like a caller keeping its buffer would.
      if (parsed.result == Result::kDone) parser.ParseRequest(data.substr(0, i), &parsed.head);
      break;
    }
  }
  parsed.error = parser.error();
  return parsed;
}

std::string Headers(const Head& head) {
  std::string s;
  for (const HeaderField& f : head.headers) {
    s.append(f.name).append("=").append(f.value).append("|");
  }
  return s;
}

void ExpectSameHead(const Head& a, const Head& b) {
  EXPECT_EQ(a.method, b.method);
  EXPECT_EQ(a.target, b.target);
  EXPECT_EQ(a.status, b.status);
  EXPECT_EQ(a.reason, b.reason);
  EXPECT_EQ(a.version_minor, b.version_minor);
  EXPECT_EQ(Headers(a), Headers(b));
  EXPECT_EQ(a.body, b.body);
  EXPECT_EQ(a.content_length, b.content_length);
  EXPECT_EQ(a.keep_alive, b.keep_alive);
  EXPECT_EQ(a.expect_continue, b.expect_continue);
  EXPECT_EQ(a.has_upgrade, b.has_upgrade);
  EXPECT_EQ(a.host, b.host);
  EXPECT_EQ(a.head_size, b.head_size);
}

struct DecodedBody {
  std::string payload;
  size_t consumed = 0;
  bool done = false;
  ParseError error = ParseError::kNone;
  std::vector<std::pair<std::string, std::string>> trailers;
};

// Decodes `in` handing the decoder at most `piece` new bytes per read, the way bytes arrive from
// a socket; unconsumed bytes of a read are offered again together with the next read's.
DecodedBody DecodeBody(BodyKind kind, uint64_t content_length, std::string_view in,
                       size_t piece = std::string_view::npos, const Limits& limits = Limits()) {
  BodyDecoder decoder(limits);
  decoder.Reset(kind, content_length);
  DecodedBody out;
  size_t available = 0;
  while (!decoder.done() && decoder.error() == ParseError::kNone) {
    if (out.consumed == available) {
      if (available == in.size()) break;
      available = piece > in.size() - available ? in.size() : available + piece;
    }
    const std::string_view window = in.substr(out.consumed, available - out.consumed);
    const BodyDecoder::Step step = decoder.Decode(window);
    if (decoder.error() != ParseError::kNone) break;
    EXPECT_TRUE(step.consumed > 0 || step.done);
    EXPECT_LE(step.payload_offset + step.payload_len, step.consumed);
    out.payload.append(window.substr(step.payload_offset, step.payload_len));
    out.consumed += step.consumed;
    EXPECT_EQ(step.done, decoder.done());
  }
  out.done = decoder.done();
  out.error = decoder.error();
  out.trailers = decoder.trailers();
  EXPECT_EQ(decoder.payload_bytes(), out.payload.size());
  return out;
}

ParseError ChunkedError(std::string_view in) { return DecodeBody(BodyKind::kChunked, 0, in).error; }

// ---------------------------------------------------------------------------------------------
// Request line

TEST(Http1RequestLineTest, ParsesSimpleGet) {
  constexpr std::string_view kRequest = "GET /index.html?q=1 HTTP/1.1\r\nHost: example.com\r\n\r\n";
  ParsedHead p = ParseRequest(kRequest);
  ASSERT_EQ(p.result, Result::kDone);
  EXPECT_EQ(p.head.method, "GET");
  EXPECT_EQ(p.head.target, "/index.html?q=1");
  EXPECT_EQ(p.head.version_minor, 1);
  EXPECT_EQ(p.head.host, "example.com");
  EXPECT_EQ(p.head.body, BodyKind::kNone);
  EXPECT_TRUE(p.head.keep_alive);
  EXPECT_FALSE(p.head.expect_continue);
  EXPECT_FALSE(p.head.has_upgrade);
  EXPECT_EQ(p.head.head_size, kRequest.size());
  EXPECT_EQ(Headers(p.head), "Host=example.com|");
}

TEST(Http1RequestLineTest, ReportsIncompleteUntilEmptyLine) {
  EXPECT_EQ(ParseRequest("GET / HTTP/1.1\r\nHost: a\r\n").result, Result::kIncomplete);
  EXPECT_EQ(ParseRequest("GET / HTTP/1.1\r\nHost: a\r\n\r").result, Result::kIncomplete);
  EXPECT_EQ(ParseRequest("").result, Result::kIncomplete);
}

TEST(Http1RequestLineTest, IgnoresLeadingEmptyLinesAndCountsThem) {
  constexpr std::string_view kRequest = "\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n";
  ParsedHead p = ParseRequest(kRequest);
  ASSERT_EQ(p.result, Result::kDone);
  EXPECT_EQ(p.head.method, "GET");
  EXPECT_EQ(p.head.head_size, kRequest.size());
}

TEST(Http1RequestLineTest, RejectsTooManyLeadingEmptyLines) {
  std::string request;
  for (int i = 0; i <= kMaxLeadingEmptyLines; ++i) request += "\r\n";
  request += "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
  EXPECT_EQ(RequestError(request), ParseError::kBadRequestLine);
}

TEST(Http1RequestLineTest, RejectsLeadingBareLineFeed) {
  EXPECT_EQ(RequestError("\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"), ParseError::kInvalidLineEnding);
}

TEST(Http1RequestLineTest, RejectsAnythingButSingleSpaces) {
  EXPECT_EQ(RequestError("GET  / HTTP/1.1\r\nHost: a\r\n\r\n"), ParseError::kBadRequestLine);
  EXPECT_EQ(RequestError("GET /  HTTP/1.1\r\nHost: a\r\n\r\n"), ParseError::kBadRequestLine);
  EXPECT_EQ(RequestError("GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n"), ParseError::kBadRequestLine);
  EXPECT_EQ(RequestError(" GET / HTTP/1.1\r\nHost: a\r\n\r\n"), ParseError::kBadRequestLine);
  EXPECT_EQ(RequestError("GET / HTTP/1.1 \r\nHost: a\r\n\r\n"), ParseError::kBadRequestLine);
}

TEST(Http1RequestLineTest, RejectsMethodThatIsNotAToken) {
  EXPECT_EQ(RequestError("G(T / HTTP/1.1\r\nHost: a\r\n\r\n"), ParseError::kBadRequestLine);
  EXPECT_EQ(RequestError("GE\"T / HTTP/1.1\r\nHost: a\r\n\r\n"), ParseError::kBadRequestLine);
}

TEST(Http1RequestLineTest, AcceptsExtensionMethodCaseSensitively) {
  ParsedHead p = ParseRequest("get /x HTTP/1.1\r\nHost: a\r\n\r\n");
  ASSERT_EQ(p.result, Result::kDone);
  EXPECT_EQ(p.head.method, "get");
}

TEST(Http1RequestLineTest, RejectsControlSpaceDelAndNonAsciiInTarget) {
  for (char c : {'\x01', '\x1f', '\x7f', '\x80', '\xff'}) {
    std::string request = "GET /a";
    request += c;
    request += "b HTTP/1.1\r\nHost: a\r\n\r\n";
    EXPECT_EQ(RequestError(request), ParseError::kBadRequestLine) << static_cast<int>(c);
  }
  EXPECT_EQ(RequestError("GET /a\0b HTTP/1.1\r\nHost: a\r\n\r\n"sv), ParseError::kBadRequestLine);
}

TEST(Http1RequestLineTest, RejectsEmptyTargetAndMissingVersion) {
  EXPECT_EQ(RequestError("GET  HTTP/1.1\r\nHost: a\r\n\r\n"), ParseError::kBadRequestLine);
  EXPECT_EQ(RequestError("GET /\r\n\r\n"), ParseError::kBadRequestLine);  // HTTP/0.9
  EXPECT_EQ(RequestError("GET\r\n\r\n"), ParseError::kBadRequestLine);
}

TEST(Http1RequestLineTest, RejectsUnsupportedVersionWith505) {
  EXPECT_EQ(RequestError("GET / HTTP/2.0\r\nHost: a\r\n\r\n"), ParseError::kBadVersion);
  EXPECT_EQ(RequestError("GET / HTTP/1.2\r\nHost: a\r\n\r\n"), ParseError::kBadVersion);
  EXPECT_EQ(RequestError("GET / HTTP/0.9\r\nHost: a\r\n\r\n"), ParseError::kBadVersion);
  EXPECT_EQ(ParseErrorStatus(ParseError::kBadVersion), 505);
}

TEST(Http1RequestLineTest, RejectsMalformedVersionWith400) {
  for (std::string_view version :
       {"http/1.1", "HTTP/1.1x", "HTTP/11", "HTTP/1", "HTTP/a.b", "HTTP 1.1", "HTTP/1.10"}) {
    std::string request = "GET / " + std::string(version) + "\r\nHost: a\r\n\r\n";
    EXPECT_EQ(RequestError(request), ParseError::kBadRequestLine) << version;
  }
}

TEST(Http1RequestLineTest, AcceptsAbsoluteFormTarget) {
  ParsedHead p =
      ParseRequest("GET http://example.com:8080/p?q HTTP/1.1\r\nHost: example.com:8080\r\n\r\n");
  ASSERT_EQ(p.result, Result::kDone);
  EXPECT_EQ(p.head.target, "http://example.com:8080/p?q");
  EXPECT_EQ(p.head.host, "example.com:8080");
}

TEST(Http1RequestLineTest, AcceptsAuthorityAndAsteriskForms) {
  ParsedHead connect =
      ParseRequest("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com\r\n\r\n");
  ASSERT_EQ(connect.result, Result::kDone);
  EXPECT_EQ(connect.head.target, "example.com:443");
  ParsedHead options = ParseRequest("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n");
  ASSERT_EQ(options.result, Result::kDone);
  EXPECT_EQ(options.head.target, "*");
}

TEST(Http1RequestLineTest, RejectsAbsoluteFormWithUserinfoBadPortOrOtherScheme) {
  const auto absolute = [](std::string_view target) {
    return RequestError("GET " + std::string(target) + " HTTP/1.1\r\nHost: a\r\n\r\n");
  };
  EXPECT_EQ(absolute("http://user:pw@host/"), ParseError::kInvalidHost);
  EXPECT_EQ(absolute("http://@host/"), ParseError::kInvalidHost);
  EXPECT_EQ(absolute("http://host:99999/"), ParseError::kInvalidHost);
  EXPECT_EQ(absolute("http://host:65536/"), ParseError::kInvalidHost);
  EXPECT_EQ(absolute("http://host:abc/"), ParseError::kInvalidHost);
  EXPECT_EQ(absolute("http://host:/"), ParseError::kInvalidHost);
  EXPECT_EQ(absolute("http:///path"), ParseError::kInvalidHost);
  EXPECT_EQ(absolute("http://[::1/"), ParseError::kInvalidHost);
  EXPECT_EQ(absolute("ftp://host/"), ParseError::kInvalidTarget);
  EXPECT_EQ(absolute("file:///etc/passwd"), ParseError::kInvalidTarget);
  EXPECT_EQ(absolute("http:/host/"), ParseError::kInvalidTarget);
  EXPECT_EQ(absolute("index.html"), ParseError::kInvalidTarget);
  EXPECT_EQ(absolute("*"), ParseError::kInvalidTarget);  // asterisk-form is for OPTIONS only
  EXPECT_EQ(ParseErrorStatus(ParseError::kInvalidTarget), 400);
  EXPECT_STREQ(ParseErrorName(ParseError::kInvalidTarget), "invalid_target");
}

TEST(Http1RequestLineTest, AcceptsAbsoluteFormAuthoritiesHostAccepts) {
  for (std::string_view target : {"http://h/", "HTTPS://h:443/x", "http://h:65535?q",
                                  "http://[::1]:8080/", "http://10.0.0.1/", "http://h"}) {
    ParsedHead p = ParseRequest("GET " + std::string(target) + " HTTP/1.1\r\nHost: h\r\n\r\n");
    EXPECT_EQ(p.result, Result::kDone) << target << " " << ParseErrorName(p.error);
  }
}

TEST(Http1RequestLineTest, ValidatesHostPortLikeAnAuthority) {
  for (std::string_view host : {"h:99999", "h:abc", "h:", "user@h", "h:1:2", "[::1"}) {
    EXPECT_EQ(RequestError("GET / HTTP/1.1\r\nHost: " + std::string(host) + "\r\n\r\n"),
              ParseError::kInvalidHost)
        << host;
  }
  for (std::string_view host : {"h:1", "h:65535", "[::1]:80", "[::1]", "127.0.0.1:8080"}) {
    EXPECT_EQ(ParseRequest("GET / HTTP/1.1\r\nHost: " + std::string(host) + "\r\n\r\n").result,
              Result::kDone)
        << host;
  }
  // RFC 9112 3.2: an empty Host is allowed when the target has no authority.
  EXPECT_EQ(ParseRequest("GET / HTTP/1.1\r\nHost:\r\n\r\n").result, Result::kDone);
}

TEST(Http1RequestLineTest, RejectsBytesThatCannotStartARequestBeforeTheLineEnds) {
  // A TLS ClientHello on a plaintext port: record type 0x16, version 3.1.
  HeadParser parser{Limits()};
  Head head;
  EXPECT_EQ(parser.ParseRequest("\x16\x03\x01\x02\x00\x01"sv, &head), Result::kError);
  EXPECT_EQ(parser.error(), ParseError::kBadRequestLine);
  // A method that is still arriving is not judged early...
  HeadParser partial{Limits()};
  EXPECT_EQ(partial.ParseRequest("GE", &head), Result::kIncomplete);
  EXPECT_EQ(partial.ParseRequest("GET /some/pa", &head), Result::kIncomplete);
  // ...and a bad byte in it fails at once.
  EXPECT_EQ(partial.ParseRequest("GET /some/path", &head), Result::kIncomplete);
  HeadParser bad{Limits()};
  EXPECT_EQ(bad.ParseRequest("GE(", &head), Result::kError);
  HeadParser leading_space{Limits()};
  EXPECT_EQ(leading_space.ParseRequest(" ", &head), Result::kError);
}

// ---------------------------------------------------------------------------------------------
// Line endings

TEST(Http1LineEndingTest, RejectsBareLineFeed) {
  EXPECT_EQ(RequestError("GET / HTTP/1.1\nHost: a\r\n\r\n"), ParseError::kInvalidLineEnding);
  EXPECT_EQ(RequestError("GET / HTTP/1.1\r\nHost: a\n\r\n"), ParseError::kInvalidLineEnding);
  EXPECT_EQ(RequestError("GET / HTTP/1.1\r\nHost: a\r\n\n"), ParseError::kInvalidLineEnding);
  EXPECT_EQ(RequestError("GET / HTTP/1.1\r\nHost: a\r\nX: 1\nY: 2\r\n\r\n"),
            ParseError::kInvalidLineEnding);
}

TEST(Http1LineEndingTest, RejectsBareCarriageReturn) {
  EXPECT_EQ(RequestError("GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n"),
            ParseError::kInvalidLineEnding);
  EXPECT_EQ(RequestError("GET / HTTP/1.1\r\nHost: a\r\nX: a\r\r\n\r\n"),
            ParseError::kInvalidLineEnding);
  EXPECT_EQ(RequestError("GET /\r HTTP/1.1\r\nHost: a\r\n\r\n"), ParseError::kInvalidLineEnding);
  EXPECT_EQ(RequestError("GET / HTTP/1.1\r\nX\r: a\r\nHost: a\r\n\r\n"),
            ParseError::kInvalidLineEnding);
  EXPECT_EQ(RequestError("GET / HTTP/1.1\r\nHost: a\r\n\r\r\n"), ParseError::kInvalidLineEnding);
}

// ---------------------------------------------------------------------------------------------
// Header fields

TEST(Http1HeaderTest, RejectsWhitespaceBeforeColon) {
  EXPECT_EQ(RequestError("GET / HTTP/1.1\r\nHost : a\r\n\r\n"), ParseError::kInvalidHeaderName);
  EXPECT_EQ(RequestError("GET / HTTP/1.1\r\nHost: a\r\nContent-Length\t: 5\r\n\r\n"),
            ParseError::kInvalidHeaderName);
}

TEST(Http1HeaderTest, RejectsInvalidHeaderNameChars) {
  for (std::string_view name :
       {"Fo@o", "Fo\"o", "Fo(o", "[Foo]", "Fo/o", "Fo\x7fo", "Fo\xc3\xa9o", "Fo{o", "Fo o"}) {
    std::string request = "GET / HTTP/1.1\r\nHost: a\r\n" + std::string(name) + ": 1\r\n\r\n";
    EXPECT_EQ(RequestError(request), ParseError::kInvalidHeaderName) << name;
  }
}

// Every byte value at every position of a 17-byte name is accepted exactly
// when it is a tchar, and the name comes out whole.
TEST(Http1HeaderTest, LongNamesAcceptExactlyTheTchars) {
  const std::string_view tchars = "!#$%&'*+-.^_`|~";
  for (int c = 0; c < 256; ++c) {
    if (c == '\r' || c == '\n' || c == ':') continue;  // line structure, not name bytes
    const bool alnum = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    const bool tchar = alnum || tchars.find(static_cast<char>(c)) != std::string_view::npos;
    for (size_t at = 0; at < 17; ++at) {
      std::string name = "X-Long-Name-Abc-9";
      name[at] = static_cast<char>(c);
      const std::string request = "GET / HTTP/1.1\r\nHost: a\r\n" + name + ": 1\r\n\r\n";
      const ParsedHead parsed = ParseRequest(request);
      if (tchar) {
        ASSERT_EQ(parsed.result, Result::kDone) << "byte " << c << " at " << at;
        ASSERT_EQ(parsed.head.headers.size(), 2u);
        EXPECT_EQ(parsed.head.headers[1].name, name);
      } else {
        EXPECT_EQ(parsed.result, Result::kError) << "byte " << c << " at " << at;
        // (Whitespace first on the line is obs-fold, a different error.)
        if (at > 0 || (c != ' ' && c != '\t')) {
          EXPECT_EQ(parsed.error, ParseError::kInvalidHeaderName) << "byte " << c << " at " << at;
        }
      }
    }
  }
}

TEST(Http1HeaderTest, RejectsEmptyNameAndLineWithoutColon) {
  EXPECT_EQ(RequestError("GET / HTTP/1.1\r\nHost: a\r\n: v\r\n\r\n"),
            ParseError::kInvalidHeaderName);
  EXPECT_EQ(RequestError("GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n"),
            ParseError::kInvalidHeaderName);
}

TEST(Http1HeaderTest, RejectsObsFold) {
  EXPECT_EQ(RequestError("GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n 2\r\n\r\n"), ParseError::kObsFold);
  EXPECT_EQ(RequestError("GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n\t2\r\n\r\n"), ParseError::kObsFold);
}

TEST(Http1HeaderTest, RejectsWhitespaceBetweenStartLineAndFirstField) {
  EXPECT_EQ(RequestError("GET / HTTP/1.1\r\n Host: a\r\n\r\n"), ParseError::kObsFold);
}

TEST(Http1HeaderTest, RejectsNulInHeaderValue) {
  EXPECT_EQ(RequestError("GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n"sv),
            ParseError::kInvalidHeaderValue);
}

TEST(Http1HeaderTest, RejectsControlCharsAndDelInHeaderValue) {
  for (char c : {'\x01', '\x08', '\x0b', '\x0c', '\x1b', '\x1f', '\x7f'}) {
    std::string request = "GET / HTTP/1.1\r\nHost: a\r\nX: a";
    request += c;
    request += "b\r\n\r\n";
    EXPECT_EQ(RequestError(request), ParseError::kInvalidHeaderValue) << static_cast<int>(c);
  }
}

// Values are validated a word at a time; a bad byte must be found wherever it sits.
TEST(Http1HeaderTest, RejectsControlCharsAtEveryPositionOfLongValues) {
  for (char bad : {'\0', '\x01', '\x1f', '\x7f', '\r'}) {
    for (size_t length : {1, 7, 8, 9, 15, 16, 17, 23}) {
      for (size_t pos = 0; pos < length; ++pos) {
        std::string value(length, 'v');
        value[pos] = bad;
        // Keep the bad byte inside the trimmed value.
        value = "a" + value + "z";
        const std::string request = "GET / HTTP/1.1\r\nHost: a\r\nX: " + value + "\r\n\r\n";
        const ParseError expected =
            bad == '\r' ? ParseError::kInvalidLineEnding : ParseError::kInvalidHeaderValue;
        EXPECT_EQ(RequestError(request), expected)
            << "byte " << static_cast<int>(bad) << " length " << length << " pos " << pos;
      }
    }
  }
}

TEST(Http1HeaderTest, AcceptsLongValuesOfEveryAllowedByte) {
  std::string value = "\t";
  for (int c = 0x20; c <= 0xff; ++c) {
    if (c != 0x7f) value += static_cast<char>(c);
  }
  value += "!";
  const std::string request = "GET / HTTP/1.1\r\nHost: a\r\nX: " + value + "\r\n\r\n";
  ParsedHead p = ParseRequest(request);
  ASSERT_EQ(p.result, Result::kDone);
  EXPECT_EQ(p.head.headers[1].value, value.substr(2));  // the leading HTAB and SP are OWS
}

TEST(Http1HeaderTest, AcceptsHtabAndObsTextInValue) {
  ParsedHead p = ParseRequest("GET / HTTP/1.1\r\nHost: a\r\nX: caf\xc3\xa9\tbar\r\n\r\n");
  ASSERT_EQ(p.result, Result::kDone);
  EXPECT_EQ(p.head.headers[1].value, "caf\xc3\xa9\tbar");
}

TEST(Http1HeaderTest, TrimsOptionalWhitespaceAroundValue) {
  ParsedHead p =
      ParseRequest("GET / HTTP/1.1\r\nHost: a\r\nX: \t a  b \t \r\nEmpty:\r\nE2: \r\n\r\n");
  ASSERT_EQ(p.result, Result::kDone);
  EXPECT_EQ(Headers(p.head), "Host=a|X=a  b|Empty=|E2=|");
}

TEST(Http1HeaderTest, PreservesOrderCaseAndDuplicates) {
  ParsedHead p = ParseRequest(
      "GET / HTTP/1.1\r\nhOsT: a\r\nX-Foo: 1\r\nCONNECTION: keep-alive\r\nx-foo: 2\r\n\r\n");
  ASSERT_EQ(p.result, Result::kDone);
  EXPECT_EQ(Headers(p.head), "hOsT=a|X-Foo=1|CONNECTION=keep-alive|x-foo=2|");
  EXPECT_EQ(p.head.host, "a");
}

// ---------------------------------------------------------------------------------------------
// Content-Length

TEST(Http1ContentLengthTest, ParsesContentLengthBody) {
  ParsedHead p = ParseRequest("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 42\r\n\r\n");
  ASSERT_EQ(p.result, Result::kDone);
  EXPECT_EQ(p.head.body, BodyKind::kContentLength);
  EXPECT_EQ(p.head.content_length, 42u);
}

TEST(Http1ContentLengthTest, ZeroContentLengthMeansNoBody) {
  ParsedHead p = ParseRequest("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n");
  ASSERT_EQ(p.result, Result::kDone);
  EXPECT_EQ(p.head.body, BodyKind::kNone);
  EXPECT_EQ(p.head.content_length, 0u);
  EXPECT_EQ(Headers(p.head), "Host=a|Content-Length=0|");
  EXPECT_TRUE(DecodeBody(BodyKind::kContentLength, 0, "").done);
}

TEST(Http1ContentLengthTest, RejectsDuplicateContentLengthWithEqualValues) {
  EXPECT_EQ(
      RequestError("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n"),
      ParseError::kInvalidContentLength);
}

TEST(Http1ContentLengthTest, RejectsDuplicateContentLengthWithDifferentValues) {
  EXPECT_EQ(
      RequestError("POST / HTTP/1.1\r\nHost: a\r\ncontent-length: 5\r\nContent-Length: 6\r\n\r\n"),
      ParseError::kInvalidContentLength);
}

TEST(Http1ContentLengthTest, RejectsContentLengthList) {
  EXPECT_EQ(RequestError("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n"),
            ParseError::kInvalidContentLength);
  EXPECT_EQ(RequestError("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5,6\r\n\r\n"),
            ParseError::kInvalidContentLength);
}

TEST(Http1ContentLengthTest, RejectsSignSpaceHexAndEmptyValues) {
  for (std::string_view value : {"+5", "-5", "1 2", "0x10", "1e3", "5.0", "", "abc", "5;"}) {
    std::string request =
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: " + std::string(value) + "\r\n\r\n";
    EXPECT_EQ(RequestError(request), ParseError::kInvalidContentLength) << value;
  }
}

TEST(Http1ContentLengthTest, AcceptsSurroundingWhitespaceAndLeadingZeros) {
  ParsedHead p = ParseRequest("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \t007 \r\n\r\n");
  ASSERT_EQ(p.result, Result::kDone);
  EXPECT_EQ(p.head.content_length, 7u);
}

TEST(Http1ContentLengthTest, AcceptsTwoToTheSixtyThirdAndRejectsOverflow) {
  ParsedHead p =
      ParseRequest("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9223372036854775808\r\n\r\n");
  ASSERT_EQ(p.result, Result::kDone);
  EXPECT_EQ(p.head.content_length, uint64_t{1} << 63);
  EXPECT_EQ(
      RequestError("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9223372036854775809\r\n\r\n"),
      ParseError::kInvalidContentLength);
  EXPECT_EQ(
      RequestError("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551616\r\n\r\n"),
      ParseError::kInvalidContentLength);
  EXPECT_EQ(
      RequestError("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999\r\n\r\n"),
      ParseError::kInvalidContentLength);
}

// ---------------------------------------------------------------------------------------------
// Transfer-Encoding

TEST(Http1TransferEncodingTest, ParsesChunkedCaseInsensitively) {
  for (std::string_view value : {"chunked", "Chunked", "CHUNKED", " \tchunked \t"}) {
    ParsedHead p = ParseRequest(
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:" + std::string(value) + "\r\n\r\n");
    ASSERT_EQ(p.result, Result::kDone) << value;
    EXPECT_EQ(p.head.body, BodyKind::kChunked);
  }
}

TEST(Http1TransferEncodingTest, RejectsContentLengthWithTransferEncoding) {
  EXPECT_EQ(RequestError("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
                         "Transfer-Encoding: chunked\r\n\r\n"),
            ParseError::kContentLengthWithTransferEncoding);
}

TEST(Http1TransferEncodingTest, RejectsTransferEncodingWithContentLength) {
  EXPECT_EQ(RequestError("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                         "Content-Length: 5\r\n\r\n"),
            ParseError::kContentLengthWithTransferEncoding);
  EXPECT_EQ(ParseErrorStatus(ParseError::kContentLengthWithTransferEncoding), 400);
}

TEST(Http1TransferEncodingTest, RejectsChunkedWithTrailingJunk) {
  for (std::string_view value :
       {"chunked, ", "chunked;q=1", "chunked x", "chunked\t,", "chunkedx", "chunked,"}) {
    std::string request =
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: " + std::string(value) + "\r\n\r\n";
    EXPECT_EQ(RequestError(request), ParseError::kUnsupportedTransferEncoding) << value;
  }
}

TEST(Http1TransferEncodingTest, RejectsLookalikeCodings) {
  for (std::string_view value : {"xchunked", "chunk", "\"chunked\"", "ch unked", "identity", ""}) {
    std::string request =
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: " + std::string(value) + "\r\n\r\n";
    EXPECT_EQ(RequestError(request), ParseError::kUnsupportedTransferEncoding) << value;
  }
}

TEST(Http1TransferEncodingTest, RejectsCodingLists) {
  EXPECT_EQ(RequestError("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
            ParseError::kUnsupportedTransferEncoding);
  EXPECT_EQ(
      RequestError("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n"),
      ParseError::kUnsupportedTransferEncoding);
  EXPECT_EQ(ParseErrorStatus(ParseError::kUnsupportedTransferEncoding), 501);
}

TEST(Http1TransferEncodingTest, RejectsTwoTransferEncodingFields) {
  EXPECT_EQ(RequestError("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                         "Transfer-Encoding: chunked\r\n\r\n"),
            ParseError::kUnsupportedTransferEncoding);
}

TEST(Http1TransferEncodingTest, RejectsTransferEncodingInHttp10Request) {
  EXPECT_EQ(RequestError("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
            ParseError::kTransferEncodingInHttp10);
  EXPECT_EQ(ParseErrorStatus(ParseError::kTransferEncodingInHttp10), 400);
}

TEST(Http1TransferEncodingTest, RequestWithoutFramingHasNoBody) {
  ParsedHead p = ParseRequest("POST / HTTP/1.1\r\nHost: a\r\n\r\n");
  ASSERT_EQ(p.result, Result::kDone);
  EXPECT_EQ(p.head.body, BodyKind::kNone);
}

// ---------------------------------------------------------------------------------------------
// Host

TEST(Http1HostTest, RejectsMissingHostInHttp11) {
  EXPECT_EQ(RequestError("GET / HTTP/1.1\r\nX: 1\r\n\r\n"), ParseError::kMissingHost);
  EXPECT_EQ(ParseErrorStatus(ParseError::kMissingHost), 400);
}

TEST(Http1HostTest, AcceptsHttp10WithoutHost) {
  ParsedHead p = ParseRequest("GET / HTTP/1.0\r\n\r\n");
  ASSERT_EQ(p.result, Result::kDone);
  EXPECT_EQ(p.head.version_minor, 0);
  EXPECT_EQ(p.head.host, "");
}

TEST(Http1HostTest, RejectsDuplicateHost) {
  EXPECT_EQ(RequestError("GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n"),
            ParseError::kDuplicateHost);
  EXPECT_EQ(RequestError("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
            ParseError::kDuplicateHost);
  EXPECT_EQ(RequestError("GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n"),
            ParseError::kDuplicateHost);
}

TEST(Http1HostTest, RejectsInvalidHostChars) {
  for (std::string_view host :
       {"a b", "a/b", "a@b", "a\tb", "a?b", "a#b", "a\\b", "caf\xc3\xa9", "a,b c"}) {
    std::string request = "GET / HTTP/1.1\r\nHost: " + std::string(host) + "\r\n\r\n";
    EXPECT_EQ(RequestError(request), ParseError::kInvalidHost) << host;
  }
}

TEST(Http1HostTest, AcceptsRegNameIpLiteralPortAndEmpty) {
  for (std::string_view host : {"example.com", "example.com:8080", "[::1]:443", "10.0.0.1",
                                "xn--caf-dma.example", "a_b-c~d%20", ""}) {
    const std::string request = "GET / HTTP/1.1\r\nHost: " + std::string(host) + "\r\n\r\n";
    ParsedHead p = ParseRequest(request);
    ASSERT_EQ(p.result, Result::kDone) << host;
    EXPECT_EQ(p.head.host, host);
  }
}

// ---------------------------------------------------------------------------------------------
// Connection, Expect, Upgrade

TEST(Http1ConnectionTest, Http11KeepsAliveByDefault) {
  EXPECT_TRUE(ParseRequest("GET / HTTP/1.1\r\nHost: a\r\n\r\n").head.keep_alive);
}

TEST(Http1ConnectionTest, CloseTokenDisablesKeepAlive) {
  for (std::string_view value :
       {"close", "Close", "CLOSE", "foo, close", " close ,bar", "keep-alive, close"}) {
    ParsedHead p =
        ParseRequest("GET / HTTP/1.1\r\nHost: a\r\nConnection: " + std::string(value) + "\r\n\r\n");
    ASSERT_EQ(p.result, Result::kDone) << value;
    EXPECT_FALSE(p.head.keep_alive) << value;
  }
}

TEST(Http1ConnectionTest, CloseInSecondConnectionFieldDisablesKeepAlive) {
  ParsedHead p =
      ParseRequest("GET / HTTP/1.1\r\nHost: a\r\nConnection: te\r\nConnection: close\r\n\r\n");
  ASSERT_EQ(p.result, Result::kDone);
  EXPECT_FALSE(p.head.keep_alive);
}

TEST(Http1ConnectionTest, CloseLookalikesKeepAlive) {
  ParsedHead p = ParseRequest("GET / HTTP/1.1\r\nHost: a\r\nConnection: closed, xclose\r\n\r\n");
  ASSERT_EQ(p.result, Result::kDone);
  EXPECT_TRUE(p.head.keep_alive);
}

TEST(Http1ConnectionTest, Http10ClosesByDefault) {
  ParsedHead p = ParseRequest("GET / HTTP/1.0\r\n\r\n");
  ASSERT_EQ(p.result, Result::kDone);
  EXPECT_FALSE(p.head.keep_alive);
}

TEST(Http1ConnectionTest, Http10KeepAliveToken) {
  ParsedHead p = ParseRequest("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
  ASSERT_EQ(p.result, Result::kDone);
  EXPECT_TRUE(p.head.keep_alive);
  ParsedHead both = ParseRequest("GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n");
  ASSERT_EQ(both.result, Result::kDone);
  EXPECT_FALSE(both.head.keep_alive);
}

TEST(Http1ConnectionTest, DetectsExpectContinue) {
  ParsedHead p = ParseRequest(
      "PUT / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\nExpect: 100-Continue\r\n\r\n");
  ASSERT_EQ(p.result, Result::kDone);
  EXPECT_TRUE(p.head.expect_continue);
  EXPECT_FALSE(
      ParseRequest("PUT / HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\n\r\n").head.expect_continue);
}

TEST(Http1ConnectionTest, IgnoresExpectContinueInHttp10) {
  ParsedHead p =
      ParseRequest("PUT / HTTP/1.0\r\nContent-Length: 1\r\nExpect: 100-continue\r\n\r\n");
  ASSERT_EQ(p.result, Result::kDone);
  EXPECT_FALSE(p.head.expect_continue);
}

TEST(Http1ConnectionTest, DetectsUpgradeOnlyWithConnectionToken) {
  ParsedHead p = ParseRequest(
      "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\nUpgrade: "
      "websocket\r\n\r\n");
  ASSERT_EQ(p.result, Result::kDone);
  EXPECT_TRUE(p.head.has_upgrade);
  EXPECT_FALSE(
      ParseRequest("GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n").head.has_upgrade);
  EXPECT_FALSE(
      ParseRequest("GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\n\r\n").head.has_upgrade);
  EXPECT_FALSE(ParseRequest("GET / HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n")
                   .head.has_upgrade);
}

// ---------------------------------------------------------------------------------------------
// Limits

TEST(Http1LimitsTest, AcceptsRequestLineAtLimit) {
  Limits limits;
  limits.max_request_line_bytes = 64;
  std::string line = "GET /" + std::string(64 - 14, 'a') + " HTTP/1.1";
  ASSERT_EQ(line.size(), 64u);
  EXPECT_EQ(ParseRequest(line + "\r\nHost: a\r\n\r\n", limits).result, Result::kDone);
}

TEST(Http1LimitsTest, RejectsLongRequestLineWith414) {
  Limits limits;
  limits.max_request_line_bytes = 64;
  std::string line = "GET /" + std::string(65 - 14, 'a') + " HTTP/1.1";
  EXPECT_EQ(RequestError(line + "\r\nHost: a\r\n\r\n", limits), ParseError::kUriTooLong);
  EXPECT_EQ(ParseErrorStatus(ParseError::kUriTooLong), 414);
}

TEST(Http1LimitsTest, Detects414BeforeRequestLineEnds) {
  Limits limits;
  limits.max_request_line_bytes = 64;
  const std::string partial = "GET /" + std::string(60, 'a');  // no CRLF yet
  EXPECT_EQ(RequestError(partial, limits), ParseError::kUriTooLong);
  // Exactly at the limit plus the CR of the CRLF is not yet too long.
  const std::string at_limit = "GET /" + std::string(64 - 14, 'a') + " HTTP/1.1\r";
  EXPECT_EQ(ParseRequest(at_limit, limits).result, Result::kIncomplete);
}

TEST(Http1LimitsTest, Detects414WithDefaultLimitsOnAHugeUnterminatedLine) {
  EXPECT_EQ(RequestError("GET /" + std::string(9000, 'a')), ParseError::kUriTooLong);
}

TEST(Http1LimitsTest, RejectsHeadLargerThanLimitWith431) {
  Limits limits;
  limits.max_header_bytes = 100;
  std::string request = "GET / HTTP/1.1\r\nHost: a\r\nX: " + std::string(70, 'v') + "\r\n\r\n";
  ASSERT_GT(request.size(), 100u);
  EXPECT_EQ(RequestError(request, limits), ParseError::kHeadersTooLarge);
  EXPECT_EQ(ParseErrorStatus(ParseError::kHeadersTooLarge), 431);
}

TEST(Http1LimitsTest, AcceptsHeadExactlyAtLimit) {
  std::string request = "GET / HTTP/1.1\r\nHost: a\r\nX: " + std::string(10, 'v') + "\r\n\r\n";
  Limits limits;
  limits.max_header_bytes = static_cast<uint32_t>(request.size());
  EXPECT_EQ(ParseRequest(request, limits).result, Result::kDone);
  limits.max_header_bytes -= 1;
  EXPECT_EQ(RequestError(request, limits), ParseError::kHeadersTooLarge);
}

TEST(Http1LimitsTest, DetectsOversizedHeadBeforeTerminatorArrives) {
  Limits limits;
  limits.max_header_bytes = 100;
  // A header line that never ends.
  EXPECT_EQ(RequestError("GET / HTTP/1.1\r\nHost: a\r\nX: " + std::string(200, 'v'), limits),
            ParseError::kHeadersTooLarge);
  // Many complete lines but no empty line.
  std::string lines = "GET / HTTP/1.1\r\nHost: a\r\n";
  while (lines.size() < 150) lines += "X: 1\r\n";
  EXPECT_EQ(RequestError(lines, limits), ParseError::kHeadersTooLarge);
}

TEST(Http1LimitsTest, RejectsTooManyHeadersWith431) {
  Limits limits;
  limits.max_headers = 3;
  EXPECT_EQ(ParseRequest("GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\n\r\n", limits).result,
            Result::kDone);
  EXPECT_EQ(RequestError("GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", limits),
            ParseError::kTooManyHeaders);
  EXPECT_EQ(ParseErrorStatus(ParseError::kTooManyHeaders), 431);
}

TEST(Http1LimitsTest, DetectsTooManyHeadersBeforeTerminatorArrives) {
  Limits limits;
  limits.max_headers = 3;
  EXPECT_EQ(RequestError("GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\n", limits),
            ParseError::kTooManyHeaders);
}

// ---------------------------------------------------------------------------------------------
// Incremental parsing and pipelining

TEST(Http1IncrementalTest, ByteByByteMatchesOneShot) {
  const std::vector<std::string> messages = {
      "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
      "\r\nPOST /upload HTTP/1.1\r\nHost: example.com\r\nContent-Length: 3\r\n"
      "Connection: keep-alive\r\nExpect: 100-continue\r\nX:  spaced  \r\n\r\nabc",
      "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
      "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: a\nX: 1\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: a\rX: 1\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n 2\r\n\r\n",
      "GET /" + std::string(9000, 'a') + " HTTP/1.1\r\nHost: a\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: a\r\nX: " + std::string(70000, 'v') + "\r\n\r\n",
      "GET / HTTP/3.0\r\nHost: a\r\n\r\n",
  };
  for (const std::string& message : messages) {
    SCOPED_TRACE(message.substr(0, 60));
    ParsedHead one_shot = ParseRequest(message);
    ParsedHead incremental = ParseRequestByteByByte(message);
    EXPECT_EQ(one_shot.result, incremental.result);
    EXPECT_EQ(one_shot.error, incremental.error);
    if (one_shot.result == Result::kDone) ExpectSameHead(one_shot.head, incremental.head);
  }
}

// A field line seen whole is parsed in one pass; one that arrives in pieces goes line by line.
// Splitting a head at every byte (one call with the prefix, one with all of it) mixes the two
// in every way and must change nothing, errors included.
TEST(Http1IncrementalTest, EveryTwoPieceSplitMatchesOneShot) {
  const std::vector<std::string> messages = {
      "GET /a HTTP/1.1\r\nHost: example.com\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n"
      "X-Long: 0123456789abcdef0123456789abcdef\r\nX-Tab:\ta\tb\t\r\nX-Obs: caf\xc3\xa9\r\n"
      "X-Empty:\r\nContent-Length: 2\r\n\r\nok",
      "GET / HTTP/1.1\r\nHost: a\r\nX: 01234567\x7f\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: a\r\nX: 0123456789\rY\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: a\r\nX: 0123456789\n\r\n",
      "GET / HTTP/1.1\r\nHost: a\r\nX : 1\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n\t2\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: a\r\n\r\r\n",
  };
  for (const std::string& message : messages) {
    const ParsedHead one_shot = ParseRequest(message);
    for (size_t split = 1; split < message.size(); ++split) {
      SCOPED_TRACE(testing::Message() << message.substr(0, 40) << " split at " << split);
      HeadParser parser{Limits()};
      ParsedHead two;
      two.result = parser.ParseRequest(std::string_view(message).substr(0, split), &two.head);
      if (two.result == Result::kIncomplete) two.result = parser.ParseRequest(message, &two.head);
      two.error = parser.error();
      EXPECT_EQ(one_shot.result, two.result);
      EXPECT_EQ(one_shot.error, two.error);
      if (one_shot.result == Result::kDone) ExpectSameHead(one_shot.head, two.head);
    }
  }
}

// HTAB is the one control byte a value may hold: the word-at-a-time scan steps over it wherever
// it falls in a word, and stops at the first other one.
TEST(Http1HeaderTest, AcceptsHtabAtEveryPositionOfLongValues) {
  for (size_t length : {1, 7, 8, 9, 15, 16, 17, 23}) {
    for (size_t pos = 0; pos < length; ++pos) {
      std::string value(length, 'v');
      value[pos] = '\t';
      value = "a" + value + "z";
      const std::string request = "GET / HTTP/1.1\r\nHost: a\r\nX: " + value + "\r\nY: b\r\n\r\n";
      const ParsedHead p = ParseRequest(request);
      ASSERT_EQ(p.result, Result::kDone) << "length " << length << " pos " << pos;
      ASSERT_EQ(p.head.headers.size(), 3u);
      EXPECT_EQ(p.head.headers[1].value, value);
      EXPECT_EQ(p.head.headers[2].value, "b");
    }
  }
}

TEST(Http1IncrementalTest, ViewsPointIntoTheBufferOfTheCompletingCall) {
  HeadParser parser{Limits()};
  Head head;
  std::string buffer = "GET /a HTTP/1.1\r\nHo";
  ASSERT_EQ(parser.ParseRequest(buffer, &head), Result::kIncomplete);
  std::string grown = buffer + "st: example.com\r\n\r\n";  // a different allocation
  buffer.assign(buffer.size(), 'X');                       // the old bytes are gone
  ASSERT_EQ(parser.ParseRequest(grown, &head), Result::kDone);
  EXPECT_EQ(head.target, "/a");
  EXPECT_EQ(head.host, "example.com");
  EXPECT_GE(head.host.data(), grown.data());
  EXPECT_LT(head.host.data(), grown.data() + grown.size());
}

TEST(Http1IncrementalTest, KeepsReportingErrorUntilReset) {
  HeadParser parser{Limits()};
  Head head;
  ASSERT_EQ(parser.ParseRequest("GET / HTTP/1.1\n", &head), Result::kError);
  EXPECT_EQ(parser.ParseRequest("GET / HTTP/1.1\r\nHost: a\r\n\r\n", &head), Result::kError);
  EXPECT_EQ(parser.error(), ParseError::kInvalidLineEnding);
  parser.Reset();
  EXPECT_EQ(parser.error(), ParseError::kNone);
  EXPECT_EQ(parser.ParseRequest("GET / HTTP/1.1\r\nHost: a\r\n\r\n", &head), Result::kDone);
}

TEST(Http1IncrementalTest, ParsesPipelinedRequestsBackToBack) {
  const std::string stream =
      "POST /one HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"
      "POST /two HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
      "3\r\nabc\r\n0\r\n\r\n"
      "GET /three HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
  HeadParser parser{Limits()};
  BodyDecoder body{Limits()};
  std::string_view rest = stream;
  std::vector<std::string> targets;
  std::vector<std::string> payloads;
  while (!rest.empty()) {
    Head head;
    parser.Reset();
    ASSERT_EQ(parser.ParseRequest(rest, &head), Result::kDone);
    targets.emplace_back(head.target);
    rest.remove_prefix(head.head_size);
    body.Reset(head.body, head.content_length);
    std::string payload;
    while (!body.done()) {
      const BodyDecoder::Step step = body.Decode(rest);
      ASSERT_EQ(body.error(), ParseError::kNone);
      payload.append(rest.substr(step.payload_offset, step.payload_len));
      rest.remove_prefix(step.consumed);
    }
    payloads.push_back(payload);
  }
  EXPECT_THAT(targets, ElementsAre("/one", "/two", "/three"));
  EXPECT_THAT(payloads, ElementsAre("hello", "abc", ""));
}

// ---------------------------------------------------------------------------------------------
// Responses

TEST(Http1ResponseTest, ParsesStatusLine) {
  constexpr std::string_view kResponse = "HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\n";
  ParsedHead p = ParseResponse(kResponse);
  ASSERT_EQ(p.result, Result::kDone);
  EXPECT_EQ(p.head.status, 404);
  EXPECT_EQ(p.head.reason, "Not Found");
  EXPECT_EQ(p.head.version_minor, 1);
  EXPECT_EQ(p.head.body, BodyKind::kContentLength);
  EXPECT_EQ(p.head.content_length, 9u);
  EXPECT_EQ(p.head.head_size, kResponse.size());
  EXPECT_TRUE(p.head.keep_alive);
}

TEST(Http1ResponseTest, AcceptsMissingOrEmptyReason) {
  ParsedHead bare = ParseResponse("HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n");
  ASSERT_EQ(bare.result, Result::kDone);
  EXPECT_EQ(bare.head.status, 200);
  EXPECT_EQ(bare.head.reason, "");
  ParsedHead empty = ParseResponse("HTTP/1.0 200 \r\nContent-Length: 0\r\n\r\n");
  ASSERT_EQ(empty.result, Result::kDone);
  EXPECT_EQ(empty.head.reason, "");
  EXPECT_EQ(empty.head.version_minor, 0);
  ParsedHead spaced = ParseResponse("HTTP/1.1 200 All  fine\t \xe2\x9c\x93\r\n\r\n");
  ASSERT_EQ(spaced.result, Result::kDone);
  EXPECT_EQ(spaced.head.reason, "All  fine\t \xe2\x9c\x93");
}

TEST(Http1ResponseTest, RejectsMalformedStatusLines) {
  for (std::string_view line :
       {"HTTP/1.1 20 OK", "HTTP/1.1 2000 OK", "HTTP/1.1  200 OK", "HTTP/1.1 099 Low",
        "HTTP/1.1 600 High", "HTTP/1.1 2x0 OK", "HTTP/1.1\t200 OK", "HTTP/1.1 200\tOK",
        "http/1.1 200 OK", "200 OK", "HTTP/1.1", "HTTP/1.1 ", "HTTP/1.1 200 O\x01K"}) {
    std::string response = std::string(line) + "\r\nContent-Length: 0\r\n\r\n";
    EXPECT_EQ(ResponseError(response), ParseError::kBadStatusLine) << line;
  }
  EXPECT_EQ(ParseErrorStatus(ParseError::kBadStatusLine), 502);
}

TEST(Http1ResponseTest, RejectsUnsupportedResponseVersion) {
  EXPECT_EQ(ResponseError("HTTP/2.0 200 OK\r\n\r\n"), ParseError::kBadVersion);
}

TEST(Http1ResponseTest, RejectsLeadingEmptyLines) {
  EXPECT_EQ(ResponseError("\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
            ParseError::kBadStatusLine);
}

TEST(Http1ResponseTest, ResponseToHeadHasNoBody) {
  ParsedHead p = ParseResponse("HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n", "HEAD");
  ASSERT_EQ(p.result, Result::kDone);
  EXPECT_EQ(p.head.body, BodyKind::kNone);
  EXPECT_EQ(p.head.content_length, 1234u);
  EXPECT_TRUE(p.head.keep_alive);
  ParsedHead chunked =
      ParseResponse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", "HEAD");
  ASSERT_EQ(chunked.result, Result::kDone);
  EXPECT_EQ(chunked.head.body, BodyKind::kNone);
}

TEST(Http1ResponseTest, NoContentAndNotModifiedHaveNoBody) {
  ParsedHead no_content = ParseResponse("HTTP/1.1 204 No Content\r\n\r\n");
  ASSERT_EQ(no_content.result, Result::kDone);
  EXPECT_EQ(no_content.head.body, BodyKind::kNone);
  EXPECT_TRUE(no_content.head.keep_alive);
  ParsedHead zero = ParseResponse("HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n");
  ASSERT_EQ(zero.result, Result::kDone);
  EXPECT_EQ(zero.head.body, BodyKind::kNone);
  ParsedHead not_modified =
      ParseResponse("HTTP/1.1 304 Not Modified\r\nContent-Length: 50\r\n\r\n");
  ASSERT_EQ(not_modified.result, Result::kDone);
  EXPECT_EQ(not_modified.head.body, BodyKind::kNone);
}

TEST(Http1ResponseTest, InformationalResponsesHaveNoBody) {
  ParsedHead cont = ParseResponse("HTTP/1.1 100 Continue\r\n\r\n");
  ASSERT_EQ(cont.result, Result::kDone);
  EXPECT_EQ(cont.head.status, 100);
  EXPECT_EQ(cont.head.body, BodyKind::kNone);
  ParsedHead switching = ParseResponse(
      "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n");
  ASSERT_EQ(switching.result, Result::kDone);
  EXPECT_EQ(switching.head.body, BodyKind::kNone);
  EXPECT_TRUE(switching.head.has_upgrade);
}

TEST(Http1ResponseTest, RejectsBodyFramingOnBodylessStatuses) {
  EXPECT_EQ(ResponseError("HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n"),
            ParseError::kInvalidResponse);
  EXPECT_EQ(ResponseError("HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n"),
            ParseError::kInvalidResponse);
  EXPECT_EQ(ResponseError("HTTP/1.1 100 Continue\r\nContent-Length: 5\r\n\r\n"),
            ParseError::kInvalidResponse);
  EXPECT_EQ(ResponseError("HTTP/1.1 103 Early Hints\r\nTransfer-Encoding: chunked\r\n\r\n"),
            ParseError::kInvalidResponse);
  EXPECT_EQ(ParseErrorStatus(ParseError::kInvalidResponse), 502);
}

TEST(Http1ResponseTest, SuccessfulConnectResponseHasNoBody) {
  ParsedHead ok = ParseResponse("HTTP/1.1 200 Connection Established\r\n\r\n", "CONNECT");
  ASSERT_EQ(ok.result, Result::kDone);
  EXPECT_EQ(ok.head.body, BodyKind::kNone);
  ParsedHead denied = ParseResponse("HTTP/1.1 407 Auth\r\nContent-Length: 2\r\n\r\n", "CONNECT");
  ASSERT_EQ(denied.result, Result::kDone);
  EXPECT_EQ(denied.head.body, BodyKind::kContentLength);
}

TEST(Http1ResponseTest, ZeroContentLengthResponseHasNoBodyAndKeepsAlive) {
  ParsedHead p = ParseResponse("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
  ASSERT_EQ(p.result, Result::kDone);
  EXPECT_EQ(p.head.body, BodyKind::kNone);
  EXPECT_TRUE(p.head.keep_alive);
}

TEST(Http1ResponseTest, CloseDelimitedResponseReadsUntilEof) {
  ParsedHead p = ParseResponse("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n");
  ASSERT_EQ(p.result, Result::kDone);
  EXPECT_EQ(p.head.body, BodyKind::kUntilClose);
  EXPECT_FALSE(p.head.keep_alive);

  BodyDecoder body{Limits()};
  body.Reset(BodyKind::kUntilClose, 0);
  BodyDecoder::Step step = body.Decode("some bytes");
  EXPECT_EQ(step.consumed, 10u);
  EXPECT_EQ(step.payload_len, 10u);
  EXPECT_FALSE(step.done);
  EXPECT_FALSE(body.done());
  EXPECT_TRUE(body.OnEof());
  EXPECT_TRUE(body.done());
  EXPECT_EQ(body.payload_bytes(), 10u);
}

TEST(Http1ResponseTest, ParsesChunkedResponse) {
  ParsedHead p = ParseResponse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
  ASSERT_EQ(p.result, Result::kDone);
  EXPECT_EQ(p.head.body, BodyKind::kChunked);
  EXPECT_TRUE(p.head.keep_alive);
}

TEST(Http1ResponseTest, AppliesFramingRulesToResponses) {
  EXPECT_EQ(
      ResponseError("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"),
      ParseError::kContentLengthWithTransferEncoding);
  EXPECT_EQ(
      ResponseError("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 1\r\n\r\n",
                    "HEAD"),
      ParseError::kContentLengthWithTransferEncoding);
  EXPECT_EQ(ResponseError("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n"),
            ParseError::kInvalidContentLength);
  EXPECT_EQ(ResponseError("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n"),
            ParseError::kUnsupportedTransferEncoding);
  EXPECT_EQ(ResponseError("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
            ParseError::kTransferEncodingInHttp10);
  EXPECT_EQ(ResponseError("HTTP/1.1 200 OK\nContent-Length: 1\r\n\r\n"),
            ParseError::kInvalidLineEnding);
  EXPECT_EQ(ResponseError("HTTP/1.1 200 OK\r\nX: 1\r\n folded\r\n\r\n"), ParseError::kObsFold);
}

TEST(Http1ResponseTest, Http10ResponseKeepAlive) {
  EXPECT_FALSE(ParseResponse("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n").head.keep_alive);
  EXPECT_TRUE(
      ParseResponse("HTTP/1.0 200 OK\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n")
          .head.keep_alive);
}

TEST(Http1ResponseTest, ResponsesDoNotRequireOrValidateHost) {
  ParsedHead p =
      ParseResponse("HTTP/1.1 200 OK\r\nHost: a b\r\nHost: c\r\nContent-Length: 0\r\n\r\n");
  ASSERT_EQ(p.result, Result::kDone);
  EXPECT_EQ(p.head.host, "");
}

// ---------------------------------------------------------------------------------------------
// Body decoding

TEST(Http1BodyTest, DecodesContentLengthAndLeavesNextMessage) {
  DecodedBody b = DecodeBody(BodyKind::kContentLength, 5, "helloGET / HTTP/1.1\r\n");
  EXPECT_TRUE(b.done);
  EXPECT_EQ(b.payload, "hello");
  EXPECT_EQ(b.consumed, 5u);
  DecodedBody pieces = DecodeBody(BodyKind::kContentLength, 5, "helloGET", 2);
  EXPECT_TRUE(pieces.done);
  EXPECT_EQ(pieces.payload, "hello");
  EXPECT_EQ(pieces.consumed, 5u);
}

TEST(Http1BodyTest, NoBodyIsDoneAtOnce) {
  BodyDecoder body{Limits()};
  body.Reset(BodyKind::kNone, 0);
  EXPECT_TRUE(body.done());
  BodyDecoder::Step step = body.Decode("GET / HTTP/1.1\r\n");
  EXPECT_TRUE(step.done);
  EXPECT_EQ(step.consumed, 0u);
  EXPECT_TRUE(body.OnEof());
}

TEST(Http1BodyTest, ReportsTruncatedBodyOnEof) {
  BodyDecoder body{Limits()};
  body.Reset(BodyKind::kContentLength, 10);
  body.Decode("abc");
  EXPECT_FALSE(body.OnEof());
  EXPECT_EQ(body.error(), ParseError::kTruncatedBody);
  body.Reset(BodyKind::kChunked, 0);
  body.Decode("5\r\nab");
  EXPECT_FALSE(body.OnEof());
  EXPECT_EQ(body.error(), ParseError::kTruncatedBody);
  body.Reset(BodyKind::kChunked, 0);
  body.Decode("0\r\n");  // trailer section not finished
  EXPECT_FALSE(body.OnEof());
}

TEST(Http1BodyTest, DecodesChunkedBody) {
  const std::string_view kBody = "5\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\n\r\nNEXT";
  DecodedBody b = DecodeBody(BodyKind::kChunked, 0, kBody);
  EXPECT_EQ(b.error, ParseError::kNone);
  EXPECT_TRUE(b.done);
  EXPECT_EQ(b.payload, "helloabcdefghijklmnopqrstuvwxyz");
  EXPECT_EQ(b.consumed, kBody.size() - 4);
  EXPECT_TRUE(b.trailers.empty());
}

TEST(Http1BodyTest, DecodesChunkedWithExtensionsAndTrailers) {
  const std::string_view kBody =
      "4;name=value;flag\r\nWiki\r\n"
      "5;q=\"quoted \\\" ;=\"\r\npedia\r\n"
      "0;last\r\n"
      "Expires: Wed, 21 Oct 2015 07:28:00 GMT\r\n"
      "X-Checksum:  abc \r\n"
      "\r\n";
  for (size_t piece : {std::string_view::npos, size_t{1}, size_t{3}, size_t{7}}) {
    SCOPED_TRACE(piece);
    DecodedBody b = DecodeBody(BodyKind::kChunked, 0, kBody, piece);
    EXPECT_EQ(b.error, ParseError::kNone);
    EXPECT_TRUE(b.done);
    EXPECT_EQ(b.payload, "Wikipedia");
    EXPECT_EQ(b.consumed, kBody.size());
    EXPECT_THAT(b.trailers, ElementsAre(Pair("Expires", "Wed, 21 Oct 2015 07:28:00 GMT"),
                                        Pair("X-Checksum", "abc")));
  }
}

TEST(Http1BodyTest, ChunkedByteByByteMatchesOneShot) {
  const std::string body = "10\r\n0123456789abcdef\r\n3\r\nxyz\r\n0\r\nT: 1\r\n\r\n";
  DecodedBody one_shot = DecodeBody(BodyKind::kChunked, 0, body);
  DecodedBody incremental = DecodeBody(BodyKind::kChunked, 0, body, 1);
  EXPECT_EQ(one_shot.payload, "0123456789abcdefxyz");
  EXPECT_EQ(incremental.payload, one_shot.payload);
  EXPECT_EQ(incremental.consumed, one_shot.consumed);
  EXPECT_EQ(incremental.trailers, one_shot.trailers);
  EXPECT_TRUE(incremental.done);
}

TEST(Http1BodyTest, ReturnsOnePayloadSpanPerStep) {
  BodyDecoder body{Limits()};
  body.Reset(BodyKind::kChunked, 0);
  const std::string_view in = "2\r\nab\r\n2\r\ncd\r\n0\r\n\r\n";
  BodyDecoder::Step first = body.Decode(in);
  EXPECT_EQ(first.payload_offset, 3u);
  EXPECT_EQ(first.payload_len, 2u);
  EXPECT_EQ(first.consumed, 5u);
  BodyDecoder::Step second = body.Decode(in.substr(first.consumed));
  EXPECT_EQ(in.substr(first.consumed).substr(second.payload_offset, second.payload_len), "cd");
  BodyDecoder::Step last = body.Decode(in.substr(first.consumed + second.consumed));
  EXPECT_TRUE(last.done);
  EXPECT_EQ(last.payload_len, 0u);
  EXPECT_EQ(first.consumed + second.consumed + last.consumed, in.size());
}

TEST(Http1BodyTest, AcceptsSixteenHexDigitChunkSize) {
  BodyDecoder body{Limits()};
  body.Reset(BodyKind::kChunked, 0);
  BodyDecoder::Step step = body.Decode("FFFFFFFFFFFFFFFF\r\nabc");
  EXPECT_EQ(body.error(), ParseError::kNone);
  EXPECT_EQ(step.payload_len, 3u);
}

TEST(Http1BodyTest, RejectsChunkSizeOverflow) {
  EXPECT_EQ(ChunkedError("10000000000000000\r\n"), ParseError::kBadChunk);  // 2^64: 17 digits
  EXPECT_EQ(ChunkedError("00000000000000001\r\nx\r\n0\r\n\r\n"), ParseError::kBadChunk);
  EXPECT_EQ(ChunkedError("FFFFFFFFFFFFFFFFFFFF\r\n"), ParseError::kBadChunk);
}

TEST(Http1BodyTest, RejectsChunkSizeWithWhitespace) {
  EXPECT_EQ(ChunkedError(" 5\r\nhello\r\n0\r\n\r\n"), ParseError::kBadChunk);
  EXPECT_EQ(ChunkedError("5 \r\nhello\r\n0\r\n\r\n"), ParseError::kBadChunk);
  EXPECT_EQ(ChunkedError("5\t\r\nhello\r\n0\r\n\r\n"), ParseError::kBadChunk);
  EXPECT_EQ(ChunkedError("5 ;a=b\r\nhello\r\n0\r\n\r\n"), ParseError::kBadChunk);
  EXPECT_EQ(ChunkedError("5; a=b\r\nhello\r\n0\r\n\r\n"), ParseError::kBadChunk);
}

TEST(Http1BodyTest, RejectsNonHexChunkSize) {
  for (std::string_view body : {"\r\n", "g\r\n", "0x5\r\n", "-5\r\n", "+5\r\n", "5\n", ";x\r\n"}) {
    EXPECT_EQ(ChunkedError(body), ParseError::kBadChunk) << body;
  }
}

TEST(Http1BodyTest, RejectsMissingCrlfAfterChunkData) {
  EXPECT_EQ(ChunkedError("3\r\nabcX\r\n0\r\n\r\n"), ParseError::kBadChunk);
  EXPECT_EQ(ChunkedError("3\r\nabc\n0\r\n\r\n"), ParseError::kBadChunk);
  EXPECT_EQ(ChunkedError("3\r\nabc\r0\r\n\r\n"), ParseError::kBadChunk);
  EXPECT_EQ(ChunkedError("3\r\nabc0\r\n\r\n"), ParseError::kBadChunk);
}

TEST(Http1BodyTest, RejectsBadChunkExtensions) {
  for (std::string_view body :
       {"1;\r\n", "1;=v\r\n", "1;a=\r\n", "1;a=b c\r\n", "1;a=\"x\"y\r\n", "1;a=\"x\x01\"\r\n",
        "1;a\x7f\r\n", "1;a=\"unterminated\r\n", "1;a=\"bad\\\x01\"\r\n", "1;a@b\r\n"}) {
    EXPECT_EQ(ChunkedError(body), ParseError::kBadChunk) << body;
  }
}

TEST(Http1BodyTest, RejectsOversizedChunkLine) {
  std::string body = "1;x=" + std::string(kMaxChunkLineBytes, 'a');
  EXPECT_EQ(ChunkedError(body), ParseError::kBadChunk);
}

TEST(Http1BodyTest, RejectsInvalidTrailerFields) {
  EXPECT_EQ(ChunkedError("0\r\nBad Name: x\r\n\r\n"), ParseError::kInvalidHeaderName);
  EXPECT_EQ(ChunkedError("0\r\nX : x\r\n\r\n"), ParseError::kInvalidHeaderName);
  EXPECT_EQ(ChunkedError("0\r\nX: a\0b\r\n\r\n"sv), ParseError::kInvalidHeaderValue);
  EXPECT_EQ(ChunkedError("0\r\nX: 1\r\n 2\r\n\r\n"), ParseError::kObsFold);
  EXPECT_EQ(ChunkedError("0\r\nX: 1\n\r\n"), ParseError::kInvalidLineEnding);
  EXPECT_EQ(ChunkedError("0\r\nX: 1\r\n\n"), ParseError::kInvalidLineEnding);
  EXPECT_EQ(ChunkedError("0\r\nX: a\rb\r\n\r\n"), ParseError::kInvalidLineEnding);
}

TEST(Http1BodyTest, RejectsTrailersTooLarge) {
  Limits limits;
  limits.max_header_bytes = 64;
  limits.max_headers = 2;
  EXPECT_EQ(DecodeBody(BodyKind::kChunked, 0, "0\r\nA: 1\r\nB: 2\r\n\r\n", 1, limits).error,
            ParseError::kNone);
  EXPECT_EQ(DecodeBody(BodyKind::kChunked, 0, "0\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n",
                       std::string_view::npos, limits)
                .error,
            ParseError::kTrailersTooLarge);
  // An unterminated trailer line is cut off at the byte limit, not buffered without bound.
  EXPECT_EQ(DecodeBody(BodyKind::kChunked, 0, "0\r\nA: " + std::string(1000, 'x'), 1, limits).error,
            ParseError::kTrailersTooLarge);
  EXPECT_EQ(ParseErrorStatus(ParseError::kTrailersTooLarge), 431);
}

TEST(Http1BodyTest, StaysFailedAfterError) {
  BodyDecoder body{Limits()};
  body.Reset(BodyKind::kChunked, 0);
  body.Decode("z");
  EXPECT_EQ(body.error(), ParseError::kBadChunk);
  BodyDecoder::Step step = body.Decode("0\r\n\r\n");
  EXPECT_EQ(step.consumed, 0u);
  EXPECT_FALSE(body.done());
  EXPECT_FALSE(body.OnEof());
  EXPECT_EQ(body.error(), ParseError::kBadChunk);
}

// ---------------------------------------------------------------------------------------------
// Error names

TEST(Http1ParseErrorTest, NamesAndStatusesMatchTheHeader) {
  struct Expected {
    ParseError error;
    std::string_view name;
    int status;
  };
  const Expected kExpected[] = {
      {ParseError::kNone, "none", 0},
      {ParseError::kBadRequestLine, "bad_request_line", 400},
      {ParseError::kUriTooLong, "uri_too_long", 414},
      {ParseError::kHeadersTooLarge, "headers_too_large", 431},
      {ParseError::kTooManyHeaders, "too_many_headers", 431},
      {ParseError::kBadVersion, "unsupported_http_version", 505},
      {ParseError::kInvalidLineEnding, "invalid_line_ending", 400},
      {ParseError::kInvalidHeaderName, "invalid_header_name", 400},
      {ParseError::kInvalidHeaderValue, "invalid_header_value", 400},
      {ParseError::kObsFold, "obsolete_line_folding", 400},
      {ParseError::kMissingHost, "missing_host", 400},
      {ParseError::kDuplicateHost, "duplicate_host", 400},
      {ParseError::kInvalidHost, "invalid_host", 400},
      {ParseError::kInvalidContentLength, "invalid_content_length", 400},
      {ParseError::kContentLengthWithTransferEncoding, "content_length_and_transfer_encoding", 400},
      {ParseError::kUnsupportedTransferEncoding, "unsupported_transfer_encoding", 501},
      {ParseError::kTransferEncodingInHttp10, "transfer_encoding_in_http10", 400},
      {ParseError::kBadChunk, "invalid_chunk", 400},
      {ParseError::kTrailersTooLarge, "trailers_too_large", 431},
      {ParseError::kTruncatedBody, "truncated_body", 400},
      {ParseError::kBadStatusLine, "malformed_status_line", 502},
      {ParseError::kInvalidResponse, "invalid_response", 502},
  };
  for (const Expected& e : kExpected) {
    EXPECT_EQ(ParseErrorName(e.error), e.name);
    EXPECT_EQ(ParseErrorStatus(e.error), e.status) << e.name;
  }
}

}  // namespace
}  // namespace portway::http1
