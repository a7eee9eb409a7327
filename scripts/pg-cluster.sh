#!/usr/bin/env bash
# A throwaway PostgreSQL 15 cluster for the demo and the tests.
#
#   scripts/pg-cluster.sh start DIR PORT [SQLFILE...]   initdb into DIR (once), start the server
#                                                        on 127.0.0.1:PORT and a unix socket in
#                                                        DIR/sock, create database and role
#                                                        "gatherd" (trust auth), run SQLFILEs once
#   scripts/pg-cluster.sh stop DIR [--rm]               fast shutdown; --rm deletes DIR
#
# PostgreSQL refuses to run as root: started as root, the server runs as the OS user
# "postgres" (DIR is handed to it). Everything listens on loopback only.
set -euo pipefail
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[ -x "$bin/initdb" ] || { echo "pg-cluster: PostgreSQL server binaries not found (postgresql-15)" >&2; exit 1; }

as_owner() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

cmd=${1:?usage: pg-cluster.sh start DIR PORT [SQLFILE...] | stop DIR [--rm]}
dir=${2:?missing DIR}
case $cmd in
start)
  port=${3:?missing PORT}
  shift 3
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  if [ "$(id -u)" = 0 ]; then
    chown postgres:postgres "$dir"
    chmod 700 "$dir"
    # The server needs to reach DIR: open the path to it for traversal only.
    d=$(dirname "$dir")
    while [ "$d" != / ]; do chmod o+x "$d" 2>/dev/null || true; d=$(dirname "$d"); done
  fi
  if [ ! -s "$dir/data/PG_VERSION" ]; then
    as_owner mkdir -p "$dir/sock"
    as_owner "$bin/initdb" -D "$dir/data" -U gatherd --auth=trust -E UTF8 --locale=C.UTF-8 \
      >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; exit 1; }
    as_owner tee -a "$dir/data/postgresql.conf" >/dev/null <<CONF
# --- throwaway cluster for gatherd's demo and tests ---
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir/sock'
max_connections = 200
fsync = off
synchronous_commit = off
full_page_writes = off
jit = off
log_min_messages = warning
CONF
  fi
  as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start >/dev/null ||
    { tail -n 20 "$dir/server.log" >&2; exit 1; }
  psql=(psql -X -q -v ON_ERROR_STOP=1 -h "$dir/sock" -p "$port" -U gatherd)
  if ! "${psql[@]}" -d gatherd -c 'select 1' >/dev/null 2>&1; then
    "${psql[@]}" -d postgres -c 'CREATE DATABASE gatherd' >/dev/null
    for f in "$@"; do
      "${psql[@]}" -d gatherd -f "$f" >/dev/null
    done
  fi
  ;;
stop)
  if [ -s "$dir/data/postmaster.pid" ]; then
    as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >/dev/null || true
  fi
  if [ "${3:-}" = --rm ]; then rm -rf "$dir"; fi
  ;;
*)
  echo "usage: pg-cluster.sh start DIR PORT [SQLFILE...] | stop DIR [--rm]" >&2
  exit 2
  ;;
esac
