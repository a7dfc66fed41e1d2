#!/usr/bin/env bash
# Installs the Debian 12 packages Portway needs to build (and, with "test",
# to run its tests; with "bench", its benchmarks). As root it runs apt-get;
# otherwise it prints the exact command to run.
set -euo pipefail

build_pkgs=(cmake ninja-build ccache pkg-config g++ make
  libuv1-dev libnghttp2-dev libprotobuf-dev protobuf-compiler
  libgrpc++-dev protobuf-compiler-grpc libabsl-dev libspdlog-dev libfmt-dev
  libyaml-cpp-dev libssl-dev libre2-dev libgtest-dev libgmock-dev libhiredis-dev python3 curl)
test_pkgs=(python3-pytest python3-yaml systemd varnish clang-14 libclang-rt-14-dev openssl
  python3-h2 python3-grpcio python3-grpc-tools grpc-proto nghttp2-client nghttp2-server
  redis-server)
# nghttp2-server: nghttpd, the h2c origin of the HTTP/2 upstream rows.
# redis-server: test/unit/cache_redis_test.cc starts its own servers.
bench_pkgs=(nginx haproxy nghttp2-client nghttp2-server wrk valgrind linux-perf)

want=("${build_pkgs[@]}")
case "${1:-build}" in
  test) want+=("${test_pkgs[@]}") ;;
  bench) want+=("${test_pkgs[@]}" "${bench_pkgs[@]}") ;;
esac

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "Portway needs these Debian packages; run as root:" >&2
  echo "  apt-get update && apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo "installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian starts these services on install; the benchmark runs its own.
for s in nginx haproxy varnish; do
  command -v systemctl >/dev/null 2>&1 && systemctl stop "$s" >/dev/null 2>&1 || true
done
# The Redis tests start their own servers too; Debian's would hold port 6379.
systemctl stop redis-server >/dev/null 2>&1 || /etc/init.d/redis-server stop >/dev/null 2>&1 || true
