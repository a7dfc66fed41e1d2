#include "core/http/module_loader.h"

#include "core/upstream/health_checker_registry.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <vector>

#include "core/common/strings.h"
#include "openssl/evp.h"
#include "portway/module.h"

namespace portway::http {
namespace {

// How long the probe (below) may take before the module is refused.
constexpr std::chrono::seconds kProbeTimeout{10};
// Separates what the probe printed from its verdict.
constexpr std::string_view kProbeVerdict = "\n--portway-module-probe--\n";

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

// dlopen and the entry-point and stamp checks, in this process. Returns the
// handle, or null with `reason` filled. Unloads what it refuses: only the
// module's static initializers have run then.
void* OpenAndCheck(const std::string& path, std::string* reason) {
  // RTLD_NOW: an SDK symbol this binary lacks (a module built against other
  // headers) fails here, not at its first call on a worker. RTLD_LOCAL: one
  // module's symbols never satisfy another's.
  dlerror();
  void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    *reason = Cat("not a loadable shared object (dlopen: ", DlError(), ")");
    return nullptr;
  }
  auto stamp_fn = reinterpret_cast<ModuleAbiStampFn>(dlsym(handle, kModuleAbiStampSymbol));
  auto register_fn = reinterpret_cast<ModuleRegisterFn>(dlsym(handle, kModuleRegisterSymbol));
  if (stamp_fn == nullptr || register_fn == nullptr) {
    *reason = Cat("not a Portway module: it does not export ",
                  stamp_fn == nullptr ? kModuleAbiStampSymbol : kModuleRegisterSymbol,
                  " (define the entry points with PORTWAY_MODULE, see portway/module.h)");
    dlclose(handle);
    return nullptr;
  }
  const char* stamp = stamp_fn();
  const char* own = GatewayAbiStamp();
  if (stamp == nullptr || std::strcmp(stamp, own) != 0) {
    std::string theirs = stamp == nullptr ? std::string("(none)") : Cat("'", stamp, "'");
    *reason = Cat("ABI stamp mismatch: the module was built for ", theirs, ", this gateway is '",
                  own, "'; rebuild the module against this gateway's installed SDK");
    dlclose(handle);
    return nullptr;
  }
  return handle;
}

// The last `n` characters of `text`, trimmed, on one line.
std::string Tail(std::string_view text, size_t n) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.remove_suffix(1);
  if (text.size() > n) text = text.substr(text.size() - n);
  std::string out(text);
  for (char& c : out) {
    if (c == '\n') c = ' ';
  }
  return out;
}

