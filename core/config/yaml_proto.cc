#include "core/config/yaml_proto.h"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <map>
#include <set>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/message.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "yaml-cpp/yaml.h"

namespace portway::config {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::EnumDescriptor;
using google::protobuf::EnumValueDescriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::OneofDescriptor;
using google::protobuf::Reflection;

// Configs are a handful of levels deep. The limit turns a hostile or runaway document (a
// control-plane push, a recursive message type) into an error instead of a stack overflow.
constexpr int kMaxDepth = 100;

// google.protobuf.Duration spans ±10000 years; Timestamp spans years 0001..9999.
constexpr int64_t kMaxDurationSeconds = 315'576'000'000;
constexpr int64_t kMinTimestampSeconds = -62'135'596'800;
constexpr int64_t kMaxTimestampSeconds = 253'402'300'799;

constexpr absl::string_view kDurationType = "google.protobuf.Duration";
constexpr absl::string_view kTimestampType = "google.protobuf.Timestamp";
constexpr absl::string_view kStructType = "google.protobuf.Struct";
constexpr absl::string_view kValueType = "google.protobuf.Value";
constexpr absl::string_view kListValueType = "google.protobuf.ListValue";

bool IsWrapperType(const Descriptor* type) {
  static const auto* const kWrappers = new std::set<absl::string_view>{
      "google.protobuf.DoubleValue", "google.protobuf.FloatValue",  "google.protobuf.Int64Value",
      "google.protobuf.UInt64Value", "google.protobuf.Int32Value",  "google.protobuf.UInt32Value",
      "google.protobuf.BoolValue",   "google.protobuf.StringValue", "google.protobuf.BytesValue"};
  return kWrappers->count(type->full_name()) > 0;
}

// Quotes user text for a message, shortened so one bad multi-kilobyte scalar does not flood the
// output; UTF-8 is kept readable.
std::string Quote(absl::string_view text) {
  constexpr size_t kMaxShown = 60;
  if (text.size() > kMaxShown) {
    return absl::StrCat("'", absl::Utf8SafeCHexEscape(text.substr(0, kMaxShown - 3)), "...'");
  }
  return absl::StrCat("'", absl::Utf8SafeCHexEscape(text), "'");
}

// What the user wrote, for "expected X, found Y".
std::string Describe(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Map:
      return "a map";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Scalar:
      return Quote(node.Scalar());
    case YAML::NodeType::Null:
    case YAML::NodeType::Undefined:
      break;
  }
  return "null";
}

std::string FieldPath(const std::string& parent, absl::string_view name) {
  if (parent.empty()) return std::string(name);
  return absl::StrCat(parent, ".", name);
}

std::string IndexPath(const std::string& parent, size_t index) {
  return absl::StrCat(parent, "[", index, "]");
}

std::string KeyPath(const std::string& parent, absl::string_view key) {
  return absl::StrCat(parent, "[\"", absl::Utf8SafeCHexEscape(key), "\"]");
}

// Struct keys read like fields when they could be one, so an error found later in the typed
// config (StructToProto with the same prefix) and one found here share a path style.
std::string StructKeyPath(const std::string& parent, absl::string_view key) {
  const bool identifier = !key.empty() && (absl::ascii_isalpha(key[0]) || key[0] == '_') &&
                          std::all_of(key.begin(), key.end(), [](char c) {
                            return absl::ascii_isalnum(c) || c == '_' || c == '-';
                          });
  return identifier ? FieldPath(parent, key) : KeyPath(parent, key);
}

// Plain (unquoted, untagged) scalars are the ones YAML would read as numbers or bools; quoted
// ones are strings whatever they look like. yaml-cpp marks plain scalars "?" and nodes built in
// code "".
bool IsPlain(const YAML::Node& node) { return node.Tag() == "?" || node.Tag().empty(); }

bool IsDigits(absl::string_view text) {
  return !text.empty() && std::all_of(text.begin(), text.end(), absl::ascii_isdigit);
}

// [-+]?[0-9]+ (YAML 1.2 core schema, decimal only).
bool IsDecimalInteger(absl::string_view text) {
  if (!text.empty() && (text[0] == '-' || text[0] == '+')) text.remove_prefix(1);
  return IsDigits(text);
}

// [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)? (YAML 1.2 core schema, finite floats).
bool IsDecimalNumber(absl::string_view text) {
  if (!text.empty() && (text[0] == '-' || text[0] == '+')) text.remove_prefix(1);
  size_t i = 0;
  const auto digits = [&] {
    const size_t start = i;
    while (i < text.size() && absl::ascii_isdigit(text[i])) ++i;
    return i - start;
  };
  size_t mantissa_digits = digits();
  if (i < text.size() && text[i] == '.') {
    ++i;
    mantissa_digits += digits();
  }
  if (mantissa_digits == 0) return false;
  if (i < text.size() && (text[i] == 'e' || text[i] == 'E')) {
    ++i;
    if (i < text.size() && (text[i] == '-' || text[i] == '+')) ++i;
    if (digits() == 0) return false;
  }
  return i == text.size();
}

