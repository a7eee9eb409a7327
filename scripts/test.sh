#!/usr/bin/env bash
# Installs what is missing, then builds and runs the whole test suite twice: on the normal
# build (build/) and on the AddressSanitizer + UndefinedBehaviorSanitizer build (build-asan/),
# warnings as errors in both. Ends with the line "N passed, N failed" (meson tests, both builds).
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || exit 1

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export LSAN_OPTIONS=suppressions=$PWD/tests/lsan.supp:print_suppressions=0

passed=0 failed=0
run_suite() { # DIR MESON_OPTION...
  local dir=$1
  shift
  if ! bash scripts/build.sh "$dir" --werror "$@"; then
    echo "test: the build in $dir failed" >&2
    failed=$((failed + 1))
    return
  fi
  meson test -C "$dir" --print-errorlogs --no-rebuild
  local log="$dir/meson-logs/testlog.json"
  local ok bad
  ok=$(python3 -c 'import json,sys; r=[json.loads(l)["result"] for l in open(sys.argv[1])]; print(sum(x in ("OK","EXPECTEDFAIL","SKIP") for x in r))' "$log")
  bad=$(python3 -c 'import json,sys; r=[json.loads(l)["result"] for l in open(sys.argv[1])]; print(sum(x not in ("OK","EXPECTEDFAIL","SKIP") for x in r))' "$log")
  passed=$((passed + ok))
  failed=$((failed + bad))
}

run_suite build
run_suite build-asan -Db_sanitize=address,undefined -Db_lundef=false

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
