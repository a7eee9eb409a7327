#!/usr/bin/env bash
# Resilience figures for README's "Retries": against a flaky upstream (10 % of its answers a 503)
# the share of complete answers without and with retries, against an upstream fully down
# (every answer a 503) the upstream call rate without and with the retry budget, and against
# an upstream with slow outliers (5 % of its answers 500 ms late) the latency without and with
# hedging. The shared
# harness's chaos mode (../shared/bench, port 18083) fails every /posts and /albums call, so no
# policy can make an answer complete there: this script brings its own mock instead, Debian's
# nginx (split_clients picks the failing 10 % and the slow 5 % by request id; the echo module
# sleeps), and drives gatherd at a fixed
# offered rate with the harness's open-loop generator (olg/olg.c), so that the upstream's call
# rate is a multiple of a known client rate. Scenarios run one after another, in -r rounds.
# Writes tests/bench/results/DATE-chaos/chaos.md (table) and chaos.jsonl (raw lines). Needs
# root for apt only when nginx-light or gcc is missing. Benchmarks never run in CI.
#
#   tests/bench/run-chaos.sh [-R RATE] [-d SECONDS] [-r ROUNDS] [-o DIR]
#   GD_CHAOS_SCENARIOS="outlier_no_hedge outlier_hedge" tests/bench/run-chaos.sh   (a subset)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
bench=${GD_BENCH_DIR:-$root/../shared/bench}
rate=300 secs=5 rounds=2 out=
while getopts R:d:r:o: opt; do
  case $opt in
  R) rate=$OPTARG ;; d) secs=$OPTARG ;; r) rounds=$OPTARG ;; o) out=$OPTARG ;; *) exit 2 ;;
  esac
done
out=${out:-$root/tests/bench/results/$(date -u +%Y-%m-%d)-chaos}
[ -f "$bench/olg/olg.c" ] || { echo "bench: no olg.c at $bench/olg" >&2; exit 1; }
echo_so=/usr/lib/nginx/modules/ngx_http_echo_module.so
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] ||
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx-light >/dev/null
[ -f "$echo_so" ] ||
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends libnginx-mod-http-echo >/dev/null
command -v gcc >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc >/dev/null

