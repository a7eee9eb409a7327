#!/usr/bin/env bash
# What one profile request costs gatherd, counted rather than timed, so that a shared, noisy
# machine does not blur it: instructions per request (callgrind, one worker thread, wrk -c 8
# for -D seconds after a warm-up, counters zeroed in between) and system calls per request
# (strace -f -c over a plain run of the same load), each with its top entries. The backends are
# the shared harness's nginx mock and Postgres, started on ports of their own (nginx 28081, a
# copy of its config with the ports moved; Postgres 25432), so a benchmark of the harness can
# run at the same time. Needs root like the harness. Never runs in CI.
#
#   tests/bench/run-cpu.sh [-b GATHERD_BINARY] [-D SECONDS] [-c CONNECTIONS] [-o DIR]
#
# The binary defaults to build-prof/gatherd, a release build with debug info
# (meson setup build-prof --buildtype=release -Ddebug=true), so that callgrind names the lines.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
bench=${GD_BENCH_DIR:-$root/../shared/bench}
bin=$root/build-prof/gatherd secs=10 conns=8 out=
while getopts b:D:c:o: opt; do
  case $opt in
  b) bin=$OPTARG ;; D) secs=$OPTARG ;; c) conns=$OPTARG ;; o) out=$OPTARG ;; *) exit 2 ;;
  esac
done
out=${out:-$root/tests/bench/results/$(date -u +%Y-%m-%d)-cpu}
[ -x "$bench/run.sh" ] || { echo "bench: no harness at $bench" >&2; exit 1; }
for c in wrk envsubst valgrind strace curl; do
  command -v "$c" >/dev/null || { echo "bench: $c missing" >&2; exit 1; }
done
if [ "$bin" = "$root/build-prof/gatherd" ]; then
  [ -f "$root/build-prof/build.ninja" ] ||
    meson setup "$root/build-prof" --buildtype=release -Ddebug=true >/dev/null
  ninja -C "$root/build-prof" -j2 gatherd >/dev/null
fi
mkdir -p "$out"
run=$(mktemp -d /tmp/gatherd-bench-cpu.XXXXXX)
chmod 755 "$run"
pid=
cleanup() {
  [ -z "$pid" ] || kill "$pid" 2>/dev/null || true
  if [ -s "$run/up/nginx.pid" ]; then kill "$(cat "$run/up/nginx.pid")" 2>/dev/null || true; fi
  bash "$bench/pg/stop.sh" "$run/pgrun" --rm >/dev/null 2>&1 || true
  rm -rf "$run"
}
trap cleanup EXIT
mkdir -p "$run/up/tmp" "$run/pgrun"
chmod 755 "$run/up" "$run/up/tmp"
sed 's/127\.0\.0\.1:1808/127.0.0.1:2808/' "$bench/upstream/nginx.conf" >"$run/nginx.conf"
/usr/sbin/nginx -p "$run/up/" -c "$run/nginx.conf" -e "$run/up/error.log" \
  -g "pid $run/up/nginx.pid; worker_processes 1;"
PG_PORT=25432 bash "$bench/pg/start.sh" "$run/pgrun" >/dev/null
export PORT=28093 UPSTREAM_URL=http://127.0.0.1:28081 PGHOST=127.0.0.1 PGPORT=25432 PGUSER=bench
export PGDATABASE=bench CALL_TIMEOUT_MS=5000 WORKERS=1 MAX_CONNECTIONS=256
envsubst <"$root/tests/bench/gatherd-profile.json.in" | sed 's/127.0.0.1:19093/127.0.0.1:29093/' \
  >"$run/gatherd.json"
url=http://127.0.0.1:$PORT

# Starts gatherd (under the command in "$@" before it, if any) and waits for its answers.
start() {
  "$@" "$bin" -c "$run/gatherd.json" 2>"$run/gatherd.log" &
  pid=$!
  for _ in $(seq 300); do
    curl -fs -o /dev/null "$url/users/1/profile" && break
    sleep 0.1
  done
  wrk -t 1 -c "$conns" -d 3 -s "$bench/wrk/profile.lua" "$url" >/dev/null 2>&1 # warm-up
}
stop() {
  kill -TERM "$pid"
  wait "$pid" || true
  pid=
}
load() {
  wrk -t 1 -c "$conns" -d "$secs" -s "$bench/wrk/profile.lua" "$url" | awk '/requests in/ {print $1}'
}

start valgrind --tool=callgrind --callgrind-out-file="$run/cg"
callgrind_control -z "$pid" >/dev/null 2>&1
n=$(load)
callgrind_control -d "$pid" >/dev/null 2>&1
sleep 1
stop
# the dump between the zeroing and the end of the load is part 1
callgrind_annotate --auto=no "$run/cg.1" 2>/dev/null | head -80 >"$out/callgrind.txt"
ir=$(awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}' "$out/callgrind.txt")
echo "instructions: $n requests, $ir instructions, $((ir / n)) per request" | tee "$out/summary.txt"

start
strace -f -c -o "$run/strace.txt" -p "$pid" 2>/dev/null &
spid=$!
sleep 1
n=$(load)
kill -INT "$spid"
wait "$spid" || true
stop
cp "$run/strace.txt" "$out/strace.txt"
python3 - "$run/strace.txt" "$n" <<'PY' | tee -a "$out/summary.txt"
import sys
n, total, rows = int(sys.argv[2]), 0, []
for line in open(sys.argv[1]):
    f = line.split()
    # % time, seconds, usecs/call, calls, [errors,] syscall
    if len(f) >= 5 and f[0][0].isdigit() and f[-1] != "total":
        calls, errors = int(f[3]), int(f[4]) if len(f) == 6 else 0
        rows.append((calls, errors, f[-1]))
        total += calls
print("system calls: %d requests, %.2f per request" % (n, total / n))
for calls, errors, name in sorted(rows, reverse=True)[:8]:
    print("  %-12s %6.3f per request%s" % (name, calls / n, ", %.3f failed" % (errors / n) if errors else ""))
PY
echo "bench: results in $out" >&2
