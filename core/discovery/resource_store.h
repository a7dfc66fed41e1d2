// The gateway's side of the discovery protocol, without the network: the
// resources a control plane sent, each with the version it runs, the last
// version accepted and the last error, and the config they make together
// with the bootstrap's static resources. docs/control-plane.md has the
// rules this implements.
//
// A push is taken resource by resource: each is validated on its own
// (against what the gateway would run if the push were taken), valid ones
// are accepted, invalid ones keep their last good version and are reported
// with every error and its path. A resource whose dependencies are not
// ready (a cluster of type EDS without its Endpoints, a listener whose
// routes name a cluster that is still warming) is accepted but pending: the
// previous version keeps serving until it is ready (make-before-break).
// Removing a cluster or route configuration that a remaining resource still
// uses is refused.
//
// Thread safety: none; the server's main thread owns it.
//
//   ResourceStore store(static_bootstrap, validate);
//   auto outcome = store.OnPush(push);        // send outcome.verdicts
//   if (outcome.changed) Apply(store.Serving());
#pragma once

#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "core/config/yaml_proto.h"
#include "portway/config/v1/bootstrap.pb.h"
#include "portway/service/discovery/v1/discovery.pb.h"

namespace portway::discovery {

namespace v1 = portway::service::discovery::v1;

class ResourceStore {
 public:
  // Checks a whole bootstrap (without binding anything); errors carry
  // paths into it. The server passes ConfigBuilder with open_files=false.
  using Validator = std::function<bool(const config::v1::Bootstrap&, config::ConfigErrors*)>;

  ResourceStore(config::v1::Bootstrap static_bootstrap, Validator validate);

  struct Outcome {
    v1::Verdicts verdicts;  // one per resource the push named
    bool changed = false;   // Serving() differs from before the push
  };
  Outcome OnPush(const v1::Push& push);

  // The static bootstrap plus every dynamic resource's serving version,
  // with route configurations and endpoints folded into their listeners
  // and clusters: what the server builds and runs.
  const config::v1::Bootstrap& Serving() const { return serving_; }
  // The static part (the bootstrap file); a SIGHUP replaces it.
  const config::v1::Bootstrap& Static() const { return static_; }
  void SetStatic(config::v1::Bootstrap bootstrap);

  struct Entry {
    v1::ResourceType type;
    std::string name;
    std::string serving_version;   // "" when nothing serves yet
    std::string accepted_version;  // the last accepted
    std::string pending;           // why the accepted version does not serve yet
    std::string rejected_version;  // the last rejected, if after the accepted one
    std::vector<v1::FieldError> errors;
  };
  // Every dynamic resource, in (type, name) order.
  std::vector<Entry> Entries() const;
  // What serves, for Hello.have.
  std::vector<v1::ResourceVersion> Have() const;
  // Records that `resource` was rejected for a reason found outside the
  // store (e.g. its listener could not bind); its last good version stays.
  void RecordRejection(const v1::Resource& resource, std::vector<v1::FieldError> errors);
  // What serves, as one full-state push (nonce "persisted"): what the
  // gateway persists, and reads back at start with OnPush().
  v1::Push ServingAsPush() const;

 private:
  using Key = std::pair<int, std::string>;  // (ResourceType, name)
  struct Slot {
    v1::Resource accepted;  // the last accepted version
    bool has_accepted = false;
    v1::Resource serving;  // what runs (may be older than accepted)
    bool has_serving = false;
    std::string pending;
    std::string rejected_version;
    std::vector<v1::FieldError> errors;
  };

  // Checks one resource against `candidate` (the accepted set if this push
  // were taken); errors relative to the resource.
  std::vector<v1::FieldError> Check(const v1::Resource& resource,
                                    const std::map<Key, v1::Resource>& candidate) const;
  // Folds `resources` into a bootstrap on top of the static one.
  config::v1::Bootstrap Merge(const std::map<Key, v1::Resource>& resources) const;
  // Why `resource` cannot serve yet with `ready` serving, or "".
  std::string NotReady(const v1::Resource& resource,
                       const std::map<Key, v1::Resource>& ready) const;
  void Recompute();

  config::v1::Bootstrap static_;
  Validator validate_;
  std::map<Key, Slot> slots_;
  config::v1::Bootstrap serving_;
};

// The type of a resource from its body; RESOURCE_TYPE_UNSPECIFIED if none.
v1::ResourceType TypeOf(const v1::Resource& resource);
const char* TypeName(v1::ResourceType type);

}  // namespace portway::discovery