run=$(mktemp -d /tmp/gatherd-chaos.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$run"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
  for _ in $(seq 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "bench: nothing listens on $1" >&2
  exit 1
}

bash "$root/scripts/build.sh" build-release --buildtype=release
gcc -O2 -Wall -o "$run/olg" "$bench/olg/olg.c" -lm
up_port=$(free_port) gd_port=$(free_port) admin_port=$(free_port)

mkdir -p "$run/nginx-tmp"
cat >"$run/nginx.conf" <<EOF
load_module $echo_so;
worker_processes 1;
daemon off;
pid $run/nginx.pid;
error_log $run/nginx-error.log warn;
events { worker_connections 4096; }
http {
  client_body_temp_path $run/nginx-tmp; proxy_temp_path $run/nginx-tmp;
  fastcgi_temp_path $run/nginx-tmp; uwsgi_temp_path $run/nginx-tmp; scgi_temp_path $run/nginx-tmp;
  log_format uri '\$uri \$status';
  split_clients "\${request_id}" \$flaky_fails { 10% 1; * 0; }
  split_clients "\${request_id}" \$outlier { 5% 1; * 0; }
  server {
    listen 127.0.0.1:$up_port;
    keepalive_requests 1000000;
    default_type application/json;
    access_log $run/upstream.log uri;
    location /flaky/ { if (\$flaky_fails) { return 503 '{"error":"flaky"}'; } return 200 '{"ok":true}'; }
    location /down/ { return 503 '{"error":"down"}'; }
    location /outlier/ { if (\$outlier) { rewrite ^ /late last; } return 200 '{"ok":true}'; }
    location = /late { internal; echo_sleep 0.5; echo '{"ok":true}'; }
  }
}
EOF
/usr/sbin/nginx -c "$run/nginx.conf" -e "$run/nginx-error.log" &
pids+=($!)
wait_port "$up_port"

# One upstream per scenario, so that each has its own retry budget. "Without the budget": the
# budget's widest setting (100 % of the calls, a floor of 1000 retries/s), which the offered
# rates used here never reach: every failure is retried up to attempts.
up="http://127.0.0.1:$up_port"
retry='{"attempts": 3, "backoff_ms": 5, "max_backoff_ms": 50}'
unbudgeted='{"attempts": 3, "backoff_ms": 5, "max_backoff_ms": 50, "budget_percent": 100, "min_retries_per_s": 1000}'
budgeted='{"attempts": 3, "backoff_ms": 5, "max_backoff_ms": 50, "budget_percent": 20, "min_retries_per_s": 3}'
hedged='{"attempts": 2, "hedge_after_ms": 50}'
ep() { printf '{"method": "GET", "path": "/%s/{id}", "calls": {"x": {"upstream": "%s", "path": "/%s/%s/{id}"}}}' "$1" "$1" "$2" "$1"; }
cat >"$run/gatherd.json" <<EOF
{
  "listen": ["127.0.0.1:$gd_port"], "admin_listen": "127.0.0.1:$admin_port",
  "log": { "level": "error" }, "threads": 2,
  "upstreams": {
    "flaky_no_retry": { "url": "$up" },
    "flaky_retry":    { "url": "$up", "retry": $retry },
    "down_no_budget": { "url": "$up", "retry": $unbudgeted },
    "down_budget":    { "url": "$up", "retry": $budgeted },
    "outlier_no_hedge": { "url": "$up" },
    "outlier_hedge":  { "url": "$up", "retry": $hedged }
  },
  "endpoints": [ $(ep flaky_no_retry flaky), $(ep flaky_retry flaky),
                 $(ep down_no_budget down), $(ep down_budget down),
                 $(ep outlier_no_hedge outlier), $(ep outlier_hedge outlier) ]
}
EOF
"$root/build-release/gatherd" -c "$run/gatherd.json" 2>"$run/gatherd.log" &
pids+=($!)
wait_port "$gd_port"

mkdir -p "$out"
: >"$out/chaos.jsonl"
for round in $(seq "$rounds"); do
  for s in ${GD_CHAOS_SCENARIOS:-flaky_no_retry flaky_retry down_no_budget down_budget outlier_no_hedge outlier_hedge}; do
    before=$(wc -l <"$run/upstream.log")
    line=$("$run/olg" -p "$gd_port" -r "$rate" -d "$secs" -w 1 -c 64 -t 5 -u "/$s/{id}" -n 10000 |
      sed -n 's/^WRKJSON //p')
    sleep 0.2 # the last backoffs end
    after=$(wc -l <"$run/upstream.log")
    python3 - "$s" "$round" "$((after - before))" "$line" >>"$out/chaos.jsonl" <<'EOF'
import json, sys
s, rnd, upstream, w = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), json.loads(sys.argv[4])
failed = w['non2xx'] + w['err_connect'] + w['err_read'] + w['err_write'] + w['err_timeout']
print(json.dumps({'scenario': s, 'round': rnd, 'offered_rps': w['offered_rps'],
                  'client_requests': w['requests'], 'measured': w['measured'],
                  'complete_share': round(1 - failed / w['measured'], 4),
                  'upstream_requests': upstream,
                  'upstream_per_call': round(upstream / w['requests'], 3),
                  'upstream_rps': round(upstream / w['requests'] * w['offered_rps'], 1),
                  'p50_ms': w['p50_ms'], 'p90_ms': w['p90_ms'], 'p99_ms': w['p99_ms'],
                  'max_ms': w['max_ms']}))
EOF
    tail -1 "$out/chaos.jsonl" >&2
  done
done
curl -s "http://127.0.0.1:$admin_port/metrics" | grep -E '^gatherd_upstream_(attempts|retries|retries_refused|hedges|hedges_won)_total' >"$out/metrics.txt" || true
python3 - "$out/chaos.jsonl" "$rate" "$secs" "$rounds" >"$out/chaos.md" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
rate, secs, rounds = sys.argv[2:5]
what = {'flaky_no_retry': 'flaky (10 % 503), no retry',
        'flaky_retry': 'flaky (10 % 503), `"attempts": 3`',
        'down_no_budget': 'down (100 % 503), `"attempts": 3`, no budget',
        'down_budget': 'down (100 % 503), `"attempts": 3`, budget 20 % (+3/s)',
        'outlier_no_hedge': 'slow outliers (5 % 500 ms late), no hedging',
        'outlier_hedge': 'slow outliers (5 % 500 ms late), `"hedge_after_ms": 50`'}
print('Offered %s req/s per scenario (open loop, olg), %s s windows (+1 s lead-in), %s rounds; '
      'means over the rounds.\n' % (rate, secs, rounds))
print('| scenario | complete answers | upstream requests per client request | upstream req/s | p50 ms | p90 ms | p99 ms |')
print('|---|---|---|---|---|---|---|')
for s in what:
    r = [x for x in rows if x['scenario'] == s]
    n = len(r)
    if n == 0:
        continue
    mean = lambda k: sum(float(x[k]) for x in r) / n
    print('| %s | %.2f %% | %.2f | %.0f | %.2f | %.2f | %.2f |' % (
        what[s], 100 * mean('complete_share'), mean('upstream_per_call'), mean('upstream_rps'),
        mean('p50_ms'), mean('p90_ms'), mean('p99_ms')))
EOF
cat "$out/chaos.md"
echo "bench: results in $out" >&2
