#!/usr/bin/env bash
# Builds the libFuzzer drivers of tests/fuzz (clang, AddressSanitizer + UBSan, in build-fuzz/)
# and runs each for SECONDS (default 30) on its seed corpus, NAME... or all of them, two at a
# time. New inputs go to a scratch directory (the seeds in tests/fuzz/corpus are never
# changed); a crashing input is kept as build-fuzz/crash-NAME-* and the run fails. Ends with
# "N passed, N failed" (one per driver). scripts/test.sh runs it with 30 s each.
#
#   scripts/fuzz.sh [-t SECONDS] [-j JOBS] [NAME...]
set -uo pipefail
cd "$(dirname "$0")/.."
secs=30 jobs=2
while getopts t:j: opt; do
  case $opt in
  t) secs=$OPTARG ;; j) jobs=$OPTARG ;; *) exit 2 ;;
  esac
done
shift $((OPTIND - 1))
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(fuzz_config fuzz_route fuzz_template fuzz_http1 fuzz_gunzip
                                 fuzz_json fuzz_pgjson fuzz_reshape)
if ! CC=clang bash scripts/build.sh build-fuzz --werror -Dfuzz=true -Dtests=false \
    -Db_sanitize=address,undefined -Db_lundef=false; then
  echo "fuzz: the build failed"
  echo "0 passed, ${#names[@]} failed"
  exit 1
fi
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export LSAN_OPTIONS=suppressions=$PWD/tests/lsan.supp:print_suppressions=0
scratch=$(mktemp -d /tmp/gatherd-fuzz.XXXXXX)
trap 'rm -rf "$scratch"' EXIT

run_one() { # NAME: one driver for $secs seconds; its log in $scratch/NAME.log
  local name=$1
  mkdir -p "$scratch/$name"
  build-fuzz/tests/fuzz/"$name" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
    -max_len=65536 -print_final_stats=1 -artifact_prefix="build-fuzz/crash-$name-" \
    "$scratch/$name" "tests/fuzz/corpus/$name" >"$scratch/$name.log" 2>&1
}

passed=0 failed=0 pids=() running=()
finish() { # waits for the oldest job
  local pid=${pids[0]} name=${running[0]}
  pids=("${pids[@]:1}") running=("${running[@]:1}")
  if wait "$pid"; then
    passed=$((passed + 1))
    echo "fuzz: $name ok ($(grep -o 'stat::number_of_executed_units: *[0-9]*' "$scratch/$name.log" | grep -o '[0-9]*$') runs in ${secs} s)"
  else
    failed=$((failed + 1))
    echo "fuzz: $name FAILED:"
    tail -40 "$scratch/$name.log"
  fi
}
for name in "${names[@]}"; do
  run_one "$name" &
  pids+=($!) running+=("$name")
  [ ${#pids[@]} -lt "$jobs" ] || finish
done
while [ ${#pids[@]} -gt 0 ]; do finish; done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
