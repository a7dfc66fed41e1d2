// Loads filter modules: shared objects that register filter factories
// through the entry points PORTWAY_MODULE defines (portway/module.h).
//
// LoadModule checks, in order, and refuses the module at the first failure
// with an error naming the file and the reason:
//   1. the file exists and is a regular file;
//   2. in a forked probe process: dlopen(RTLD_NOW | RTLD_LOCAL) takes it
//      (every symbol resolves against this binary and the module's own
//      libraries) without its static initializers ending the process (a
//      crash; protobuf aborting on a .proto file another module defined
//      already), it exports portway_module_abi_stamp and
//      portway_module_register, and its ABI stamp equals this binary's
//      PORTWAY_ABI_STAMP byte for byte (the error shows both);
//   3. the same checks again in this process, now that they are known to
//      be safe;
//   4. its registration returns without an exception or error, and every
//      filter name it registers is new to the registry and to the module.
// Registration is all or nothing: the module's factories are collected
// first and only then moved into `registry`.
//
// So a module this process maps has passed its checks once already: a
// module built for another gateway, or one that would crash it, is never
// mapped here. A module's static initializers run twice (probe and here):
// they must have no effect outside the process.
//
// A module that was loaded stays loaded for the life of the process (its
// filters may be in use on a worker); loading the same file (after symlinks
// are resolved) into the same registry again is a no-op. A refused module
// is unloaded again only when none of its code ran beyond its static
// initializers; after a failed registration it stays mapped, unused, since
// what it did before failing cannot be undone.
//
// Thread safety: main thread only (dlopen, the registry).
//
//   absl::Status s = LoadModule("/opt/portway/modules/api_key.so", GlobalFilterRegistry());
//   if (!s.ok()) std::cerr << s.message() << "\n";
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/http/filter_registry.h"

namespace portway::http {

absl::Status LoadModule(const std::string& path, FilterRegistryImpl& registry);

// The SHA-256 of the file at `path`, as 64 lowercase hex digits (what
// sha256sum prints), for control_plane.allowed_modules pins.
absl::StatusOr<std::string> FileSha256(const std::string& path);

// This binary's ABI stamp (PORTWAY_ABI_STAMP, see portway/abi.h).
const char* GatewayAbiStamp();

}  // namespace portway::http
