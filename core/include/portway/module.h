// Module entry points: how a shared object hands its filter factories to the
// gateway.
//
// A module is a shared object (built with portway_add_filter_module, see
// docs/modules.md) that registers one or more FilterFactory objects. Put
// PORTWAY_MODULE(...) in exactly one .cc file of the module, naming a
// function that registers the factories:
//
//   #include "portway/module.h"
//
//   void RegisterApiKey(portway::http::FilterRegistry& registry) {
//     registry.Register(std::make_unique<ApiKeyFactory>());
//   }
//   PORTWAY_MODULE(RegisterApiKey)
//
// The macro defines two extern "C" symbols the gateway looks up with dlsym:
//   portway_module_abi_stamp()  the PORTWAY_ABI_STAMP the module was built
//                               with (see portway/abi.h); the gateway refuses
//                               the module unless it equals its own, byte for
//                               byte, before running any other module code.
//   portway_module_register()   runs the function; an exception it throws, or
//                               a Register() call that fails (a name already
//                               taken), refuses the whole module: none of its
//                               factories is registered.
//
// Thread safety: the gateway calls both on its main thread, once per module
// and registry, while nothing else touches the registry. A loaded module
// stays loaded for the life of the process.
#pragma once

#include <cstddef>
#include <cstring>
#include <exception>

#include "portway/abi.h"
#include "portway/filter_factory.h"

namespace portway {

// The names the gateway looks up in a module.
inline constexpr char kModuleAbiStampSymbol[] = "portway_module_abi_stamp";
inline constexpr char kModuleRegisterSymbol[] = "portway_module_register";

// The entry points' types, as the gateway calls them.
using ModuleAbiStampFn = const char* (*)();
using ModuleRegisterFn = bool (*)(http::FilterRegistry* registry, char* error, size_t error_size);

namespace module_internal {

inline void CopyError(const char* message, char* error, size_t error_size) {
  if (error == nullptr || error_size == 0) return;
  size_t n = std::strlen(message);
  if (n >= error_size) n = error_size - 1;
  std::memcpy(error, message, n);
  error[n] = '\0';
}

// Runs the module's registration function; no exception leaves the module.
template <typename RegisterFn>
bool RunRegister(RegisterFn fn, http::FilterRegistry* registry, char* error, size_t error_size) {
  try {
    fn(*registry);
    return true;
  } catch (const std::exception& e) {
    CopyError(e.what(), error, error_size);
  } catch (...) {
    CopyError("an exception that is not a std::exception", error, error_size);
  }
  return false;
}

}  // namespace module_internal
}  // namespace portway

// Defines the module's entry points; `register_function` is a
// void(portway::http::FilterRegistry&) that registers the module's factories.
#define PORTWAY_MODULE(register_function)                                                    \
  extern "C" __attribute__((visibility("default"))) const char* portway_module_abi_stamp() { \
    return PORTWAY_ABI_STAMP;                                                                \
  }                                                                                          \
  extern "C" __attribute__((visibility("default"))) bool portway_module_register(            \
      ::portway::http::FilterRegistry* registry, char* error, size_t error_size) {           \
    return ::portway::module_internal::RunRegister(register_function, registry, error,       \
                                                   error_size);                              \
  }
