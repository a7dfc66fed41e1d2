// YAML (or JSON) → protobuf, generic over descriptors, reporting every error with its field path.
//
// Portway's user config is YAML mapped field-for-field onto the protos in api/ (snake_case keys,
// durations as "1s" or "250ms", enums by name in any case). The converter works from descriptors
// and reflection only, so the same code turns a bootstrap file, a filter's `config` and a
// control-plane resource into messages, generated or dynamic. It never stops at the first
// mistake: `portway --validate` prints the whole list, each error naming where it is
// ("listeners[1].routes[0].match.prefx"), so a user fixes a file in one pass.
//
// Thread safety: every function is reentrant; concurrent calls must not share `out` or `errors`.
//
// Example:
//
//   portway::config::v1::Bootstrap bootstrap;
//   portway::config::ConfigErrors errors;
//   if (!portway::config::YamlFileToProto(path, &bootstrap, &errors)) {
//     for (const auto& error : errors) std::cerr << error.ToString() << "\n";
//     return 1;
//   }
//
// Mapping rules, beyond "a YAML map is a message, a list is a repeated field":
// - Null (`~`, `null`, or nothing after the colon) leaves a field unset. A null list item or map
//   value is an error instead: an empty `-` is more likely a slip than a wish.
// - Duplicate keys, and two members of one oneof, are errors rather than last-one-wins.
// - String fields take any scalar as written: `port: 8080` into a string field is "8080".
// - Bools are true/false (any case) only; YAML 1.1's yes/no/on/off are refused, since a
//   country code `no` silently turning into false is the classic YAML trap.
// - Integers are decimal, range-checked for the field's type; floats are decimal numbers.
// - Enums by value name, case-insensitive, '-' for '_': "least-request" is LEAST_REQUEST.
// - A scalar given for a message field sets the message's field number 1 when that is a singular
//   scalar: `endpoints: [127.0.0.1:8080, {address: 127.0.0.1:8081, weight: 3}]`.
// - Well-known types: Duration ("1.5s", see ParseDuration), Timestamp (RFC 3339), Struct /
//   Value / ListValue (any YAML; plain scalars that look like numbers or true/false become
//   numbers and bools, quoted ones stay strings), wrappers (UInt32Value, BoolValue, ...) from a
//   scalar.
// - bytes fields take the scalar's text as-is (not base64).
// - Paths read `listeners[0].routes[2].match.prefix`; proto map keys read `metadata["zone"]`.
// Conversion merges into `out` like MergeFrom: repeated fields are appended to, so call
// Clear() first for a fresh message.

#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

// Declared, not included: protobuf and yaml-cpp headers are heavy, and most includers only load
// a file into a generated message.
namespace google::protobuf {
class Message;
class Struct;
}  // namespace google::protobuf
namespace YAML {
class Node;
}  // namespace YAML

namespace portway::config {

struct ConfigError {
  // Field path, e.g. "listeners[0].routes[2].match.prefix"; "" for the root or the whole file.
  std::string path;
  // What is wrong, e.g. "unknown field 'prefx' (did you mean 'prefix'?)".
  std::string message;
  // Where in the YAML text, 1-based; 0 when unknown (nodes built in code, I/O errors). Not part
  // of ToString() because a path is what survives reformatting; a CLI that knows the file name
  // may print "FILE:LINE:COLUMN: " before it.
  int line = 0;
  int column = 0;

  // "path: message", or just the message when the path is empty.
  std::string ToString() const;
};
using ConfigErrors = std::vector<ConfigError>;

// Fills `out` from `node`. Collects every error (does not stop at the first), each with its path
// prefixed by `path_prefix` (may be empty). Returns true when there were no errors; on false,
// `out` holds whatever did convert and must not be used as a valid config. A null node leaves
// `out` untouched. `errors` may be null when only the verdict matters (for all functions here).
bool YamlToProto(const YAML::Node& node, google::protobuf::Message* out, ConfigErrors* errors,
                 const std::string& path_prefix = "");

// Parses text (YAML or JSON) then converts. Syntax errors are reported with line:column. Empty
// text is an empty message; more than one YAML document is an error.
bool YamlTextToProto(std::string_view text, google::protobuf::Message* out, ConfigErrors* errors);

// Reads a file and converts its contents. I/O errors name the file; the others do not (the
// caller knows which file it passed).
bool YamlFileToProto(const std::string& path, google::protobuf::Message* out, ConfigErrors* errors);

// Converts a google.protobuf.Struct (e.g. HttpFilter.config, written as plain YAML) into the typed
// message its factory expects, with the same rules and error paths as YamlToProto; pass the
// Struct's own path as `path_prefix`, e.g. "listeners[0].filters[1].config". The Struct keeps no
// positions, so these errors have line 0; numbers are doubles, so integers past 2^53 are lost.
bool StructToProto(const google::protobuf::Struct& config, google::protobuf::Message* out,
                   ConfigErrors* errors, const std::string& path_prefix = "");

// One number and one unit: "1s", "1.5s", "250ms", "100us", "10ns", "2m", "1h", "0s". A bare
// number ("5"), a negative value, or a combination ("1h30m") is an error whose message reads
// "invalid duration '...': ...".
absl::StatusOr<absl::Duration> ParseDuration(std::string_view text);

// Message → JSON for /config_dump: protobuf's JSON mapping with proto (snake_case) field names,
// indented; durations print as "1.500s" and read back through YamlTextToProto. Never fails: a
// message the JSON mapping rejects comes out as {"error": "..."}.
std::string ProtoToJson(const google::protobuf::Message& msg);

}  // namespace portway::config
