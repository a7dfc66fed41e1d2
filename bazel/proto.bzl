"""C++ from .proto files with the system protoc (and grpc_cpp_plugin).

Debian's protobuf (3.21) and gRPC (1.51) are not Bazel repositories, so
instead of proto_library/cc_proto_library this runs /usr/bin/protoc from a
genrule, as the CMake build does (api/CMakeLists.txt), and compiles the
output into a cc_library that links @system//:protobuf.

    portway_proto_library(
        name = "portway_api",
        srcs = glob(["**/*.proto"]),   # in this package
    )

The import root is the package directory (or `proto_root`, a subdirectory
of it): a proto is named, imported and included by its path under the root,
e.g. api/portway/config/v1/bootstrap.proto is "portway/config/v1/bootstrap.proto"
and its header "portway/config/v1/bootstrap.pb.h". Every proto of the library
is an input of every protoc run, so the protos may import one another; the
well-known types (google/protobuf/*.proto) come from protoc's own include
path (/usr/include). grpc = True also runs grpc_cpp_plugin (.grpc.pb.h/.cc)
and links gRPC.
"""

load("@rules_cc//cc:defs.bzl", "cc_library")

def _stem(src, root):
    if not src.endswith(".proto"):
        fail("portway_proto_library: %s is not a .proto file" % src)
    if root:
        if not src.startswith(root + "/"):
            fail("portway_proto_library: %s is not under proto_root %s" % (src, root))
        src = src[len(root) + 1:]
    return src[:-len(".proto")]

def portway_proto_library(name, srcs, proto_root = "", grpc = False, deps = [], visibility = None, **kwargs):
    """A cc_library of the C++ protoc generates for `srcs`.

    Args:
      name: the cc_library.
      srcs: .proto files in this package (paths relative to it).
      proto_root: the import root, relative to the package (default: the package).
      grpc: also generate gRPC services (grpc_cpp_plugin) and link gRPC.
      deps: more cc_library deps of the generated code.
      visibility: of the cc_library.
      **kwargs: passed to the cc_library.
    """
    pkg = native.package_name()
    root_dir = pkg + ("/" + proto_root if proto_root else "")
    prefix = proto_root + "/" if proto_root else ""
    gen_srcs = []
    gen_hdrs = []
    for src in srcs:
        stem = _stem(src, proto_root)
        outs = [prefix + stem + ".pb.h", prefix + stem + ".pb.cc"]
        cmd = "protoc --cpp_out=$(RULEDIR)/{prefix} -I{root} $(location {src})"
        if grpc:
            outs += [prefix + stem + ".grpc.pb.h", prefix + stem + ".grpc.pb.cc"]
            cmd = ("protoc --cpp_out=$(RULEDIR)/{prefix} --grpc_out=$(RULEDIR)/{prefix}" +
                   " --plugin=protoc-gen-grpc=$$(command -v grpc_cpp_plugin)" +
                   " -I{root} $(location {src})")
        native.genrule(
            name = name + "_protoc_" + stem.replace("/", "_"),
            srcs = srcs,
            outs = outs,
            cmd = cmd.format(prefix = prefix, root = root_dir, src = src),
            message = "protoc %s/%s" % (root_dir, stem + ".proto"),
            visibility = ["//visibility:private"],
        )
        gen_hdrs += [o for o in outs if o.endswith(".h")]
        gen_srcs += [o for o in outs if o.endswith(".cc")]

    cc_library(
        name = name,
        srcs = gen_srcs,
        hdrs = gen_hdrs,
        # Included as "<path under the root>.pb.h", like CMake's -I<gen dir>.
        strip_include_prefix = "/" + root_dir,
        # A static library only (CMake: STATIC, position-independent).
        linkstatic = True,
        deps = deps + [Label("@system//:protobuf")] + ([Label("@system//:grpcpp")] if grpc else []),
        visibility = visibility,
        **kwargs
    )
