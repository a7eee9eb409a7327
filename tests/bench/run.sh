#!/usr/bin/env bash
# Benchmarks gatherd against the peer implementations on the profile workload, with the shared
# harness (../shared/bench/run.sh, beside the repo): a release build of gatherd, the python
# (aiohttp + asyncpg) and node (fastify + undici + pg) peers, fast mode and slow mode, A B A B
# windows, with the nginx mock alone as a reference (its /users/{id}: one upstream exchange; in
# slow mode, the real ceiling of 64 connections over its own 50 ms sleeps). Writes tests/bench/results/DATE/{fast,slow}.md (tables), *.jsonl (raw lines) and
# chart.png (req/s and p99 per target; with -R also p99 against offered load). Needs root (the
# harness runs Postgres as `postgres`). Benchmarks never run in CI.
#
#   tests/bench/run.sh [-r ROUNDS] [-d SECONDS] [-m "fast slow"] [-t "python node"] [-o DIR]
#                      [-R RATES]
#       -R RATES   then the open loop in fast mode (the harness's -R: latency at fixed offered
#                  rates, from each request's intended send time), gatherd and the peers named
#                  with -t but the nginx mock, into open-loop.{md,jsonl}; RATES as the
#                  harness takes them, e.g. "50%own 70%own 80%node 50%gatherd". Relative rates
#                  come from closed-loop windows the harness runs first in the same call.
#   tests/bench/run.sh -R RATES -m ""        the open loop only
#   tests/bench/run.sh -S [-c CONNECTIONS]   the scale run: slow mode, 10,000 connections, gatherd
#                                            (and the peers named with -t), upstream cap 8192
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
bench=${GD_BENCH_DIR:-$root/../shared/bench}
rounds=2 secs=10 modes="fast slow" peers="nginx python node" out= scale= conns=64 rates=
while getopts r:d:m:t:o:Sc:R: opt; do
  case $opt in
  r) rounds=$OPTARG ;; d) secs=$OPTARG ;; m) modes=$OPTARG ;; t) peers=$OPTARG ;;
  o) out=$OPTARG ;; S) scale=1 ;; c) conns=$OPTARG ;; R) rates=$OPTARG ;; *) exit 2 ;;
  esac
done
export MAX_CONNECTIONS=256
if [ -n "$scale" ]; then
  # 10,000 clients, each request holding three 50 ms calls: the upstream cap must not be what
  # makes them wait. wrk, gatherd and nginx each need a descriptor per connection.
  [ "$conns" = 64 ] && conns=10000
  modes=slow rounds=1 MAX_CONNECTIONS=8192
  [ -n "${GD_BENCH_PEERS_SET:-}" ] || peers=
  ulimit -n "$(ulimit -Hn)"
fi
out=${out:-$root/tests/bench/results/$(date -u +%Y-%m-%d)}
[ -x "$bench/run.sh" ] || { echo "bench: no harness at $bench" >&2; exit 1; }
command -v gnuplot >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gnuplot-nox >/dev/null
command -v envsubst >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gettext-base >/dev/null
bash "$bench/run.sh" -i >/dev/null

bash "$root/scripts/build.sh" build-release --buildtype=release
mkdir -p "$out"
target="gatherd=18093:envsubst < $root/tests/bench/gatherd-profile.json.in > \$BENCH_RUNDIR/gatherd.json && exec $root/build-release/gatherd -c \$BENCH_RUNDIR/gatherd.json"
for mode in $modes; do
  name=$mode${scale:+-scale}
  rm -f "$out/$name.jsonl" # the scale run must not remove the slow mode's lines
  # shellcheck disable=SC2086 # $peers is a list of target names
  bash "$bench/run.sh" -m "$mode" -c "$conns" -r "$rounds" -d "$secs" -M -o "$out/$name.jsonl" \
    $peers "$target" | tee "$out/$name.md"
done
if [ -n "$rates" ] && [ -z "$scale" ]; then
  # The mock alone is no peer at a gateway's rates (it serves one call, not the profile).
  open_peers=$(printf '%s\n' $peers | grep -vx nginx | tr '\n' ' ' || true)
  rm -f "$out/open-loop.jsonl"
  # shellcheck disable=SC2086
  bash "$bench/run.sh" -m fast -c "$conns" -r "$rounds" -d "$secs" -M -R "$rates" \
    -o "$out/open-loop.jsonl" $open_peers "$target" | tee "$out/open-loop.md"
fi
[ -n "$scale" ] || python3 "$root/tests/bench/chart.py" "$out" $modes
echo "bench: results in $out" >&2
