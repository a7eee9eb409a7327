#!/usr/bin/env bash
# What shaping costs on the profile workload, in one run of the shared harness
# (../shared/bench/run.sh): interleaved A B A B windows of gatherd with the plain profile config
# (the merged document, copied byte for byte) and with gatherd-profile-shaped.json.in (the same
# calls with per-call "fields"/"omit"/"rename" and a "response" template over them), same
# release build. The harness reports each target's CPU per request; the figure is their ratio.
# Then, unless -n, the same two configs under callgrind (one thread, -c 8 for -D seconds after a
# warm-up, counters zeroed in between): instructions per request, which a shared, noisy machine
# does not blur. Needs root like the harness. Never runs in CI.
#
#   tests/bench/run-shaped.sh [-r ROUNDS] [-d SECONDS] [-c CONNECTIONS] [-q QUIET_WAIT_S]
#                             [-D SECONDS] [-n] [-o DIR]
#   tests/bench/run-shaped.sh -C [-D SECONDS] [-o DIR]    callgrind only
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
bench=${GD_BENCH_DIR:-$root/../shared/bench}
rounds=2 secs=10 conns=64 cg_secs=10 no_cg= cg_only= out= quiet=120
while getopts r:d:c:D:nCo:q: opt; do
  case $opt in
  r) rounds=$OPTARG ;; d) secs=$OPTARG ;; c) conns=$OPTARG ;; D) cg_secs=$OPTARG ;;
  n) no_cg=1 ;; C) cg_only=1 ;; o) out=$OPTARG ;; q) quiet=$OPTARG ;; *) exit 2 ;;
  esac
done
out=${out:-$root/tests/bench/results/$(date -u +%Y-%m-%d)-shaped}
[ -x "$bench/run.sh" ] || { echo "bench: no harness at $bench" >&2; exit 1; }
for c in nginx wrk envsubst valgrind; do
  command -v "$c" >/dev/null || [ -x "/usr/sbin/$c" ] || {
    echo "bench: $c missing (apt-get install nginx libnginx-mod-http-echo wrk gettext-base valgrind)" >&2
    exit 1
  }
done

bash "$root/scripts/build.sh" build-release --buildtype=release
mkdir -p "$out"
export MAX_CONNECTIONS=256
plain="gatherd-plain=18093:envsubst < $root/tests/bench/gatherd-profile.json.in > \$BENCH_RUNDIR/gatherd.json && exec $root/build-release/gatherd -c \$BENCH_RUNDIR/gatherd.json"
shaped="gatherd-shaped=18097:envsubst < $root/tests/bench/gatherd-profile-shaped.json.in > \$BENCH_RUNDIR/gatherd-shaped.json && exec $root/build-release/gatherd -c \$BENCH_RUNDIR/gatherd-shaped.json"
if [ -z "$cg_only" ]; then
rm -f "$out/fast.jsonl"
bash "$bench/run.sh" -m fast -c "$conns" -r "$rounds" -d "$secs" -q "$quiet" -M -o "$out/fast.jsonl" \
  "$plain" "$shaped" | tee "$out/fast.md"
python3 - "$out/fast.jsonl" <<'PY' | tee -a "$out/fast.md"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
# the harness's rule: a window is noisy when others used more than 0.15 of a core
def per_req(name, clean):
    return [r["target_cpu_s"] * 1e6 / r["requests"] for r in rows
            if r.get("label") == name and r.get("requests")
            and (not clean or r.get("other_cpu_s", 0) <= 0.15 * r.get("wall_s", 1))]
for clean in (True, False):
    p, s = per_req("gatherd-plain", clean), per_req("gatherd-shaped", clean)
    if p and s:
        print("\nCPU per request, %s windows: plain %s, shaped %s µs; shaped/plain %.3f"
              % ("clean" if clean else "all", [round(x) for x in p], [round(x) for x in s],
                 (sum(s) / len(s)) / (sum(p) / len(p))))
        break
PY
fi
[ -n "$no_cg" ] && { echo "bench: results in $out" >&2; exit 0; }

# Callgrind: instructions per request, each config on its own, the harness's backends started
# by its own scripts.
run=$(mktemp -d /tmp/gatherd-bench-shaped.XXXXXX)
chmod 755 "$run"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  bash "$bench/upstream/stop.sh" "$run/up" >/dev/null 2>&1 || true
  bash "$bench/pg/stop.sh" "$run/pgrun" --rm >/dev/null 2>&1 || true
  rm -rf "$run"
}
trap cleanup EXIT
mkdir -p "$run/up" "$run/pgrun"
bash "$bench/upstream/start.sh" "$run/up" 1 >/dev/null
bash "$bench/pg/start.sh" "$run/pgrun" >/dev/null
export UPSTREAM_URL=http://127.0.0.1:18081 PGHOST=127.0.0.1 PGPORT=15432 PGUSER=bench
export PGDATABASE=bench CALL_TIMEOUT_MS=5000 WORKERS=1
: >"$out/callgrind.txt"
for cfg in plain shaped; do
  in=$root/tests/bench/gatherd-profile.json.in
  [ "$cfg" = shaped ] && in=$root/tests/bench/gatherd-profile-shaped.json.in
  PORT=18099 envsubst <"$in" >"$run/$cfg.json"
  valgrind --tool=callgrind --callgrind-out-file="$run/cg.$cfg" \
    "$root/build-release/gatherd" -c "$run/$cfg.json" 2>"$run/cg.$cfg.log" &
  pid=$!
  pids+=("$pid")
  for _ in $(seq 300); do
    curl -fs -o /dev/null http://127.0.0.1:18099/users/1/profile && break
    sleep 0.1
  done
  wrk -t 1 -c 8 -d 5 -s "$bench/wrk/profile.lua" http://127.0.0.1:18099 >/dev/null 2>&1 # warm-up
  callgrind_control -z "$pid" >/dev/null
  n=$(wrk -t 1 -c 8 -d "$cg_secs" -s "$bench/wrk/profile.lua" http://127.0.0.1:18099 |
    awk '/requests in/ {print $1}')
  callgrind_control -d "$pid" >/dev/null
  sleep 1
  kill -TERM "$pid"
  wait "$pid" || true
  # the dump between the zeroing and the end of the load is part 1; the exit writes the rest
  part=$run/cg.$cfg.1
  callgrind_annotate --inclusive=no "$part" >"$run/annotate.$cfg" 2>/dev/null || true
  head -60 "$run/annotate.$cfg" >"$out/callgrind-$cfg.txt"
  callgrind_annotate --inclusive=yes "$part" 2>/dev/null | grep -E "gd_|put_|eval_|step_into" |
    head -40 >>"$out/callgrind-$cfg.txt" || true
  ir=$(awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}' "$out/callgrind-$cfg.txt")
  echo "$cfg: $n requests, $ir instructions, $((ir / n)) per request" | tee -a "$out/callgrind.txt"
  curl -s http://127.0.0.1:18081/health >/dev/null || true
done
python3 - "$out/callgrind.txt" <<'PY' | tee -a "$out/callgrind.txt"
import re, sys
per = dict(re.findall(r"^(\w+): .* (\d+) per request$", open(sys.argv[1]).read(), re.M))
print("shaped/plain instructions per request: %.3f" % (int(per["shaped"]) / int(per["plain"])))
PY
echo "bench: results in $out" >&2
