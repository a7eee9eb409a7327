#!/usr/bin/env bash
# Installs what is missing, then builds and runs the whole test suite twice: on the normal
# build (build/) and on the AddressSanitizer + UndefinedBehaviorSanitizer build (build-asan/),
# warnings as errors in both; then the unit suite under valgrind, the unit suite of a clang
# build (build-clang/), and a 30 s smoke run of each libFuzzer driver (build-fuzz/). Ends with the line "N passed, N failed", counting meson tests of every run.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || exit 1

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export LSAN_OPTIONS=suppressions=$PWD/tests/lsan.supp:print_suppressions=0

passed=0 failed=0 skipped=0
run_suite() { # DIR SUITE MESON_OPTION...  (SUITE: a meson suite, or "all"; $SETUP: a test setup)
  local dir=$1 suite=$2
  shift 2
  if ! bash scripts/build.sh "$dir" --werror "$@"; then
    echo "test: the build in $dir failed" >&2
    failed=$((failed + 1))
    return
  fi
  local only=()
  [ "$suite" = all ] || only=(--suite "$suite")
  [ -z "${SETUP:-}" ] || only+=(--setup "$SETUP")
  meson test -C "$dir" --print-errorlogs --no-rebuild "${only[@]}"
  local log="$dir/meson-logs/testlog${SETUP:+-$SETUP}.json"
  local counts
  counts=$(python3 - "$log" <<'PY'
import json, sys
results = [json.loads(line)["result"] for line in open(sys.argv[1])]
ok = sum(r in ("OK", "EXPECTEDFAIL") for r in results)
skipped = sum(r == "SKIP" for r in results)
print(ok, len(results) - ok - skipped, skipped)
PY
) || counts="0 1 0"
  read -r ok bad skip <<<"$counts"
  passed=$((passed + ok))
  failed=$((failed + bad))
  skipped=$((skipped + skip))
}

run_suite build all
SETUP=valgrind run_suite build unit
run_suite build-asan all -Db_sanitize=address,undefined -Db_lundef=false
# clang's warnings differ from gcc's: the tree must build clean with both.
CC=clang run_suite build-clang unit
# The libFuzzer drivers, 30 s each on their seed corpora (scripts/fuzz.sh): one test each.
# (Not through tee /dev/stderr: reopening it truncates a log file that stderr is.)
fuzz_out=$(bash scripts/fuzz.sh -t 30)
printf '%s\n' "$fuzz_out" >&2
fuzz_counts=$(tail -1 <<<"$fuzz_out")
if [[ $fuzz_counts =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed$ ]]; then
  passed=$((passed + BASH_REMATCH[1]))
  failed=$((failed + BASH_REMATCH[2]))
else
  failed=$((failed + 1))
fi

if [ "$skipped" -gt 0 ]; then
  echo "$passed passed, $failed failed, $skipped skipped"
else
  echo "$passed passed, $failed failed"
fi
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
