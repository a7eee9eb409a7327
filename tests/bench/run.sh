#!/usr/bin/env bash
# Benchmarks gatherd against the peer implementations on the profile workload, with the shared
# harness (../shared/bench/run.sh, beside the repo): a release build of gatherd, the python
# (aiohttp + asyncpg) and node (fastify + undici + pg) peers, fast mode and slow mode, A B A B
# windows. Writes tests/bench/results/DATE/{fast,slow}.md (tables), *.jsonl (raw lines) and
# chart.png (req/s and p99 per target). Needs root (the harness runs Postgres as `postgres`).
# Benchmarks never run in CI.
#
#   tests/bench/run.sh [-r ROUNDS] [-d SECONDS] [-m "fast slow"] [-t "python node"] [-o DIR]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
bench=${GD_BENCH_DIR:-$root/../shared/bench}
rounds=2 secs=10 modes="fast slow" peers="python node" out=
while getopts r:d:m:t:o: opt; do
  case $opt in
  r) rounds=$OPTARG ;; d) secs=$OPTARG ;; m) modes=$OPTARG ;; t) peers=$OPTARG ;;
  o) out=$OPTARG ;; *) exit 2 ;;
  esac
done
out=${out:-$root/tests/bench/results/$(date -u +%Y-%m-%d)}
[ -x "$bench/run.sh" ] || { echo "bench: no harness at $bench" >&2; exit 1; }
command -v gnuplot >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gnuplot-nox >/dev/null
command -v envsubst >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gettext-base >/dev/null
bash "$bench/run.sh" -i >/dev/null

bash "$root/scripts/build.sh" build-release --buildtype=release
mkdir -p "$out"
target="gatherd=18093:envsubst < $root/tests/bench/gatherd-profile.json.in > \$BENCH_RUNDIR/gatherd.json && exec $root/build-release/gatherd -c \$BENCH_RUNDIR/gatherd.json"
for mode in $modes; do
  rm -f "$out/$mode.jsonl"
  # shellcheck disable=SC2086 # $peers is a list of target names
  bash "$bench/run.sh" -m "$mode" -r "$rounds" -d "$secs" -M -o "$out/$mode.jsonl" \
    $peers "$target" | tee "$out/$mode.md"
done
python3 "$root/tests/bench/chart.py" "$out" $modes
echo "bench: results in $out" >&2