// YAML's .inf/.nan and the JSON mapping's "Infinity"/"NaN", which ProtoToJson prints.
bool ParseNonFinite(absl::string_view text, double* out) {
  double sign = 1;
  if (!text.empty() && (text[0] == '-' || text[0] == '+')) {
    sign = text[0] == '-' ? -1 : 1;
    text.remove_prefix(1);
  }
  absl::ConsumePrefix(&text, ".");
  if (absl::EqualsIgnoreCase(text, "inf") || absl::EqualsIgnoreCase(text, "infinity")) {
    *out = sign * std::numeric_limits<double>::infinity();
    return true;
  }
  if (absl::EqualsIgnoreCase(text, "nan")) {
    *out = std::numeric_limits<double>::quiet_NaN();
    return true;
  }
  return false;
}

// Optimal string alignment distance: Levenshtein plus adjacent transposition, so "tpye" is one
// edit from "type".
size_t EditDistance(absl::string_view a, absl::string_view b) {
  std::vector<size_t> before(b.size() + 1), previous(b.size() + 1), current(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) previous[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    current[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      current[j] = std::min({previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) {
        current[j] = std::min(current[j], before[j - 2] + 1);
      }
    }
    std::swap(before, previous);
    std::swap(previous, current);
  }
  return previous[b.size()];
}

// The candidate within edit distance 2 of `name`, closest first; "" when none is that close.
absl::string_view ClosestName(absl::string_view name, const std::vector<std::string>& candidates) {
  absl::string_view best;
  size_t best_distance = 3;
  for (const std::string& candidate : candidates) {
    const size_t distance = EditDistance(name, candidate);
    // Short names are within 2 edits of almost anything; a guess that replaces the whole
    // name is noise.
    if (distance < best_distance && distance < name.size()) {
      best = candidate;
      best_distance = distance;
    }
  }
  return best;
}

std::string UnknownFieldMessage(const Descriptor* type, absl::string_view name) {
  std::string message = absl::StrCat("unknown field ", Quote(name));
  std::vector<std::string> names;
  for (int i = 0; i < type->field_count(); ++i) {
    const FieldDescriptor* field = type->field(i);
    // camelCase is what protobuf's own JSON printer writes; point such keys at the real name.
    if (field->json_name() == name) {
      return absl::StrCat(message, " (did you mean '", field->name(), "'?)");
    }
    names.push_back(field->name());
  }
  if (absl::string_view best = ClosestName(name, names); !best.empty()) {
    return absl::StrCat(message, " (did you mean '", best, "'?)");
  }
  if (names.empty()) return absl::StrCat(message, "; this message has no fields");
  return absl::StrCat(message, "; expected one of: ", absl::StrJoin(names, ", "));
}

// Lowercase, as users write them.
std::vector<std::string> EnumNames(const EnumDescriptor* type) {
  std::vector<std::string> names;
  for (int i = 0; i < type->value_count(); ++i) {
    names.push_back(absl::AsciiStrToLower(type->value(i)->name()));
  }
  return names;
}

std::string UnknownEnumMessage(const EnumDescriptor* type, absl::string_view text) {
  const std::vector<std::string> names = EnumNames(type);
  std::string message = absl::StrCat("unknown value ", Quote(text));
  std::string normalized = absl::AsciiStrToLower(text);
  std::replace(normalized.begin(), normalized.end(), '-', '_');
  if (absl::string_view best = ClosestName(normalized, names); !best.empty()) {
    absl::StrAppend(&message, " (did you mean '", best, "'?)");
  }
  return absl::StrCat(message, "; expected one of: ", absl::StrJoin(names, ", "));
}

// What a field wants, for "expected X, found Y".
std::string Expected(const FieldDescriptor* field) {
  switch (field->cpp_type()) {
    case FieldDescriptor::CPPTYPE_STRING:
      return "a string";
    case FieldDescriptor::CPPTYPE_BOOL:
      return "a bool (true or false)";
    case FieldDescriptor::CPPTYPE_INT32:
    case FieldDescriptor::CPPTYPE_INT64:
    case FieldDescriptor::CPPTYPE_UINT32:
    case FieldDescriptor::CPPTYPE_UINT64:
      return absl::StrCat("an integer (", field->type_name(), ")");
    case FieldDescriptor::CPPTYPE_FLOAT:
    case FieldDescriptor::CPPTYPE_DOUBLE:
      return "a number";
    case FieldDescriptor::CPPTYPE_ENUM:
      return absl::StrCat("one of: ", absl::StrJoin(EnumNames(field->enum_type()), ", "));
    case FieldDescriptor::CPPTYPE_MESSAGE:
      break;
  }
  const Descriptor* type = field->message_type();
  if (type->full_name() == kDurationType) return "a duration, e.g. 5s";
  if (type->full_name() == kTimestampType) return "a timestamp, e.g. 2024-05-01T12:00:00Z";
  if (type->full_name() == kListValueType) return "a list";
  if (type->full_name() == kValueType) return "a value";
  if (IsWrapperType(type)) return Expected(type->FindFieldByNumber(1));
  return "a map";
}

// One scalar parsed for a field, ready to Set or Add through reflection; the member that
// matters follows the field's cpp_type().
struct ScalarValue {
  int64_t int_value = 0;
  uint64_t uint_value = 0;
  double double_value = 0;
  bool bool_value = false;
  std::string string_value;
  const EnumValueDescriptor* enum_value = nullptr;
};

// Parses `text` for a scalar field; returns an error message, "" on success.
std::string ParseScalarText(const std::string& text, const FieldDescriptor* field,
                            ScalarValue* out) {
  const auto int_range = [&](int64_t min, int64_t max) -> std::string {
    if (!IsDecimalInteger(text)) {
      return absl::StrCat("expected ", Expected(field), ", found ", Quote(text));
    }
    if (!absl::SimpleAtoi(text, &out->int_value) || out->int_value < min || out->int_value > max) {
      return absl::StrCat("value ", text, " is out of range for ", field->type_name(), " (", min,
                          "..", max, ")");
    }
    return "";
  };
  const auto uint_range = [&](uint64_t max) -> std::string {
    if (!IsDecimalInteger(text)) {
      return absl::StrCat("expected ", Expected(field), ", found ", Quote(text));
    }
    if (text[0] == '-') {
      return absl::StrCat("value ", text, " is negative, but ", field->type_name(), " is unsigned");
    }
    if (!absl::SimpleAtoi(text, &out->uint_value) || out->uint_value > max) {
      return absl::StrCat("value ", text, " is out of range for ", field->type_name(), " (0..", max,
                          ")");
    }
    return "";
  };
  const auto number = [&](double max) -> std::string {
    if (ParseNonFinite(text, &out->double_value)) return "";
    if (!IsDecimalNumber(text) || !absl::SimpleAtod(text, &out->double_value)) {
      return absl::StrCat("expected a number, found ", Quote(text));
    }
    // SimpleAtod saturates to infinity on overflow.
    if (!(std::fabs(out->double_value) <= max)) {
      return absl::StrCat("value ", text, " is out of range for ", field->type_name());
    }
    return "";
  };

  switch (field->cpp_type()) {
    case FieldDescriptor::CPPTYPE_STRING:
      out->string_value = text;
      return "";
    case FieldDescriptor::CPPTYPE_BOOL:
      // Only true/false: YAML 1.1's yes/no/on/off are how `country: no` becomes false.
      if (absl::EqualsIgnoreCase(text, "true")) {
        out->bool_value = true;
        return "";
      }
      if (absl::EqualsIgnoreCase(text, "false")) {
        out->bool_value = false;
        return "";
      }
      return absl::StrCat("expected ", Expected(field), ", found ", Quote(text));
    case FieldDescriptor::CPPTYPE_INT32:
      return int_range(std::numeric_limits<int32_t>::min(), std::numeric_limits<int32_t>::max());
    case FieldDescriptor::CPPTYPE_INT64:
      return int_range(std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max());
    case FieldDescriptor::CPPTYPE_UINT32:
      return uint_range(std::numeric_limits<uint32_t>::max());
    case FieldDescriptor::CPPTYPE_UINT64:
      return uint_range(std::numeric_limits<uint64_t>::max());
    case FieldDescriptor::CPPTYPE_FLOAT:
      return number(std::numeric_limits<float>::max());
    case FieldDescriptor::CPPTYPE_DOUBLE:
      return number(std::numeric_limits<double>::max());
    case FieldDescriptor::CPPTYPE_ENUM: {
      // "least-request" and "Least_Request" both name LEAST_REQUEST.
      std::string name = text;
      std::replace(name.begin(), name.end(), '-', '_');
      const EnumDescriptor* type = field->enum_type();
      for (int i = 0; i < type->value_count(); ++i) {
        if (absl::EqualsIgnoreCase(type->value(i)->name(), name)) {
          out->enum_value = type->value(i);
          return "";
        }
      }
      return UnknownEnumMessage(type, text);
    }
    case FieldDescriptor::CPPTYPE_MESSAGE:
      break;
  }
  return absl::StrCat("expected ", Expected(field));
}

// Sets a singular field or appends to a repeated one.
void StoreScalar(Message* msg, const FieldDescriptor* field, ScalarValue value) {
  const Reflection* reflection = msg->GetReflection();
  const bool add = field->is_repeated();
  switch (field->cpp_type()) {
    case FieldDescriptor::CPPTYPE_STRING:
      add ? reflection->AddString(msg, field, std::move(value.string_value))
          : reflection->SetString(msg, field, std::move(value.string_value));
      return;
    case FieldDescriptor::CPPTYPE_BOOL:
      add ? reflection->AddBool(msg, field, value.bool_value)
          : reflection->SetBool(msg, field, value.bool_value);
      return;
    case FieldDescriptor::CPPTYPE_INT32:
      add ? reflection->AddInt32(msg, field, static_cast<int32_t>(value.int_value))
          : reflection->SetInt32(msg, field, static_cast<int32_t>(value.int_value));
      return;
    case FieldDescriptor::CPPTYPE_INT64:
      add ? reflection->AddInt64(msg, field, value.int_value)
          : reflection->SetInt64(msg, field, value.int_value);
      return;
    case FieldDescriptor::CPPTYPE_UINT32:
      add ? reflection->AddUInt32(msg, field, static_cast<uint32_t>(value.uint_value))
          : reflection->SetUInt32(msg, field, static_cast<uint32_t>(value.uint_value));
      return;
    case FieldDescriptor::CPPTYPE_UINT64:
      add ? reflection->AddUInt64(msg, field, value.uint_value)
          : reflection->SetUInt64(msg, field, value.uint_value);
      return;
    case FieldDescriptor::CPPTYPE_FLOAT:
      add ? reflection->AddFloat(msg, field, static_cast<float>(value.double_value))
          : reflection->SetFloat(msg, field, static_cast<float>(value.double_value));
      return;
    case FieldDescriptor::CPPTYPE_DOUBLE:
      add ? reflection->AddDouble(msg, field, value.double_value)
          : reflection->SetDouble(msg, field, value.double_value);
      return;
    case FieldDescriptor::CPPTYPE_ENUM:
      add ? reflection->AddEnum(msg, field, value.enum_value)
          : reflection->SetEnum(msg, field, value.enum_value);
      return;
    case FieldDescriptor::CPPTYPE_MESSAGE:
      return;
  }
}

// Well-known types are reached through reflection by field name, not through the generated
// classes, so dynamic messages (descriptors loaded at run time) convert too.
const FieldDescriptor* FieldNamed(const Message& msg, absl::string_view name) {
  return msg.GetDescriptor()->FindFieldByName(std::string(name));
}

void SetSecondsAndNanos(Message* msg, int64_t seconds, int32_t nanos) {
  const Reflection* reflection = msg->GetReflection();
  reflection->SetInt64(msg, FieldNamed(*msg, "seconds"), seconds);
  reflection->SetInt32(msg, FieldNamed(*msg, "nanos"), nanos);
}

// Walks one document, appending an error per problem and carrying on with the next field.
class Converter {
 public:
  explicit Converter(ConfigErrors* errors) : errors_(errors) {}

  // Any message, well-known or not. A null node leaves a message untouched (a Value becomes
  // null_value).
  void ToMessage(const YAML::Node& node, Message* msg, const std::string& path, int depth) {
    if (depth > kMaxDepth) {
      Error(path, node, absl::StrCat("nested deeper than ", kMaxDepth, " levels"));
      return;
    }
    const Descriptor* type = msg->GetDescriptor();
    const std::string& name = type->full_name();
    if (name == kValueType) return ToValue(node, msg, path, depth);
    if (node.IsNull()) return;
    if (name == kDurationType) return ToDuration(node, msg, path);
    if (name == kTimestampType) return ToTimestamp(node, msg, path);
    if (name == kStructType) return ToStruct(node, msg, path, depth);
    if (name == kListValueType) return ToListValue(node, msg, path, depth);
    if (IsWrapperType(type)) return ToScalarField(node, msg, type->FindFieldByNumber(1), path);
    if (node.IsMap()) return ToFields(node, msg, path, depth);
    // Shorthand: `endpoints: [127.0.0.1:8080]` means {address: 127.0.0.1:8080}, since the
    // field a message is usually written for is its first.
    const FieldDescriptor* first = type->FindFieldByNumber(1);
    if (node.IsScalar() && first != nullptr && !first->is_repeated() &&
        first->cpp_type() != FieldDescriptor::CPPTYPE_MESSAGE) {
      return ToScalarField(node, msg, first, path);
    }
    Error(path, node, absl::StrCat("expected a map, found ", Describe(node)));
  }

 private:
  void Error(const std::string& path, const YAML::Node& node, std::string message) {
    ConfigError error{path, std::move(message)};
    const YAML::Mark mark = node.Mark();
    if (!mark.is_null() && mark.line >= 0) {
      error.line = mark.line + 1;
      error.column = mark.column + 1;
    }
    errors_->push_back(std::move(error));
  }

  // The keys of a map must be scalars; returns false (after an error) when one is not.
  bool CheckKey(const YAML::Node& key, const std::string& path) {
    if (key.IsScalar()) return true;
    Error(path, key, absl::StrCat("map keys must be strings, found ", Describe(key)));
    return false;
  }

  void ToFields(const YAML::Node& node, Message* msg, const std::string& path, int depth) {
    const Descriptor* type = msg->GetDescriptor();
    // yaml-cpp keeps duplicate keys; the second would silently append to a list or override a
    // value, so it is an error.
    std::set<std::string> seen;
    std::map<const OneofDescriptor*, const FieldDescriptor*> oneof_members;
    for (const auto& entry : node) {
      const YAML::Node& key = entry.first;
      const YAML::Node& value = entry.second;
      if (!CheckKey(key, path)) continue;
      const std::string& name = key.Scalar();
      const std::string field_path = FieldPath(path, name);
      if (!seen.insert(name).second) {
        Error(field_path, key, absl::StrCat("duplicate key ", Quote(name)));
        continue;
      }
      const FieldDescriptor* field = type->FindFieldByName(name);
      if (field == nullptr) {
        Error(field_path, key, UnknownFieldMessage(type, name));
        continue;
      }
      if (value.IsNull()) continue;
      if (const OneofDescriptor* oneof = field->real_containing_oneof()) {
        const auto [it, inserted] = oneof_members.emplace(oneof, field);
        if (!inserted) {
          Error(field_path, key,
                absl::StrCat("'", name, "' and '", it->second->name(),
                             "' are both set, but only one of them may be (oneof '", oneof->name(),
                             "')"));
          continue;
        }
      }
      ToField(value, msg, field, field_path, depth);
    }
  }

  // A non-null value for one field of `msg`.
  void ToField(const YAML::Node& value, Message* msg, const FieldDescriptor* field,
               const std::string& path, int depth) {
    if (field->is_map()) return ToMapField(value, msg, field, path, depth);
    if (!field->is_repeated()) return ToElement(value, msg, field, path, depth);
    if (!value.IsSequence()) {
      Error(path, value, absl::StrCat("expected a list, found ", Describe(value)));
      return;
    }
    size_t index = 0;
    for (const YAML::Node& element : value) {
      ToElement(element, msg, field, IndexPath(path, index++), depth);
    }
  }

  // map<K, V>: a YAML map whose keys are parsed as K.
  void ToMapField(const YAML::Node& value, Message* msg, const FieldDescriptor* field,
                  const std::string& path, int depth) {
    if (!value.IsMap()) {
      Error(path, value, absl::StrCat("expected a map, found ", Describe(value)));
      return;
    }
    const FieldDescriptor* key_field = field->message_type()->map_key();
    const FieldDescriptor* value_field = field->message_type()->map_value();
    std::set<std::string> seen;
    for (const auto& entry : value) {
      const YAML::Node& key = entry.first;
      if (!CheckKey(key, path)) continue;
      const std::string& text = key.Scalar();
      const std::string key_path = key_field->cpp_type() == FieldDescriptor::CPPTYPE_STRING
                                       ? KeyPath(path, text)
                                       : absl::StrCat(path, "[", text, "]");
      if (!seen.insert(text).second) {
        Error(key_path, key, absl::StrCat("duplicate key ", Quote(text)));
        continue;
      }
      ScalarValue key_value;
      if (std::string error = ParseScalarText(text, key_field, &key_value); !error.empty()) {
        Error(key_path, key, absl::StrCat("invalid key: ", error));
        continue;
      }
      Message* map_entry = msg->GetReflection()->AddMessage(msg, field);
      StoreScalar(map_entry, key_field, std::move(key_value));
      ToElement(entry.second, map_entry, value_field, key_path, depth);
    }
  }

  // One value of a singular field, a list element, or a map value. Null is an error here
  // (except for Value): unlike a field left out, an empty list item is most likely a slip.
  void ToElement(const YAML::Node& value, Message* msg, const FieldDescriptor* field,
                 const std::string& path, int depth) {
    if (field->cpp_type() != FieldDescriptor::CPPTYPE_MESSAGE) {
      return ToScalarField(value, msg, field, path);
    }
    if (value.IsNull() && field->message_type()->full_name() != kValueType) {
      Error(path, value, absl::StrCat("expected ", Expected(field), ", found null"));
      return;
    }
    const Reflection* reflection = msg->GetReflection();
    Message* child = field->is_repeated() ? reflection->AddMessage(msg, field)
                                          : reflection->MutableMessage(msg, field);
    ToMessage(value, child, path, depth + 1);
  }

  void ToScalarField(const YAML::Node& value, Message* msg, const FieldDescriptor* field,
                     const std::string& path) {
    if (!value.IsScalar()) {
      Error(path, value, absl::StrCat("expected ", Expected(field), ", found ", Describe(value)));
      return;
    }
    ScalarValue parsed;
    if (std::string error = ParseScalarText(value.Scalar(), field, &parsed); !error.empty()) {
      Error(path, value, std::move(error));
      return;
    }
    StoreScalar(msg, field, std::move(parsed));
  }

  void ToDuration(const YAML::Node& node, Message* msg, const std::string& path) {
    if (!node.IsScalar()) {
      Error(path, node, absl::StrCat("expected a duration, e.g. 5s, found ", Describe(node)));
      return;
    }
    const absl::StatusOr<absl::Duration> duration = ParseDuration(node.Scalar());
    if (!duration.ok()) {
      Error(path, node, std::string(duration.status().message()));
      return;
    }
    absl::Duration remainder;
    const int64_t seconds = absl::IDivDuration(*duration, absl::Seconds(1), &remainder);
    if (seconds > kMaxDurationSeconds) {
      Error(path, node,
            absl::StrCat("invalid duration ", Quote(node.Scalar()), ": out of range (at most ",
                         kMaxDurationSeconds, "s)"));
      return;
    }
    SetSecondsAndNanos(msg, seconds, static_cast<int32_t>(absl::ToInt64Nanoseconds(remainder)));
  }

  void ToTimestamp(const YAML::Node& node, Message* msg, const std::string& path) {
    const std::string expected = "expected an RFC 3339 timestamp, e.g. 2024-05-01T12:00:00Z";
    if (!node.IsScalar()) {
      Error(path, node, absl::StrCat(expected, ", found ", Describe(node)));
      return;
    }
    absl::Time time;
    std::string why;
    if (!absl::ParseTime(absl::RFC3339_full, node.Scalar(), &time, &why)) {
      Error(path, node,
            absl::StrCat("invalid timestamp ", Quote(node.Scalar()), ": ", why, "; ", expected));
      return;
    }
    const int64_t seconds = absl::ToUnixSeconds(time);
    if (seconds < kMinTimestampSeconds || seconds > kMaxTimestampSeconds) {
      Error(path, node,
            absl::StrCat("invalid timestamp ", Quote(node.Scalar()),
                         ": out of range (years 0001 to 9999)"));
      return;
    }
    SetSecondsAndNanos(
        msg, seconds,
        static_cast<int32_t>(absl::ToInt64Nanoseconds(time - absl::FromUnixSeconds(seconds))));
  }

  // google.protobuf.Value: any YAML. Plain scalars are typed the YAML 1.2 way (numbers, bools);
  // quoted ones stay strings, so `"8080"` is the way to keep a string.
  void ToValue(const YAML::Node& node, Message* msg, const std::string& path, int depth) {
    const Reflection* reflection = msg->GetReflection();
    switch (node.Type()) {
      case YAML::NodeType::Null:
      case YAML::NodeType::Undefined:
        reflection->SetEnumValue(msg, FieldNamed(*msg, "null_value"), 0);
        return;
      case YAML::NodeType::Map:
        return ToStruct(node, reflection->MutableMessage(msg, FieldNamed(*msg, "struct_value")),
                        path, depth);
      case YAML::NodeType::Sequence:
        return ToListValue(node, reflection->MutableMessage(msg, FieldNamed(*msg, "list_value")),
                           path, depth);
      case YAML::NodeType::Scalar:
        break;
    }
    const std::string& text = node.Scalar();
    if (IsPlain(node)) {
      if (absl::EqualsIgnoreCase(text, "true") || absl::EqualsIgnoreCase(text, "false")) {
        reflection->SetBool(msg, FieldNamed(*msg, "bool_value"),
                            absl::EqualsIgnoreCase(text, "true"));
        return;
      }
      double number;
      if (IsDecimalNumber(text) && absl::SimpleAtod(text, &number)) {
        // JSON, and so ProtoToJson, cannot carry infinities; refuse them here, not at dump time.
        if (!std::isfinite(number)) {
          Error(path, node, absl::StrCat("number ", text, " is out of range for a double"));
          return;
        }
        reflection->SetDouble(msg, FieldNamed(*msg, "number_value"), number);
        return;
      }
    }
    reflection->SetString(msg, FieldNamed(*msg, "string_value"), text);
  }

  void ToStruct(const YAML::Node& node, Message* msg, const std::string& path, int depth) {
    if (depth > kMaxDepth) {
      Error(path, node, absl::StrCat("nested deeper than ", kMaxDepth, " levels"));
      return;
    }
    if (!node.IsMap()) {
      Error(path, node, absl::StrCat("expected a map, found ", Describe(node)));
      return;
    }
    const FieldDescriptor* fields = FieldNamed(*msg, "fields");
    const FieldDescriptor* key_field = fields->message_type()->map_key();
    const FieldDescriptor* value_field = fields->message_type()->map_value();
    std::set<std::string> seen;
    for (const auto& entry : node) {
      if (!CheckKey(entry.first, path)) continue;
      const std::string& key = entry.first.Scalar();
      const std::string key_path = StructKeyPath(path, key);
      if (!seen.insert(key).second) {
        Error(key_path, entry.first, absl::StrCat("duplicate key ", Quote(key)));
        continue;
      }
      Message* map_entry = msg->GetReflection()->AddMessage(msg, fields);
      map_entry->GetReflection()->SetString(map_entry, key_field, key);
      ToValue(entry.second, map_entry->GetReflection()->MutableMessage(map_entry, value_field),
              key_path, depth + 1);
    }
  }

  void ToListValue(const YAML::Node& node, Message* msg, const std::string& path, int depth) {
    if (depth > kMaxDepth) {
      Error(path, node, absl::StrCat("nested deeper than ", kMaxDepth, " levels"));
      return;
    }
    if (!node.IsSequence()) {
      Error(path, node, absl::StrCat("expected a list, found ", Describe(node)));
      return;
    }
    const FieldDescriptor* values = FieldNamed(*msg, "values");
    size_t index = 0;
    for (const YAML::Node& element : node) {
      ToValue(element, msg->GetReflection()->AddMessage(msg, values), IndexPath(path, index++),
              depth + 1);
    }
  }

  ConfigErrors* errors_;
};

// Struct → YAML, so a filter's config goes through the same converter as the file it came from.
// Strings are tagged as quoted so "8080" stays a string if it lands in a nested Struct.
YAML::Node ValueToYaml(const google::protobuf::Value& value) {
  switch (value.kind_case()) {
    case google::protobuf::Value::kNumberValue: {
      const double number = value.number_value();
      // Integral values print without an exponent so they still parse into integer fields.
      if (std::trunc(number) == number && std::fabs(number) < 9.2e18) {
        return YAML::Node(absl::StrCat(static_cast<int64_t>(number)));
      }
      char buffer[64];
      const auto result = std::to_chars(buffer, buffer + sizeof(buffer), number);
      return YAML::Node(std::string(buffer, result.ptr));
    }
    case google::protobuf::Value::kStringValue: {
      YAML::Node node(value.string_value());
      node.SetTag("!");
      return node;
    }
    case google::protobuf::Value::kBoolValue:
      return YAML::Node(value.bool_value() ? "true" : "false");
    case google::protobuf::Value::kStructValue: {
      YAML::Node node(YAML::NodeType::Map);
      // Sorted, so errors come out in a stable order; protobuf maps have none.
      std::map<absl::string_view, const google::protobuf::Value*> sorted;
      for (const auto& [key, field] : value.struct_value().fields()) sorted.emplace(key, &field);
      for (const auto& [key, field] : sorted) node[std::string(key)] = ValueToYaml(*field);
      return node;
    }
    case google::protobuf::Value::kListValue: {
      YAML::Node node(YAML::NodeType::Sequence);
      for (const auto& element : value.list_value().values()) node.push_back(ValueToYaml(element));
      return node;
    }
    case google::protobuf::Value::kNullValue:
    case google::protobuf::Value::KIND_NOT_SET:
      break;
  }
  return YAML::Node(YAML::NodeType::Null);
}

std::string ErrnoText(int error) {
  char buffer[256];
  // GNU strerror_r: returns the message, which may or may not be in `buffer`.
  return strerror_r(error, buffer, sizeof(buffer));
}

}  // namespace

