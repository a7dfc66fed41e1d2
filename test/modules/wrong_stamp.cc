// A module built "for another gateway": its entry points are written by hand
// so that its ABI stamp is not this build's. Its registration must never
// run (it would register "test.wrong_stamp").
#include <cstddef>
#include <memory>

#include "google/protobuf/empty.pb.h"
#include "portway/filter_factory.h"

namespace {

class WrongStampFactory : public portway::http::FilterFactory {
 public:
  std::string_view Name() const override { return "test.wrong_stamp"; }
  std::unique_ptr<google::protobuf::Message> NewConfig() const override {
    return std::make_unique<google::protobuf::Empty>();
  }
  absl::StatusOr<portway::http::FilterFactoryCallback> Create(
      const google::protobuf::Message&) const override {
    return absl::UnimplementedError("never created");
  }
};

}  // namespace

extern "C" __attribute__((visibility("default"))) const char* portway_module_abi_stamp() {
  return "portway 0.0.1; sdk 0000000000000000; gcc 1.0; libstdc++ cxx11; c++ 201703L";
}

extern "C" __attribute__((visibility("default"))) bool portway_module_register(
    portway::http::FilterRegistry* registry, char*, size_t) {
  (void)registry->Register(std::make_unique<WrongStampFactory>());
  return true;
}
