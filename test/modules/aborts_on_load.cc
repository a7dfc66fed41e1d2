// A module whose static initializer prints a line and aborts, as protobuf
// does when two modules define the same .proto file: the loader's probe
// process dies instead of the gateway, and the module is refused.
#include <cstdio>
#include <cstdlib>

namespace {

[[maybe_unused]] const int kAbortAtLoad = [] {
  std::fputs("aborts_on_load: aborting on purpose\n", stderr);
  std::abort();
  return 0;
}();

}  // namespace
