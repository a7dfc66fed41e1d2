#!/usr/bin/env bash
# Builds every fuzz target with clang's libFuzzer + ASan + UBSan and runs each
# for FUZZ_SECONDS (default 30) from the checked-in seed corpus. A crash, a
# sanitizer report or a failed property check fails the run. Prints a final
# "N passed, M failed" line.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
seconds=${FUZZ_SECONDS:-30}
cxx=${FUZZ_CXX:-clang++-14}
if ! command -v "$cxx" >/dev/null; then
  echo "FAILED: $cxx not found (apt-get install -y clang-14 libclang-rt-14-dev)"
  echo "0 passed, 1 failed"
  exit 1
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
passed=0
failed=0
# target name -> sources
declare -A targets=(
  [http1_parser_fuzz]="core/http/http1/parser.cc test/fuzz/http1_parser_fuzz.cc"
  [http2_server_fuzz]="core/http/http2/codec.cc core/common/buffer.cc core/common/headers.cc core/common/small_blocks.cc test/fuzz/http2_server_fuzz.cc"
)
declare -A corpora=([http1_parser_fuzz]=http1 [http2_server_fuzz]=http2)
# Extra compile and link flags per target.
declare -A flags=(
  [http2_server_fuzz]="-I$root/core/include $(pkg-config --cflags --libs libnghttp2 2>/dev/null || echo -lnghttp2)"
)
for t in "${!targets[@]}"; do
  srcs=()
  for s in ${targets[$t]}; do srcs+=("$root/$s"); done
  # -fsized-deallocation: clang 14 leaves sized operator delete off by
  # default; the SDK's per-thread block cache uses it (as g++ does by default).
  if ! nice -n 10 "$cxx" -std=c++20 -g -O1 -fsized-deallocation \
      -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
      -I"$root" "${srcs[@]}" ${flags[$t]:-} -o "$work/$t" 2>"$work/$t.build.log"; then
    echo "FAILED: $t does not build"; cat "$work/$t.build.log"
    failed=$((failed + 1)); continue
  fi
  mkdir -p "$work/corpus-$t"
  cp "$here/corpus/${corpora[$t]}"/* "$work/corpus-$t/" 2>/dev/null || true
  if "$work/$t" -max_total_time="$seconds" -rss_limit_mb=2048 -print_final_stats=1 \
      "$work/corpus-$t" >"$work/$t.log" 2>&1; then
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$work/$t.log" | grep -o '[0-9]*$')
    echo "PASS: $t (${seconds}s, ${runs:-?} executions)"
    passed=$((passed + 1))
  else
    echo "FAILED: $t"; tail -40 "$work/$t.log"
    failed=$((failed + 1))
  fi
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
