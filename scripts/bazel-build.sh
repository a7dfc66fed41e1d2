#!/usr/bin/env bash
# Builds Portway with Bazel (bazel/README.md) and smoke-tests what it built:
#
#   scripts/bazel-build.sh            # JOBS=1 by default: bazel --jobs=$JOBS
#   JOBS=2 scripts/bazel-build.sh
#   BAZEL_FLAGS="--copt=-Wno-error" scripts/bazel-build.sh
#
# 1. installs what is missing (Debian 12): the libraries (scripts/deps.sh
#    build) and bazel-bootstrap, bazel-rules-java, bazel-platforms; as root
#    with apt-get, otherwise it prints the command and fails;
# 2. bazel build //... (offline: nothing is downloaded), then bazel test //...
#    (the unit tests, //test:portway_unit_tests);
# 3. the Bazel-built gateway --validate's every examples/*/portway.yaml
#    (examples/custom_filter's with the Bazel-built module);
# 4. it loads the Bazel-built example module (api_key.so) with `modules:`:
#    --validate accepts a config using its filter and rejects one with a bad
#    filter config (so the module's factory ran), then a gateway serving that
#    config answers 401 without a key and 200 with one.
# Exits non-zero on any failure. Listens on 127.0.0.1 ephemeral ports only.
set -euo pipefail

cd "$(dirname "$0")/.."
repo=$(pwd)
JOBS=${JOBS:-1}
read -r -a bazel_flags <<< "${BAZEL_FLAGS:-}"
start=$(date +%s)

fail() { echo "bazel-build: FAIL: $*" >&2; exit 1; }
step() { echo "== $*"; }

# ------------------------------------------------------------------ 1. packages
scripts/deps.sh build
bazel_pkgs=(bazel-bootstrap bazel-rules-java bazel-platforms)
missing=()
for p in "${bazel_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "The Bazel build needs these Debian packages; run as root:" >&2
    echo "  apt-get update && apt-get install -y --no-install-recommends ${missing[*]}" >&2
    exit 1
  fi
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# ------------------------------------------------------------------ 2. build
step "bazel build --jobs=$JOBS //... ${bazel_flags[*]}"
build_start=$(date +%s)
bazel build --jobs="$JOBS" --local_cpu_resources="$JOBS" "${bazel_flags[@]}" //... \
  || fail "bazel build //..."
build_secs=$(( $(date +%s) - build_start ))
step "bazel test //..."
bazel test --jobs="$JOBS" --local_cpu_resources="$JOBS" --test_output=errors "${bazel_flags[@]}" //... \
  || fail "bazel test //..."
bin_dir=$(bazel info "${bazel_flags[@]}" bazel-bin 2>/dev/null) || fail "bazel info bazel-bin"
portway=$bin_dir/core/portway
module=$bin_dir/examples/custom_filter/api_key.so
[ -x "$portway" ] || fail "no gateway at $portway"
[ -f "$module" ] || fail "no module at $module"

# ------------------------------------------------------------------ 3. gateway
work=$(mktemp -d)
gw_pid=
cleanup() {
  if [ -n "$gw_pid" ]; then kill "$gw_pid" 2>/dev/null || true; wait "$gw_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

step "portway --version"
"$portway" --version | tee "$work/version"
grep -q "^module ABI stamp: portway " "$work/version" || fail "--version shows no ABI stamp"

# Every example config. examples/custom_filter's names its module as
# build/api_key.so, relative to its folder: validate a copy of the folder
# with the Bazel-built module there.
for config in examples/*/portway.yaml; do
  step "portway --validate -c $config"
  if [ "$config" = examples/custom_filter/portway.yaml ]; then
    mkdir -p "$work/custom_filter/build"
    cp "$config" "$work/custom_filter/portway.yaml"
    cp "$module" "$work/custom_filter/build/api_key.so"
    config=$work/custom_filter/portway.yaml
  fi
  out=$("$portway" --validate -c "$config" 2>&1) || fail "$config: $out"
  [ "$out" = "configuration OK" ] || fail "$config: $out"
  echo "$out"
done

# ------------------------------------------------------------------ 4. module
# A config using the example module's filter: listener and admin on
# ephemeral loopback ports, a direct response as the "upstream".
module_config() {  # $1: the filter's keys (YAML flow list)
  cat <<YAML
admin: { address: 127.0.0.1:0 }
modules:
  - path: $module
listeners:
  - name: edge
    address: 127.0.0.1:0
    filters:
      - name: example.api_key
        config: { header: x-api-key, keys: $1, response_header: x-api-key-check }
    routes:
      - match: { prefix: / }
        direct_response: { status: 200, body: "hello\n" }
YAML
}
module_config "[s3cret]" > "$work/module.yaml"
module_config "[]" > "$work/bad_module.yaml"

step "portway --validate with modules: [{path: api_key.so}]"
out=$("$portway" --validate -c "$work/module.yaml" 2>&1) || fail "module config: $out"
[ "$out" = "configuration OK" ] || fail "module config: $out"
echo "$out"

step "portway --validate rejects a bad example.api_key config"
if out=$("$portway" --validate -c "$work/bad_module.yaml" 2>&1); then
  fail "a config with keys: [] was accepted"
fi
echo "$out"
grep -q "listeners\[0\].filters\[0\].config.keys: needs at least one key" <<< "$out" \
  || fail "no error from the module's factory: $out"

step "a gateway with the module answers 401 without a key, 200 with one"
"$portway" -c "$work/module.yaml" --workers 1 --admin-address-path "$work/admin" \
  > "$work/gateway.log" 2>&1 &
gw_pid=$!
for _ in $(seq 100); do
  [ -s "$work/admin" ] && break
  kill -0 "$gw_pid" 2>/dev/null || { cat "$work/gateway.log" >&2; fail "the gateway exited"; }
  sleep 0.1
done
[ -s "$work/admin" ] || { cat "$work/gateway.log" >&2; fail "no admin address after 10 s"; }
admin=$(cat "$work/admin")
listener=$(curl -sf --max-time 5 "http://$admin/listeners" \
  | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["listeners"][0]["address"])') \
  || fail "admin /listeners"
no_key=$(curl -s --max-time 5 -o /dev/null -D - "http://$listener/" | tr -d '\r')
with_key=$(curl -s --max-time 5 -o /dev/null -D - -H "x-api-key: s3cret" "http://$listener/" | tr -d '\r')
grep -q "^HTTP/1.1 401" <<< "$no_key" && grep -qi "^x-portway-error: api_key_missing" <<< "$no_key" \
  || { cat "$work/gateway.log" >&2; fail "without a key: $no_key"; }
grep -q "^HTTP/1.1 200" <<< "$with_key" && grep -qi "^x-api-key-check: accepted" <<< "$with_key" \
  || { cat "$work/gateway.log" >&2; fail "with a key: $with_key"; }
echo "without a key: $(head -1 <<< "$no_key"); with one: $(head -1 <<< "$with_key")"
kill -TERM "$gw_pid"
wait "$gw_pid" || fail "the gateway exited $? on SIGTERM"
gw_pid=

echo "bazel-build: OK (bazel build ${build_secs}s, all $(( $(date +%s) - start ))s)"