std::string ConfigError::ToString() const {
  if (path.empty()) return message;
  return absl::StrCat(path, ": ", message);
}

bool YamlToProto(const YAML::Node& node, google::protobuf::Message* out, ConfigErrors* errors,
                 const std::string& path_prefix) {
  ConfigErrors ignored;
  if (errors == nullptr) errors = &ignored;
  const size_t errors_before = errors->size();
  try {
    Converter(errors).ToMessage(node, out, path_prefix, 0);
  } catch (const YAML::Exception& e) {
    // Reading a parsed tree should not throw; if yaml-cpp does, report it rather than crash.
    errors->push_back({path_prefix, absl::StrCat("cannot read YAML: ", e.what())});
  }
  // Only proto2 messages have required fields; proto3 configs never get here.
  if (!out->IsInitialized()) {
    std::vector<std::string> missing;
    out->FindInitializationErrors(&missing);
    for (const std::string& field : missing) {
      errors->push_back({FieldPath(path_prefix, field), "missing required field"});
    }
  }
  return errors->size() == errors_before;
}

bool YamlTextToProto(std::string_view text, google::protobuf::Message* out, ConfigErrors* errors) {
  ConfigErrors ignored;
  if (errors == nullptr) errors = &ignored;
  std::vector<YAML::Node> documents;
  try {
    documents = YAML::LoadAll(std::string(text));
  } catch (const YAML::ParserException& e) {
    ConfigError error{"", absl::StrCat("YAML syntax error: ", e.msg)};
    if (!e.mark.is_null() && e.mark.line >= 0) {
      error.line = e.mark.line + 1;
      error.column = e.mark.column + 1;
      error.message =
          absl::StrCat("YAML syntax error at ", error.line, ":", error.column, ": ", e.msg);
    }
    errors->push_back(std::move(error));
    return false;
  } catch (const YAML::Exception& e) {
    errors->push_back({"", absl::StrCat("cannot read YAML: ", e.what())});
    return false;
  }
  if (documents.empty()) return true;
  if (documents.size() > 1) {
    ConfigError error{"", absl::StrCat("expected one YAML document, found ", documents.size(),
                                       " (separated by '---')")};
    const YAML::Mark mark = documents[1].Mark();
    if (!mark.is_null() && mark.line >= 0) {
      error.line = mark.line + 1;
      error.column = mark.column + 1;
    }
    errors->push_back(std::move(error));
    return false;
  }
  return YamlToProto(documents[0], out, errors);
}

