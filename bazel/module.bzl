"""portway_filter_module: a Portway filter module, the Bazel form of CMake's
portway_add_filter_module (cmake/PortwayModule.cmake, docs/modules.md).

    portway_filter_module(
        name = "api_key",                 # -> api_key.so (no "lib" prefix)
        srcs = ["api_key_filter.cc"],     # one of them uses PORTWAY_MODULE(...)
        protos = ["example/api_key.proto"],
    )

The module is a shared object (cc_binary, linkshared) built against the SDK
only (//core:portway_sdk: core/include/portway/ and the generated
portway/abi.h), C++20, position-independent, linked with protobuf and
abseil. The SDK's own symbols (HeaderMap, Buffer, ...) stay undefined and
resolve against the gateway that loads it (//core:portway, linked with
-rdynamic): a module must be loaded by the gateway of the same build, whose
ABI stamp it carries. `name` is also an alias of the .so target.
"""

load("@rules_cc//cc:defs.bzl", "cc_binary")
load("//bazel:proto.bzl", "portway_proto_library")

def portway_filter_module(name, srcs, protos = [], proto_root = "", output_name = None, deps = [], copts = [], visibility = None, **kwargs):
    """A loadable filter module <output_name or name>.so.

    Args:
      name: the target (an alias of the .so).
      srcs: the module's C++ sources and private headers.
      protos: config protos, compiled in (include "<path under proto_root>.pb.h").
      proto_root: the import root of `protos`, relative to the package.
      output_name: the file is <output_name>.so (default: name).
      deps: more deps (header-only or static; never the gateway's libraries).
      copts: more compiler options.
      visibility: of both targets.
      **kwargs: passed to the cc_binary.
    """
    all_deps = deps + [Label("//core:portway_sdk")]
    if protos:
        portway_proto_library(
            name = name + "_proto",
            srcs = protos,
            proto_root = proto_root,
            visibility = ["//visibility:private"],
        )
        all_deps.append(":" + name + "_proto")
    so = (output_name or name) + ".so"
    cc_binary(
        name = so,
        srcs = srcs,
        deps = all_deps,
        copts = copts,
        linkshared = True,
        visibility = visibility,
        **kwargs
    )
    if so != name:
        native.alias(
            name = name,
            actual = ":" + so,
            visibility = visibility,
        )
