#!/bin/sh
echo "Portway's offline Bazel build has no coverage tools (bazel/README.md)" >&2
exit 1
