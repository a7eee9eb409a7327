#!/usr/bin/env bash
# Plain against TLS upstream calls on the profile workload (issue 10's goal: TLS within 25 % of
# plain, with pooled keep-alive connections), in one run of the shared harness
# (../shared/bench/run.sh): interleaved A B A B windows of gatherd with its three HTTP calls to
# the nginx mock over http:// (port 18081) and over https:// (port 18181), same build, same
# config otherwise. The harness is copied into a temp dir and its nginx mock given a TLS
# listener there (the fast server block, a certificate of a throwaway CA made with the openssl
# CLI); the shared copy is never changed. Needs root like the harness. Never runs in CI.
#
#   tests/bench/run-tls.sh [-r ROUNDS] [-d SECONDS] [-c CONNECTIONS] [-o DIR] [-b BINARY]
#
# -b adds a third target, gatherd-tls-before: BINARY (another build of gatherd, e.g. of the
# commit before a change) over https://, for before/after figures in the same run.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
bench=${GD_BENCH_DIR:-$root/../shared/bench}
rounds=2 secs=10 conns=64 out= before=
while getopts r:d:c:o:b: opt; do
  case $opt in
  r) rounds=$OPTARG ;; d) secs=$OPTARG ;; c) conns=$OPTARG ;; o) out=$OPTARG ;;
  b) before=$OPTARG ;; *) exit 2 ;;
  esac
done
out=${out:-$root/tests/bench/results/$(date -u +%Y-%m-%d)-tls}
[ -x "$bench/run.sh" ] || { echo "bench: no harness at $bench" >&2; exit 1; }
for c in nginx wrk envsubst openssl; do
  command -v "$c" >/dev/null || [ -x "/usr/sbin/$c" ] || {
    echo "bench: $c missing (apt-get install nginx libnginx-mod-http-echo wrk gettext-base openssl)" >&2
    exit 1
  }
done

tmp=$(mktemp -d /tmp/gatherd-bench-tls.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
cp -r "$bench" "$tmp/bench"
certs=$tmp/certs
mkdir -p "$certs"
(
  cd "$certs"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key \
    -out ca.pem -days 2 -subj "/CN=gatherd bench CA" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout server.key \
    -out server.csr -subj /CN=127.0.0.1 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >server.ext
  openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
    -extfile server.ext -out server.pem 2>/dev/null
  chmod 644 ./*.pem ./*.key # nginx workers run as www-data
)
chmod 755 "$tmp" "$certs"
# The fast server block (port 18081) also listens with TLS on 18181: the same answers, so the
# two targets differ only in the transport of their upstream calls.
python3 - "$tmp/bench/upstream/nginx.conf" "$certs" <<'PY'
import sys
path, certs = sys.argv[1], sys.argv[2]
conf = open(path).read()
plain = "        listen 127.0.0.1:18081 reuseport backlog=4096;\n"
assert conf.count(plain) == 1, "the mock's fast listener moved: update run-tls.sh"
conf = conf.replace(plain, plain +
    "        listen 127.0.0.1:18181 ssl reuseport backlog=4096;\n"
    "        ssl_certificate %s/server.pem;\n"
    "        ssl_certificate_key %s/server.key;\n"
    "        ssl_protocols TLSv1.2 TLSv1.3;\n" % (certs, certs))
open(path, "w").write(conf)
PY

bash "$root/scripts/build.sh" build-release --buildtype=release
mkdir -p "$out"
export MAX_CONNECTIONS=256 TLS_UPSTREAM_URL=https://127.0.0.1:18181 TLS_CA_FILE=$certs/ca.pem
plain="gatherd=18093:envsubst < $root/tests/bench/gatherd-profile.json.in > \$BENCH_RUNDIR/gatherd.json && exec $root/build-release/gatherd -c \$BENCH_RUNDIR/gatherd.json"
tls="gatherd-tls=18094:envsubst < $root/tests/bench/gatherd-profile-tls.json.in > \$BENCH_RUNDIR/gatherd-tls.json && exec $root/build-release/gatherd -c \$BENCH_RUNDIR/gatherd-tls.json"
targets=("$plain" "$tls")
[ -z "$before" ] || targets+=("gatherd-tls-before=18095:envsubst < $root/tests/bench/gatherd-profile-tls.json.in | sed s/19094/19095/ > \$BENCH_RUNDIR/gatherd-tls-before.json && exec $before -c \$BENCH_RUNDIR/gatherd-tls-before.json")
rm -f "$out/fast.jsonl"
bash "$tmp/bench/run.sh" -m fast -c "$conns" -r "$rounds" -d "$secs" -M -o "$out/fast.jsonl" \
  "${targets[@]}" | tee "$out/fast.md"
echo "bench: results in $out" >&2
