#!/usr/bin/env bash
# The cost and the savings of gzip answers on the profile workload, in one run of the shared
# harness (../shared/bench/run.sh): interleaved A B A B windows of gatherd with "compress":
# false (identity) and with the defaults (gzip, min_bytes 1024, level 1), same build, same
# config otherwise. Every request of wrk sends "Accept-Encoding: gzip" (a browser's): the
# harness is copied into a temp dir and its wrk driver given the header there; the shared copy
# is never changed. Bytes per answer: wrk's bytes read / requests (headers included). Needs
# root like the harness. Never runs in CI.
#
#   tests/bench/run-gzip.sh [-r ROUNDS] [-d SECONDS] [-c CONNECTIONS] [-o DIR]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
bench=${GD_BENCH_DIR:-$root/../shared/bench}
rounds=2 secs=10 conns=64 out=
while getopts r:d:c:o: opt; do
  case $opt in
  r) rounds=$OPTARG ;; d) secs=$OPTARG ;; c) conns=$OPTARG ;; o) out=$OPTARG ;; *) exit 2 ;;
  esac
done
out=${out:-$root/tests/bench/results/$(date -u +%Y-%m-%d)-gzip}
[ -x "$bench/run.sh" ] || { echo "bench: no harness at $bench" >&2; exit 1; }
for c in nginx wrk envsubst; do
  command -v "$c" >/dev/null || [ -x "/usr/sbin/$c" ] || {
    echo "bench: $c missing (apt-get install nginx libnginx-mod-http-echo wrk gettext-base)" >&2
    exit 1
  }
done

tmp=$(mktemp -d /tmp/gatherd-bench-gzip.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
cp -r "$bench" "$tmp/bench"
chmod 755 "$tmp"
python3 - "$tmp/bench/wrk/profile.lua" <<'PY'
import sys
path = sys.argv[1]
lua = open(path).read()
plain = 'reqs[id] = wrk.format("GET", pre .. id .. post)'
assert lua.count(plain) == 1, "the wrk driver's request moved: update run-gzip.sh"
lua = lua.replace(plain, 'reqs[id] = wrk.format("GET", pre .. id .. post, '
                         '{["Accept-Encoding"] = "gzip, deflate, br"})')
open(path, "w").write(lua)
PY

bash "$root/scripts/build.sh" build-release --buildtype=release
mkdir -p "$out"
export MAX_CONNECTIONS=256
identity="gatherd-identity=18095:envsubst < $root/tests/bench/gatherd-profile-identity.json.in > \$BENCH_RUNDIR/gatherd-identity.json && exec $root/build-release/gatherd -c \$BENCH_RUNDIR/gatherd-identity.json"
gzip="gatherd-gzip=18093:envsubst < $root/tests/bench/gatherd-profile.json.in > \$BENCH_RUNDIR/gatherd.json && exec $root/build-release/gatherd -c \$BENCH_RUNDIR/gatherd.json"
rm -f "$out/fast.jsonl"
bash "$tmp/bench/run.sh" -m fast -c "$conns" -r "$rounds" -d "$secs" -M -o "$out/fast.jsonl" \
  "$identity" "$gzip" | tee "$out/fast.md"
echo "bench: results in $out" >&2
