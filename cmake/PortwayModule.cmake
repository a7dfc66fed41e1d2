# portway_add_filter_module: builds a Portway filter module (a shared object
# the gateway loads with dlopen; see docs/modules.md).
#
#   portway_add_filter_module(NAME
#     SOURCES file.cc ...          the module's sources; one of them uses PORTWAY_MODULE(...)
#     [PROTOS file.proto ...]      config protos: C++ is generated with protoc and compiled in
#     [PROTO_ROOT dir]             the import root of PROTOS (default: the current source dir);
#                                  include "<path under it>.pb.h"
#     [OUTPUT_NAME name])          the file is <name>.so (default: NAME.so, no "lib" prefix)
#
# The module is a MODULE library: C++20, position-independent, linked with
# protobuf and abseil. The SDK's own symbols (HeaderMap, Buffer, ...) stay
# undefined and resolve against the portway binary when it loads the module,
# which is why a module must be built against the SDK that binary installed.
include_guard(GLOBAL)

function(portway_add_filter_module name)
  cmake_parse_arguments(PARSE_ARGV 1 PW "" "PROTO_ROOT;OUTPUT_NAME" "SOURCES;PROTOS")
  if(PW_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "portway_add_filter_module(${name}): unknown arguments ${PW_UNPARSED_ARGUMENTS}")
  endif()
  if(NOT PW_SOURCES)
    message(FATAL_ERROR "portway_add_filter_module(${name}): SOURCES is required")
  endif()
  if(NOT TARGET Portway::sdk)
    message(FATAL_ERROR "portway_add_filter_module(${name}): no Portway::sdk target; call find_package(Portway) first")
  endif()

  add_library(${name} MODULE ${PW_SOURCES})

  if(PW_PROTOS)
    if(TARGET protobuf::protoc)
      set(protoc protobuf::protoc)
    elseif(Protobuf_PROTOC_EXECUTABLE)
      set(protoc ${Protobuf_PROTOC_EXECUTABLE})
    else()
      message(FATAL_ERROR "portway_add_filter_module(${name}): protoc not found (install protobuf-compiler)")
    endif()
    if(NOT PW_PROTO_ROOT)
      set(PW_PROTO_ROOT ${CMAKE_CURRENT_SOURCE_DIR})
    endif()
    get_filename_component(root "${PW_PROTO_ROOT}" ABSOLUTE BASE_DIR "${CMAKE_CURRENT_SOURCE_DIR}")
    set(out ${CMAKE_CURRENT_BINARY_DIR}/${name}_proto)
    file(MAKE_DIRECTORY ${out})
    foreach(proto IN LISTS PW_PROTOS)
      get_filename_component(abs "${proto}" ABSOLUTE BASE_DIR "${CMAKE_CURRENT_SOURCE_DIR}")
      file(RELATIVE_PATH rel "${root}" "${abs}")
      if(rel MATCHES "^\\.\\./")
        message(FATAL_ERROR "portway_add_filter_module(${name}): ${proto} is not under PROTO_ROOT ${root}")
      endif()
      string(REGEX REPLACE "\\.proto$" "" stem "${rel}")
      add_custom_command(
        OUTPUT ${out}/${stem}.pb.cc ${out}/${stem}.pb.h
        COMMAND ${protoc} --cpp_out=${out} -I${root} ${abs}
        DEPENDS ${abs}
        COMMENT "protoc ${rel} (${name})"
        VERBATIM)
      target_sources(${name} PRIVATE ${out}/${stem}.pb.cc)
    endforeach()
    target_include_directories(${name} PRIVATE ${out})
  endif()

  target_link_libraries(${name} PRIVATE Portway::sdk)
  set_target_properties(${name} PROPERTIES
    PREFIX ""
    CXX_STANDARD 20
    CXX_STANDARD_REQUIRED ON
    CXX_EXTENSIONS OFF
    POSITION_INDEPENDENT_CODE ON)
  if(PW_OUTPUT_NAME)
    set_target_properties(${name} PROPERTIES OUTPUT_NAME ${PW_OUTPUT_NAME})
  endif()

  # The ABI stamp names the compiler: a different one builds a module the
  # gateway refuses at load. Say so now rather than then.
  if(DEFINED PORTWAY_CXX_COMPILER_ID)
    string(REGEX MATCH "^[0-9]+\\.[0-9]+" mine "${CMAKE_CXX_COMPILER_VERSION}")
    string(REGEX MATCH "^[0-9]+\\.[0-9]+" theirs "${PORTWAY_CXX_COMPILER_VERSION}")
    if(NOT CMAKE_CXX_COMPILER_ID STREQUAL PORTWAY_CXX_COMPILER_ID OR NOT mine STREQUAL theirs)
      message(WARNING "portway_add_filter_module(${name}): Portway was built with "
        "${PORTWAY_CXX_COMPILER_ID} ${PORTWAY_CXX_COMPILER_VERSION}, this module with "
        "${CMAKE_CXX_COMPILER_ID} ${CMAKE_CXX_COMPILER_VERSION}: the gateway will refuse it "
        "(ABI stamp mismatch). Set CMAKE_CXX_COMPILER to the same compiler.")
    endif()
  endif()
endfunction()