// Opens the module in a forked child first. A module's static initializers
// run at dlopen, before any check can refuse it, and some failures there
// end the process: a crash, or protobuf aborting because another loaded
// module already defined the same .proto file. In the child they cost the
// child only. The child also makes the stamp check, so a module built for
// another gateway is never mapped here at all (unloading one is not always
// clean: protobuf keeps pointers into what its initializers registered).
// Returns "" when the module may be opened here, else the reason.
std::string Probe(const std::string& path) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return Cat("cannot create a pipe: ", std::strerror(errno));
  pid_t pid = fork();
  if (pid < 0) {
    int err = errno;
    close(fds[0]);
    close(fds[1]);
    return Cat("cannot fork to probe it: ", std::strerror(err));
  }
  if (pid == 0) {
    // The child: whatever the module's initializers print (protobuf logs to
    // stderr) goes to the parent, then the verdict. Never returns.
    close(fds[0]);
    dup2(fds[1], STDERR_FILENO);
    dup2(fds[1], STDOUT_FILENO);
    std::string reason;
    void* handle = OpenAndCheck(path, &reason);
    std::string message = Cat(kProbeVerdict, reason);
    (void)!write(fds[1], message.data(), message.size());
    _exit(handle != nullptr ? 0 : 1);
  }
  close(fds[1]);
  std::string output;
  auto deadline = std::chrono::steady_clock::now() + kProbeTimeout;
  bool timed_out = false;
  while (true) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      timed_out = true;
      break;
    }
    pollfd p{fds[0], POLLIN, 0};
    int ready = poll(&p, 1, static_cast<int>(left.count()));
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) continue;
    char buf[4096];
    ssize_t n = read(fds[0], buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // EOF: the child is gone (or closed its end)
    if (output.size() < 65536) output.append(buf, static_cast<size_t>(n));
  }
  close(fds[0]);
  if (timed_out) kill(pid, SIGKILL);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (timed_out) {
    return Cat("loading it did not finish within ", kProbeTimeout.count(),
               "s (its static initializers block?)");
  }
  size_t verdict = output.rfind(kProbeVerdict);
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0 && verdict != std::string::npos) return "";
  if (WIFEXITED(status) && WEXITSTATUS(status) == 1 && verdict != std::string::npos) {
    return output.substr(verdict + kProbeVerdict.size());
  }
  // The common case, named plainly: protobuf allows one definition of each
  // .proto file per process.
  constexpr std::string_view kDuplicateProto = "File already exists in database: ";
  size_t duplicate = output.find(kDuplicateProto);
  if (duplicate != std::string::npos) {
    size_t start = duplicate + kDuplicateProto.size();
    std::string file = output.substr(start, output.find('\n', start) - start);
    return Cat("it defines the protobuf file '", file,
               "', which a module already loaded defines too (protobuf would abort the gateway); "
               "give each module's .proto files paths of their own, e.g. under a directory named "
               "after the module");
  }
  std::string printed = Tail(std::string_view(output).substr(0, verdict), 400);
  std::string how = WIFSIGNALED(status) ? Cat("killed by signal ", WTERMSIG(status), " (",
                                              strsignal(WTERMSIG(status)), ")")
                                        : Cat("exited with ", WEXITSTATUS(status));
  return Cat("loading it would end the gateway: a probe process that loaded it was ", how,
             printed.empty() ? std::string() : Cat("; it printed: ", printed));
}

}  // namespace

const char* GatewayAbiStamp() { return PORTWAY_ABI_STAMP; }

absl::StatusOr<std::string> FileSha256(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return absl::NotFoundError(Cat(path, ": ", std::strerror(errno)));
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  bool ok = ctx != nullptr && EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) == 1;
  char buffer[65536];
  ssize_t n = 0;
  while (ok && (n = read(fd, buffer, sizeof(buffer))) != 0) {
    if (n < 0) {
      if (errno == EINTR) continue;
      ok = false;
      break;
    }
    ok = EVP_DigestUpdate(ctx.get(), buffer, static_cast<size_t>(n)) == 1;
  }
  close(fd);
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  if (!ok || EVP_DigestFinal_ex(ctx.get(), digest, &size) != 1) {
    return absl::InternalError(Cat(path, ": cannot compute its sha256"));
  }
  static const char kHex[] = "0123456789abcdef";
  std::string hex;
  for (unsigned int i = 0; i < size; ++i) {
    hex += kHex[digest[i] >> 4];
    hex += kHex[digest[i] & 15];
  }
  return hex;
}

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

  // A module this process has mapped already (into another registry) runs
  // no initializer again: no probe needed.
  void* loaded = dlopen(canonical.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_NOLOAD);
  if (loaded == nullptr) {
    std::string reason = Probe(canonical);
    if (!reason.empty()) return refuse(reason);
  }
  std::string reason;
  void* handle = OpenAndCheck(canonical, &reason);
  if (loaded != nullptr) dlclose(loaded);  // OpenAndCheck holds its own reference
  if (handle == nullptr) return refuse(reason);

  // From here on the module's own code has run: it stays mapped whatever
  // happens, since what it did cannot be undone safely.
  StagingRegistry staging(registry);
  upstream::HealthCheckerStaging checkers(canonical);
  auto register_fn = reinterpret_cast<ModuleRegisterFn>(dlsym(handle, kModuleRegisterSymbol));
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
  if (staging.staged().empty() && checkers.size() == 0 && checkers.repeated == 0) {
    return refuse("it registers no filter and no health checker");
  }
  for (auto& factory : staging.staged()) {
    absl::Status status = registry.Register(std::move(factory));
    if (!status.ok()) return refuse(std::string(status.message()));  // checked above
  }
  checkers.Commit();
  registry.AddModule(std::move(canonical));
  return absl::OkStatus();
}

}  // namespace portway::http