bool YamlFileToProto(const std::string& path, google::protobuf::Message* out,
                     ConfigErrors* errors) {
  ConfigErrors ignored;
  if (errors == nullptr) errors = &ignored;
  std::FILE* file = std::fopen(path.c_str(), "rb");
  if (file == nullptr) {
    errors->push_back({"", absl::StrCat("cannot open ", path, ": ", ErrnoText(errno))});
    return false;
  }
  std::string text;
  char buffer[1 << 16];
  size_t read;
  while ((read = std::fread(buffer, 1, sizeof(buffer), file)) > 0) text.append(buffer, read);
  const int read_errno = errno;
  const bool failed = std::ferror(file) != 0;
  std::fclose(file);
  if (failed) {
    errors->push_back({"", absl::StrCat("cannot read ", path, ": ", ErrnoText(read_errno))});
    return false;
  }
  return YamlTextToProto(text, out, errors);
}

bool StructToProto(const google::protobuf::Struct& config, google::protobuf::Message* out,
                   ConfigErrors* errors, const std::string& path_prefix) {
  google::protobuf::Value value;
  *value.mutable_struct_value() = config;
  return YamlToProto(ValueToYaml(value), out, errors, path_prefix);
}

absl::StatusOr<absl::Duration> ParseDuration(std::string_view std_text) {
  const absl::string_view text(std_text.data(), std_text.size());
  const auto invalid = [&](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat("invalid duration ", Quote(text), ": ", why));
  };
  constexpr absl::string_view kUnits = "(ns, us, ms, s, m, h)";
  const auto is_unit = [](absl::string_view unit) {
    return unit == "ns" || unit == "us" || unit == "ms" || unit == "s" || unit == "m" ||
           unit == "h";
  };

  absl::string_view rest = absl::StripAsciiWhitespace(text);
  const bool negative = absl::ConsumePrefix(&rest, "-");
  size_t i = 0;
  while (i < rest.size() && absl::ascii_isdigit(rest[i])) ++i;
  const size_t integer_digits = i;
  if (i < rest.size() && rest[i] == '.') {
    ++i;
    const size_t fraction_start = i;
    while (i < rest.size() && absl::ascii_isdigit(rest[i])) ++i;
    if (i == fraction_start) i = fraction_start - 1;  // "5.s": the '.' is not part of the number
  }
  if (integer_digits == 0) {
    return invalid(absl::StrCat("needs a number and a unit ", kUnits, ", e.g. 5s"));
  }
  const absl::string_view number = rest.substr(0, i);
  const absl::string_view unit = rest.substr(i);
  if (unit.empty()) return invalid(absl::StrCat("needs a unit ", kUnits, ", e.g. 5s"));
  if (!is_unit(unit)) {
    const size_t digit = unit.find_first_of("0123456789");
    if (digit != absl::string_view::npos && is_unit(unit.substr(0, digit))) {
      return invalid("write one number and one unit, e.g. 90m rather than 1h30m");
    }
    return invalid(absl::StrCat("unknown unit ", Quote(unit), "; use one of ", kUnits));
  }
  if (negative) return invalid("must not be negative");
  absl::Duration duration;
  // The text is validated above; absl does the exact decimal arithmetic.
  if (!absl::ParseDuration(absl::StrCat(number, unit), &duration) ||
      duration == absl::InfiniteDuration()) {
    return invalid("out of range");
  }
  return duration;
}

std::string ProtoToJson(const google::protobuf::Message& msg) {
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  options.add_whitespace = true;
  std::string json;
  const auto status = google::protobuf::util::MessageToJsonString(msg, &json, options);
  if (status.ok()) return json;
  google::protobuf::Struct error;
  (*error.mutable_fields())["error"].set_string_value(std::string(status.message()));
  json.clear();
  // A one-string Struct always prints.
  (void)google::protobuf::util::MessageToJsonString(error, &json, options);
  return json;
}

}  // namespace portway::config
