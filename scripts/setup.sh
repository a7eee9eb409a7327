#!/usr/bin/env bash
# Installs what building, running and testing gatherd needs on Debian 12 (run as root). Only
# missing packages are installed, so a second run costs a few dpkg look-ups.
set -euo pipefail

packages=(
  gcc clang pkg-config meson ninja-build      # build (clang: a second compiler's warnings)
  libh2o-dev libuv1-dev libjansson-dev libssl-dev libpq-dev zlib1g-dev libjwt-dev
  libhiredis-dev                              # shared state in Redis (with its libuv adapter)
  redis-server                                # test_redis: the tests' throwaway Redis
  postgresql-15 postgresql-client-15          # the demo's and the tests' throwaway clusters
  pgbouncer                                   # test_pgbouncer: transaction pooling in front
  haproxy                                     # test_replicas: three replicas behind a balancer
  python3 curl                                # demo upstream, integration tests (curl: HTTP/2)
  openssl ca-certificates                     # test_tls makes its certificates; system CA store
  valgrind                                    # valgrind.h: coroutine stacks announced to valgrind
  chromium                                    # test_cors_browser: a real browser on another origin
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  if [ "$(id -u)" != 0 ]; then
    echo "setup: these Debian packages are missing and installing them needs root" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
