#include "core/http/module_loader.h"

#include <dlfcn.h>
#include <sys/stat.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <vector>

#include "core/common/strings.h"
#include "portway/module.h"

namespace portway::http {
namespace {

// Collects a module's factories so that none is registered unless all can
// be. The first failed Register() call fails the module, even when the
// module ignored the status it got back.
class StagingRegistry : public FilterRegistry {
 public:
  explicit StagingRegistry(const FilterRegistryImpl& target) : target_(target) {}

  absl::Status Register(std::unique_ptr<FilterFactory> factory) override {
    absl::Status status = Check(factory.get());
    if (!status.ok()) {
      if (first_error_.ok()) first_error_ = status;
      return status;
    }
    staged_.push_back(std::move(factory));
    return absl::OkStatus();
  }

  const absl::Status& first_error() const { return first_error_; }
  std::vector<std::unique_ptr<FilterFactory>>& staged() { return staged_; }

 private:
  absl::Status Check(const FilterFactory* factory) const {
    if (factory == nullptr) return absl::InvalidArgumentError("it registered a null factory");
    std::string_view name = factory->Name();
    if (name.empty()) return absl::InvalidArgumentError("it registered a factory without a name");
    if (target_.Find(name) != nullptr) {
      return absl::AlreadyExistsError(Cat("filter '", name, "' is already registered"));
    }
    for (const auto& staged : staged_) {
      if (staged->Name() == name) {
        return absl::AlreadyExistsError(Cat("it registers filter '", name, "' twice"));
      }
    }
    return absl::OkStatus();
  }

  const FilterRegistryImpl& target_;
  std::vector<std::unique_ptr<FilterFactory>> staged_;
  absl::Status first_error_;
};

std::string DlError() {
  const char* e = dlerror();
  return e != nullptr ? std::string(e) : std::string("unknown error");
}

}  // namespace

const char* GatewayAbiStamp() { return PORTWAY_ABI_STAMP; }

absl::Status LoadModule(const std::string& path, FilterRegistryImpl& registry) {
  auto refuse = [&path](std::string_view reason) {
    return absl::FailedPreconditionError(Cat("cannot load module '", path, "': ", reason));
  };
  if (path.empty()) return absl::InvalidArgumentError("cannot load module '': the path is empty");

  // The canonical path is the module's identity: the same file named two
  // ways is loaded once.
  char resolved[PATH_MAX];
  if (realpath(path.c_str(), resolved) == nullptr) {
    int err = errno;
    return refuse(err == ENOENT ? std::string("no such file")
                                : Cat("cannot resolve the path: ", std::strerror(err)));
  }
  std::string canonical(resolved);
  if (registry.HasModule(canonical)) return absl::OkStatus();
  struct stat st;
  if (stat(canonical.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
    return refuse("not a regular file");
  }

  // RTLD_NOW: an SDK symbol this binary lacks (a module built against other
  // headers) fails here, not at its first call on a worker. RTLD_LOCAL: one
  // module's symbols never satisfy another's.
  dlerror();
  void* handle = dlopen(canonical.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    return refuse(Cat("not a loadable shared object (dlopen: ", DlError(), ")"));
  }
  // Only the module's static initializers have run so far: unloading it
  // again is safe until its registration runs.
  auto unload = [handle] { dlclose(handle); };

  dlerror();
  auto stamp_fn = reinterpret_cast<ModuleAbiStampFn>(dlsym(handle, kModuleAbiStampSymbol));
  auto register_fn = reinterpret_cast<ModuleRegisterFn>(dlsym(handle, kModuleRegisterSymbol));
  if (stamp_fn == nullptr || register_fn == nullptr) {
    unload();
    return refuse(Cat("not a Portway module: it does not export ",
                      stamp_fn == nullptr ? kModuleAbiStampSymbol : kModuleRegisterSymbol,
                      " (define the entry points with PORTWAY_MODULE, see portway/module.h)"));
  }
  const char* stamp = stamp_fn();
  const char* own = GatewayAbiStamp();
  if (stamp == nullptr || std::strcmp(stamp, own) != 0) {
    std::string theirs = stamp == nullptr ? std::string("(none)") : Cat("'", stamp, "'");
    unload();
    return refuse(Cat("ABI stamp mismatch: the module was built for ", theirs,
                      ", this gateway is '", own,
                      "'; rebuild the module against this gateway's installed SDK"));
  }

  // From here on the module's own code has run: it stays mapped whatever
  // happens, since what it did cannot be undone safely.
  StagingRegistry staging(registry);
  char error[1024] = {0};
  bool ok = false;
  try {
    ok = register_fn(&staging, error, sizeof(error));
  } catch (const std::exception& e) {
    // PORTWAY_MODULE catches; a hand-written entry point might not.
    module_internal::CopyError(e.what(), error, sizeof(error));
  } catch (...) {
    module_internal::CopyError("an exception that is not a std::exception", error, sizeof(error));
  }
  if (!ok) {
    staging.staged().clear();  // the module's destructors, while it is mapped
    return refuse(Cat("its registration failed: ", error[0] != '\0' ? error : "no reason given"));
  }
  if (!staging.first_error().ok()) {
    staging.staged().clear();
    return refuse(std::string(staging.first_error().message()));
  }
  if (staging.staged().empty()) return refuse("it registers no filter");
  for (auto& factory : staging.staged()) {
    absl::Status status = registry.Register(std::move(factory));
    if (!status.ok()) return refuse(std::string(status.message()));  // checked above
  }
  registry.AddModule(std::move(canonical));
  return absl::OkStatus();
}

}  // namespace portway::http
