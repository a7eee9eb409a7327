#!/usr/bin/env bash
# Runs gatherd on its embedded demo: installs what is missing, builds, starts the demo upstream
# APIs on 127.0.0.1:18081, a throwaway PostgreSQL on 127.0.0.1:15433 (data in a fresh /tmp/gatherd-demo-pg.* folder,
# loaded from scripts/demo.sql) and gatherd on 127.0.0.1:8080 (admin on 127.0.0.1:9090) with
# conf/demo.json. Try, from another shell:  curl -i http://127.0.0.1:8080/users/1/profile
# Ctrl-C (SIGINT) drains gatherd and stops everything this script started.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh build-release --buildtype=release

pgdir=$(mktemp -d /tmp/gatherd-demo-pg.XXXXXX)
bash scripts/pg-cluster.sh start "$pgdir" 15433 scripts/demo.sql
# The demo upstream demands an API key, as a third-party API would; conf/demo.json sends it from
# the environment ({env.GATHERD_DEMO_API_KEY}), so it is written nowhere in the config.
export GATHERD_DEMO_API_KEY=${GATHERD_DEMO_API_KEY:-demo-$RANDOM$RANDOM}
# The keys gatherd's own /users/{id}/account accepts (x-client-key), from the environment too.
export GATHERD_DEMO_CLIENT_KEYS=${GATHERD_DEMO_CLIENT_KEYS:-demo-client-key}
python3 scripts/demo-upstream.py --port 18081 --api-key "$GATHERD_DEMO_API_KEY" &
upstream_pid=$!
cleanup() {
  kill "$upstream_pid" 2>/dev/null || true
  wait "$upstream_pid" 2>/dev/null || true
  bash scripts/pg-cluster.sh stop "$pgdir" --rm
}
trap cleanup EXIT
for _ in $(seq 100); do
  curl -sf -o /dev/null -H "x-api-key: $GATHERD_DEMO_API_KEY" http://127.0.0.1:18081/users/1 && break
  sleep 0.05
done

echo "demo: gatherd on http://127.0.0.1:8080 — try: curl -i http://127.0.0.1:8080/users/1/profile" >&2
echo "demo: and with a client key: curl -i -H 'x-client-key: $GATHERD_DEMO_CLIENT_KEYS' http://127.0.0.1:8080/users/1/account" >&2
build-release/gatherd -c conf/demo.json &
gatherd_pid=$!
echo "demo: gatherd is PID $gatherd_pid; after editing conf/demo.json, kill -HUP $gatherd_pid reloads it" >&2
trap 'kill -TERM "$gatherd_pid" 2>/dev/null || true; wait "$gatherd_pid" 2>/dev/null || true; cleanup' EXIT
trap 'kill -TERM "$gatherd_pid" 2>/dev/null || true' INT TERM
wait "$gatherd_pid" || true
